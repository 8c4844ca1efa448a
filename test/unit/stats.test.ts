import { describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { StatisticsCollector } from '../../src/stats/collector.js';
import {
  accumulateReference,
  emptyStatistics,
  frexpExponent,
  growHistogram,
  halfToNumber,
  mergeInto,
  rangeFor,
  statisticsProblem,
} from '../../src/stats/histogram.js';
import { HISTOGRAM_BINS, type TensorStatistics } from '../../src/stats/types.js';
import { mulberry32 } from '../../src/datasets/discovery.js';

/** Deterministic pseudo-random numbers (mulberry32, as --max-images sampling uses). */
const rng = mulberry32;

/** Activation-like data: ReLU zeros, a bulk, a tail, exact powers of two, subnormals, -0. */
function activations(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = r();
    if (u < 0.3) d[i] = 0;
    else if (u < 0.31) d[i] = -0;
    else if (u < 0.32) d[i] = 2 ** Math.floor(r() * 8 - 4) * (r() < 0.5 ? -1 : 1);
    else if (u < 0.325) d[i] = 1e-40 * r(); // float32 subnormals
    else d[i] = (r() - 0.2) * scale * (r() < 0.01 ? 40 : 1);
  }
  return d;
}

function bytesOf(s: TensorStatistics): Buffer {
  const head = new Float64Array([s.count, s.nanCount, s.posInfCount, s.negInfCount, s.zeroCount, s.min, s.max, s.absMax, s.range]);
  return Buffer.concat([Buffer.from(head.buffer), Buffer.from(s.hist.buffer, s.hist.byteOffset, s.hist.byteLength)]);
}

function reference(name: string, ...chunks: Array<Float32Array | Uint16Array>): TensorStatistics {
  const s = emptyStatistics(name);
  for (const c of chunks) accumulateReference(s, c);
  return s;
}

