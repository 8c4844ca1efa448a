/**
 * mse: the amax that minimises the expected squared int8 quantisation error over the histogram.
 *
 * Quantiser for a candidate amax A: step s = A / 127, q(x) = s * min(round(x / s), 127) for x = |x| >= 0.
 * Expected error, summed over the values (the histogram read as a density: ./density.ts):
 *   values below s/2 round to 0:                   error x^2, exact;
 *   values in [s/2, A - s/2) round to a level:     error s^2 / 12 each (rounding error uniform over a step);
 *   values from A - s/2 up round to A or clip:     error (x - A)^2, exact;
 * so E(A) = sum_{x<s/2} x^2 + (s^2/12) #{s/2 <= x < A - s/2} + sum_{x>=A-s/2} (x - A)^2, each term O(1) from
 * prefix moments. This is the clipping + rounding-noise decomposition of ACIQ (R. Banner, Y. Nahshan, D. Soudry,
 * "Post training 4-bit quantization of convolutional networks for rapid-deployment", NeurIPS 2019), with the
 * values that round to zero counted exactly rather than as s^2/12: after a ReLU most values are tiny or 0, and
 * charging them a full step's noise would bias the search towards small amax. Exact zeros have no error.
 * The s^2/12 term is exact when the density is flat across each step; the bins are at most half a step wide.
 *
 * Candidates: A = i * absMax / 2048 for i = 128..2048 (the bin edges of TensorRT's 2048-bin histogram from bin
 * 128 on, as pytorch-quantization's `_compute_amax_mse` searches them); the smallest A wins ties.
 * TensorRT has no MSE calibrator: trtNative is false.
 */
import type { TensorStatistics } from '../stats/types.js';
import { HistogramDensity } from './density.js';
import type { Calibrator } from './types.js';

export interface MseSearch {
  /** Largest quantised level: 127 for int8. */
  qmax: number;
  /** Candidates are i * absMax / candidates ... */
  candidates: number;
  /** ... for i = startBin..candidates. */
  startBin: number;
}

export const MSE_SEARCH: Readonly<MseSearch> = Object.freeze({ qmax: 127, candidates: 2048, startBin: 128 });

const low = new Float64Array(3);
const high = new Float64Array(3);
const all = new Float64Array(3);

/**
 * Expected total squared error (see the file header) of quantising the tensor with amax A > 0. `total` may hold
 * density.moments(Infinity) when the caller evaluates many candidates.
 */
export function expectedSquaredError(density: HistogramDensity, A: number, qmax: number = MSE_SEARCH.qmax, total?: Float64Array): number {
  const s = A / qmax;
  density.moments(s / 2, low);
  density.moments(A - s / 2, high);
  if (total) all.set(total);
  else density.moments(Infinity, all);
  const rounding = ((s * s) / 12) * (high[0]! - low[0]!);
  const c0 = all[0]! - high[0]!;
  const c1 = all[1]! - high[1]!;
  const c2 = all[2]! - high[2]!;
  const clipping = c2 - 2 * A * c1 + A * A * c0;
  return low[2]! + rounding + Math.max(0, clipping);
}

export interface MseResult {
  amax: number;
  /** Mean squared error per value (zeros included) at amax. */
  mse: number;
  /** errors[i - startBin]: total expected squared error of candidate i. */
  errors: Float64Array;
}

/** `density` may be passed when the caller already built it for these statistics (percentile uses the same). */
export function mseSearch(stats: TensorStatistics, search: MseSearch = MSE_SEARCH, given?: HistogramDensity): MseResult {
  const { qmax, candidates, startBin } = search;
  const errors = new Float64Array(Math.max(0, candidates - startBin + 1));
  if (stats.count === 0 || !(stats.absMax > 0)) return { amax: 0, mse: 0, errors };
  const density = given ?? new HistogramDensity(stats);
  let best = Infinity;
  let amax = stats.absMax;
  const total = density.moments(Infinity);
  for (let i = startBin; i <= candidates; i++) {
    const A = (i * stats.absMax) / candidates;
    const e = expectedSquaredError(density, A, qmax, total);
    errors[i - startBin] = e;
    if (e < best) {
      best = e;
      amax = A;
    }
  }
  return { amax, mse: best / stats.count, errors };
}

export function mseAmax(stats: TensorStatistics, density?: HistogramDensity): number {
  return mseSearch(stats, MSE_SEARCH, density).amax;
}

export const mse: Calibrator = {
  name: 'mse',
  cacheName: 'MSECalibration',
  trtNative: false,
  description: 'amax minimising the expected squared int8 error (clipping + rounding) over the histogram',
  compute: (stats) => mseAmax(stats),
};
