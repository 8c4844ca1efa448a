/**
 * Image discovery: a folder (searched recursively), a glob, a text file listing paths, or one image file.
 *
 * The result is sorted by the byte order of the UTF-8 path string, so that it never depends on the order in
 * which the file system lists entries. `maxImages` picks a reproducible subset: sort everything, shuffle
 * with a seeded PRNG (mulberry32), take the first N, sort the pick again.
 */
import fg from 'fast-glob';
import { readdir, readlink, stat } from 'node:fs/promises';
import path from 'node:path';
import { UserError, invalidParameter } from '../errors.js';
import { READ_LIMITS, readUserFile } from '../util/fs.js';
import type { SkippedFile } from './types.js';

/** Extensions searched in folders and kept from globs (what sharp's prebuilt libvips can decode). */
export const IMAGE_EXTENSIONS: readonly string[] = ['jpg', 'jpeg', 'png', 'webp', 'tif', 'tiff', 'gif', 'avif', 'heif', 'heic'];

const IMAGE_RE = new RegExp(`\\.(${IMAGE_EXTENSIONS.join('|')})$`, 'i');

export interface DiscoveryOptions {
  /** Keep at most this many images, picked reproducibly with `seed`. */
  maxImages?: number;
  /** Seed of the subset pick (default 0). Only used with maxImages. */
  seed?: number;
}

/** True when the path ends in one of IMAGE_EXTENSIONS (case-insensitive). */
export function isImagePath(file: string): boolean {
  return IMAGE_RE.test(file);
}

/**
 * Finds the images named by `input` and returns them sorted (or the seeded subset, sorted).
 * Paths keep the form the user gave (relative stays relative), joined with the folder or list file's folder.
 */
export async function discoverImages(input: string, options: DiscoveryOptions = {}): Promise<string[]> {
  return (await discoverImagesReporting(input, options)).files;
}

export interface Discovery {
  /** The images, sorted (or the seeded subset, sorted). */
  files: string[];
  /** Entries of a searched folder that were not followed: symbolic link loops and dangling links, sorted by path. */
  skipped: SkippedFile[];
}

/** discoverImages, plus what a folder search skipped (link loops, dangling links), for the dataset's skipped list. */
export async function discoverImagesReporting(input: string, options: DiscoveryOptions = {}): Promise<Discovery> {
  if (typeof input !== 'string' || input.trim() === '') throw invalidParameter('data', 'a folder, a glob or a list file', input);
  const { maxImages, seed = 0 } = options;
  if (maxImages !== undefined && (!Number.isInteger(maxImages) || maxImages < 1)) {
    throw invalidParameter('maxImages', 'a positive integer', maxImages);
  }
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw invalidParameter('seed', 'an integer from 0 to 4294967295', seed);

  const { files, searched, skipped = [] } = await find(input);
  const unique = await oncePerFile(sortPaths([...new Set(files)]));
  if (unique.length === 0) {
    throw new UserError(`No images found in ${JSON.stringify(input)}: searched ${searched}.`, {
      hint: `Give a folder holding images (${IMAGE_EXTENSIONS.join(', ')}), a glob such as "photos/**/*.jpg", or a text file listing image paths.`,
    });
  }
  if (maxImages === undefined || maxImages >= unique.length) return { files: unique, skipped };
  return { files: sortPaths(seededPick(unique, maxImages, seed)), skipped };
}

async function find(input: string): Promise<{ files: string[]; searched: string; skipped?: SkippedFile[] }> {
  const info = await stat(input).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
    throw new UserError(`Cannot read ${JSON.stringify(input)}: ${err.message}`);
  });
  if (info?.isDirectory()) return { ...(await findInFolder(input)), searched: `the folder and its subfolders for ${extensionList()}` };
  if (info?.isFile()) {
    if (isImagePath(input)) return { files: [input], searched: 'one image file' };
    return { files: await readListFile(input), searched: 'the paths listed in the file (one per line)' };
  }
  if (fg.isDynamicPattern(input)) {
    const { files, skipped } = await globFiles(input);
    return { files: files.filter(isImagePath), skipped, searched: `the glob's matches with extension ${extensionList()}` };
  }
  throw new UserError(`The data path ${JSON.stringify(input)} does not exist.`, {
    hint: 'Give an existing folder of images, a glob (quoted, e.g. "data/**/*.jpg") or a text file listing image paths.',
  });
}

