import { describe, expect, it } from 'vitest';
import { entropyAmax, ENTROPY_SPEC, suppressZeroBin } from '../../src/calibrators/entropy.js';
import { entropy2Amax, ENTROPY2_SPEC } from '../../src/calibrators/entropy2.js';
import { rebinToAbsMax } from '../../src/calibrators/histogram.js';
import { expandLevels, klDivergence, klScan, klScanReference, levelBounds, type KlScanSpec } from '../../src/calibrators/kl.js';
import { minmaxAmax } from '../../src/calibrators/minmax.js';
import { expectedSquaredError, mseAmax, mseSearch } from '../../src/calibrators/mse.js';
import { HistogramDensity } from '../../src/calibrators/density.js';
import { percentileAmax } from '../../src/calibrators/percentile.js';
import { ALGORITHM_NAMES, CALIBRATORS, computeAllAmaxes, getCalibrator, parseAlgorithms } from '../../src/calibrators/registry.js';
import { UserError } from '../../src/errors.js';
import { StatisticsCollector } from '../../src/stats/collector.js';
import { accumulateReference, emptyStatistics } from '../../src/stats/histogram.js';
import type { TensorStatistics } from '../../src/stats/types.js';
import { mulberry32 } from '../../src/datasets/discovery.js';

/** Deterministic pseudo-random numbers (mulberry32, as --max-images sampling uses). */
const rng = mulberry32;

function statsOf(values: ArrayLike<number>, name = 't'): TensorStatistics {
  const s = emptyStatistics(name);
  accumulateReference(s, Float32Array.from(values));
  return s;
}

async function nativeStats(data: Float32Array): Promise<TensorStatistics> {
  const c = new StatisticsCollector();
  await c.add('t', data);
  return c.get('t')!;
}

/** A hand-made statistics record over `bins` bins of width range/bins. */
function handStats(hist: number[], fields: Partial<TensorStatistics>): TensorStatistics {
  const h = new Float64Array(hist);
  return {
    ...emptyStatistics('hand', hist.length),
    count: hist.reduce((a, b) => a + b, 0),
    hist: h,
    ...fields,
  };
}

const ALL = (s: TensorStatistics) => ({
  minmax: minmaxAmax(s),
  entropy2: entropy2Amax(s),
  entropy: entropyAmax(s),
  percentile: percentileAmax(s, 99.99),
  mse: mseAmax(s),
});

describe('expanding merged levels (Migacz worked example)', () => {
  it('P=[1,0,2,3,5,3,1,7] merged into 2 levels expands to Q=[2,0,2,2,4,4,4,4]', () => {
    // level 0 = bins 0..3: mass 1+0+2+3 = 6 over 3 non-empty bins -> 2 each, the empty bin stays 0
    // level 1 = bins 4..7: mass 5+3+1+7 = 16 over 4 non-empty bins -> 4 each
    expect(Array.from(expandLevels([1, 0, 2, 3, 5, 3, 1, 7], 2))).toEqual([2, 0, 2, 2, 4, 4, 4, 4]);
    expect(Array.from(expandLevels([1, 0, 2, 3, 5, 3, 1, 7], 2, 'proportional'))).toEqual([2, 0, 2, 2, 4, 4, 4, 4]);
  });

  it('groups levels like TensorRT (remainder in the last level) or like pytorch-quantization (even spread)', () => {
    // 10 bins, 3 levels: floor(10/3) = 3 bins each, the last takes the remainder: [0,3) [3,6) [6,10)
    expect(Array.from(levelBounds(10, 3, 'remainder-last'))).toEqual([0, 3, 6, 10]);
    // floor(3j/10): j=0..3 -> 0, 4..6 -> 1, 7..9 -> 2: bounds ceil(l*10/3) = 0, 4, 7
    expect(Array.from(levelBounds(10, 3, 'proportional'))).toEqual([0, 4, 7, 10]);
    // mass of level [6,10) = 1+1+1+5 = 8 over 4 bins
    expect(Array.from(expandLevels([1, 1, 1, 1, 1, 1, 1, 1, 1, 5], 3))).toEqual([1, 1, 1, 1, 1, 1, 2, 2, 2, 2]);
  });

  it('spreads over the non-empty bins of the mask it is given', () => {
    // counts [3,0,1] in one level, mask says bins 0 and 1 are non-empty: 4 / 2 = 2 each, bin 2 stays 0
    expect(Array.from(expandLevels([3, 0, 1], 1, 'remainder-last', [1, 1, 0]))).toEqual([2, 2, 0]);
  });
});

