/**
 * `trt-calib merge`: the statistics of the shards of one calibration (`calibrate --shard K/N`) added into the
 * statistics of one run over all the images, then the caches derived from them: the same bytes and the same file
 * names as that single run's outputs. Every check on the shards is done before anything is written.
 */
import path from 'node:path';
import { UserError } from '../errors.js';
import { modelSha256 } from '../onnx/model.js';
import { imageListSha256 } from '../stats/image-list.js';
import { mergeTensorStatistics, tensorNameDifference } from '../stats/merge.js';
import { loadStatistics } from '../stats/store.js';
import type { ShardRecord, StatisticsProvenance, StoredStatistics } from '../stats/types.js';
import { calibrate, type CalibrateOptions, type CalibrateResult } from './calibrate.js';
import { DEFAULT_OUT_DIR } from './defaults.js';
import { shardImageEntries, shardStatsName } from './shard.js';
import { canonicalText } from '../util/canonical.js';
import { absentShardsText, checkImageSlicesTile, checkSameAcrossShards, orderShards, type SameCheck } from '../util/shard-set.js';

export interface MergeOptions extends Omit<CalibrateOptions, 'data' | 'fromStats' | 'statistics' | 'shard' | 'threads' | 'deriveStatistics' | 'signal'> {
  /** The shards' statistics files (`<model>.stats.<K>of<N>.msgpack`), all N of them, in any order. */
  shards: readonly string[];
}

export interface MergeResult extends CalibrateResult {
  shards: Array<{ file: string; index: number; count: number; images: number }>;
}

interface LoadedShard {
  file: string;
  stored: StoredStatistics;
  shard: ShardRecord;
}

export async function merge(options: MergeOptions): Promise<MergeResult> {
  if (options.shards.length === 0) throw new UserError('No statistics to merge.', { hint: 'Pass the shards\' files: trt-calib merge calib-cache/<model>.stats.*of<N>.msgpack --model <model.onnx> --algo ...' });
  const modelShaPending = modelSha256(options.model);
  modelShaPending.catch(() => undefined); // awaited below
  const shards = await Promise.all(options.shards.map(loadShard));
  checkSameRun(shards);
  const byIndex = checkComplete(shards);
  checkNoOverlap(byIndex);

  const modelSha = await modelShaPending;
  const first = byIndex[0]!;
  if (first.stored.provenance.modelSha256.toLowerCase() !== modelSha.toLowerCase()) {
    throw new UserError(
      `The shards (${first.file}, ...) were collected on model sha256 ${first.stored.provenance.modelSha256.slice(0, 12)}... (${first.stored.provenance.modelFile}), not on ${options.model} (${modelSha.slice(0, 12)}...).`,
      { hint: 'Pass the --model the shards ran.' },
    );
  }

  const modelBase = path.basename(options.model).replace(/\.onnx$/i, '');
  const statsFile = options.statsOut ?? path.join(options.outDir ?? DEFAULT_OUT_DIR, `${modelBase}.stats.msgpack`);
  const input = shards.find((s) => path.resolve(s.file) === path.resolve(statsFile));
  if (input) throw new UserError(`The merged statistics would overwrite the shard ${input.file}.`, { hint: 'Pass another --stats-out (by default <out-dir>/<model>.stats.msgpack).' });

  const stored = mergedStatistics(byIndex);
  const result = await calibrate({ ...options, statsOut: statsFile, statistics: { stored, from: `the merged shards (${first.file}, ...)` } });
  return { ...result, shards: byIndex.map((s) => ({ file: s.file, index: s.shard.index, count: s.shard.count, images: s.stored.provenance.imageCount })) };
}

async function loadShard(file: string): Promise<LoadedShard> {
  const stored = await loadStatistics(file);
  const shard = stored.provenance.shard;
  if (shard === undefined) {
    throw new UserError(`${file} holds the statistics of a whole run, not of a shard: there is nothing to merge it with.`, {
      hint: 'Merge the files that calibrate --shard K/N wrote (<model>.stats.<K>of<N>.msgpack); use --from-stats for a whole run\'s statistics.',
    });
  }
  const problem = shardRecordProblem(shard, stored.provenance);
  if (problem) throw new UserError(`${file} is not a trt-calib statistics file (its shard record: ${problem}); re-run that shard`);
  return { file, stored, shard };
}