/** A real file or folder: device and inode, the same whichever link or hard link reached it. */
function realKey(info: { dev: bigint; ino: bigint }): string {
  return `${info.dev}:${info.ino}`;
}

/** Folders are compared by their path with a trailing separator: see findInFolder. */
function folderKey(folder: string): Buffer {
  return Buffer.from(folder.endsWith(path.sep) ? folder : folder + path.sep, 'utf8');
}

/**
 * Searches a folder and its subfolders, following symbolic links, visiting each real folder and each real file
 * once (by device and inode), so that a link back up the tree (`sub/up -> ..`) neither repeats images nor loops.
 *
 * Folders are visited in the byte order of their path (a priority queue), which makes the path kept for a folder
 * reached in several ways the first in that order, whatever order the file system lists entries in: with a
 * trailing separator, no path of a folder is a prefix of another path of the same folder (that would be a loop),
 * so an order between two folder paths holds for everything below them. Files then keep their first path in
 * sorted order too (oncePerFile). Links to a folder above themselves (loops) and links whose target does not
 * exist are reported by name; hidden entries (starting with ".") are left out as before.
 */
async function findInFolder(root: string): Promise<{ files: string[]; skipped: SkippedFile[] }> {
  const files: string[] = [];
  const skipped: SkippedFile[] = [];
  const visited = new Set<string>();
  const rootInfo = await stat(root, { bigint: true });
  const queue = new FolderQueue();
  queue.push({ folder: root, key: realKey(rootInfo), ancestors: [] });
  const cannotSearch = (folder: string, err: NodeJS.ErrnoException): never => {
    throw new UserError(`Cannot search the folder ${JSON.stringify(folder)}: ${err.message}`);
  };
  for (let next = queue.pop(); next !== undefined; next = queue.pop()) {
    if (visited.has(next.key)) continue; // another path reached this folder first (in path order)
    visited.add(next.key);
    const ancestors = [...next.ancestors, { key: next.key, folder: next.folder }];
    const entries = await readdir(next.folder, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => cannotSearch(next!.folder, err));
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const full = path.join(next.folder, entry.name);
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      let key: string | undefined;
      if (entry.isSymbolicLink()) {
        const target = await stat(full, { bigint: true }).catch((err: NodeJS.ErrnoException) => err);
        if (target instanceof Error) {
          if (target.code === 'ENOENT' || target.code === 'ENOTDIR') {
            skipped.push({ kind: 'link', file: full, reason: `dangling symbolic link (its target ${JSON.stringify(await readlink(full).catch(() => '?'))} does not exist), not followed` });
            continue;
          }
          if (target.code === 'ELOOP') {
            skipped.push({ kind: 'link', file: full, reason: 'symbolic link loop (the link resolves to itself through other links), not followed' });
            continue;
          }
          skipped.push({ kind: 'link', file: full, reason: `symbolic link that cannot be followed: ${target.message}` });
          continue;
        }
        isDir = target.isDirectory();
        isFile = target.isFile();
        key = realKey(target);
      }
      if (isFile) {
        if (isImagePath(entry.name)) files.push(full);
      } else if (isDir) {
        key ??= realKey(await stat(full, { bigint: true }).catch((err: NodeJS.ErrnoException) => cannotSearch(full, err)));
        const above = ancestors.find((a) => a.key === key);
        if (above !== undefined) {
          skipped.push({ kind: 'link', file: full, reason: `symbolic link loop: it leads back to ${JSON.stringify(above.folder)}, which contains it; not followed` });
          continue;
        }
        if (!visited.has(key)) queue.push({ folder: full, key, ancestors });
      }
    }
  }
  return { files, skipped: skipped.sort((a, b) => Buffer.compare(Buffer.from(a.file, 'utf8'), Buffer.from(b.file, 'utf8'))) };
}

interface QueuedFolder {
  folder: string;
  key: string;
  ancestors: ReadonlyArray<{ key: string; folder: string }>;
}

