import { describe, expect, it } from 'vitest';
import { entropyHistogram, ENTROPY_SPEC } from '../../src/calibrators/entropy.js';
import { entropy2Histogram, ENTROPY2_SPEC } from '../../src/calibrators/entropy2.js';
import { klScan, klScanReference, type KlScanSpec } from '../../src/calibrators/kl.js';
import { klScanMany, klScanNative } from '../../src/calibrators/kl-native.js';
import { ALGORITHM_NAMES, CALIBRATORS, computeAllAmaxes } from '../../src/calibrators/registry.js';
import { StatisticsCollector } from '../../src/stats/collector.js';
import { emptyStatistics } from '../../src/stats/histogram.js';
import { loadNative } from '../../src/native.js';
import { mulberry32 } from '../../src/datasets/discovery.js';

/** Deterministic pseudo-random numbers (mulberry32, as --max-images sampling uses). */
const rng = mulberry32;

/** Histograms of the shapes calibration meets: smooth tails, sparse spikes (8-bit input images), outliers. */
function histograms(): Float64Array[] {
  const r = rng(77);
  const out: Float64Array[] = [];
  for (let t = 0; t < 8; t++) {
    const h = new Float64Array(2048);
    const kind = t % 4;
    for (let j = 0; j < 2048; j++) {
      if (kind === 0) h[j] = Math.floor(1e6 * Math.exp(-j / (30 + 50 * t)) * (0.5 + r()));
      else if (kind === 1) h[j] = j % 8 === 0 ? 1000 + Math.floor(r() * 50) : 0; // spikes: 256 values over 2048 bins
      else if (kind === 2) h[j] = j < 300 ? (r() * 1e4) / 3 : 0; // fractional counts
      else h[j] = r() < 0.05 ? Math.floor(r() * 10) : 0; // sparse noise
    }
    h[2047 - t] += 1; // an outlier
    out.push(h);
  }
  return out;
}

describe('native KL scan', () => {
  it('gives the TypeScript divergences (to 1e-12) and choices, for both variants', () => {
    for (const h of histograms()) {
      for (const spec of [ENTROPY2_SPEC, ENTROPY_SPEC, { ...ENTROPY2_SPEC, emptyQ: undefined }] as KlScanSpec[]) {
        const ts = klScan(h, spec);
        const cc = klScanNative(h, spec);
        expect(cc.bins).toBe(ts.bins);
        for (let k = 0; k < ts.divergences.length; k++) {
          const a = ts.divergences[k]!;
          const b = cc.divergences[k]!;
          if (!Number.isFinite(a)) expect(b).toBe(a);
          else expect(Math.abs(a - b)).toBeLessThan(1e-12);
        }
      }
    }
  });

  it('agrees with the literal definition on small hand-sized cases', () => {
    const h = new Float64Array([1, 0, 2, 3, 5, 3, 1, 7]);
    for (const spec of [ENTROPY2_SPEC, ENTROPY_SPEC]) {
      const small = { ...spec, levels: 2, startBin: 2 };
      const ref = klScanReference(h, small);
      const cc = klScanNative(h, small);
      expect(cc.bins).toBe(ref.bins);
      expect(Array.from(cc.divergences).map((d, k) => d === ref.divergences[k] || Math.abs(d - ref.divergences[k]!) < 1e-14)).toEqual(Array(7).fill(true));
    }
  });

  it('scans many histograms on worker threads with the same choices, whatever the split', async () => {
    const hs = histograms();
    const expected = Int32Array.from(hs, (h) => klScanNative(h, ENTROPY_SPEC).bins);
    for (const parallelism of [1, 2, 3, 8]) expect(await klScanMany(hs, ENTROPY_SPEC, parallelism)).toEqual(expected);
  });

  it('rejects a malformed spec', () => {
    const native = loadNative();
    expect(() => native.klScan(new Float64Array(100), { ...ENTROPY2_SPEC, startBin: 200 })).toThrow(/startBin/);
    expect(() => native.klScan(new Float64Array(100), { ...ENTROPY2_SPEC, grouping: 'odd' })).toThrow(/grouping/);
  });
});

describe('computeAllAmaxes', () => {
  it('gives each calibrator its own compute() result, for every tensor', async () => {
    const r = rng(5);
    const c = new StatisticsCollector();
    const jobs: Array<Promise<void>> = [];
    for (let t = 0; t < 12; t++) {
      const d = new Float32Array(20_000 + t * 1000);
      for (let i = 0; i < d.length; i++) {
        const u = r();
        d[i] = t % 3 === 0 ? Math.max(0, (u - 0.5) * (t + 1)) : t % 3 === 1 ? Math.round(u * 255) / 255 : Math.tan((u - 0.5) * 3);
      }
      jobs.push(c.add(`t${String(t).padStart(2, '0')}`, d));
    }
    await Promise.all(jobs);
    const stats = [...c.result(), emptyStatistics('z-empty')];
    let progress = 0;
    const all = await computeAllAmaxes(ALGORITHM_NAMES, stats, { percentile: 99.9 }, (done) => (progress = done));
    expect(progress).toBe(stats.length);
    for (const a of ALGORITHM_NAMES) {
      const m = all.get(a)!;
      expect([...m.keys()]).toEqual(stats.map((s) => s.name));
      for (const s of stats) expect(m.get(s.name)).toBe(CALIBRATORS[a].compute(s, { percentile: 99.9 }));
    }
    expect(all.get('entropy2')!.get('z-empty')).toBe(0);
    // the entropy histograms share one re-binning
    expect(entropyHistogram(stats[0]!, entropy2Histogram(stats[0]!))!.counts[0]).toBe(entropy2Histogram(stats[0]!)!.counts[1]);
  });

  it('percentile and mse on worker threads give the TypeScript numbers exactly, edge cases included', async () => {
    const r = rng(11);
    const c = new StatisticsCollector();
    const tensor = (n: number, f: (u: number, i: number) => number) => Float32Array.from({ length: n }, (_, i) => f(r(), i));
    await c.add('a-relu', tensor(50_000, (u) => Math.max(0, u - 0.7) * 9)); // 70% exact zeros
    await c.add('b-mostly-zero', tensor(50_000, (u, i) => (i % 5000 === 0 ? u * 3 : 0))); // zeros beyond 99.9%
    await c.add('c-all-zero', new Float32Array(30_000));
    await c.add('d-constant', new Float32Array(30_000).fill(-2.5));
    await c.add('e-one-outlier', tensor(40_000, (u, i) => (i === 777 ? 1e4 : u - 0.5)));
    await c.add('f-tiny', tensor(40_000, (u) => (u - 0.5) * 1e-30));
    const stats = [...c.result(), emptyStatistics('g-empty')];
    for (const p of [99.99, 99.9, 50, 100]) {
      const all = await computeAllAmaxes(['percentile', 'mse'], stats, { percentile: p });
      for (const s of stats) {
        expect(all.get('percentile')!.get(s.name), `${s.name} percentile ${p}`).toBe(CALIBRATORS.percentile.compute(s, { percentile: p }));
        expect(all.get('mse')!.get(s.name), `${s.name} mse`).toBe(CALIBRATORS.mse.compute(s));
      }
    }
  });
});
