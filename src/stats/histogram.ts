/**
 * Exact histogram arithmetic in TypeScript: power-of-two ranges, range growth, merging, validation, and a
 * reference accumulator (the native kernel in native/src/stats/histogram.cc is checked against it bit for bit).
 *
 * The invariant every function keeps (see ./types.ts): `range` is 0 when absMax is 0, else the smallest power of
 * two strictly greater than absMax; hist[i] counts |x| in [i*range/bins, (i+1)*range/bins); counts are integers.
 */
import { HISTOGRAM_BINS, type TensorStatistics } from './types.js';

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);
const LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const HI = LITTLE ? 1 : 0;
const LO = LITTLE ? 0 : 1;

/** e such that x = f * 2^e with f in [0.5, 1), for a finite x > 0 (C's frexp exponent). */
export function frexpExponent(x: number): number {
  f64[0] = x;
  const field = (u32[HI]! >>> 20) & 0x7ff;
  if (field === 0) {
    // subnormal: scale into the normal range first (exact)
    f64[0] = x * 2 ** 64;
    return ((u32[HI]! >>> 20) & 0x7ff) - 1022 - 64;
  }
  return field - 1022;
}

/** 2^e as an exact double, for integer e in [-1074, 1023]. */
export function exactPowerOfTwo(e: number): number {
  if (e >= -1022) {
    u32[HI] = (e + 1023) << 20;
    u32[LO] = 0;
    return f64[0]!;
  }
  return exactPowerOfTwo(e + 64) / 2 ** 64;
}

/** The smallest power of two strictly greater than absMax; 0 for absMax 0. */
export function rangeFor(absMax: number): number {
  if (!(absMax > 0)) return 0;
  return exactPowerOfTwo(frexpExponent(absMax));
}

export function isPowerOfTwoInteger(n: number): boolean {
  return Number.isInteger(n) && n >= 2 && (n & (n - 1)) === 0;
}

/** Statistics of a tensor that has seen nothing yet. */
export function emptyStatistics(name: string, bins: number = HISTOGRAM_BINS): TensorStatistics {
  return {
    name,
    count: 0,
    nanCount: 0,
    posInfCount: 0,
    negInfCount: 0,
    zeroCount: 0,
    min: Infinity,
    max: -Infinity,
    absMax: 0,
    range: 0,
    hist: new Float64Array(bins),
  };
}

export function cloneStatistics(s: TensorStatistics, name: string = s.name): TensorStatistics {
  return { ...s, name, hist: new Float64Array(s.hist) };
}

/** Widens hist (in place) from `range` to `newRange` (both 0 or powers of two, newRange >= range): merges bins exactly. */
export function growHistogram(hist: Float64Array, range: number, newRange: number): void {
  if (range === 0 || newRange === range) return; // only zeros so far: bin 0 under any range
  const bins = hist.length;
  const factor = newRange / range;
  if (factor >= bins) {
    let total = 0;
    for (let b = 0; b < bins; b++) total += hist[b]!;
    hist.fill(0);
    hist[0] = total;
    return;
  }
  const kept = bins / factor;
  for (let j = 0; j < kept; j++) {
    let s = 0;
    for (let k = 0; k < factor; k++) s += hist[j * factor + k]!;
    hist[j] = s;
  }
  hist.fill(0, kept);
}

/**
 * Adds b into a (in place) exactly: the narrower histogram is widened to the common range first.
 * The names may differ (the caller decides what is merged).
 */
export function mergeInto(a: TensorStatistics, b: TensorStatistics): void {
  if (a.hist.length !== b.hist.length) {
    throw new RangeError(`Cannot merge statistics of ${a.hist.length} and ${b.hist.length} bins`);
  }
  const absMax = Math.max(a.absMax, b.absMax);
  const range = rangeFor(absMax);
  growHistogram(a.hist, a.range, range);
  let other = b.hist;
  if (b.range !== range) {
    other = new Float64Array(b.hist);
    growHistogram(other, b.range, range);
  }
  for (let i = 0; i < a.hist.length; i++) a.hist[i]! += other[i]!;
  a.count += b.count;
  a.nanCount += b.nanCount;
  a.posInfCount += b.posInfCount;
  a.negInfCount += b.negInfCount;
  a.zeroCount += b.zeroCount;
  a.min = Math.min(a.min, b.min);
  a.max = Math.max(a.max, b.max);
  a.absMax = absMax;
  a.range = range;
}

const kNonFinite = 0x7f800000;
const scratch32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratch32.buffer);

