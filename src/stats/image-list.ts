/**
 * The image list of a statistics provenance (`imageListSha256`): sha256 over each used image's path relative to
 * the images' common folder and its size, in the selection's (sorted) order. Independent of where the folder lives,
 * of the batch size and of the order the files were listed in. One definition for a single run and for merged
 * shards, so that both give the same hash.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';

/** One used image: its path with '/' separators (absolute, or relative to a root shared by all entries) and size. */
export type ImageEntry = readonly [file: string, size: number];

/** A path with '/' separators, so that the list hashes the same on every platform. */
export function slashPath(file: string): string {
  return file.split(path.sep).join('/');
}

/**
 * The paths relative to their deepest common folder (the folder of the file when there is one file). Paths are
 * '/'-separated; any common prefix of whole folders is dropped, so the result does not depend on that prefix.
 */
export function relativeToCommonFolder(files: readonly string[]): string[] {
  if (files.length === 0) return [];
  const split = files.map((f) => f.split('/'));
  let common = split[0]!.length - 1; // folders of the first file
  for (const parts of split) {
    let i = 0;
    while (i < common && i < parts.length - 1 && parts[i] === split[0]![i]) i++;
    common = i;
  }
  return split.map((parts) => parts.slice(common).join('/'));
}

export function imageListSha256(entries: readonly ImageEntry[]): string {
  const relative = relativeToCommonFolder(entries.map(([f]) => f));
  const hash = createHash('sha256');
  entries.forEach(([, size], i) => hash.update(`${relative[i]}\t${size}\n`));
  return hash.digest('hex');
}
