/**
 * Re-binning of the collected histogram (HISTOGRAM_BINS bins over [0, range), range a power of two) to the
 * histogram TensorRT's entropy calibration works on: 2048 bins of |x| over [0, absMax].
 *
 * Method: every source bin's count is spread over the target bins it overlaps in proportion to the overlap,
 * i.e. values are taken as uniform inside a source bin. The source bin holding absMax is taken to end at absMax
 * (no value lies above it); if absMax sits exactly on its lower edge, that bin's values all equal absMax and go to
 * the last target bin. The last overlapped target bin receives the remainder of the count, so each source bin's
 * mass is carried over exactly up to rounding of the sums. Pure arithmetic on the histogram: deterministic.
 */
import type { TensorStatistics } from '../stats/types.js';

export const TRT_HISTOGRAM_BINS = 2048;

export interface RebinnedHistogram {
  /** Counts over [i*width, (i+1)*width), the last bin closed at absMax. */
  counts: Float64Array;
  /** absMax / bins. 0 when there is no non-zero value. */
  width: number;
}

export function rebinToAbsMax(stats: TensorStatistics, bins: number = TRT_HISTOGRAM_BINS): RebinnedHistogram {
  const counts = new Float64Array(bins);
  if (stats.count === 0) return { counts, width: 0 };
  if (!(stats.absMax > 0)) {
    counts[0] = stats.count;
    return { counts, width: 0 };
  }
  const src = stats.hist;
  const sourceBins = src.length;
  const width = stats.absMax / bins;
  // source bin width in units of target bins
  const ratio = stats.range / sourceBins / width;
  const top = Math.min(sourceBins - 1, Math.floor((stats.absMax * sourceBins) / stats.range));
  for (let s = 0; s <= top; s++) {
    const c = src[s]!;
    if (c === 0) continue;
    const lo = s * ratio;
    const hi = s === top ? bins : Math.min(bins, (s + 1) * ratio);
    if (!(hi > lo)) {
      counts[bins - 1]! += c;
      continue;
    }
    const first = Math.min(bins - 1, Math.floor(lo));
    const last = Math.min(bins - 1, Math.ceil(hi) - 1);
    if (first >= last) {
      counts[first]! += c;
      continue;
    }
    const perUnit = c / (hi - lo);
    let given = 0;
    for (let t = first; t < last; t++) {
      const part = perUnit * (Math.min(hi, t + 1) - Math.max(lo, t));
      counts[t]! += part;
      given += part;
    }
    counts[last]! += Math.max(0, c - given);
  }
  return { counts, width };
}