describe('power-of-two ranges', () => {
  it('range is the smallest power of two strictly above absMax', () => {
    expect(rangeFor(0)).toBe(0);
    expect(rangeFor(1)).toBe(2); // absMax exactly a power of two: range must be strictly greater
    expect(rangeFor(0.75)).toBe(1);
    expect(rangeFor(1.5)).toBe(2);
    expect(rangeFor(2 ** -149)).toBe(2 ** -148); // smallest float32 subnormal
    expect(rangeFor(3.4028234663852886e38)).toBe(2 ** 128); // largest float32
    expect(rangeFor(5e-324)).toBe(2 ** -1073); // smallest double subnormal
    expect(frexpExponent(1)).toBe(1);
    expect(frexpExponent(0.5)).toBe(0);
    expect(frexpExponent(0.4999)).toBe(-1);
  });

  it('growing the range merges neighbouring bins exactly', () => {
    const h = new Float64Array([1, 2, 3, 4, 5, 6, 7, 8]);
    growHistogram(h, 1, 4); // factor 4: bins of 4
    expect(Array.from(h)).toEqual([10, 26, 0, 0, 0, 0, 0, 0]);
    const g = new Float64Array([1, 2, 3, 4, 5, 6, 7, 8]);
    growHistogram(g, 1, 2 ** 10); // wider than all bins: everything in bin 0
    expect(Array.from(g)).toEqual([36, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('decodes half precision', () => {
    expect(halfToNumber(0x3c00)).toBe(1);
    expect(halfToNumber(0xc000)).toBe(-2);
    expect(halfToNumber(0x7bff)).toBe(65504);
    expect(halfToNumber(0x0001)).toBe(2 ** -24);
    expect(halfToNumber(0x7c00)).toBe(Infinity);
    expect(halfToNumber(0xfc00)).toBe(-Infinity);
    expect(halfToNumber(0x7e00)).toBeNaN();
  });
});

describe('reference accumulator', () => {
  it('counts a small tensor exactly (computed by hand)', () => {
    // values 0, -0, 0.5, -1.5, 3, NaN, +Inf, -Inf with 8 bins:
    // finite 5, zeros 2, min -1.5, max 3, absMax 3 -> range 4, bin width 0.5:
    // |x| 0,0 -> bin 0; 0.5 -> bin 1; 1.5 -> bin 3; 3 -> bin 6.
    const s = emptyStatistics('t', 8);
    accumulateReference(s, new Float32Array([0, -0, 0.5, -1.5, 3, NaN, Infinity, -Infinity]));
    expect(s).toMatchObject({ count: 5, zeroCount: 2, nanCount: 1, posInfCount: 1, negInfCount: 1, min: -1.5, max: 3, absMax: 3, range: 4 });
    expect(Array.from(s.hist)).toEqual([2, 1, 0, 1, 0, 0, 1, 0]);
    // a later value of 5 doubles the range to 8 (bin width 1): bins merge in pairs, then 5 -> bin 5
    accumulateReference(s, new Float32Array([5]));
    expect(s.range).toBe(8);
    expect(Array.from(s.hist)).toEqual([3, 1, 0, 1, 0, 1, 0, 0]);
    expect(statisticsProblem(s, 8)).toBeUndefined();
  });

  it('reports zeros as +0 and ignores NaN/Inf entirely', () => {
    const s = reference('t', new Float32Array([-0, NaN, -Infinity]));
    expect(Object.is(s.min, 0)).toBe(true);
    expect(Object.is(s.max, 0)).toBe(true);
    expect(s).toMatchObject({ count: 1, absMax: 0, range: 0, nanCount: 1, negInfCount: 1 });
    const none = reference('u', new Float32Array([NaN, Infinity]));
    expect(none).toMatchObject({ count: 0, min: Infinity, max: -Infinity, absMax: 0, range: 0 });
    expect(Array.from(none.hist).every((c) => c === 0)).toBe(true);
  });
});

describe('native kernel', () => {
  it('matches the reference bit for bit, synchronously and on a worker thread', async () => {
    for (const [seed, n] of [
      [1, 10],
      [2, 1000],
      [3, 70_000],
      [4, 300_001],
    ] as const) {
      const data = activations(n, seed, 3);
      const expected = reference('t', data);
      const sync = new StatisticsCollector({ asyncThreshold: Infinity });
      sync.addSync('t', data);
      const async = new StatisticsCollector({ asyncThreshold: 0 });
      await async.add('t', data);
      expect(bytesOf(sync.get('t')!).equals(bytesOf(expected))).toBe(true);
      expect(bytesOf(async.get('t')!).equals(bytesOf(expected))).toBe(true);
    }
  });

  it('classifies NaN, +Inf and -Inf without letting them into min/max/histogram', async () => {
    const data = activations(100_000, 9);
    data[10] = NaN;
    data[20] = Infinity;
    data[30] = -Infinity;
    data[40] = NaN;
    const c = new StatisticsCollector();
    await c.add('t', data);
    const s = c.get('t')!;
    expect(s.nanCount).toBe(2);
    expect(s.posInfCount).toBe(1);
    expect(s.negInfCount).toBe(1);
    expect(s.count).toBe(100_000 - 4);
    expect(Number.isFinite(s.min) && Number.isFinite(s.max)).toBe(true);
    expect(bytesOf(s).equals(bytesOf(reference('t', data)))).toBe(true);
    expect(statisticsProblem(s)).toBeUndefined();
  });

  it('handles blocks of zeros before the first non-zero value, and a range that grows block by block', async () => {
    const d = new Float32Array(200_000); // 40 000 zeros (whole blocks), then values that keep doubling the range
    for (let i = 40_000; i < d.length; i++) d[i] = ((i % 1000) / 1000) * 2 ** Math.floor((i - 40_000) / 20_000) * (i % 2 ? -1 : 1);
    const c = new StatisticsCollector({ asyncThreshold: 0 });
    await c.add('t', d);
    expect(bytesOf(c.get('t')!).equals(bytesOf(reference('t', d)))).toBe(true);
    const z = new StatisticsCollector();
    await z.add('z', new Float32Array(100_000));
    expect(z.get('z')).toMatchObject({ count: 100_000, zeroCount: 100_000, absMax: 0, range: 0 });
    expect(z.get('z')!.hist[0]).toBe(100_000);
  });

  it('handles extreme magnitudes (tiny subnormal and huge ranges) exactly', async () => {
    const tiny = new Float32Array([1e-45, 2e-45, 0, 1.4e-45]); // absMax = 2^-148 class values
    const huge = new Float32Array([3.4e38, -3.4e38, 1, 1e30]);
    for (const data of [tiny, huge]) {
      const c = new StatisticsCollector({ asyncThreshold: 0 });
      await c.add('t', data);
      expect(bytesOf(c.get('t')!).equals(bytesOf(reference('t', data)))).toBe(true);
    }
  });

  it('accepts float16 (Uint16Array bits) with the same results as the float32 values', async () => {
    const r = rng(5);
    const half = new Uint16Array(50_000);
    for (let i = 0; i < half.length; i++) half[i] = Math.floor(r() * 0x7c00) | (r() < 0.5 ? 0x8000 : 0);
    half[7] = 0x7e00; // NaN
    half[8] = 0x7c00; // +Inf
    const asFloat = Float32Array.from(half, halfToNumber);
    const c = new StatisticsCollector({ asyncThreshold: 0 });
    await c.add('h', half);
    await c.add('f', asFloat);
    const h = c.get('h')!;
    expect(h.nanCount).toBe(1);
    expect(h.posInfCount).toBe(1);
    expect(bytesOf({ ...h, name: 'f' }).equals(bytesOf(c.get('f')!))).toBe(true);
  });
});

describe('determinism', () => {
  const data = activations(400_000, 11, 2);
  // make the range grow late: the largest value comes last in the original order
  data[data.length - 1] = 1000;

  function chunks(arr: Float32Array, sizes: number[]): Float32Array[] {
    const out: Float32Array[] = [];
    let at = 0;
    let k = 0;
    while (at < arr.length) {
      const n = sizes[k++ % sizes.length]!;
      out.push(arr.slice(at, at + n));
      at += n;
    }
    return out;
  }

  it('gives identical bytes whatever the chunk sizes, order, sync/async and concurrency', async () => {
    const whole = new StatisticsCollector();
    await whole.add('t', data);
    const expected = bytesOf(whole.get('t')!);

    const splits = [[4096], [1000, 7, 65_536], [200_000], [3, 100_003, 17]];
    for (const sizes of splits) {
      for (const order of ['forward', 'reverse', 'shuffled'] as const) {
        const parts = chunks(data, sizes);
        if (order === 'reverse') parts.reverse();
        if (order === 'shuffled') {
          const r = rng(sizes.length);
          for (let i = parts.length - 1; i > 0; i--) {
            const j = Math.floor(r() * (i + 1));
            [parts[i], parts[j]] = [parts[j]!, parts[i]!];
          }
        }
        for (const threshold of [0, 4096, Infinity]) {
          const c = new StatisticsCollector({ asyncThreshold: threshold });
          // all in flight at once: the collector must serialise updates of one tensor
          await Promise.all(parts.map((p) => c.add('t', p)));
          expect(bytesOf(c.get('t')!).equals(expected)).toBe(true);
        }
      }
    }
    // one value at a time, through the reference accumulator
    const single = emptyStatistics('t');
    for (const p of chunks(data.subarray(0, 5000), [1])) accumulateReference(single, p);
    const c5 = new StatisticsCollector();
    await c5.add('t', data.subarray(0, 5000));
    expect(bytesOf(c5.get('t')!).equals(bytesOf(single))).toBe(true);
  });

  it('merging collectors equals collecting everything in one', async () => {
    const a = new StatisticsCollector();
    const b = new StatisticsCollector();
    const all = new StatisticsCollector();
    const x = activations(50_000, 21, 0.01);
    const y = activations(60_000, 22, 50);
    await Promise.all([a.add('t', x), b.add('t', y), b.add('only-b', x), all.add('t', x), all.add('t', y), all.add('only-b', x)]);
    a.merge(b);
    const merged = a.result();
    const direct = all.result();
    expect(merged.map((s) => s.name)).toEqual(['only-b', 't']);
    for (let i = 0; i < merged.length; i++) expect(bytesOf(merged[i]!).equals(bytesOf(direct[i]!))).toBe(true);
    // and the TS merge used by the store agrees
    const m = emptyStatistics('t');
    mergeInto(m, reference('t', y));
    mergeInto(m, reference('t', x));
    expect(bytesOf(m).equals(bytesOf(direct[1]!))).toBe(true);
  });
});

describe('StatisticsCollector', () => {
  it('keeps tensors apart, sorts results by name and bounds memory by tensors x bins', async () => {
    const c = new StatisticsCollector();
    const names = ['conv2', 'Conv1', 'b/relu:0', 'a'];
    await Promise.all(names.map((n, i) => c.add(n, activations(80_000, 30 + i, i + 1))));
    for (let k = 0; k < 3; k++) await Promise.all(names.map((n, i) => c.add(n, activations(80_000, 40 + i, i + 1))));
    expect(c.result().map((s) => s.name)).toEqual(['Conv1', 'a', 'b/relu:0', 'conv2']);
    expect(c.memoryBytes).toBe(4 * (HISTOGRAM_BINS + 9) * 8);
    for (const s of c.result()) {
      expect(s.count).toBe(4 * 80_000);
      expect(statisticsProblem(s)).toBeUndefined();
    }
  });

  it('refuses results while updates are pending, and bad arguments with a clear message', async () => {
    const c = new StatisticsCollector({ asyncThreshold: 0 });
    const p = c.add('t', activations(100_000, 1));
    expect(() => c.result()).toThrow(/await flush\(\) first/);
    await p;
    await c.flush();
    expect(c.result()).toHaveLength(1);
    expect(() => c.addSync('t', new Float64Array(3) as unknown as Float32Array)).toThrow(UserError);
    expect(() => c.addSync('t', new Float64Array(3) as unknown as Float32Array)).toThrow(/Expected a Float32Array .* for data but received "Float64Array"/);
    expect(() => c.addSync('', new Float32Array(3))).toThrow(/Expected a non-empty tensor name for name/);
    await expect(c.addTensor('i', { dtype: 'int32', dims: [2], data: new Int32Array(2) })).rejects.toThrow(/float32, float16 or float64/);
    await c.addTensor('d', { dtype: 'float64', dims: [2], data: new Float64Array([1.5, -2]) });
    expect(c.get('d')).toMatchObject({ count: 2, min: -2, max: 1.5 });
  });

  it('starts from stored statistics and continues exactly', async () => {
    const x = activations(30_000, 3);
    const y = activations(30_000, 4, 9);
    const first = new StatisticsCollector();
    await first.add('t', x);
    const resumed = StatisticsCollector.from(first.result());
    await resumed.add('t', y);
    expect(bytesOf(resumed.get('t')!).equals(bytesOf(reference('t', x, y)))).toBe(true);
  });
});