describe('KL scan on a histogram computed by hand (8 bins, 2 levels, candidates 4..8)', () => {
  const h = [1, 0, 2, 3, 5, 3, 1, 7]; // total 22
  const small = (spec: KlScanSpec): KlScanSpec => ({ ...spec, levels: 2, startBin: 4 });
  const kl = klDivergence;

  it('entropy2: P folded, Q over P non-empty bins, levels of floor(i/2) bins, first minimum', () => {
    const expected = [
      // i=4: P=[1,0,2,3+5+3+1+7=19]; levels [0,2) [2,4): Q=[1,0, (2+3)/2, (2+3)/2]
      kl([1, 0, 2, 19], [1, 0, 2.5, 2.5]),
      // i=5: P=[1,0,2,3,16]; levels [0,2) [2,5): Q=[1,0, 10/3,10/3,10/3] (mass 2+3+5 over 3 bins)
      kl([1, 0, 2, 3, 16], [1, 0, 10 / 3, 10 / 3, 10 / 3]),
      // i=6: P=[1,0,2,3,5,11]; levels [0,3) [3,6): Q=[1.5,0,1.5, 11/3,11/3,11/3]
      kl([1, 0, 2, 3, 5, 11], [1.5, 0, 1.5, 11 / 3, 11 / 3, 11 / 3]),
      // i=7: P=[1,0,2,3,5,3,8]; levels [0,3) [3,7): Q=[1.5,0,1.5, 3,3,3,3] (mass 3+5+3+1 over 4)
      kl([1, 0, 2, 3, 5, 3, 8], [1.5, 0, 1.5, 3, 3, 3, 3]),
      // i=8: no outliers, Q = the worked example
      kl(h, [2, 0, 2, 2, 4, 4, 4, 4]),
    ];
    // = [0.43201, 0.38686, 0.14817, 0.09749, 0.15032]: the minimum is at i=7
    expect(expected[3]).toBeCloseTo(0.0974923468, 9);
    for (const scan of [klScan, klScanReference]) {
      const r = scan(h, small(ENTROPY2_SPEC));
      expect(Array.from(r.divergences).map((d, k) => d - expected[k]!).every((d) => Math.abs(d) < 1e-14)).toBe(true);
      expect(r.bins).toBe(7);
    }
  });

  it('entropy: levels floor(2j/i), Q over histogram non-empty bins, last minimum', () => {
    const expected = [
      kl([1, 0, 2, 19], [1, 0, 2.5, 2.5]), // i=4: j=0,1 -> level 0; j=2,3 -> level 1
      kl([1, 0, 2, 3, 16], [1.5, 0, 1.5, 4, 4]), // i=5: j=0..2 -> 0 (mass 3 over 2), j=3,4 -> 1 (mass 8 over 2)
      kl([1, 0, 2, 3, 5, 11], [1.5, 0, 1.5, 11 / 3, 11 / 3, 11 / 3]), // i=6: j=0..2 / 3..5
      kl([1, 0, 2, 3, 5, 3, 8], [2, 0, 2, 2, 3, 3, 3]), // i=7: j=0..3 (mass 6 over 3) / 4..6 (mass 9 over 3)
      kl(h, [2, 0, 2, 2, 4, 4, 4, 4]),
    ];
    // = [0.43201, 0.28356, 0.14817, 0.11355, 0.15032]: the minimum is at i=7
    for (const scan of [klScan, klScanReference]) {
      const r = scan(h, small(ENTROPY_SPEC));
      expect(Array.from(r.divergences).map((d, k) => d - expected[k]!).every((d) => Math.abs(d) < 1e-14)).toBe(true);
      expect(r.bins).toBe(7);
    }
  });

  it('a folded bin whose own count is 0: finite for entropy2, infinite for entropy', () => {
    // h=[4,1,3,0,2], i=4: P=[4,1,3,0+2]. entropy2 spreads level [2,4) (mass 3) over P's non-empty bins 2 and 3;
    // entropy spreads it over the histogram's non-empty bin 2 only, so Q[3]=0 where P[3]=2: infinite.
    const g = [4, 1, 3, 0, 2];
    const e2 = klScan(g, { ...ENTROPY2_SPEC, levels: 2, startBin: 2 }).divergences[4 - 2]!;
    expect(e2).toBeCloseTo(kl([4, 1, 3, 2], [2.5, 2.5, 1.5, 1.5]), 14);
    expect(klScan(g, { ...ENTROPY_SPEC, levels: 2, startBin: 2 }).divergences[4 - 2]).toBe(Infinity);
    expect(klScanReference(g, { ...ENTROPY_SPEC, levels: 2, startBin: 2 }).divergences[4 - 2]).toBe(Infinity);
  });

  it('Q = 0 where P > 0: entropy2 gives Q 1e-4 counts there, entropy makes the candidate infinite', () => {
    // h=[4,1,0,0,2], i=4: P=[4,1,0,0+2]; level [2,4) has no unfolded mass, so Q=[2.5,2.5,0,0] and P[3]=2 > 0.
    // entropy2: q[3] = 1e-4 / |Q| = 1e-4 / 5.
    const g = [4, 1, 0, 0, 2];
    const expected = (4 / 7) * Math.log(4 / 7 / 0.5) + (1 / 7) * Math.log(1 / 7 / 0.5) + (2 / 7) * Math.log(2 / 7 / (1e-4 / 5));
    for (const scan of [klScan, klScanReference]) {
      expect(scan(g, { ...ENTROPY2_SPEC, levels: 2, startBin: 2 }).divergences[4 - 2]).toBeCloseTo(expected, 13);
      expect(scan(g, { ...ENTROPY_SPEC, levels: 2, startBin: 2 }).divergences[4 - 2]).toBe(Infinity);
    }
  });

  it('ties: entropy2 takes the smallest i, entropy the largest', () => {
    // h=[2,2,2,2,0,0,0,0]: for every i >= 4 each level is flat over its non-empty bins, so Q = P and KL = 0;
    // i=2: P=[2,6], Q=[2,2] -> KL>0; i=3: P=[2,2,4], Q=[2,2,2] -> KL>0.
    const t = [2, 2, 2, 2, 0, 0, 0, 0];
    const e2 = klScan(t, { ...ENTROPY2_SPEC, levels: 2, startBin: 2 });
    const e = klScan(t, { ...ENTROPY_SPEC, levels: 2, startBin: 2 });
    expect(e2.divergences[0]).toBeCloseTo(0.25 * Math.log(0.5) + 0.75 * Math.log(1.5), 14);
    expect(e2.bins).toBe(4);
    expect(e.bins).toBe(8);
  });

  it('the fast scan agrees with the literal definition on random histograms (both variants)', () => {
    const r = rng(3);
    for (let trial = 0; trial < 6; trial++) {
      const n = 2048;
      const hist = new Float64Array(n);
      const decay = 20 + r() * 400;
      for (let j = 0; j < n; j++) hist[j] = r() < 0.1 ? 0 : Math.floor(1e5 * Math.exp(-j / decay) * r());
      hist[n - 1 - Math.floor(r() * 100)] = 1; // an outlier
      if (trial % 2) for (let j = 0; j < n; j++) hist[j] = hist[j]! * 0.37; // fractional counts, as after re-binning
      for (const spec of [ENTROPY2_SPEC, ENTROPY_SPEC]) {
        const fast = klScan(hist, spec);
        const ref = klScanReference(hist, spec);
        let worst = 0;
        for (let k = 0; k < ref.divergences.length; k++) {
          const a = ref.divergences[k]!;
          const b = fast.divergences[k]!;
          if (a === Infinity || b === Infinity) expect(a).toBe(b);
          else worst = Math.max(worst, Math.abs(a - b));
        }
        expect(worst).toBeLessThan(1e-12);
        expect(fast.bins).toBe(ref.bins);
      }
    }
  });
});

