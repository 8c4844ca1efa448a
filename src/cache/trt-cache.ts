/**
 * TensorRT calibration cache codec (the format IInt8Calibrator::readCalibrationCache / writeCalibrationCache
 * exchange, and `trtexec --calib=` reads):
 *
 *   TRT-<NV_TENSORRT_VERSION>-<Algorithm>
 *   <tensor name>: <8 lowercase hex digits>
 *   ...
 *
 * The hex digits are the big-endian IEEE-754 float32 bits of the scale, scale = amax / 127. Tensor names are the
 * ONNX tensor names (they may contain spaces, brackets and colons, e.g. "input:0" or "(Unnamed Layer* 3) [Shuffle]_output"),
 * so a line is split at its LAST ": ".
 */
import { UserError } from '../errors.js';
import { decodeTrtVersion, encodeTrtVersion, formatTrtVersion, type TrtVersion } from './trt-version.js';

/** Algorithm names TensorRT writes in cache headers. */
export const TRT_CACHE_ALGORITHMS = [
  'EntropyCalibration2',
  'EntropyCalibration',
  'MinMaxCalibration',
  'LegacyCalibration',
] as const;

export interface CacheEntry {
  name: string;
  /** The float32 scale (amax / 127). */
  scale: number;
  /** amax = scale * 127, for display. */
  amax: number;
}

export interface CalibrationCache {
  /** The encoded NV_TENSORRT_VERSION of the header (e.g. 100300). */
  trtVersion: number;
  algorithm: string;
  /** In file order. */
  entries: CacheEntry[];
}

const HEADER = /^TRT-(\d+)-([A-Za-z][A-Za-z0-9_]*)$/;
// TensorRT prints the float32 bits in hex without padding. Every scale it can write is a normal float32 (an
// amax of at least 2^-126 x 127), whose bits are at least 0x00800000, hence 8 digits for any scale above 2.5e-29,
// i.e. every real one, except a zero scale, written as a lone "0" (tensors that were all zeros during calibration,
// e.g. NVIDIA/TensorRT#3020, a Polygraphy-calibrated cache with a 0 scale). So a value is 8 digits or "0"; anything
// shorter is a line cut in the middle of its value (a truncated copy), which must not parse as a tiny scale.
const HEX = /^(?:[0-9a-fA-F]{8}|0)$/;

/**
 * Why a tensor name cannot be written as a cache line, or undefined when it can. Readers of the format split the
 * file into lines at "\n" (dropping a "\r" before it) and each line at the ":" before the hex value: onnxruntime's
 * reader of TensorRT caches (ReadDynamicRange in microsoft/onnxruntime,
 * onnxruntime/core/providers/tensorrt/tensorrt_execution_provider_utils.h) reads it with std::getline on the
 * lines, then on ':'; TensorRT writes names that hold ":" and ": " itself ("input:0: 3c010a14"), so the value is
 * what follows the LAST ": " and any name survives but one with a line break in it, or an empty one. TensorRT's
 * tensor names are C strings, so a NUL would cut the name short.
 */
export function cacheNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'it is empty';
  if (name.includes('\n')) return 'it contains a line break (\\n), and a cache holds one tensor per line';
  if (name.includes('\r')) return 'it contains a carriage return (\\r), which readers of the cache take as the end of a line';
  if (name.includes('\0')) return 'it contains a NUL character, which ends a TensorRT tensor name';
  return undefined;
}

/**
 * A UserError for the first tensor name that a calibration cache cannot hold: checked before any work, so that
 * a long calibration does not end in a cache that cannot be written.
 */
export function assertCacheableNames(names: Iterable<string>, source: string): void {
  const bad: Array<{ name: string; problem: string }> = [];
  for (const name of names) {
    const problem = cacheNameProblem(name);
    if (problem !== undefined) bad.push({ name, problem });
  }
  if (bad.length === 0) return;
  const first = bad[0]!;
  throw new UserError(
    `${source}: the tensor name ${JSON.stringify(first.name)} cannot be written to a TensorRT calibration cache: ${first.problem}` +
      (bad.length > 1 ? ` (${bad.length - 1} more such name(s): ${bad.slice(1, 4).map((b) => JSON.stringify(b.name)).join(', ')})` : '') +
      '.',
    { hint: 'Rename the tensor in the model (e.g. with onnx-graphsurgeon or onnx.helper), or use `trt-calib quantize`: a Q/DQ model carries its scales itself and takes any name.' },
  );
}