/** A binary min-heap of folders by folderKey (byte order of the path with a trailing separator). */
class FolderQueue {
  private readonly heap: Array<{ order: Buffer; item: QueuedFolder }> = [];
  push(item: QueuedFolder): void {
    const h = this.heap;
    h.push({ order: folderKey(item.folder), item });
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (Buffer.compare(h[parent]!.order, h[i]!.order) <= 0) break;
      [h[parent], h[i]] = [h[i]!, h[parent]!];
      i = parent;
    }
  }
  pop(): QueuedFolder | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0]!.item;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && Buffer.compare(h[l]!.order, h[m]!.order) < 0) m = l;
        if (r < h.length && Buffer.compare(h[r]!.order, h[m]!.order) < 0) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
    return top;
  }
}

/**
 * Keeps one path per real file (device and inode): the first in sorted order, so that an image reached through
 * two links (or two hard links, or listed twice under two names) counts once. `sorted` must be sorted; paths
 * that cannot be stat'ed are kept as they are (decoding reports them).
 */
async function oncePerFile(sorted: readonly string[]): Promise<string[]> {
  const infos = await mapLimited(sorted, 64, (f) => stat(f, { bigint: true }).catch(() => undefined));
  const seen = new Set<string>();
  const kept: string[] = [];
  sorted.forEach((file, i) => {
    const info = infos[i];
    if (info !== undefined && info.isFile()) {
      const key = realKey(info);
      if (seen.has(key)) return;
      seen.add(key);
    }
    kept.push(file);
  });
  return kept;
}

async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * A glob's matches. fast-glob has no cycle check when it follows links (two `up -> ..` links made it run
 * forever), so a glob does not descend into linked folders; a matched link to a file is followed (kept when its
 * target is a regular file), a dangling one is reported.
 */
async function globFiles(pattern: string): Promise<{ files: string[]; skipped: SkippedFile[] }> {
  const entries = await fg(pattern, { onlyFiles: false, dot: false, followSymbolicLinks: false }).catch((err: NodeJS.ErrnoException) => {
    throw new UserError(`Cannot expand the glob ${JSON.stringify(pattern)}: ${err.message}`);
  });
  const matched = entries.filter(isImagePath);
  const infos = await mapLimited(matched, 64, (f) => stat(f).catch((err: NodeJS.ErrnoException) => err));
  const files: string[] = [];
  const skipped: SkippedFile[] = [];
  matched.forEach((file, i) => {
    const info = infos[i]!;
    if (info instanceof Error) skipped.push({ kind: 'link', file, reason: info.code === 'ELOOP' ? 'symbolic link loop, not followed' : `dangling symbolic link (${info.code ?? info.message}), not followed` });
    else if (info.isFile()) files.push(file);
  });
  return { files, skipped: skipped.sort((a, b) => Buffer.compare(Buffer.from(a.file, 'utf8'), Buffer.from(b.file, 'utf8'))) };
}

/** One path per line, relative to the list file's folder; blank lines and lines starting with # are ignored. */
async function readListFile(listFile: string): Promise<string[]> {
  const text = (await readUserFile(listFile, 'The list file', READ_LIMITS.listFile)).toString('utf8');
  if (text.includes('\u0000')) {
    throw new UserError(`${JSON.stringify(listFile)} is neither a folder, an image (${extensionList()}) nor a text file listing image paths.`);
  }
  const base = path.dirname(listFile);
  const files: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    files.push(path.isAbsolute(line) ? path.normalize(line) : path.join(base, line));
  }
  return files;
}

function extensionList(): string {
  return IMAGE_EXTENSIONS.map((e) => `.${e}`).join(' ');
}

/** Sorts by the byte order of the UTF-8 encoding (not UTF-16 code units), so the order is the same in every tool. */
export function sortPaths(paths: readonly string[]): string[] {
  return paths
    .map((p) => ({ p, key: Buffer.from(p, 'utf8') }))
    .sort((a, b) => Buffer.compare(a.key, b.key))
    .map((e) => e.p);
}

/**
 * mulberry32 (Tommy Ettinger, public domain): a 32-bit state PRNG, small and fast, good enough to pick
 * a subset; returns floats in [0, 1).
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The first `count` items of a Fisher-Yates shuffle of `sorted` driven by mulberry32(seed). */
export function seededPick<T>(sorted: readonly T[], count: number, seed: number): T[] {
  const items = sorted.slice();
  const random = mulberry32(seed);
  const n = Math.min(count, items.length);
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(random() * (items.length - i));
    const tmp = items[i]!;
    items[i] = items[j]!;
    items[j] = tmp;
  }
  return items.slice(0, n);
}
