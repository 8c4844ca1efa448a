/**
 * The statistics store: `calib-cache/<model>.stats.msgpack`, so that `--from-stats FILE --algo X` derives any
 * cache without running the model again.
 *
 * Layout (MessagePack via msgpackr, plain maps, float64 numbers):
 *   { format: 'trt-calib-stats', formatVersion: 1, provenance: {...}, tensors: [ {
 *       name, count, nanCount, posInfCount, negInfCount, zeroCount, min, max, absMax, range,
 *       histLength,   // bins up to the last non-zero one; the rest are zero
 *       hist          // those counts as unsigned LEB128 varints (exact integers < 2^53), a binary blob
 *   } ] }
 * Trailing zero bins are dropped and counts are varints: a bin holding 0..127 takes one byte, so the sparse tail
 * of an activation histogram costs little. Tensors are sorted by name and the keys written in a fixed order,
 * so the same statistics always give the same bytes. Loading re-checks every invariant (sum of the histogram =
 * count, range = next power of two above absMax, ...), which catches truncated and corrupt files.
 */
import { Packr } from 'msgpackr';
import { UserError } from '../errors.js';
import { readUserFile, writeFileAtomic } from '../util/fs.js';
import { HISTOGRAM_BINS } from './types.js';
import { compareNames } from './collector.js';
import { statisticsProblem } from './histogram.js';
import type { StatisticsProvenance, StoredStatistics, TensorStatistics } from './types.js';

export const STATS_FORMAT = 'trt-calib-stats';
export const STATS_FORMAT_VERSION = 1;

const packr = new Packr({ useRecords: false, variableMapSize: true });

export interface LoadStatisticsOptions {
  /** Refuse statistics collected on another model: the sha256 (hex) of the model file in use. */
  expectModelSha256?: string;
  /** The model file in use, for the message. */
  modelFile?: string;
  /** The model's activation count: the most tensors the file can hold, which bounds what is read (default 20,000). */
  maxTensors?: number;
}

/**
 * The most bytes a statistics file of `tensors` tensors can take: each histogram bin is a varint of a count below
 * 2^53, at most 8 bytes, so a tensor takes at most bins x 8 bytes plus its name and fields (4 KiB is ample:
 * names are rarely beyond 100 characters), and the provenance (preprocessing, versions, hashes) under 1 MiB.
 * With 8192 bins: 68 KiB per tensor, 7.5 MiB for MobileNetV2's 112 tensors.
 */
export function maxStatisticsBytes(tensors: number, bins = HISTOGRAM_BINS): number {
  return tensors * (bins * 8 + 4096) + 2 ** 20;
}

/** Encodes stored statistics to bytes (deterministic). Throws on statistics that break the invariants. */
export function encodeStatistics(stored: StoredStatistics): Buffer {
  // refuse now what loadStatistics would refuse later
  const provenanceProblem = checkProvenance(stored.provenance);
  if (provenanceProblem) throw new Error(`Statistics provenance is incomplete: ${provenanceProblem}`);
  const bins = stored.provenance.histogramBins;
  const tensors = [...stored.tensors].sort((a, b) => compareNames(a.name, b.name));
  for (let i = 0; i < tensors.length; i++) {
    const t = tensors[i]!;
    if (i > 0 && tensors[i - 1]!.name === t.name) throw new Error(`Duplicate statistics for tensor ${t.name}`);
    const problem = statisticsProblem(t, bins);
    if (problem) throw new Error(`Statistics of ${t.name} are inconsistent: ${problem}`);
  }
  return packr.pack({
    format: STATS_FORMAT,
    formatVersion: STATS_FORMAT_VERSION,
    provenance: stored.provenance,
    tensors: tensors.map(encodeTensor),
    ...(stored.algorithmChoices ? { algorithmChoices: Object.fromEntries(Object.entries(stored.algorithmChoices).sort(([a], [b]) => compareNames(a, b))) } : {}),
  });
}

