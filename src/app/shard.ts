/**
 * Shards of a calibration: `--shard K/N` collects statistics on the K-th of N contiguous slices of the selected
 * images (after --max-images/--seed, in sorted path order, so every machine computes the same split from the same
 * file list); `trt-calib merge` adds the shards' statistics into the bytes of one run (src/app/merge.ts).
 *
 * A shard's statistics file carries a `shard` record in its provenance: which slice it is, a hash of the whole
 * selection (shards of different selections are refused), and the images it used with their sizes (relative to
 * the selection's common folder), from which the merge recomputes the single run's imageListSha256.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { UserError } from '../errors.js';
import { relativeToCommonFolder, slashPath, type ImageEntry } from '../stats/image-list.js';
import type { ShardRecord } from '../stats/types.js';

export type { ShardRecord };

export interface ShardSpec {
  /** 1..count. */
  index: number;
  count: number;
  /** Where K and N came from, for messages: "--shard 2/4", "JOB_COMPLETION_INDEX=1 and --shard auto/4"... */
  source: string;
}

const SHARD_HINT = 'Give --shard K/N with 1 <= K <= N (e.g. --shard 2/4), or --shard auto[/N] inside a Kubernetes Indexed Job or a Slurm array.';

/**
 * Parses `--shard`: "K/N", "auto" or "auto/N". auto reads, in this order:
 *  - JOB_COMPLETION_INDEX (Kubernetes Indexed Job, 0-based): K = index + 1; N must be given (auto/N: the Job's
 *    `completions`), since Kubernetes does not export it;
 *  - SLURM_ARRAY_TASK_ID with SLURM_ARRAY_TASK_COUNT (Slurm job array): K = TASK_ID - SLURM_ARRAY_TASK_MIN + 1,
 *    N = TASK_COUNT, so `--array=0-3` and `--array=1-4` both give shards 1..4; the ids must be consecutive
 *    (no step, no list with gaps) so that the N tasks cover the N slices.
 */
export function parseShard(value: string, env: NodeJS.ProcessEnv = process.env): ShardSpec {
  const text = value.trim();
  const fixed = /^(\d+)\s*\/\s*(\d+)$/.exec(text);
  if (fixed) return checked(Number(fixed[1]), Number(fixed[2]), `--shard ${text}`);
  const auto = /^auto(?:\s*\/\s*(\d+))?$/.exec(text);
  if (!auto) throw new UserError(`--shard ${JSON.stringify(value)} is not K/N, auto or auto/N.`, { hint: SHARD_HINT });
  const givenCount = auto[1] !== undefined ? Number(auto[1]) : undefined;

  const jobIndex = env.JOB_COMPLETION_INDEX;
  if (jobIndex !== undefined && jobIndex !== '') {
    const index = envInteger('JOB_COMPLETION_INDEX', jobIndex);
    if (givenCount === undefined) {
      throw new UserError(`--shard auto found JOB_COMPLETION_INDEX=${jobIndex} (a Kubernetes Indexed Job), which gives the index but not the number of shards.`, {
        hint: 'Pass --shard auto/N with N the Job\'s completions, e.g. --shard auto/4.',
      });
    }
    return checked(index + 1, givenCount, `JOB_COMPLETION_INDEX=${jobIndex} and --shard auto/${givenCount}`);
  }

  const taskId = env.SLURM_ARRAY_TASK_ID;
  if (taskId !== undefined && taskId !== '') {
    const id = envInteger('SLURM_ARRAY_TASK_ID', taskId);
    const countText = env.SLURM_ARRAY_TASK_COUNT;
    if (countText === undefined || countText === '') {
      throw new UserError(`--shard auto found SLURM_ARRAY_TASK_ID=${taskId} but no SLURM_ARRAY_TASK_COUNT.`, { hint: SHARD_HINT });
    }
    const count = envInteger('SLURM_ARRAY_TASK_COUNT', countText);
    const min = env.SLURM_ARRAY_TASK_MIN !== undefined && env.SLURM_ARRAY_TASK_MIN !== '' ? envInteger('SLURM_ARRAY_TASK_MIN', env.SLURM_ARRAY_TASK_MIN) : 0;
    const max = env.SLURM_ARRAY_TASK_MAX !== undefined && env.SLURM_ARRAY_TASK_MAX !== '' ? envInteger('SLURM_ARRAY_TASK_MAX', env.SLURM_ARRAY_TASK_MAX) : min + count - 1;
    const step = env.SLURM_ARRAY_TASK_STEP !== undefined && env.SLURM_ARRAY_TASK_STEP !== '' ? envInteger('SLURM_ARRAY_TASK_STEP', env.SLURM_ARRAY_TASK_STEP) : 1;
    if (step !== 1 || max - min + 1 !== count) {
      throw new UserError(
        `--shard auto needs a Slurm array of consecutive task ids, but SLURM_ARRAY_TASK_MIN=${min}, SLURM_ARRAY_TASK_MAX=${max}, SLURM_ARRAY_TASK_STEP=${step} and SLURM_ARRAY_TASK_COUNT=${count} leave gaps.`,
        { hint: 'Submit with --array=0-(N-1) or --array=1-N, or pass --shard K/N.' },
      );
    }
    if (givenCount !== undefined && givenCount !== count) {
      throw new UserError(`--shard auto/${givenCount} disagrees with SLURM_ARRAY_TASK_COUNT=${count}.`, { hint: 'Pass --shard auto, or make the array as large as the number of shards.' });
    }
    return checked(id - min + 1, count, `SLURM_ARRAY_TASK_ID=${taskId} of SLURM_ARRAY_TASK_COUNT=${count} (first id ${min})`);
  }

  throw new UserError(
    '--shard auto found none of JOB_COMPLETION_INDEX (Kubernetes Indexed Job) or SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT (Slurm job array).',
    { hint: 'Outside those schedulers pass the shard explicitly: --shard K/N (in a GitHub Actions matrix: --shard ${{ matrix.shard }}/N).' },
  );
}

