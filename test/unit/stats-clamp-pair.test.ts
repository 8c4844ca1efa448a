/**
 * statsAccumulatePair (native/src/stats/histogram.cc, AccumulateFloat32WithClamp): a tensor and its clamp counted
 * in one pass, each value binned once. It must leave both states exactly as counting x and clamp(x, lo, hi)
 * separately does, over any split into batches, with NaN and infinities, and with bounds anywhere relative to
 * the data (inside, outside, at 0, infinite).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
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

/**
 * The vector loops run as AVX2 where the CPU has it, SSE2 otherwise (TRT_CALIB_SIMD=sse2 forces SSE2): both must
 * leave the same bytes. Every state of a run is hashed, here and in a child process with SSE2 forced.
 */
const ROOT = path.resolve(__dirname, '../..');
const SIMD_CHILD = `
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { loadNative } from './dist/native.js';
const native = loadNative();
const bytes = readFileSync(process.argv[1]);
const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
const hash = createHash('sha256');
const clamps = [[0, 6], [-1, 1], [2, 3], [-Infinity, 0], [0, Infinity]];
for (const [lo, hi] of clamps) {
  const st = () => { const h = new Float64Array(native.statsHeaderSize); h[5] = Infinity; h[6] = -Infinity; return [h, new Float64Array(8192)]; };
  const [rh, rt] = st(), [ch, ct] = st(), [sh, stt] = st();
  for (let off = 0, n = 1; off < all.length; off += n, n = (n * 7 + 13) % 40_000) {
    const x = all.subarray(off, Math.min(all.length, off + n));
    native.statsAccumulatePair(rh, rt, ch, ct, x, lo, hi);
    native.statsAccumulate(sh, stt, x);
  }
  for (const a of [rh, rt, ch, ct, sh, stt]) hash.update(new Uint8Array(a.buffer));
}
process.stdout.write(hash.digest('hex'));
`;

describe('vector loops', () => {
  it.runIf(existsSync(path.join(ROOT, 'dist', 'native.js')))('AVX2 and SSE2 give the same statistics, byte for byte', () => {
    const random = rng(4242);
    const parts = [0, 1, 2, 3].map((kind) => data(random, 150_001 + kind, kind));
    const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    let off = 0;
    for (const p of parts) {
      all.set(p, off);
      off += p.length;
    }
    all[100_003] = NaN;
    all[200_017] = -Infinity;
    const dir = mkdtempSync(path.join(tmpdir(), 'trt-calib-simd-'));
    try {
      const file = path.join(dir, 'values.f32');
      writeFileSync(file, new Uint8Array(all.buffer));
      const run = (simd?: string) => {
        const env = { ...process.env };
        if (simd) env.TRT_CALIB_SIMD = simd;
        else delete env.TRT_CALIB_SIMD;
        return execFileSync(process.execPath, ['--input-type=module', '-e', SIMD_CHILD, file], { cwd: ROOT, env, encoding: 'utf8' });
      };
      const sse2 = run('sse2');
      expect(sse2).toMatch(/^[0-9a-f]{64}$/);
      expect(run()).toBe(sse2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
