/**
 * entropy: TensorRT's legacy EntropyCalibration (IInt8EntropyCalibrator). NVIDIA never published how its numbers
 * differ from EntropyCalibration2 (it calibrates after layer fusion, Entropy2 before). This is the variant NVIDIA's
 * pytorch-quantization ships as TensorRT's entropy method: `_compute_amax_entropy` in
 * tools/pytorch-quantization/pytorch_quantization/calib/histogram.py (NVIDIA/TensorRT), with its defaults
 * (num_bits 8, signed, stride 1, start_bin 128), on 2048 bins of |x| over [0, absMax]:
 *
 *   bins[0] = bins[1]   (suppresses the spike of exact zeros, e.g. after ReLU);
 *   for i in 128..2048:
 *     P = bins[0..i) with the mass of bins[i..) added to P[i-1];
 *     Q: bin j < i goes to level floor(128 j / i) (np.digitize over linspace(0, i, 129)); each level's mass (of
 *        the unfolded bins) is spread over the level's bins that are non-zero IN THE HISTOGRAM; zero bins stay 0;
 *     divergence[i] = KL(P || Q) (scipy.stats.entropy: normalised, +Infinity where Q = 0 and P > 0);
 *   i* = the LAST i of smallest divergence (ties to the larger range; divergences within 1e-12 are ties: kl.ts);
 *   amax = i* * binWidth   (the upper edge of the kept bins).
 *
 * How it differs from entropy2 (./entropy2.ts):
 *   1. the zero bin is replaced by its neighbour before the search (entropy2 keeps it);
 *   2. levels are spread evenly, floor(128 j / i) (entropy2: floor(i/128) bins each, remainder in the last level);
 *   3. "empty" bins are those of the histogram, so a folded last bin whose own count is 0 makes the candidate
 *      infinite (entropy2: the empty bins of P, so that bin shares its level's mass);
 *   4. ties go to the larger i (entropy2: the smaller);
 *   5. amax = i * width (entropy2: (i + 0.5) * width);
 *   6. a candidate with Q = 0 where P > 0 is infinite, never chosen (entropy2 gives that bin 1e-4 counts). So when
 *      the bulk of a tensor ends below bin 128 and one value lies far beyond, only i = 2048 is finite and the
 *      outlier is kept, as pytorch-quantization does; entropy2 clips it.
 * Same divergence otherwise, same fast scan (./kl.ts).
 */
import type { TensorStatistics } from '../stats/types.js';
import { rebinToAbsMax, TRT_HISTOGRAM_BINS, type RebinnedHistogram } from './histogram.js';
import type { KlScanSpec } from './kl.js';
import { defaultKlScanner } from './kl-native.js';
import type { KlScanner } from './entropy2.js';
import type { Calibrator } from './types.js';

export const ENTROPY_SPEC: Readonly<KlScanSpec> = Object.freeze({
  grouping: 'proportional',
  emptyBins: 'histogram',
  ties: 'largest',
  levels: 128,
  startBin: 128,
});

/** bins[0] = bins[1] on a copy (pytorch-quantization's suppression of the zero spike). */
export function suppressZeroBin(counts: Float64Array): Float64Array {
  const out = new Float64Array(counts);
  if (out.length > 1) out[0] = out[1]!;
  return out;
}

/**
 * The histogram entropy scans: 2048 bins over [0, absMax] with the zero bin suppressed; undefined when there is
 * nothing to scan. `rebinned` may be passed when the caller already re-binned these statistics (entropy2 uses it).
 */
export function entropyHistogram(stats: TensorStatistics, rebinned?: RebinnedHistogram): RebinnedHistogram | undefined {
  if (stats.count === 0 || !(stats.absMax > 0)) return undefined;
  const h = rebinned ?? rebinToAbsMax(stats, TRT_HISTOGRAM_BINS);
  return { counts: suppressZeroBin(h.counts), width: h.width };
}

/** amax for the chosen number of bins i: the upper edge, i * width. */
export function entropyAmaxFromBins(bins: number, width: number): number {
  return bins * width;
}

export function entropyAmax(stats: TensorStatistics, scan: KlScanner = defaultKlScanner()): number {
  const h = entropyHistogram(stats);
  return h ? entropyAmaxFromBins(scan(h.counts, ENTROPY_SPEC).bins, h.width) : 0;
}

export const entropy: Calibrator = {
  name: 'entropy',
  cacheName: 'EntropyCalibration',
  trtNative: true,
  description: 'legacy KL-divergence threshold (TensorRT EntropyCalibration; pytorch-quantization variant)',
  compute: (stats) => entropyAmax(stats),
};
