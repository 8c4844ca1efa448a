/**
 * Quantization noise of one tensor, measured on its FP32 values as they stream by (the FP32 pass): what INT8
 * with a given scale, and what FP16, would do to it. Used for a layer's own SNR ("its quantized input vs FP32")
 * and to decide where FP16 is not enough.
 *
 * INT8 (ONNX QuantizeLinear/DequantizeLinear, symmetric, zero point 0): q = saturate(round_half_even(x / s)) to
 * [-128, 127], x' = q * s.
 * FP16 (IEEE 754 binary16, round to nearest even): |x| > 65504 overflows (counted apart: the value would become
 * infinite); below 2^-14 values are subnormal, on a grid of 2^-24. The rounding of normal values uses
 * Veltkamp's splitting (Dekker 1971, "A floating-point technique for extending the available precision"):
 * with c = 2^(53-11) + 1, t = c*x, hi = t - (t - x) is x rounded to 11 significant bits, in three double
 * operations instead of bit manipulation.
 * Cost: the INT8 noise and the range are exact, over every element (natively about 0.3 ns each, 0.65 with a scale,
 * in 16 lanes: see add); the FP16 noise is taken on
 * every 8th element, which is plenty for a check that only looks for tensors far worse than float16's usual
 * ~70 dB (15 M activations per image on MobileNetV2: the FP32 pass must stay close to a plain one).
 */
import { snrFromSums } from '../compare/metrics.js';

export const FP16_MAX = 65504;
const FP16_MIN_NORMAL = 2 ** -14;
const FP16_SUBNORMAL_STEP = 2 ** -24;
const VELTKAMP_11 = 2 ** 42 + 1;
const ROUND_MAGIC = 1.5 * 2 ** 52;
/** FP16 noise is measured on every 8th element. */
export const FP16_SAMPLE_STRIDE = 8;

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** x rounded to the nearest float16 value (infinite beyond the float16 range). */
export function roundToFloat16(x: number): number {
  const a = Math.abs(x);
  if (!(a < Infinity)) return x;
  if (a >= FP16_MIN_NORMAL) {
    const t = VELTKAMP_11 * x;
    const hi = t - (t - x);
    // 65520 and above round to infinity in binary16.
    return Math.abs(hi) > FP16_MAX ? (x > 0 ? Infinity : -Infinity) : hi;
  }
  return roundHalfEven(x / FP16_SUBNORMAL_STEP) * FP16_SUBNORMAL_STEP;
}

/** x through QuantizeLinear/DequantizeLinear with `scale` (int8, zero point 0). */
export function fakeQuantInt8(x: number, scale: number): number {
  let q = roundHalfEven(x / scale);
  if (q > 127) q = 127;
  else if (q < -128) q = -128;
  return q * scale;
}

/** Lanes of the signal and INT8 noise sums (see TensorNoise.add). */
const NOISE_LANES = 16;

/** The pairwise sum of 16 lanes: ((l0 + l1) + (l2 + l3)) + ... , a tree of depth 4 (native/src/stats/noise.cc Reduce16). */
function reduce16(l: Float64Array): number {
  return l[0]! + l[1]! + (l[2]! + l[3]!) + (l[4]! + l[5]! + (l[6]! + l[7]!)) + (l[8]! + l[9]! + (l[10]! + l[11]!) + (l[12]! + l[13]! + (l[14]! + l[15]!)));
}

/** Running noise sums of one tensor. */
export class TensorNoise {
  signal = 0;
  int8Noise = 0;
  /** Signal and FP16 noise of the sampled elements. */
  fp16SampleSignal = 0;
  fp16Noise = 0;
  absMax = 0;
  /** Values beyond the float16 range. */
  fp16Overflow = 0;
  /** Values that int8 saturates (x / scale rounds beyond [-128, 127]). */
  saturated = 0;
  count = 0;
  nonFinite = 0;

  /** `scale`: the INT8 scale, or undefined to measure FP16 and the range only. */
  constructor(readonly scale?: number) {}

