/**
 * Compare shards (`compare --shard K/N`, issue 18): one file per slice of the validation images holding what the
 * pass accumulated (src/compare/run.ts ComparisonState: per-output exact sums, per-layer SNR sums, worst images, the
 * task's per-image records such as each image's detections for mAP), not a report; and their merge into the report
 * one `compare` over all the images writes, number for number.
 *
 * Every float summed over images is an exact sum (src/compare/exact-sum.ts) of per-image values, in the single run
 * as in the shards, so adding the shards' sums gives the very bits of one run; mAP is computed from the union of
 * the shards' detections, never averaged. The header says everything that must match between shards: tool
 * version, model, the report's settings (variants, caches' placement, preprocessing, task options, --max-drop),
 * the sha256 of every input file (caches, variant models, precision map, class names, statistics) and the image
 * selection; the merge refuses shards that differ, duplicate or missing shards, overlapping slices, and files of
 * another kind, each naming the files.
 */
import { Packr } from 'msgpackr';
import { UserError } from '../errors.js';
import { canonicalText } from '../util/canonical.js';
import { absentShardsText, checkImageSlicesTile, checkSameAcrossShards, orderShards, type SameCheck } from '../util/shard-set.js';
import { READ_LIMITS, readUserFile, writeFileAtomic } from '../util/fs.js';
import type { CompareReportContext } from '../app/compare.js';
import type { ComparisonState } from './run.js';

export const COMPARE_SHARD_FORMAT = 'trt-calib-compare-shard';
const FORMAT_VERSION = 1;
const packr = new Packr({ useRecords: false, variableMapSize: true });

export interface CompareShard {
  format: typeof COMPARE_SHARD_FORMAT;
  formatVersion: number;
  /** The report's context: tool, model, data source and labels, settings (variants, task, budget), notes. */
  context: CompareReportContext;
  shard: { index: number; count: number; start: number; end: number; selectedCount: number; selectionSha256: string };
  /** The slice's images (relative to the selection's common folder), skipped ones included. */
  images: string[];
  /** [what, sha256] of each input file whose content decides the numbers. */
  inputs: Array<[string, string]>;
  /** Where the histograms of the report come from (read by the merge as compare reads them). */
  stats: { file: string; explicit: boolean; maxTensors: number };
  /** Operator type of each layer compared. */
  opTypes: Array<[string, string]>;
  /** Class names the HTML draws detections with. */
  classNames?: Array<[number, string]>;
  state: ComparisonState;
}

export async function writeCompareShard(file: string, body: Omit<CompareShard, 'format' | 'formatVersion'>): Promise<void> {
  await writeFileAtomic(file, packr.pack({ format: COMPARE_SHARD_FORMAT, formatVersion: FORMAT_VERSION, ...body }));
}

/** True when the bytes are a compare shard (the kind `trt-calib merge` detects from the file's header). */
export function isCompareShard(bytes: Uint8Array): boolean {
  if (bytes.length === 0 || bytes[0] === 0x7b /* '{': JSON */) return false;
  try {
    const v = packr.unpack(bytes) as { format?: unknown };
    return typeof v === 'object' && v !== null && v.format === COMPARE_SHARD_FORMAT;
  } catch {
    return false;
  }
}

export interface LoadedCompareShard {
  file: string;
  body: CompareShard;
}

export async function loadCompareShard(file: string): Promise<LoadedCompareShard> {
  const bytes = await readUserFile(file, 'The compare shard', READ_LIMITS.binary);
  let body: CompareShard;
  try {
    body = packr.unpack(bytes) as CompareShard;
  } catch (err) {
    throw new UserError(`${file} is not a compare shard (${(err as Error).message}).`, { hint: 'Merge the report.<K>of<N>.msgpack files that compare --shard K/N wrote.' });
  }
  if (body?.format !== COMPARE_SHARD_FORMAT) throw new UserError(`${file} is not a compare shard.`, { hint: 'Merge the report.<K>of<N>.msgpack files that compare --shard K/N wrote.' });
  if (body.formatVersion !== FORMAT_VERSION) throw new UserError(`${file} is a compare shard of format version ${String(body.formatVersion)}; this trt-calib reads version ${FORMAT_VERSION}.`, { hint: 'Run every shard and the merge with the same trt-calib version.' });
  const s = body.shard;
  const isCount = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (!s || !isCount(s.count) || s.count < 1 || !isCount(s.index) || s.index < 1 || s.index > s.count || !isCount(s.start) || !isCount(s.end) || s.start >= s.end || s.end > s.selectedCount || !Array.isArray(body.images) || body.images.length !== s.end - s.start || !body.state || !body.context) {
    throw new UserError(`${file} is a damaged compare shard (its shard record does not add up); run that shard again.`);
  }
  return { file, body };
}

/** Checks that the shards are the N slices of one comparison; returns them in shard order. Nothing is written before. */
export function checkCompareShards(shards: readonly LoadedCompareShard[]): LoadedCompareShard[] {
  if (shards.length === 0) throw new UserError('No compare shards to merge.');
  const first = shards[0]!;
  const settings = (s: LoadedCompareShard) => {
    // Threads do not change a number; everything else in the settings does (or is echoed in the report).
    const { threads: _threads, ...rest } = s.body.context.settings;
    return canonicalText(rest);
  };
  const checks: Array<SameCheck<LoadedCompareShard>> = [
    ['tool versions', (s) => `${s.body.context.tool.name} ${s.body.context.tool.version}`, 'Run every shard with the same trt-calib version.'],
    ['models', (s) => `${s.body.context.model.file} (sha256 ${s.body.context.model.sha256 ?? '?'})`, 'Merge the shards of one model.'],
    ['variants or options (precisions, caches, placement, preprocessing, task options, --max-drop)', settings, 'Run every shard with the same command line, only --shard K/N changing.'],
    ['input files (caches, variant models, precision map, classes, statistics)', (s) => canonicalText(s.body.inputs), 'Run every shard with the same files: the same caches, models and statistics.'],
    ['variants', (s) => canonicalText([s.body.state.fp32?.spec ?? null, ...s.body.state.variants.map((v) => v.spec)]), 'Run every shard with the same command line, only --shard K/N changing.'],
    ['cache coverage', (s) => canonicalText(s.body.context.coverage), 'Run every shard with the same caches.'],
    ['shard counts', (s) => `N = ${s.body.shard.count}`, 'Merge the shards of one --shard K/N split: all with the same N.'],
  ];
  checkSameAcrossShards(shards, 'compare shards', checks);
  const count = first.body.shard.count;
  const ordered = orderShards(
    shards,
    (s) => s.body.shard.index,
    count,
    (absent) => ({
      message: `${absentShardsText(absent, count)} (${absent.map((k) => `report.${k}of${count}.msgpack`).join(', ')}): given ${shards.map((s) => s.file).join(', ')}.`,
      hint: `Run the missing shard(s) with compare --shard K/${count}, then merge all ${count}.`,
    }),
    'Pass each report.<K>of<N>.msgpack once.',
  );
  checkImageSlicesTile(ordered, (s) => ({ ...s.body.shard, images: s.body.images }), 'compare shards', 'compared');
  const otherData = ordered.find((s) => s.body.context.data.source !== first.body.context.data.source);
  if (otherData) throw new UserError(`${first.file} and ${otherData.file} are compare shards of different data: --data ${first.body.context.data.source} vs ${otherData.body.context.data.source}.`, { hint: 'Run every shard on the same --data (the same path on every machine).' });
  return ordered;
}
