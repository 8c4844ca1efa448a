/**
 * The quantization-noise sums of sensitivity analysis in native code (native/src/stats/noise.cc) against
 * TensorNoise's JavaScript loop (src/sensitivity/noise.ts): the same sums bit for bit, on data with every case the
 * loops branch on (non-finite values, values beyond FP16's range, INT8 saturation, float16 subnormals, exact halves
 * of the INT8 step, negative zero), across the kernel's 4096-value blocks and its vector/scalar split; and the FP32
 * noise pass through onnxruntime's C API (counting nodes, src/backends/onnxruntime-noise.ts) against the
 * onnxruntime-node path on the MobileNetV2 fixture, at three batch sizes (6: two runs of the native pass).
 */
import { describe, expect, it } from 'vitest';
import { createDataset } from '../../src/datasets/dataset.js';
import { resolvePreprocess } from '../../src/datasets/presets.js';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { NOISE_PASS_BATCH, nativeNoiseUnsupported } from '../../src/backends/onnxruntime-noise.js';
import { loadNative } from '../../src/native.js';
import { loadOnnxModel } from '../../src/onnx/model.js';
import { measureTensorNoise, prepareEvaluationData } from '../../src/sensitivity/data.js';
import { TensorNoise } from '../../src/sensitivity/noise.js';
import { IMAGES, MOBILENET } from './onnx-testdata.js';

const FIELDS = ['signal', 'int8Noise', 'fp16SampleSignal', 'fp16Noise', 'absMax', 'fp16Overflow', 'saturated', 'count', 'nonFinite'] as const;

function awkwardData(n: number, seed: number, options: { nonFinite?: boolean } = {}): Float32Array {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const k = rand();
    if (k < 0.01) d[i] = options.nonFinite === false ? 3 : [NaN, Infinity, -Infinity][i % 3]!;
    else if (k < 0.03) d[i] = (rand() - 0.5) * 2e5; // beyond FP16's 65504, and saturating
    else if (k < 0.06) d[i] = (rand() - 0.5) * 2 ** -16; // float16 subnormals
    else if (k < 0.08) d[i] = (Math.floor(rand() * 40) - 20 + 0.5) * 0.125; // exact halves of a 0.125 step
    else if (k < 0.09) d[i] = -0;
    else d[i] = (rand() - 0.5) * 12;
  }
  return d;
}

/** The native kernel over images one after the other, as TensorNoise (9 sums, its field order). */
function nativeSums(images: Float32Array[], scale: number | undefined): TensorNoise {
  const sums = new Float64Array(9);
  for (const img of images) loadNative().noiseSums(sums, img, scale ?? 0);
  return TensorNoise.fromSums(scale, sums);
}

describe('noise sums: native kernel and JavaScript loop', () => {
  it('give the same sums, bit for bit, whatever the scale and the data', () => {
    const cases = [
      { name: 'awkward, several blocks', images: [awkwardData(50_003, 7), awkwardData(4096 * 3, 8), awkwardData(5, 9)] },
      { name: 'finite only (the vector loop throughout)', images: [awkwardData(20_001, 11, { nonFinite: false }), awkwardData(4099, 12, { nonFinite: false })] },
      { name: 'one NaN in the second block only', images: [(() => { const d = awkwardData(12_288, 13, { nonFinite: false }); d[5000] = NaN; return d; })()] },
      // The vector loop takes 32 values a step (16 lanes twice, 4 FP16 samples), the scalar loop the rest.
      { name: 'lengths around the 32-value step', images: [1, 7, 8, 9, 31, 32, 33, 63, 4095, 4096, 4097, 4096 + 40].map((n, k) => awkwardData(n, 20 + k, { nonFinite: false })) },
    ];
    for (const c of cases) {
      for (const scale of [0.125, 0.05, 1e-3, 3.7, undefined]) {
        const js = new TensorNoise(scale);
        for (const img of c.images) js.add(img);
        const native = nativeSums(c.images, scale);
        for (const f of FIELDS) expect(native[f], `${c.name}: ${f}, scale ${scale}`).toBe(js[f]);
        expect(native.count + native.nonFinite).toBe(c.images.reduce((s, d) => s + d.length, 0));
      }
    }
  });

  it('matches a case worked out by hand', () => {
    // scale 0.5: 1 -> q 2, no error; 0.75 -> 1.5 rounds to 2 (half to even), error -0.25; 100 -> 200 saturates at
    // 127, error 100 - 63.5 = 36.5; NaN is left out. FP16 sample: element 0 only (stride 8), 1 is exact in float16.
    for (const n of [new TensorNoise(0.5), undefined]) {
      const data = new Float32Array([1, 0.75, 100, NaN]);
      let t: TensorNoise;
      if (n) {
        n.add(data);
        t = n;
      } else t = nativeSums([data], 0.5);
      expect(t.signal).toBe(1 + 0.5625 + 10000);
      expect(t.int8Noise).toBe(0.0625 + 36.5 * 36.5);
      expect(t.saturated).toBe(1);
      expect(t.nonFinite).toBe(1);
      expect(t.count).toBe(3);
      expect(t.absMax).toBe(100);
      expect(t.fp16SampleSignal).toBe(1);
      expect(t.fp16Noise).toBe(0);
      expect(t.fp16Overflow).toBe(0);
    }
  });
});