  /**
   * Adds one image's values. native/src/stats/noise.cc computes the very same sums (bit for bit) for the FP32 pass's
   * counting nodes (src/sensitivity/data.ts); change both together.
   */
  add(values: ArrayLike<number>): void {
    const s = this.scale !== undefined && this.scale > 0 ? this.scale : undefined;
    // One image's sums from zero, then added to the totals (as native/src/stats/noise.cc does): 16 accumulators
    // per sum (element i into lane i % 16), reduced by reduce16's pairwise tree (16 lanes are 4 independent AVX2
    // registers there). A call is one image (addImages), so the sums are the same bytes whatever the batch size,
    // and images can be summed apart and merged in order.
    const sig = new Float64Array(NOISE_LANES);
    const err = new Float64Array(NOISE_LANES);
    let absMax = 0;
    let overflow = 0;
    let saturated = 0;
    let nonFinite = 0;
    const n = values.length;
    // fakeQuantInt8, inlined (this loop sees every element of every image): x * (1/s) instead of x / s, and
    // rounding half to even by adding and subtracting 1.5 * 2^52 (exact for |v| < 2^51, the default rounding
    // mode of IEEE doubles). Both may differ from QuantizeLinear on an exact tie: no effect on an SNR.
    const inv = s !== undefined ? 1 / s : 0;
    for (let i = 0; i < n; i++) {
      const x = values[i]!;
      if (!(x - x === 0)) {
        nonFinite++;
        continue;
      }
      const a = x < 0 ? -x : x;
      if (a > absMax) absMax = a;
      const lane = i & (NOISE_LANES - 1);
      sig[lane] += x * x;
      if (a > FP16_MAX) overflow++;
      if (s !== undefined) {
        let q = x * inv + ROUND_MAGIC - ROUND_MAGIC;
        if (q > 127) {
          q = 127;
          saturated++;
        } else if (q < -128) {
          q = -128;
          saturated++;
        }
        const d = x - q * s;
        err[lane] += d * d;
      }
    }
    const signal = this.signal + reduce16(sig);
    const i8 = this.int8Noise + reduce16(err);
    // FP16 rounding noise on every FP16_SAMPLE_STRIDE-th element (a systematic sample: float16 rounding is
    // ~70 dB on normal-range data and the check only looks for far worse), with the signal of the same sample:
    // the j-th sampled element into lane j % 4, reduced as (s0 + s1) + (s2 + s3). The sample restarts at each
    // call's first element: call once per image (addImages) so that every image is sampled alike whatever the
    // batch size.
    const sampleSig = [0, 0, 0, 0];
    const sampleErr = [0, 0, 0, 0];
    for (let i = 0, j = 0; i < n; i += FP16_SAMPLE_STRIDE, j++) {
      const x = values[i]!;
      if (!(x - x === 0) || (x < 0 ? -x : x) > FP16_MAX) continue;
      const d = x - roundToFloat16(x);
      sampleSig[j & 3] += x * x;
      sampleErr[j & 3] += d * d;
    }
    this.signal = signal;
    this.int8Noise = i8;
    this.fp16SampleSignal += sampleSig[0]! + sampleSig[1]! + (sampleSig[2]! + sampleSig[3]!);
    this.fp16Noise += sampleErr[0]! + sampleErr[1]! + (sampleErr[2]! + sampleErr[3]!);
    if (absMax > this.absMax) this.absMax = absMax;
    this.fp16Overflow += overflow;
    this.saturated += saturated;
    this.nonFinite += nonFinite;
    this.count += n - nonFinite;
  }

  /**
   * A TensorNoise holding sums computed elsewhere (native/src/stats/noise.cc's order: signal, int8Noise,
   * fp16SampleSignal, fp16Noise, absMax, fp16Overflow, saturated, count, nonFinite).
   */
  static fromSums(scale: number | undefined, sums: ArrayLike<number>): TensorNoise {
    const n = new TensorNoise(scale);
    n.signal = sums[0]!;
    n.int8Noise = sums[1]!;
    n.fp16SampleSignal = sums[2]!;
    n.fp16Noise = sums[3]!;
    n.absMax = sums[4]!;
    n.fp16Overflow = sums[5]!;
    n.saturated = sums[6]!;
    n.count = sums[7]!;
    n.nonFinite = sums[8]!;
    return n;
  }

  /** Adds a batch of `images` images (values batch first), one image at a time. */
  addImages(values: Float32Array | Float64Array, images: number): void {
    const per = images > 0 ? values.length / images : values.length;
    if (!Number.isInteger(per)) throw new Error(`${values.length} values are not ${images} images`);
    for (let i = 0; i < images; i++) this.add(values.subarray(i * per, (i + 1) * per));
  }

  get int8SnrDb(): number | undefined {
    return this.scale === undefined ? undefined : snrFromSums(this.signal, this.int8Noise);
  }

  /** FP16 rounding SNR, on the systematic sample (see add). */
  get fp16SnrDb(): number {
    return snrFromSums(this.fp16SampleSignal, this.fp16Noise);
  }
}

/** SNR of a set of tensors taken together (their signal and noise summed). */
export function combinedSnrDb(parts: ReadonlyArray<{ signal: number; noise: number }>): number {
  let s = 0;
  let n = 0;
  for (const p of parts) {
    s += p.signal;
    n += p.noise;
  }
  return snrFromSums(s, n);
}