/**
 * Reference accumulator in plain TypeScript (slow; for tests and tiny inputs): the same definition as the native
 * kernel. float16 data are raw half-precision bits in a Uint16Array.
 */
export function accumulateReference(s: TensorStatistics, data: Float32Array | Uint16Array): void {
  const values = data instanceof Uint16Array ? halfToFloat32Array(data) : data;
  let batchMin = Infinity;
  let batchMax = -Infinity;
  let finite = 0;
  for (let i = 0; i < values.length; i++) {
    const x = values[i]!;
    scratch32[0] = x;
    const bits = scratchU32[0]!;
    const abs = bits & 0x7fffffff;
    if (abs >= kNonFinite) {
      if (abs > kNonFinite) s.nanCount++;
      else if (bits >>> 31) s.negInfCount++;
      else s.posInfCount++;
      continue;
    }
    finite++;
    if (abs === 0) s.zeroCount++;
    if (x < batchMin) batchMin = x;
    if (x > batchMax) batchMax = x;
  }
  s.count += finite;
  if (finite === 0) return;
  // zeros are reported as +0 whatever their sign
  if (batchMin === 0) batchMin = 0;
  if (batchMax === 0) batchMax = 0;
  s.min = Math.min(s.min, batchMin);
  s.max = Math.max(s.max, batchMax);
  const batchAbsMax = Math.max(-batchMin, batchMax);
  if (batchAbsMax > s.absMax) s.absMax = batchAbsMax;
  if (batchAbsMax === 0) {
    s.hist[0]! += finite;
    return;
  }
  const range = rangeFor(s.absMax);
  if (range > s.range) {
    growHistogram(s.hist, s.range, range);
    s.range = range;
  }
  const scale = s.hist.length / s.range; // a power of two: |x| * scale is exact
  for (let i = 0; i < values.length; i++) {
    const a = Math.abs(values[i]!);
    if (!Number.isFinite(a)) continue;
    s.hist[Math.floor(a * scale)]! += 1;
  }
}

/** IEEE half-precision bits to float32 values (exact). */
export function halfToFloat32Array(h: Uint16Array): Float32Array {
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) out[i] = halfToNumber(h[i]!);
  return out;
}

export function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0x1f) return man ? NaN : sign * Infinity;
  if (exp === 0) return sign * man * 2 ** -24;
  return sign * (1024 + man) * 2 ** (exp - 25);
}

/**
 * Checks the invariants of one tensor's statistics; returns a reason when they do not hold (for the store's
 * "not a statistics file" message), undefined when they do.
 */
export function statisticsProblem(s: TensorStatistics, bins: number = HISTOGRAM_BINS): string | undefined {
  const counts: Array<keyof TensorStatistics> = ['count', 'nanCount', 'posInfCount', 'negInfCount', 'zeroCount'];
  for (const k of counts) {
    const v = s[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return `${k} is not a count`;
  }
  for (const k of ['min', 'max', 'absMax', 'range'] as const) {
    if (typeof s[k] !== 'number' || Number.isNaN(s[k])) return `${k} is not a number`;
  }
  if (!(s.hist instanceof Float64Array) || s.hist.length !== bins) return `the histogram does not have ${bins} bins`;
  let total = 0;
  for (let i = 0; i < s.hist.length; i++) {
    const c = s.hist[i]!;
    if (!Number.isSafeInteger(c) || c < 0) return `histogram bin ${i} is not a count`;
    total += c;
  }
  if (total !== s.count) return `the histogram holds ${total} values but count is ${s.count}`;
  if (s.zeroCount > s.hist[0]!) return 'zeroCount exceeds the first bin';
  if (s.count === 0) {
    if (s.min !== Infinity || s.max !== -Infinity || s.absMax !== 0 || s.range !== 0) return 'min/max/absMax/range set without values';
    return undefined;
  }
  if (!Number.isFinite(s.min) || !Number.isFinite(s.max) || s.min > s.max) return 'min/max are not a finite interval';
  if (s.absMax !== Math.max(-s.min, s.max)) return 'absMax is not max(|min|, |max|)';
  if (s.range !== rangeFor(s.absMax)) return 'range is not the smallest power of two above absMax';
  if (s.absMax > 0) {
    const top = Math.floor((s.absMax * bins) / s.range);
    for (let i = top + 1; i < bins; i++) if (s.hist[i] !== 0) return 'the histogram has values above absMax';
    if (s.hist[top] === 0) return 'the histogram has no value in the bin of absMax';
  }
  return undefined;
}