describe('the FP32 noise pass: counting nodes through the C API against onnxruntime-node', () => {
  it('gives the JavaScript loop\'s sums on MobileNetV2, bit for bit, at batch 1, 3 and 6 (runs of at most NOISE_PASS_BATCH)', async () => {
    const model = await loadOnnxModel(MOBILENET);
    // The input, a Pad output, a Clip output, a projection's output, the pooled features: one of each kind.
    const measure = new Map<string, number | undefined>([
      ['input', 1 / 127],
      ['Conv1_pad', 0.02],
      ['Conv1_relu', 6 / 127],
      ['block_1_project_BN', 0.05],
      ['expanded_conv_depthwise_relu', undefined],
    ]);
    const names = new Set((await import('../../src/onnx/graph.js')).listActivations(model).map((a) => a.name));
    for (const n of measure.keys()) expect(names.has(n) || n === 'input', n).toBe(true);
    expect(nativeNoiseUnsupported({ model, inputName: 'input', tensors: [...measure.keys()].map((name) => ({ name })) })).toBeUndefined();
    const results: Array<Map<string, TensorNoise>> = [];
    expect(NOISE_PASS_BATCH).toBeLessThan(6); // batch 6 is fed in two runs
    for (const batch of [1, 3, 6]) {
      const preprocess = resolvePreprocess({ preset: 'raw01' }, { name: 'input', dims: ['N', 3, 224, 224] });
      const dataset = await createDataset({ data: IMAGES, preprocess, inputName: 'input', batchSize: batch, maxImages: 6 });
      const session = await onnxruntimeBackend.open({ path: MOBILENET });
      const data = await prepareEvaluationData({ dataset, session });
      await session.release();
      const native = await measureTensorNoise(data, { modelFile: MOBILENET, model, measure });
      expect(native.path).toBe('native');
      process.env.TRT_CALIB_COLLECTOR = 'worker';
      try {
        const node = await measureTensorNoise(data, { modelFile: MOBILENET, model, measure });
        expect(node.path).toBe('onnxruntime-node');
        for (const [name, n] of native.noise) {
          const j = node.noise.get(name)!;
          for (const f of FIELDS) expect(n[f], `batch ${batch}: ${name} ${f}`).toBe(j[f]);
          expect(n.signal).toBeGreaterThan(0);
        }
      } finally {
        delete process.env.TRT_CALIB_COLLECTOR;
      }
      expect(native.noise.get('input')!.count).toBe(6 * 3 * 224 * 224);
      results.push(native.noise);
    }
    for (const r of results.slice(1)) for (const [name, n] of results[0]!) for (const f of FIELDS) expect(r.get(name)![f], `${name} ${f}: batch 1 vs ${results.indexOf(r) === 1 ? 3 : 6}`).toBe(n[f]);
  });
});
