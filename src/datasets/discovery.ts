/**
 * Image discovery: a folder (searched recursively), a glob, a text file listing paths, or one image file.
 *
 * The result is sorted by the byte order of the UTF-8 path string, so that it never depends on the order in
 * which the file system lists entries. `maxImages` picks a reproducible subset: sort everything, shuffle
 * with a seeded PRNG (mulberry32), take the first N, sort the pick again.
 */
import fg from 'fast-glob';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { UserError, invalidParameter } from '../errors.js';

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
  if (typeof input !== 'string' || input.trim() === '') throw invalidParameter('data', 'a folder, a glob or a list file', input);
  const { maxImages, seed = 0 } = options;
  if (maxImages !== undefined && (!Number.isInteger(maxImages) || maxImages < 1)) {
    throw invalidParameter('maxImages', 'a positive integer', maxImages);
  }
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw invalidParameter('seed', 'an integer from 0 to 4294967295', seed);

  const { files, searched } = await find(input);
  const unique = sortPaths([...new Set(files)]);
  if (unique.length === 0) {
    throw new UserError(`No images found in ${JSON.stringify(input)}: searched ${searched}.`, {
      hint: `Give a folder holding images (${IMAGE_EXTENSIONS.join(', ')}), a glob such as "photos/**/*.jpg", or a text file listing image paths.`,
    });
  }
  if (maxImages === undefined || maxImages >= unique.length) return unique;
  return sortPaths(seededPick(unique, maxImages, seed));
}

async function find(input: string): Promise<{ files: string[]; searched: string }> {
  const info = await stat(input).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
    throw new UserError(`Cannot read ${JSON.stringify(input)}: ${err.message}`);
  });
  if (info?.isDirectory()) return { files: await findInFolder(input), searched: `the folder and its subfolders for ${extensionList()}` };
  if (info?.isFile()) {
    if (isImagePath(input)) return { files: [input], searched: 'one image file' };
    return { files: await readListFile(input), searched: 'the paths listed in the file (one per line)' };
  }
  if (fg.isDynamicPattern(input)) {
    const matches = await globFiles(input);
    return { files: matches.filter(isImagePath), searched: `the glob's matches with extension ${extensionList()}` };
  }
  throw new UserError(`The data path ${JSON.stringify(input)} does not exist.`, {
    hint: 'Give an existing folder of images, a glob (quoted, e.g. "data/**/*.jpg") or a text file listing image paths.',
  });
}

async function findInFolder(folder: string): Promise<string[]> {
  const pattern = `**/*.{${IMAGE_EXTENSIONS.join(',')}}`;
  // cwd is the folder itself, so that characters like "(" or "*" in its name are never read as glob syntax.
  const rel = await fg(pattern, { cwd: folder, caseSensitiveMatch: false, onlyFiles: true, dot: false, followSymbolicLinks: true }).catch(
    (err: NodeJS.ErrnoException) => {
      throw new UserError(`Cannot search the folder ${JSON.stringify(folder)}: ${err.message}`);
    },
  );
  return rel.map((r) => path.join(folder, r));
}

async function globFiles(pattern: string): Promise<string[]> {
  return fg(pattern, { onlyFiles: true, dot: false, followSymbolicLinks: true }).catch((err: NodeJS.ErrnoException) => {
    throw new UserError(`Cannot expand the glob ${JSON.stringify(pattern)}: ${err.message}`);
  });
}

/** One path per line, relative to the list file's folder; blank lines and lines starting with # are ignored. */
async function readListFile(listFile: string): Promise<string[]> {
  const text = await readFile(listFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new UserError(`Cannot read the list file ${JSON.stringify(listFile)}: ${err.message}`);
  });
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