/** Writes the statistics atomically (temporary file in the same folder, then rename). */
export async function saveStatistics(file: string, stored: StoredStatistics): Promise<void> {
  await writeFileAtomic(file, encodeStatistics(stored));
}

/** Reads and validates a statistics file; UserError for a missing, corrupt or foreign file, or another model. */
export async function loadStatistics(file: string, options: LoadStatisticsOptions = {}): Promise<StoredStatistics> {
  const bytes = await readUserFile(file, 'The statistics file', maxStatisticsBytes(options.maxTensors ?? 20_000));
  return decodeStatistics(bytes, file, options);
}

export function decodeStatistics(bytes: Uint8Array, file: string, options: LoadStatisticsOptions = {}): StoredStatistics {
  const foreign = (reason: string): UserError =>
    new UserError(`${file} is not a trt-calib statistics file (${reason}); re-run calibration`);
  let values: unknown[];
  try {
    values = packr.unpackMultiple(bytes) as unknown[];
  } catch (err) {
    throw foreign(`not readable MessagePack: ${(err as Error).message}`);
  }
  if (values.length !== 1) throw foreign(values.length === 0 ? 'empty' : 'trailing data after the statistics');
  const root = values[0];
  if (!isRecord(root)) throw foreign('no statistics object');
  if (root.format !== STATS_FORMAT) throw foreign(`format is ${describe(root.format)}`);
  const version = root.formatVersion;
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) throw foreign(`formatVersion is ${describe(version)}`);
  if (version > STATS_FORMAT_VERSION) {
    throw new UserError(
      `${file} was written by a newer trt-calib (statistics format ${version}; this version reads format ${STATS_FORMAT_VERSION}); upgrade trt-calib or re-run calibration`,
    );
  }
  const provenance = root.provenance;
  const provenanceProblem = checkProvenance(provenance);
  if (provenanceProblem) throw foreign(`provenance: ${provenanceProblem}`);
  const prov = provenance as StatisticsProvenance;
  if (!Array.isArray(root.tensors)) throw foreign('no tensor list');
  const tensors: TensorStatistics[] = [];
  for (let i = 0; i < root.tensors.length; i++) {
    const raw: unknown = root.tensors[i];
    const label = isRecord(raw) && typeof raw.name === 'string' ? `tensor ${JSON.stringify(raw.name)}` : `tensor #${i}`;
    const decoded = decodeTensor(raw, prov.histogramBins);
    if (typeof decoded === 'string') throw foreign(`${label}: ${decoded}`);
    if (i > 0 && compareNames(tensors[i - 1]!.name, decoded.name) >= 0) throw foreign(`${label}: tensors are not sorted by unique name`);
    tensors.push(decoded);
  }
  const expected = options.expectModelSha256?.toLowerCase();
  if (expected !== undefined && prov.modelSha256.toLowerCase() !== expected) {
    const model = options.modelFile ?? 'this model';
    throw new UserError(
      `${file} was collected on model sha256 ${prov.modelSha256.slice(0, 12)}... (${prov.modelFile}), not on ${model} (${expected.slice(0, 12)}...); re-run calibration or pass the right --model`,
    );
  }
  const choices = root.algorithmChoices;
  if (choices !== undefined && !(isRecord(choices) && Object.values(choices).every((v) => typeof v === 'string'))) throw foreign('algorithmChoices is not a map of names');
  return { format: STATS_FORMAT, formatVersion: version, provenance: prov, tensors, ...(choices ? { algorithmChoices: choices as Record<string, string> } : {}) };
}

function encodeTensor(t: TensorStatistics): Record<string, unknown> {
  let used = t.hist.length;
  while (used > 0 && t.hist[used - 1] === 0) used--;
  return {
    name: t.name,
    count: t.count,
    nanCount: t.nanCount,
    posInfCount: t.posInfCount,
    negInfCount: t.negInfCount,
    zeroCount: t.zeroCount,
    min: t.min,
    max: t.max,
    absMax: t.absMax,
    range: t.range,
    histLength: used,
    hist: encodeVarints(t.hist, used),
  };
}