/** float32 scale for an amax: Math.fround(amax / 127). An amax of 0 (no data, all zeros) gets amax 1: see below. */
export function scaleFromAmax(amax: number): number {
  if (!Number.isFinite(amax) || amax < 0) throw new RangeError(`amax must be finite and >= 0, got ${amax}`);
  // A zero scale would make TensorRT divide by zero. A tensor that was all zeros during calibration gets the
  // neutral range [-1, 1]; the calibration summary lists such tensors so that the user can look at them.
  return Math.fround((amax > 0 ? amax : 1) / 127);
}

export function scaleToHex(scale: number): string {
  const b = Buffer.alloc(4);
  b.writeFloatBE(scale, 0);
  return b.toString('hex');
}

export function hexToScale(hex: string): number {
  return Buffer.from(hex.padStart(8, '0'), 'hex').readFloatBE(0);
}

export function formatCacheHeader(trtVersion: TrtVersion | number, algorithm: string): string {
  const encoded = typeof trtVersion === 'number' ? trtVersion : encodeTrtVersion(trtVersion);
  if (!HEADER.test(`TRT-${encoded}-${algorithm}`)) throw new RangeError(`bad cache header parts: ${encoded}, ${algorithm}`);
  return `TRT-${encoded}-${algorithm}`;
}

/**
 * Formats a cache. Entries are written in the order given (the caller sorts: network input first, then
 * topological order, as TensorRT does). Scales are written as given (already float32).
 */
export function formatCalibrationCache(cache: { trtVersion: TrtVersion | number; algorithm: string; entries: ReadonlyArray<{ name: string; scale: number }> }): string {
  const lines = [formatCacheHeader(cache.trtVersion, cache.algorithm)];
  const seen = new Set<string>();
  for (const e of cache.entries) {
    // Callers check names up front (assertCacheableNames); reaching this is a bug.
    if (cacheNameProblem(e.name) !== undefined) throw new RangeError(`tensor name cannot be written to a cache: ${JSON.stringify(e.name)}`);
    if (seen.has(e.name)) throw new RangeError(`duplicate tensor in cache: ${e.name}`);
    seen.add(e.name);
    if (!(e.scale > 0) || !Number.isFinite(e.scale)) throw new RangeError(`scale of ${e.name} must be finite and > 0, got ${e.scale}`);
    lines.push(`${e.name}: ${scaleToHex(Math.fround(e.scale))}`);
  }
  // TensorRT's own writer ends every line, the last one included, with a newline.
  return `${lines.join('\n')}\n`;
}

/**
 * Parses a cache. Accepts any cache TensorRT writes (any version, any algorithm name, CRLF line ends, a missing
 * final newline); rejects malformed ones with a UserError that gives the file, the line number and the reason.
 */
