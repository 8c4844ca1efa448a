/**
 * TensorNoise's native loop (native/src/stats/stats_binding.cc noiseSums) against its JavaScript loop: the same
 * sums bit for bit, on data with every case the loops branch on (non-finite values, values beyond FP16's range,
 * INT8 saturation, float16 subnormals, exact halves of the INT8 step, negative zero), for several scales and for
 * the range-only form; and one case worked out by hand.
 */
import { describe, expect, it } from 'vitest';
import { TensorNoise } from '../../src/sensitivity/noise.js';

const FIELDS = ['signal', 'int8Noise', 'fp16SampleSignal', 'fp16Noise', 'absMax', 'fp16Overflow', 'saturated', 'count', 'nonFinite'] as const;

function awkwardData(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const k = rand();
    if (k < 0.01) d[i] = [NaN, Infinity, -Infinity][i % 3]!;
    else if (k < 0.03) d[i] = (rand() - 0.5) * 2e5; // beyond FP16's 65504, and saturating
    else if (k < 0.06) d[i] = (rand() - 0.5) * 2 ** -16; // float16 subnormals
    else if (k < 0.08) d[i] = (Math.floor(rand() * 40) - 20 + 0.5) * 0.125; // exact halves of a 0.125 step
    else if (k < 0.09) d[i] = -0;
    else d[i] = (rand() - 0.5) * 12;
  }
  return d;
}

describe('TensorNoise: native and JavaScript loops', () => {
  it('give the same sums, bit for bit, whatever the scale', () => {
    const data = awkwardData(50_003, 7);
    for (const scale of [0.125, 0.05, 1e-3, 3.7, undefined]) {
      const native = new TensorNoise(scale);
      const js = new TensorNoise(scale);
      // Two calls, as addImages makes one per image: the sums carry over and the FP16 sample restarts.
      native.add(data.subarray(0, 20_000));
      native.add(data.subarray(20_000));
      js.addInJs(data.subarray(0, 20_000));
      js.addInJs(data.subarray(20_000));
      for (const f of FIELDS) expect(native[f], `${f}, scale ${scale}`).toBe(js[f]);
      expect(native.count + native.nonFinite).toBe(data.length);
    }
  });

  it('matches a case worked out by hand', () => {
    // scale 0.5: 1 -> q 2, no error; 0.75 -> 1.5 rounds to 2 (half to even), error -0.25; 100 -> 200 saturates at
    // 127, error 100 - 63.5 = 36.5; NaN is left out. FP16 sample: element 0 only (stride 8), 1 is exact in float16.
    const n = new TensorNoise(0.5);
    n.add(new Float32Array([1, 0.75, 100, NaN]));
    expect(n.signal).toBe(1 + 0.5625 + 10000);
    expect(n.int8Noise).toBe(0.0625 + 36.5 * 36.5);
    expect(n.saturated).toBe(1);
    expect(n.nonFinite).toBe(1);
    expect(n.count).toBe(3);
    expect(n.absMax).toBe(100);
    expect(n.fp16SampleSignal).toBe(1);
    expect(n.fp16Noise).toBe(0);
    expect(n.fp16Overflow).toBe(0);
  });
});