describe('re-binning to 2048 bins over [0, absMax]', () => {
  it('spreads each source bin over the target bins it overlaps (computed by hand)', () => {
    // 8 source bins of width 1 over [0, 8), absMax = 6 -> 4 target bins of width 1.5.
    // source [1,2) (3 values) covers target [0,1.5) for 0.5 and [1.5,3) for 0.5 -> 1.5 + 1.5
    // source [3,4) (3 values) lies inside target [3,4.5) -> 3
    // source [6,7) holds absMax = 6 on its lower edge: its 2 values are all 6 -> last target bin
    const s = handStats([0, 3, 0, 3, 0, 0, 2, 0], { absMax: 6, range: 8, min: 1, max: 6 });
    const { counts, width } = rebinToAbsMax(s, 4);
    expect(width).toBe(1.5);
    expect(counts[0]).toBeCloseTo(1.5, 12);
    expect(counts[1]).toBeCloseTo(1.5, 12);
    expect(Array.from(counts.subarray(2))).toEqual([3, 2]);
  });

  it('keeps the total mass', async () => {
    const r = rng(8);
    const d = new Float32Array(100_000);
    for (let i = 0; i < d.length; i++) d[i] = (r() - 0.4) * 7 * (r() < 0.001 ? 30 : 1);
    const s = await nativeStats(d);
    const { counts } = rebinToAbsMax(s);
    expect(counts.reduce((a, b) => a + b, 0)).toBeCloseTo(s.count, 6);
  });
});

