/**
 * The checks every merge of `--shard K/N` outputs makes (statistics, compare and sensitivity shards), stated once:
 * the shards agree on what must match, each of 1..N is there exactly once, and image slices tile the selection.
 * Each caller names its own kind of shard and what to do; the messages name the files.
 */
import { UserError } from '../errors.js';

/** One shard file as the checks see it. */
export interface ShardFile {
  file: string;
}

/** [what differs, the value that must be equal, what to do]. */
export type SameCheck<T> = readonly [what: string, value: (s: T) => string, hint?: string];

/**
 * Throws naming the first two files that differ on a check: "<a> and <b> are <kind> of different <what>" and, with
 * `showValues`, ": <value a> vs <value b>" (each cut to 160 characters).
 */
export function checkSameAcrossShards<T extends ShardFile>(shards: readonly T[], kind: string, checks: ReadonlyArray<SameCheck<T>>, showValues = true): void {
  const first = shards[0];
  if (first === undefined) return;
  for (const [what, value, hint] of checks) {
    const v0 = value(first);
    const other = shards.find((s) => value(s) !== v0);
    if (other) {
      const values = showValues ? `: ${short(v0)} vs ${short(value(other))}` : '';
      throw new UserError(`${first.file} and ${other.file} are ${kind} of different ${what}${values}.`, hint === undefined ? undefined : { hint });
    }
  }
}

/**
 * The shards in shard order 1..count, each exactly once: a duplicate names both files; absent shards are described
 * by `missing` (the caller's own message and hint).
 */
export function orderShards<T extends ShardFile>(
  shards: readonly T[],
  indexOf: (s: T) => number,
  count: number,
  missing: (absent: number[]) => { message: string; hint: string },
  duplicateHint?: string,
): T[] {
  const byIndex = new Map<number, T>();
  for (const s of shards) {
    const index = indexOf(s);
    const seen = byIndex.get(index);
    if (seen) {
      throw new UserError(`${seen.file} and ${s.file} are the same shard (${index} of ${count}): each shard must be merged once.`, duplicateHint === undefined ? undefined : { hint: duplicateHint });
    }
    byIndex.set(index, s);
  }
  const absent = Array.from({ length: count }, (_, i) => i + 1).filter((k) => !byIndex.has(k));
  if (absent.length > 0) {
    const { message, hint } = missing(absent);
    throw new UserError(message, { hint });
  }
  return Array.from({ length: count }, (_, i) => byIndex.get(i + 1)!);
}

/** "Shard 2of4 of 4 is absent" / "Shards 2of4, 3of4 of 4 are absent". */
export function absentShardsText(absent: readonly number[], count: number, noun = 'Shard'): string {
  return `${noun}${absent.length > 1 ? 's' : ''} ${absent.map((k) => `${k}of${count}`).join(', ')} of ${count} ${absent.length > 1 ? 'are' : 'is'} absent`;
}

/** An image slice of one selection, as a shard records it. */
export interface ImageSlice {
  images: Iterable<string>;
  selectedCount: number;
  selectionSha256: string;
  /** First and one past the last index of the slice in the selection. */
  start: number;
  end: number;
}

/**
 * Shards (in shard order) of one selection of images tile it: no image in two shards ("both <verb> <image>"), the
 * same selection, the slices end to end and covering it all.
 */
export function checkImageSlicesTile<T extends ShardFile>(ordered: readonly T[], slice: (s: T) => ImageSlice, kind: string, verb: string): void {
  const owner = new Map<string, T>();
  for (const s of ordered) {
    for (const image of slice(s).images) {
      const other = owner.get(image);
      if (other) {
        throw new UserError(`${other.file} and ${s.file} overlap: both ${verb} ${image}.`, {
          hint: 'Every shard must be run on the same --data, --max-images and --seed, so that the slices do not overlap.',
        });
      }
      owner.set(image, s);
    }
  }
  const first = ordered[0];
  if (first === undefined) return;
  const f = slice(first);
  for (const s of ordered) {
    const o = slice(s);
    if (o.selectionSha256 !== f.selectionSha256 || o.selectedCount !== f.selectedCount) {
      throw new UserError(
        `${first.file} and ${s.file} are ${kind} of different image selections (${f.selectedCount} vs ${o.selectedCount} images, selection sha256 ${f.selectionSha256.slice(0, 12)}... vs ${o.selectionSha256.slice(0, 12)}...).`,
        { hint: 'Run every shard on the same --data, --max-images and --seed.' },
      );
    }
  }
  let next = 0;
  for (const s of ordered) {
    const o = slice(s);
    if (o.start !== next) throw new UserError(`${s.file} covers images ${o.start}..${o.end - 1} of the selection, not from ${next}: the shards do not tile the selection.`, { hint: 'Run every shard with the same trt-calib version and --data.' });
    next = o.end;
  }
  if (next !== f.selectedCount) throw new UserError(`The shards cover ${next} of ${f.selectedCount} selected images.`, { hint: 'Run every shard with the same trt-calib version.' });
}

function short(text: string): string {
  return text.length > 160 ? `${text.slice(0, 157)}...` : text;
}
