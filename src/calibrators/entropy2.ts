/**
 * entropy2: TensorRT's EntropyCalibration2 (IInt8EntropyCalibrator2), the KL-divergence method of
 * S. Migacz, "8-bit Inference with TensorRT", GTC 2017:
 *
 *   histogram of |x|: 2048 bins over [0, absMax] (re-binned from the collected one: ./histogram.ts);
 *   for i in 128..2048:
 *     P = bins[0..i), with the mass of bins[i..2048) added to P[i-1] (outliers folded in);
 *     Q = bins[0..i) (not folded) merged into 128 levels of floor(i/128) bins, the last level taking the
 *         remainder, and expanded back: each level's mass spread uniformly over the bins where P is non-zero
 *         (bins where P is 0 stay 0 in Q);
 *     divergence[i] = KL(P || Q), both normalised. Where Q = 0 and P > 0 (the folded outliers land in a level with
 *         no unfolded mass), Q gets 1e-4 counts, the eps of MXNet/TVM's _smooth_distribution: clipping a few
 *         outliers then costs about p log(p |Q| / 1e-4) instead of being impossible. Without it, a tensor whose
 *         bulk ends below bin 127 and that has one far outlier can only keep the outlier (every candidate that
 *         clips it would be infinite); with it the outlier is clipped, which is what the method is for;
 *   i* = the i of smallest divergence (the first one on ties; divergences within 1e-12 are ties: kl.ts);
 *   amax = (i* + 0.5) * binWidth, Migacz's "threshold = (m + 0.5) * (width of a bin)" (for i* = 2048 this is
 *   half a bin above absMax).
 *
 * Before the scan, the first bin of the collected histogram is discarded. NVIDIA describes this modification of
 * the basic algorithm in its account of TensorRT's calibration for MLPerf Inference v0.5 ("discarding the first
 * bin in the histogram (which typically contains a huge number of noise activations) immediately after it has been
 * built"): after a ReLU/ReLU6, half the values or more are exact zeros; left in, that spike is smeared over the
 * first level of every Q, which penalises every wide candidate and drives the threshold down to a fraction of the
 * range (measured on MobileNetV2: amax = 1/8 of the ReLU6 range on most tensors, top-1 agreement 33/43 instead of
 * 40/43). Our first collected bin is [0, range/8192), range < 2 absMax: the zeros and values below absMax/4096.
 *
 * This is the published description and the reference implementations derived from it (MXNet's and TVM's
 * _get_optimal_threshold expand over P's non-empty bins the same way); TensorRT's own code is not public. Unlike
 * MXNet, the other bins are not smoothed (it changes their divergences by ~1e-4/|Q|, nothing a choice rests on).
 * The scan runs in O(2048) using prefix sums (./kl.ts), natively when the addon is built (./kl-native.ts).
 */
import type { TensorStatistics } from '../stats/types.js';
import { rebinToAbsMax, TRT_HISTOGRAM_BINS, type RebinnedHistogram } from './histogram.js';
import type { KlScanResult, KlScanSpec } from './kl.js';
import { defaultKlScanner } from './kl-native.js';
import type { Calibrator } from './types.js';

export const ENTROPY2_SPEC: Readonly<KlScanSpec> = Object.freeze({
  grouping: 'remainder-last',
  emptyBins: 'reference',
  ties: 'smallest',
  levels: 128,
  startBin: 128,
  emptyQ: 1e-4,
});

export type KlScanner = (hist: Float64Array, spec: KlScanSpec) => KlScanResult;

/** The histogram entropy2 scans (2048 bins over [0, absMax]); undefined when there is nothing to scan. */
export function entropy2Histogram(stats: TensorStatistics): RebinnedHistogram | undefined {
  if (stats.count === 0 || !(stats.absMax > 0)) return undefined;
  const hist = stats.hist.slice();
  hist[0] = 0; // the zero spike (see above)
  return rebinToAbsMax({ ...stats, hist }, TRT_HISTOGRAM_BINS);
}

/** amax for the chosen number of bins i: (i + 0.5) * width. */
export function entropy2AmaxFromBins(bins: number, width: number): number {
  return (bins + 0.5) * width;
}

export function entropy2Amax(stats: TensorStatistics, scan: KlScanner = defaultKlScanner()): number {
  const h = entropy2Histogram(stats);
  return h ? entropy2AmaxFromBins(scan(h.counts, ENTROPY2_SPEC).bins, h.width) : 0;
}

export const entropy2: Calibrator = {
  name: 'entropy2',
  cacheName: 'EntropyCalibration2',
  trtNative: true,
  description: 'KL-divergence threshold over 2048 bins of |x| (TensorRT EntropyCalibration2, Migacz GTC 2017)',
  compute: (stats) => entropy2Amax(stats),
};