describe('percentile (computed by hand)', () => {
  // bins of width 1 over [0, 8): 2 exact zeros + 2 values in (0,1) (bin 0), 4 values in [2,3), 2 in [4, 4.5] (absMax)
  const s = handStats([4, 0, 4, 0, 2, 0, 0, 0], { zeroCount: 2, absMax: 4.5, range: 8, min: 0, max: 4.5 });
  it('interpolates linearly inside the bin where the cumulative count reaches p% of count', () => {
    // rank 2 <= 2 exact zeros: the zeros alone reach 20%, so take 20% of the 8 non-zero values instead:
    // rank 2 + 1.6 = 3.6: 1.6 of the 2 values of (0,1) -> 0.8
    expect(percentileAmax(s, 20)).toBeCloseTo(0.8, 14);
    expect(percentileAmax(s, 30)).toBe(0.5); // rank 3: 1 of the 2 values of (0,1) -> halfway
    expect(percentileAmax(s, 50)).toBe(2.25); // rank 5: 1 of 4 values of [2,3) -> 2 + 1/4
    expect(percentileAmax(s, 90)).toBe(4.25); // rank 9: 1 of 2 values of [4, 4.5] -> 4 + 0.5 * 0.5
    expect(percentileAmax(s, 100)).toBe(4.5);
  });
  it('never gives 0 for a tensor that has non-zero values', () => {
    // 199 990 zeros and the values 1..10: 99.99% of 200 000 values are zeros, so the percentile is taken over the
    // 10 non-zero values: rank 9.999 -> 0.999 of the way through the value 10 (alone in its bin [10, 10])
    const z = statsOf([...new Array(199_990).fill(0), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(percentileAmax(z, 99.99)).toBe(10);
    expect(percentileAmax(z, 50)).toBeGreaterThan(4.9);
    expect(percentileAmax(z, 50)).toBeLessThan(5.1);
  });

  it('rejects a percentile outside (0, 100]', () => {
    expect(() => percentileAmax(s, 0)).toThrow(UserError);
    expect(() => percentileAmax(s, 101)).toThrow(/Expected a number greater than 0 and at most 100 for --percentile but received 101/);
    expect(() => CALIBRATORS.percentile.compute(s, { percentile: Number.NaN })).toThrow(UserError);
  });
});

describe('mse (computed by hand)', () => {
  // bins of width 1 over [0, 8): 2 values uniform in [1, 2), 2 values exactly 4 (= absMax, on a bin edge)
  const s = handStats([0, 2, 0, 0, 2, 0, 0, 0], { absMax: 4, range: 8, min: 1, max: 4 });
  const density = new HistogramDensity(s);
  it('expected squared error with 1 level (q in {0, A})', () => {
    // sums over all values: count 4, sum x = 2*1.5 + 2*4 = 11, sum x^2 = 2*(1.5^2 + 1/12) + 2*16 = 110/3
    // A=1: everything clips to 1: 110/3 - 2*1*11 + 1*4 = 56/3
    expect(expectedSquaredError(density, 1, 1)).toBeCloseTo(56 / 3, 12);
    // A=2: values >= 1 go to 2: 110/3 - 4*11 + 4*4 = 26/3
    expect(expectedSquaredError(density, 2, 1)).toBeCloseTo(26 / 3, 12);
    // A=3: [1,1.5) rounds to 0: 1 value, sum x^2 = (1 + 1.5 + 2.25)/3 = 19/12;
    //      [1.5,2) and the 4s go to 3: count 3, sum x = 11 - 1.25, sum x^2 = 110/3 - 19/12;
    //      (110/3 - 19/12) - 6*(9.75) + 9*3 = 43/12; total 19/12 + 43/12 = 31/6
    expect(expectedSquaredError(density, 3, 1)).toBeCloseTo(31 / 6, 12);
    // A=4: [1,2) rounds to 0: sum x^2 = 2*(1.5^2 + 1/12) = 14/3; the 4s are exact
    expect(expectedSquaredError(density, 4, 1)).toBeCloseTo(14 / 3, 12);
    const r = mseSearch(s, { qmax: 1, candidates: 4, startBin: 1 }); // A = 1, 2, 3, 4
    expect(Array.from(r.errors).map((e) => +e.toFixed(9))).toEqual([56 / 3, 26 / 3, 31 / 6, 14 / 3].map((e) => +e.toFixed(9)));
    expect(r.amax).toBe(4);
  });
  it('counts rounding noise s^2/12 between s/2 and A - s/2', () => {
    // 2 levels, A=4: step 2; [1,2) lies in [s/2, A - s/2) = [1, 3): 2 values x 4/12; the 4s are exact: 2/3
    expect(expectedSquaredError(density, 4, 2)).toBeCloseTo(2 / 3, 12);
    // A=2: step 1; [1,1.5) rounding noise 1/12; [1.5,2) and the 4s clip to 2:
    // count 3, sum x = 9.75, sum x^2 = 110/3 - 19/12 -> 421/12 - 4*9.75 + 4*3 = 97/12; total 98/12
    expect(expectedSquaredError(density, 2, 2)).toBeCloseTo(98 / 12, 12);
  });
});

describe('every calibrator on the cases that matter', () => {
  it('no data, all NaN/Inf, and all zeros give amax 0', () => {
    for (const s of [emptyStatistics('none'), statsOf([NaN, Infinity, -Infinity]), statsOf(new Array(1000).fill(0))]) {
      expect(ALL(s)).toEqual({ minmax: 0, entropy2: 0, entropy: 0, percentile: 0, mse: 0 });
    }
  });

  it('a constant tensor: every value is the amax (entropy2 adds its half bin)', () => {
    for (const c of [3, -3]) {
      const s = statsOf(new Array(1000).fill(c));
      // 3 = 6144 * 2^-11 sits on a bin edge: all 1000 values go to the last of the 2048 bins, and only i = 2048
      // gives a finite divergence (for i < 2048 the folded bin has no unfolded mass in its level).
      // entropy2: (2048 + 0.5) * 3/2048; entropy: 2048 * 3/2048; mse: A = 3 has zero error, any A < 3 clips.
      expect(ALL(s)).toEqual({ minmax: 3, entropy2: (2048.5 * 3) / 2048, entropy: 3, percentile: 3, mse: 3 });
    }
  });

  it('a single outlier: minmax keeps it, entropy, entropy2, percentile and mse clip it', async () => {
    const r = rng(12);
    const d = new Float32Array(1_000_001);
    for (let i = 0; i < d.length; i += 2) {
      const u = Math.sqrt(-2 * Math.log(1 - r())); // |N(0,1)| pairs (Box-Muller)
      d[i] = u * Math.cos(2 * Math.PI * r());
      if (i + 1 < d.length) d[i + 1] = u * Math.sin(2 * Math.PI * r());
    }
    d[123] = 20;
    const a = ALL(await nativeStats(d));
    expect(a.minmax).toBe(20);
    // the bulk ends near 5 = bin 512 of 2048 bins of width 20/2048: the scans have candidates inside it
    for (const k of ['entropy2', 'entropy', 'mse', 'percentile'] as const) {
      expect(a[k]).toBeGreaterThan(2.5);
      expect(a[k]).toBeLessThan(6);
    }
  });

  it('an outlier far beyond a narrow bulk: entropy2 clips it, entropy (pytorch-quantization) keeps it', async () => {
    const r = rng(13);
    const d = new Float32Array(1_000_001);
    for (let i = 0; i < d.length; i++) d[i] = r(); // uniform [0, 1)
    d[123] = 100;
    const a = ALL(await nativeStats(d));
    // 2048 bins of width 100/2048: the bulk ends at bin 20, below the first candidate (128). Every candidate
    // i < 2048 folds the outlier into a level with no unfolded mass (Q = 0 where P > 0): infinite for entropy,
    // 1e-4 counts for entropy2, which then keeps as few bins as it may: i = 128 -> (128 + 0.5) * 100/2048.
    expect(a.entropy).toBe(100);
    expect(a.entropy2).toBe((128.5 * 100) / 2048);
    // mse weighs the one outlier's clipping error (100 - A)^2 against the rounding noise of the 10^6 others,
    // about 10^6 * (A/127)^2 / 12: the derivative vanishes at A = 100 / (1 + 10^6 / (12 * 127^2)) = 16.2
    expect(a.mse).toBeGreaterThan(16.0);
    expect(a.mse).toBeLessThan(16.4);
    // 99.99% of 1000001 values = rank 999901.0: inside the uniform bulk, at ~0.9999
    expect(a.percentile).toBeGreaterThan(0.999);
    expect(a.percentile).toBeLessThan(1);
  });

  it('NaN and Inf are only counted: the amaxes are those of the finite values', async () => {
    const r = rng(4);
    const d = new Float32Array(200_000);
    for (let i = 0; i < d.length; i++) d[i] = (r() - 0.3) * 5;
    const withBad = new Float32Array([...d.subarray(0, 1000), NaN, Infinity, -Infinity, ...d.subarray(1000)]);
    const clean = await nativeStats(d);
    const dirty = await nativeStats(withBad);
    expect(dirty.nanCount + dirty.posInfCount + dirty.negInfCount).toBe(3);
    expect(ALL(dirty)).toEqual(ALL(clean));
  });

  it('a Gaussian gets sensible ranges (sigma = 1)', async () => {
    const r = rng(99);
    const d = new Float32Array(1_000_000);
    for (let i = 0; i < d.length; i += 2) {
      const u = Math.sqrt(-2 * Math.log(1 - r()));
      const v = 2 * Math.PI * r();
      d[i] = u * Math.cos(v);
      d[i + 1] = u * Math.sin(v);
    }
    const a = ALL(await nativeStats(d));
    // two-sided 99.99% of |x| for N(0,1) is 3.89
    expect(a.percentile).toBeGreaterThan(3.7);
    expect(a.percentile).toBeLessThan(4.1);
    for (const k of ['entropy2', 'entropy', 'mse'] as const) {
      expect(a[k]).toBeGreaterThan(2);
      expect(a[k]).toBeLessThan(a.minmax);
    }
  });
});

describe('registry', () => {
  it('names every algorithm with its TensorRT cache name', () => {
    expect(ALGORITHM_NAMES).toEqual(['entropy2', 'entropy', 'minmax', 'percentile', 'mse']);
    expect(Object.fromEntries(ALGORITHM_NAMES.map((n) => [n, [CALIBRATORS[n].cacheName, CALIBRATORS[n].trtNative]]))).toEqual({
      entropy2: ['EntropyCalibration2', true],
      entropy: ['EntropyCalibration', true],
      minmax: ['MinMaxCalibration', true],
      percentile: ['PercentileCalibration', false],
      mse: ['MSECalibration', false],
    });
    expect(parseAlgorithms('all')).toEqual(ALGORITHM_NAMES);
    expect(parseAlgorithms('mse, minmax,mse')).toEqual(['mse', 'minmax']);
    expect(() => getCalibrator('kl')).toThrow('Expected one of entropy2, entropy, minmax, percentile, mse (or all) for --algo but received "kl"');
  });

  it('computes every algorithm for every tensor', async () => {
    const a = statsOf([0, 1, 2, 3, -4, 0.5], 'a');
    const b = statsOf([7], 'b');
    const out = await computeAllAmaxes(ALGORITHM_NAMES, [a, b], { percentile: 100 });
    expect(out.get('minmax')).toEqual(new Map([['a', 4], ['b', 7]]));
    expect(out.get('percentile')).toEqual(new Map([['a', 4], ['b', 7]]));
    expect(out.get('entropy2')!.get('a')).toBe(entropy2Amax(a));
  });

  it('suppresses the zero spike for entropy only', () => {
    expect(Array.from(suppressZeroBin(new Float64Array([900, 5, 3])))).toEqual([5, 5, 3]);
  });
});
