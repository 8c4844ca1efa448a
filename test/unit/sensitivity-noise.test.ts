import { describe, expect, it } from 'vitest';
import { float16BitsToFloat32, float32ToFloat16Bits } from '../../src/onnx/fp16.js';
import { TensorNoise, fakeQuantInt8, roundToFloat16 } from '../../src/sensitivity/noise.js';

describe('rounding', () => {
  it('rounds to float16 exactly as the FP16 converter does (normal, subnormal, overflow)', () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const values = [0, -0, 1, -1, 65504, 65519, 65520, -70000, 1e-8, 2 ** -24, 3 * 2 ** -25, 2 ** -14, 0.1, 1 / 3];
    for (let i = 0; i < 2000; i++) values.push((rand() - 0.5) * 10 ** (rand() * 12 - 8));
    for (const v of values) {
      const x = Math.fround(v);
      expect(roundToFloat16(x)).toBe(float16BitsToFloat32(float32ToFloat16Bits(x)));
    }
  });

  it('fake-quantizes like QuantizeLinear -> DequantizeLinear (half to even, saturating to [-128, 127])', () => {
    // Scale 0.5 keeps every quotient exact.
    expect(fakeQuantInt8(1.25, 0.5)).toBe(1); // 2.5 -> 2
    expect(fakeQuantInt8(1.75, 0.5)).toBe(2); // 3.5 -> 4
    expect(fakeQuantInt8(-1.25, 0.5)).toBe(-1); // -2.5 -> -2
    expect(fakeQuantInt8(1.3, 0.5)).toBe(1.5);
    expect(fakeQuantInt8(100, 0.5)).toBe(63.5); // 200 -> 127
    expect(fakeQuantInt8(-100, 0.5)).toBe(-64); // -200 -> -128
  });
});

describe('TensorNoise', () => {
  it('measures INT8 noise, saturation and range by hand', () => {
    // scale 0.5: 0.2 -> 0 (err 0.2), 1.3 -> 1.5 (err -0.2), 100 -> 200 steps, saturated to 127 = 63.5 (err 36.5),
    // -64.5 -> -129 steps, saturated to -128 = -64 (err -0.5).
    const n = new TensorNoise(0.5);
    n.add(new Float32Array([0.2, 1.3]));
    n.add(new Float32Array([100, -64.5, Number.NaN]));
    const x = [0.2, 1.3, 100, -64.5].map(Math.fround);
    const e = [x[0]! - 0, x[1]! - 1.5, x[2]! - 63.5, x[3]! + 64];
    const signal = x.reduce((s, v) => s + v * v, 0);
    const noise = e.reduce((s, v) => s + v * v, 0);
    expect(n.count).toBe(4);
    expect(n.nonFinite).toBe(1);
    expect(n.saturated).toBe(2);
    expect(n.absMax).toBe(100);
    expect(n.int8SnrDb!).toBeCloseTo(10 * Math.log10(signal / noise), 10);
  });

  it('samples FP16 noise on every 8th element and counts values beyond the FP16 range', () => {
    const n = new TensorNoise();
    const data = new Float32Array(16).fill(1);
    data[0] = 1 + 2 ** -12; // float16 keeps 10 fraction bits (steps of 2^-10 at 1): rounds to 1, error 2^-12
    data[8] = 1e5; // overflows float16: counted, not in the noise
    data[3] = 1 + 2 ** -12; // not sampled
    n.add(data);
    expect(n.int8SnrDb).toBeUndefined();
    expect(n.fp16Overflow).toBe(1);
    expect(n.absMax).toBe(1e5);
    expect(n.fp16Noise).toBe(2 ** -24);
    expect(n.fp16SampleSignal).toBe((1 + 2 ** -12) ** 2);
    expect(n.fp16SnrDb).toBeCloseTo(10 * Math.log10((1 + 2 ** -12) ** 2 / 2 ** -24), 10);
  });

  it('gives the same sums whatever the batch size (one sequential sum, images sampled alike)', () => {
    const images = Array.from({ length: 6 }, (_, i) => Float32Array.from({ length: 13 }, (_, j) => Math.sin(i * 13 + j) * (i + 1)));
    const one = new TensorNoise(0.01);
    for (const img of images) one.addImages(img, 1);
    const three = new TensorNoise(0.01);
    for (let b = 0; b < 6; b += 3) {
      const batch = new Float32Array(39);
      for (let k = 0; k < 3; k++) batch.set(images[b + k]!, k * 13);
      three.addImages(batch, 3);
    }
    expect(three).toEqual(one);
    expect(() => one.addImages(new Float32Array(10), 3)).toThrow(/not 3 images/);
  });
});
