/**
 * Where FP16 is not safe, for the FP16 rest of an INT8 model (`--high-precision fp16`, src/onnx/autocast.ts):
 * rules on the collected statistics of each activation, and the ops whose FP16 form is unsafe.
 *
 * FP16 (IEEE binary16) has its largest finite value at 65504 and its smallest normal at 2^-14 = 6.1e-5; below
 * that, subnormals keep fewer significant bits (2^-24 steps), and below 2^-25 values flush to 0.
 *
 * - Overflow: a tensor whose calibration max |x| reaches 32768 (2^15, half of 65504) stays FP32. The statistics
 *   see a sample of the data; a factor 2 of headroom keeps an unseen image from overflowing to inf. The histogram's
 *   range (the power of two above max |x|) makes this exact: range > 2^15 <=> max |x| >= 2^15.
 * - Underflow: a tensor where more than 1% of the nonzero values lie below 2^-14 stays FP32. The histogram of |x|
 *   has 8192 bins over [0, range) with range a power of two, so 2^-14 is a bin edge whenever range <= 2^-1 and the
 *   share is counted exactly (zeros, which FP16 holds exactly, are left out). When range > 2^-1 the values below
 *   2^-14 are under 2^-14 / 2^-1 = 1.2e-4 of the tensor's largest values: FP16 rounds those largest values by
 *   2^-11 relative already, so what happens to the tiny ones does not matter and the rule does not apply.
 * - Q/DQ scales: a quantized tensor whose scale (amax / 127) is below 2^-14 (amax < 7.8e-3) would get a
 *   subnormal float16 scale (a relative error up to 2^-24 / scale); that tensor and its Q/DQ stay FP32.
 *
 * Model Optimizer's AutoCast (modelopt/onnx/autocast/nodeclassifier.py) blocks nodes whose reference I/O exceed
 * data_max (512 by default for accuracy; its convert_to_f16 path used by quantization applies no range rule) and
 * initializers beyond FP16's max (src/onnx/fp16.ts keeps those nodes FP32 too).
 */
import type { TensorStatistics } from '../stats/types.js';

export const FP16_MAX = 65504;
export const FP16_MIN_NORMAL = 2 ** -14;
/** max |x| at or above this keeps a tensor in FP32 (2^15: a factor 2 below FP16_MAX). */
export const FP16_SAFE_ABS_MAX = 2 ** 15;
/** More than this share of nonzero values below FP16_MIN_NORMAL keeps a tensor in FP32. */
export const FP16_SUBNORMAL_SHARE = 0.01;

/**
 * Ops kept in FP32 whatever the statistics, and why. Model Optimizer's list (modelopt/onnx/autocast/
 * precisionconverter.py, OP_TYPES_NOT_SUPPORTED_IN_LOW_PRECISION) plus the ops src/onnx/fp16.ts never converts.
 */
export const FP16_UNSAFE_OPS: ReadonlyMap<string, string> = new Map([
  ['Upsample', 'deprecated op whose scales must stay float32 (Model Optimizer keeps it in FP32)'],
  ['Celu', 'no float16 form in Model Optimizer\'s AutoCast (kept in FP32 there)'],
  ['NonMaxSuppression', 'box coordinates and scores compared for exact ordering; float32-only in ONNX'],
  ['If', 'subgraphs are not converted (Model Optimizer keeps If/Loop/Scan in FP32)'],
  ['Loop', 'subgraphs are not converted (Model Optimizer keeps If/Loop/Scan in FP32)'],
  ['Scan', 'subgraphs are not converted (Model Optimizer keeps If/Loop/Scan in FP32)'],
  ['Range', 'computes indices: float16 cannot count past 2048 exactly'],
]);

/** Why a tensor cannot be FP16 by its statistics, or undefined when it can. */
export function fp16RangeVerdict(s: TensorStatistics): string | undefined {
  if (s.absMax >= FP16_SAFE_ABS_MAX) {
    return `max |x| ${fmt(s.absMax)} over calibration is at or above ${FP16_SAFE_ABS_MAX} (FP16 overflows at ${FP16_MAX}; a factor 2 of headroom)`;
  }
  const bins = s.hist.length;
  if (s.range > 0 && bins > 0) {
    const binWidth = s.range / bins;
    const below = Math.floor(FP16_MIN_NORMAL / binWidth); // whole bins under 2^-14 (exact: powers of two)
    const nonzero = s.count - s.zeroCount;
    if (below >= 1 && nonzero > 0) {
      let n = -s.zeroCount;
      for (let i = 0; i < Math.min(below, bins); i++) n += s.hist[i]!;
      const share = n / nonzero;
      if (share > FP16_SUBNORMAL_SHARE) {
        return `${(share * 100).toFixed(1)}% of its nonzero values are below FP16's smallest normal 6.1e-5 (max |x| ${fmt(s.absMax)}; the limit is ${FP16_SUBNORMAL_SHARE * 100}%)`;
      }
    }
  }
  return undefined;
}

/** Why a Q/DQ scale cannot be float16, or undefined when it can. */
export function fp16ScaleVerdict(scale: number): string | undefined {
  if (scale < FP16_MIN_NORMAL) return `its INT8 scale ${fmt(scale)} (amax ${fmt(scale * 127)}) would be a subnormal float16 (below 6.1e-5)`;
  if (scale > FP16_MAX) return `its INT8 scale ${fmt(scale)} exceeds FP16's range`;
  return undefined;
}

/** The tensors to keep in FP32 by their statistics, with the reason, in the statistics' order. */
export function tensorsUnsafeInFp16(statistics: Iterable<TensorStatistics>): Map<string, string> {
  const out = new Map<string, string>();
  for (const s of statistics) {
    const why = fp16RangeVerdict(s);
    if (why) out.set(s.name, why);
  }
  return out;
}

function fmt(v: number): string {
  return Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : String(Number(v.toPrecision(4)));
}
