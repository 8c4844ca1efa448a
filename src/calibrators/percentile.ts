/**
 * percentile: amax = the p-th percentile of |x| (default p = 99.99), clipping the largest (100 - p)% of values.
 * The method of NVIDIA pytorch-quantization's `_compute_amax_percentile` and of H. Wu et al., "Integer Quantization
 * for Deep Learning Inference: Principles and Empirical Evaluation" (2020), read from our finer histogram:
 * rank r = count * p / 100; the exact zeros come first (r <= zeroCount gives 0); inside the bin where the
 * cumulative count reaches r the value is interpolated linearly (values uniform in a bin, the top bin ending at
 * absMax), so p = 100 gives absMax. When the exact zeros alone make up p% of the values (a tensor that is almost
 * always 0), the percentile is taken over the non-zero values instead (pytorch-quantization's skip_zeros), so that
 * a tensor with data never gets amax 0, which would mean "no data". TensorRT has no percentile calibrator:
 * trtNative is false.
 */
import { invalidParameter } from '../errors.js';
import type { TensorStatistics } from '../stats/types.js';
import { HistogramDensity } from './density.js';
import type { Calibrator } from './types.js';

export const DEFAULT_PERCENTILE = 99.99;

export function checkPercentile(p: unknown): number {
  if (typeof p !== 'number' || !Number.isFinite(p) || p <= 0 || p > 100) {
    throw invalidParameter('--percentile', 'a number greater than 0 and at most 100', p);
  }
  return p;
}

/** `density` may be passed when the caller already built it for these statistics (mse uses the same). */
export function percentileAmax(stats: TensorStatistics, percentile: number = DEFAULT_PERCENTILE, density?: HistogramDensity): number {
  const p = checkPercentile(percentile);
  if (stats.count === 0 || !(stats.absMax > 0)) return 0;
  if (p === 100) return stats.absMax;
  const d = density ?? new HistogramDensity(stats);
  const rank = (stats.count * p) / 100;
  if (rank <= stats.zeroCount) return d.quantile(stats.zeroCount + (d.nonZero * p) / 100, stats.zeroCount);
  return d.quantile(rank, stats.zeroCount);
}

export const percentile: Calibrator = {
  name: 'percentile',
  cacheName: 'PercentileCalibration',
  trtNative: false,
  description: `the --percentile (default ${DEFAULT_PERCENTILE}) percentile of |x|, linear inside a histogram bin`,
  compute: (stats, options) => percentileAmax(stats, options?.percentile ?? DEFAULT_PERCENTILE),
};
