/**
 * entropy2 discards the first collected histogram bin (the spike of exact zeros after a ReLU), as NVIDIA
 * describes TensorRT doing. Without that, the spike smeared over Q's first level drives the threshold down to a
 * fraction of the range on every ReLU output.
 */
import { describe, expect, it } from 'vitest';
import { entropy2Amax } from '../../src/calibrators/entropy2.js';
import { klScanReference } from '../../src/calibrators/kl.js';
import { HISTOGRAM_BINS, type TensorStatistics } from '../../src/stats/types.js';

/** A ReLU6-like tensor: `zeros` exact zeros, then `perBin` values in each collected bin of [0, 6). */
function relu6(zeros: number, perBin: number): TensorStatistics {
  // absMax just under 6 -> range 8; [0, 6) covers bins 0..6143 of 8192.
  const hist = new Float64Array(HISTOGRAM_BINS);
  const top = (6 / 8) * HISTOGRAM_BINS;
  for (let i = 0; i < top; i++) hist[i] = perBin;
  hist[0]! += zeros;
  const count = zeros + perBin * top;
  return { name: 'relu6', count, nanCount: 0, posInfCount: 0, negInfCount: 0, zeroCount: zeros, min: 0, max: 5.999, absMax: 5.999, range: 8, hist };
}

describe('entropy2 and the zero spike', () => {
  it('keeps (almost) the whole range of a uniform ReLU6 output whatever the number of exact zeros', () => {
    // Uniform mass over [0, 6): clipping anything loses information, so the KL minimum is at the top: i = 2048
    // bins -> amax = 2048.5 * (5.999 / 2048), half a bin above absMax.
    const expected = (2048.5 * 5.999) / 2048;
    for (const zeros of [0, 1e5, 1e7]) {
      expect(entropy2Amax(relu6(zeros, 10), (h, spec) => klScanReference(h, spec))).toBeCloseTo(expected, 9);
    }
  });

  it('would otherwise pick a fraction of the range: the spike is what the discarded bin removes', () => {
    // The same scan on the histogram with the spike left in (bin 0 not discarded) picks a small threshold.
    const s = relu6(1e7, 10);
    const keepSpike = (h: Float64Array, spec: Parameters<typeof klScanReference>[1]) => {
      const withSpike = h.slice();
      withSpike[0]! += 1e7;
      return klScanReference(withSpike, spec);
    };
    expect(entropy2Amax(s, keepSpike)).toBeLessThan(0.5 * 5.999);
  });
});