export function parseCalibrationCache(input: string | Uint8Array, source = 'calibration cache'): CalibrationCache {
  const text = typeof input === 'string' ? input : Buffer.from(input).toString('utf8');
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const fail = (line: number, reason: string): never => {
    throw new UserError(`${source}:${line}: ${reason}`, {
      hint: 'A TensorRT calibration cache starts with a line like "TRT-100300-EntropyCalibration2", then one "tensor: 3c010a14" line per tensor.',
    });
  };
  if (lines.length === 0) fail(1, 'the file is empty');
  const header = lines[0]!.replace(/\r$/, '');
  const m = HEADER.exec(header);
  if (!m) fail(1, `expected a header like "TRT-100300-EntropyCalibration2" but found ${JSON.stringify(header.slice(0, 80))}`);
  const trtVersion = Number(m![1]);
  try {
    const v = decodeTrtVersion(trtVersion);
    if (v.major < 1) throw new RangeError('major');
  } catch {
    fail(1, `"${m![1]}" is not a TensorRT version number`);
  }
  const entries: CacheEntry[] = [];
  const seen = new Map<string, number>();
  for (let i = 1; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i]!.replace(/\r$/, '');
    if (line.trim() === '') fail(lineNo, 'empty line inside the cache');
    const cut = line.lastIndexOf(': ');
    if (cut <= 0) fail(lineNo, `expected "tensor name: hhhhhhhh" but found ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, cut);
    const hex = line.slice(cut + 2).trim();
    if (!HEX.test(hex) && /^[0-9a-fA-F]{1,7}$/.test(hex)) {
      fail(lineNo, `the scale of "${name}" has ${hex.length} hex digit(s), ${JSON.stringify(hex)}: the line is cut in the middle of its value (TensorRT writes 8 digits, or a lone 0)`);
    }
    if (!HEX.test(hex)) fail(lineNo, `the scale of "${name}" must be 8 hex digits (float32 bits) or a lone 0, but is ${JSON.stringify(hex.slice(0, 20))}`);
    const scale = hexToScale(hex);
    if (!Number.isFinite(scale) || scale < 0) fail(lineNo, `the scale of "${name}" is ${scale}, not a finite non-negative number`);
    const prev = seen.get(name);
    if (prev !== undefined) fail(lineNo, `tensor "${name}" already appeared on line ${prev}`);
    seen.set(name, lineNo);
    entries.push({ name, scale, amax: scale * 127 });
  }
  return { trtVersion, algorithm: m![2]!, entries };
}

export function describeCacheVersion(cache: CalibrationCache): string {
  return `TensorRT ${formatTrtVersion(decodeTrtVersion(cache.trtVersion))} (${cache.trtVersion})`;
}

/** JSON range table {tensor: amax}: the form TensorRT's setDynamicRange workflows and other tools exchange. */
export type RangeTable = Record<string, number>;

export function cacheToRangeTable(cache: CalibrationCache): RangeTable {
  const table: RangeTable = {};
  for (const e of cache.entries) table[e.name] = e.amax;
  return table;
}

export function rangeTableFromJson(text: string, source = 'range table'): RangeTable {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UserError(`${source} is not valid JSON: ${(err as Error).message}`, { hint: 'A range table is a JSON object {"tensor name": amax, ...}.' });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new UserError(`${source} must be a JSON object {"tensor name": amax, ...}.`);
  }
  const table: RangeTable = {};
  for (const [name, amax] of Object.entries(value as Record<string, unknown>)) {
    if (typeof amax !== 'number' || !Number.isFinite(amax) || amax < 0) {
      throw new UserError(`${source}: the range of "${name}" must be a finite number >= 0 but is ${JSON.stringify(amax)}.`);
    }
    table[name] = amax;
  }
  return table;
}

export interface CacheDiffRow {
  name: string;
  scaleA?: number;
  scaleB?: number;
  /** scaleA / scaleB; undefined when the tensor is in one cache only. */
  ratio?: number;
  /** |log2(ratio)|: 1 means a factor of 2 apart. Infinity when in one cache only. */
  disagreement: number;
}

/** Per-tensor comparison of two caches, sorted by disagreement (largest first), then by name. */
export function diffCaches(a: CalibrationCache, b: CalibrationCache): CacheDiffRow[] {
  const mapB = new Map(b.entries.map((e) => [e.name, e.scale]));
  const rows: CacheDiffRow[] = [];
  for (const e of a.entries) {
    const sb = mapB.get(e.name);
    if (sb === undefined) rows.push({ name: e.name, scaleA: e.scale, disagreement: Infinity });
    else {
      const ratio = sb > 0 ? e.scale / sb : Infinity;
      rows.push({ name: e.name, scaleA: e.scale, scaleB: sb, ratio, disagreement: e.scale === sb ? 0 : Math.abs(Math.log2(ratio)) });
      mapB.delete(e.name);
    }
  }
  for (const [name, sb] of mapB) rows.push({ name, scaleB: sb, disagreement: Infinity });
  rows.sort((x, y) => y.disagreement - x.disagreement || (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  return rows;
}