function shardRecordProblem(r: ShardRecord, p: StatisticsProvenance): string | undefined {
  const isCount = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (typeof r !== 'object' || r === null) return 'not an object';
  if (!isCount(r.count) || r.count < 1 || !isCount(r.index) || r.index < 1 || r.index > r.count) return `shard ${r.index} of ${r.count}`;
  if (!isCount(r.selectedCount) || !isCount(r.start) || !isCount(r.end) || r.start >= r.end || r.end > r.selectedCount) return `slice ${r.start}..${r.end} of ${r.selectedCount}`;
  if (typeof r.selectionSha256 !== 'string' || !/^[0-9a-f]{64}$/.test(r.selectionSha256)) return 'selectionSha256';
  if (!Array.isArray(r.images) || !r.images.every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === 'string' && isCount(e[1]))) return 'image list';
  if (r.images.length !== p.imageCount) return `${r.images.length} images listed, ${p.imageCount} counted`;
  return undefined;
}

/** Shards of one calibration: the same model, preprocessing, shapes, tool version, histogram and image selection. */
function checkSameRun(shards: readonly LoadedShard[]): void {
  const first = shards[0]!;
  const checks: Array<SameCheck<LoadedShard>> = [
    ['models', (s) => `sha256 ${s.stored.provenance.modelSha256.toLowerCase()}`, 'Merge the shards of one model.'],
    ['tool versions', (s) => `${s.stored.provenance.tool} ${s.stored.provenance.toolVersion}`, 'Run every shard with the same trt-calib version.'],
    ['input shapes', (s) => canonicalText(s.stored.provenance.shapes), 'Run every shard with the same --shapes/--size.'],
    ['preprocessing', (s) => canonicalText(s.stored.provenance.preprocess), 'Run every shard with the same --preset and preprocessing flags.'],
    ['histogram sizes', (s) => String(s.stored.provenance.histogramBins), 'Run every shard with the same trt-calib version.'],
    ['shard counts', (s) => `N = ${s.shard.count}`, 'Merge the shards of one --shard K/N split: all with the same N.'],
  ];
  checkSameAcrossShards(shards, 'shards', checks);
  for (const s of shards.slice(1)) {
    const extra = [...tensorNameDifference(s.stored.tensors, first.stored.tensors), ...tensorNameDifference(first.stored.tensors, s.stored.tensors)];
    if (extra.length > 0) {
      throw new UserError(`${first.file} and ${s.file} hold statistics of different tensors (e.g. ${extra.slice(0, 3).join(', ')}).`, { hint: 'Run every shard with the same trt-calib version and options.' });
    }
  }
}

/** Exactly one file per shard 1..N; returns them in shard order. */
function checkComplete(shards: readonly LoadedShard[]): LoadedShard[] {
  const count = shards[0]!.shard.count;
  const base = (shards[0]!.stored.provenance.modelFile || 'model').replace(/\.onnx$/i, '');
  return orderShards(
    shards,
    (s) => s.shard.index,
    count,
    (absent) => ({
      message: `${absentShardsText(absent, count)} (${absent.map((k) => shardStatsName(base, { index: k, count })).join(', ')}): given ${shards.map((s) => s.file).join(', ')}.`,
      hint: `Run the missing shard(s) with --shard K/${count}, then merge all ${count}.`,
    }),
    'Pass each <model>.stats.<K>of<N>.msgpack once.',
  );
}

/** Shards of one selection tile it: no image in two shards, the same selection, the slices end to end. */
function checkNoOverlap(shards: readonly LoadedShard[]): void {
  checkImageSlicesTile(shards, (s) => ({ ...s.shard, images: s.shard.images.map(([image]) => image) }), 'shards', 'used');
}

/** The statistics of one run over all the shards' images: the provenance of calibrate, key for key. */
function mergedStatistics(shards: readonly LoadedShard[]): StoredStatistics {
  const p = shards[0]!.stored.provenance;
  const provenance: StatisticsProvenance = {
    tool: p.tool,
    toolVersion: p.toolVersion,
    modelFile: p.modelFile,
    modelSha256: p.modelSha256,
    shapes: p.shapes,
    preprocess: p.preprocess,
    imageCount: shards.reduce((n, s) => n + s.stored.provenance.imageCount, 0),
    skippedCount: shards.reduce((n, s) => n + s.stored.provenance.skippedCount, 0),
    imageListSha256: imageListSha256(shardImageEntries(shards.map((s) => s.shard))),
    histogramBins: p.histogramBins,
    createdBy: p.createdBy,
  };
  return { format: 'trt-calib-stats', formatVersion: shards[0]!.stored.formatVersion, provenance, tensors: mergeTensorStatistics(shards.map((s) => s.stored.tensors)) };
}