function envInteger(name: string, value: string): number {
  if (!/^\d+$/.test(value.trim())) throw new UserError(`--shard auto: ${name}=${JSON.stringify(value)} is not a non-negative integer.`, { hint: SHARD_HINT });
  return Number(value.trim());
}

function checked(index: number, count: number, source: string): ShardSpec {
  if (!Number.isSafeInteger(count) || count < 1) throw new UserError(`${source}: the number of shards must be at least 1.`, { hint: SHARD_HINT });
  if (!Number.isSafeInteger(index) || index < 1 || index > count) throw new UserError(`${source}: shard ${index} is not between 1 and ${count}.`, { hint: SHARD_HINT });
  return { index, count, source };
}

/** `<model>.stats.<K>of<N>.msgpack`. */
export function shardStatsName(modelBase: string, shard: { index: number; count: number }): string {
  return `${modelBase}.stats.${shard.index}of${shard.count}.msgpack`;
}

/** `<out-dir>/<model>.sensitivity.<K>of<N>.json`, the default report of `sensitivity --shard`. */
export function sensitivityShardPath(modelFile: string, outDir: string, shard: { index: number; count: number }): string {
  return path.join(outDir, `${path.basename(modelFile).replace(/\.onnx$/i, '')}.sensitivity.${shard.index}of${shard.count}.json`);
}

/**
 * The slice [start, end) of `total` selected images for a shard: contiguous, the N slices as even as whole units
 * allow (of images; of layers for `sensitivity --shard`). `unit` is the model's fixed batch (1 when the batch is
 * dynamic or 1): slices start on batch boundaries, so
 * every shard but the last runs only full batches and the one short batch a single run drops is dropped by the
 * last shard alone. Refuses a shard that would get no image.
 */
export function shardRange(total: number, shard: ShardSpec, unit = 1, noun = 'images'): { start: number; end: number } {
  const units = Math.ceil(total / unit);
  const startUnit = Math.floor(((shard.index - 1) * units) / shard.count);
  const endUnit = Math.floor((shard.index * units) / shard.count);
  const start = Math.min(total, startUnit * unit);
  const end = Math.min(total, endUnit * unit);
  if (end <= start) {
    throw new UserError(
      `${shard.source}: shard ${shard.index} of ${shard.count} gets no ${noun}: ${total} ${noun} are selected${unit > 1 ? `, in batches of ${unit}` : ''}.`,
      { hint: `Use at most ${units} shard(s) for this selection.` },
    );
  }
  return { start, end };
}

/** sha256 over the selected paths (relative to their common folder), in order. */
export function selectionSha256(selection: readonly string[]): string {
  const hash = createHash('sha256');
  for (const f of relativeToCommonFolder(selection.map((s) => slashPath(path.resolve(s))))) hash.update(`${f}\n`);
  return hash.digest('hex');
}

/**
 * A shard's record: `selection` is every selected file, `sizes` the sizes of the slice's files, `skipped` the files
 * of the slice that could not be decoded. With a fixed batch larger than 1 a skipped image shifts the batches of
 * the rest of the slice, so which images a single run would drop can no longer be reproduced: refused.
 */
export function shardRecord(
  shard: ShardSpec,
  selection: readonly string[],
  range: { start: number; end: number },
  sizes: readonly number[],
  skipped: ReadonlySet<string>,
  fixedBatch: number,
): ShardRecord {
  if (fixedBatch > 1 && skipped.size > 0) {
    throw new UserError(
      `${shard.source}: ${skipped.size} image(s) of this shard could not be read (${[...skipped].slice(0, 3).join(', ')}); with the model's fixed batch of ${fixedBatch} the shards would no longer add up to one run.`,
      { hint: 'Remove or fix those files (trt-calib preview lists unreadable images), then run every shard again.' },
    );
  }
  const relative = relativeToCommonFolder(selection.map((s) => slashPath(path.resolve(s))));
  const images: Array<[string, number]> = [];
  for (let i = range.start; i < range.end; i++) {
    if (!skipped.has(selection[i]!)) images.push([relative[i]!, sizes[i - range.start]!]);
  }
  return {
    index: shard.index,
    count: shard.count,
    selectedCount: selection.length,
    selectionSha256: selectionSha256(selection),
    start: range.start,
    end: range.end,
    images,
  };
}

/** The images of shard records as entries for imageListSha256 (all relative to the same selection folder). */
export function shardImageEntries(records: readonly ShardRecord[]): ImageEntry[] {
  return [...records].sort((a, b) => a.start - b.start).flatMap((r) => r.images.map(([f, size]) => [`/${f}`, size] as const));
}
