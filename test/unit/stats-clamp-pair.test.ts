/**
 * statsAccumulatePair (native/src/stats/histogram.cc, AccumulateFloat32WithClamp): a tensor and its clamp counted
 * in one pass, each value binned once. It must leave both states exactly as counting x and clamp(x, lo, hi)
 * separately does, over any split into batches, with NaN and infinities, and with bounds anywhere relative to
 * the data (inside, outside, at 0, infinite).
 */
import { describe, expect, it } from 'vitest';
import { loadNative } from '../../src/native.js';
import { mulberry32 } from '../../src/datasets/discovery.js';

const native = loadNative();
const BINS = 8192;

function state() {
  const header = new Float64Array(native.statsHeaderSize);
  header[5] = Infinity;
  header[6] = -Infinity;
  return { header, hist: new Float64Array(BINS) };
}

/** Deterministic pseudo-random numbers (mulberry32, as --max-images sampling uses). */
const rng = mulberry32;

function data(random: () => number, n: number, kind: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = random();
    let v: number;
    switch (kind) {
      case 0: // ReLU-like: half negative, a long positive tail
        v = (random() - 0.5) * 2 * Math.exp(4 * random());
        break;
      case 1: // many exact zeros and values at 6
        v = u < 0.3 ? 0 : u < 0.4 ? 6 : u < 0.45 ? -0 : (random() - 0.3) * 20;
        break;
      case 2: // tiny magnitudes (subnormal scales)
        v = (random() - 0.5) * 1e-38;
        break;
      default: // large magnitudes
        v = (random() - 0.5) * 1e30;
    }
    out[i] = v;
  }
  return out;
}

const CLAMPS: Array<[number, number]> = [
  [0, 6],
  [0, Infinity],
  [-1, 1],
  [-10, -5],
  [2, 3],
  [0, 0],
  [-Infinity, 0],
  [-Infinity, Infinity],
  [5, 5],
  [-3.4028234663852886e38, 3.4028234663852886e38],
];

function expectSame(a: ReturnType<typeof state>, b: ReturnType<typeof state>, what: string) {
  expect(Array.from(a.header), `${what} header`).toEqual(Array.from(b.header));
  expect(Buffer.from(a.hist.buffer).equals(Buffer.from(b.hist.buffer)), `${what} histogram`).toBe(true);
}

describe('statsAccumulatePair', () => {
  for (const [lo, hi] of CLAMPS) {
    for (let kind = 0; kind < 4; kind++) {
      it(`clamp [${lo}, ${hi}], data kind ${kind}`, () => {
        const random = rng(1000 * kind + CLAMPS.findIndex((c) => c[0] === lo && c[1] === hi));
        const pair = { root: state(), clamp: state() };
        const apart = { root: state(), clamp: state() };
        // Batches of various sizes, below and above the block and lane thresholds; some with NaN/Inf.
        for (const n of [50_000, 3, 100_000, 20_000, 70_000]) {
          const x = data(random, n, kind);
          if (n === 20_000) {
            x[17] = NaN;
            x[99] = Infinity;
            x[1234] = -Infinity;
          }
          native.statsAccumulatePair(pair.root.header, pair.root.hist, pair.clamp.header, pair.clamp.hist, x, lo, hi);
          native.statsAccumulate(apart.root.header, apart.root.hist, x);
          native.statsAccumulate(apart.clamp.header, apart.clamp.hist, x, lo, hi);
        }
        expectSame(pair.root, apart.root, 'root');
        expectSame(pair.clamp, apart.clamp, 'clamp');
        expect(pair.root.header[0]).toBeGreaterThan(0);
      });
    }
  }

  it('counts a hand-checked example: Clip(0, 6) of [-2, -0, 0, 1, 6, 7, NaN, +Inf] x 2048', () => {
    const base = [-2, -0, 0, 1, 6, 7, NaN, Infinity];
    const x = new Float32Array(base.length * 2048).map((_, i) => base[i % base.length]!);
    const root = state();
    const clamp = state();
    native.statsAccumulatePair(root.header, root.hist, clamp.header, clamp.hist, x, 0, 6);
    // root: finite -2,-0,0,1,6,7 (6 per round); NaN 1; +Inf 1; zeros 2; |x| max 7 -> range 8, bin width 1/1024.
    expect(Array.from(root.header)).toEqual([6 * 2048, 2048, 2048, 0, 2 * 2048, -2, 7, 7, 8]);
    expect(root.hist[0]).toBe(2 * 2048);
    expect(root.hist[1024]).toBe(2048);
    expect(root.hist[2048]).toBe(2048);
    expect(root.hist[6144]).toBe(2048);
    expect(root.hist[7168]).toBe(2048);
    // clamp: 0,0,0,1,6,6 and +Inf -> 6 (finite), NaN stays NaN; zeros 3; max 6 -> range 8.
    expect(Array.from(clamp.header)).toEqual([7 * 2048, 2048, 0, 0, 3 * 2048, 0, 6, 6, 8]);
    expect(clamp.hist[0]).toBe(3 * 2048);
    expect(clamp.hist[1024]).toBe(2048);
    expect(clamp.hist[6144]).toBe(3 * 2048);
  });
});