function decodeTensor(raw: unknown, bins: number): TensorStatistics | string {
  if (!isRecord(raw)) return 'not an object';
  if (typeof raw.name !== 'string' || raw.name.length === 0) return 'no name';
  const histLength = raw.histLength;
  if (typeof histLength !== 'number' || !Number.isInteger(histLength) || histLength < 0 || histLength > bins) {
    return `histLength is ${describe(histLength)}`;
  }
  if (!(raw.hist instanceof Uint8Array)) return 'no histogram';
  const hist = new Float64Array(bins);
  const decodeProblem = decodeVarints(raw.hist, hist, histLength);
  if (decodeProblem) return decodeProblem;
  const t: TensorStatistics = {
    name: raw.name,
    count: raw.count as number,
    nanCount: raw.nanCount as number,
    posInfCount: raw.posInfCount as number,
    negInfCount: raw.negInfCount as number,
    zeroCount: raw.zeroCount as number,
    min: raw.min as number,
    max: raw.max as number,
    absMax: raw.absMax as number,
    range: raw.range as number,
    hist,
  };
  return statisticsProblem(t, bins) ?? t;
}

/** Unsigned LEB128 of integer counts < 2^53 (arithmetic, not bit operations: counts may exceed 2^32). */
export function encodeVarints(values: Float64Array, length: number): Buffer {
  const out: number[] = [];
  for (let i = 0; i < length; i++) {
    let v = values[i]!;
    while (v >= 128) {
      out.push((v % 128) + 128);
      v = Math.floor(v / 128);
    }
    out.push(v);
  }
  return Buffer.from(out);
}

function decodeVarints(bytes: Uint8Array, into: Float64Array, length: number): string | undefined {
  let pos = 0;
  for (let i = 0; i < length; i++) {
    let v = 0;
    let mul = 1;
    for (;;) {
      if (pos >= bytes.length) return `histogram data ends after ${i} of ${length} bins`;
      const b = bytes[pos++]!;
      v += (b & 0x7f) * mul;
      if (b < 128) break;
      mul *= 128;
      if (mul > 2 ** 56) return `histogram bin ${i} is not a count`;
    }
    if (!Number.isSafeInteger(v)) return `histogram bin ${i} is not a count`;
    into[i] = v;
  }
  if (pos !== bytes.length) return 'histogram data longer than histLength';
  if (length > 0 && into[length - 1] === 0) return 'histLength includes trailing zero bins';
  return undefined;
}

function checkProvenance(p: unknown): string | undefined {
  if (!isRecord(p)) return 'missing';
  for (const k of ['tool', 'toolVersion', 'modelFile', 'modelSha256', 'imageListSha256', 'createdBy'] as const) {
    if (typeof p[k] !== 'string') return `${k} is ${describe(p[k])}`;
  }
  if (!/^[0-9a-fA-F]{64}$/.test(p.modelSha256 as string)) return 'modelSha256 is not a sha256';
  for (const k of ['imageCount', 'skippedCount'] as const) {
    const v = p[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return `${k} is ${describe(v)}`;
  }
  const bins = p.histogramBins;
  if (typeof bins !== 'number' || !Number.isInteger(bins) || bins < 2 || bins > 1 << 24 || (bins & (bins - 1)) !== 0) {
    return `histogramBins is ${describe(bins)}`;
  }
  if (!isRecord(p.shapes)) return 'shapes is missing';
  for (const [name, dims] of Object.entries(p.shapes)) {
    if (!Array.isArray(dims) || !dims.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 0)) {
      return `shape of ${name} is ${describe(dims)}`;
    }
  }
  return undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function describe(v: unknown): string {
  if (v === undefined) return 'missing';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return Array.isArray(v) ? 'a list' : `a ${typeof v}`;
}
