/**
 * The INT8 + FP16 model (quantize --high-precision fp16): the range rules on hand-made histograms, then on the three
 * fixtures: layer counts by type, the checker (types included), onnxruntime on the CPU, and accuracy against FP32
 * within FP16 noise of the INT8 Q/DQ model in float32.
 */
import { describe, expect, it } from 'vitest';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { countLayers } from '../../src/onnx/autocast.js';
import { checkModel } from '../../src/onnx/check.js';
import { ELEM, graphOf, loadOnnxModel, saveOnnxModel, type OnnxModel } from '../../src/onnx/model.js';
import { buildMixedPrecisionModel } from '../../src/precision/apply.js';
import { FP16_MIN_NORMAL, fp16RangeVerdict, fp16ScaleVerdict } from '../../src/precision/fp16-safety.js';
import { HISTOGRAM_BINS, type TensorStatistics } from '../../src/stats/types.js';
import type { Tensor } from '../../src/tensor.js';
import { FIXTURES, MOBILENET, PPOCR, argmax, cosine, fp32Reference, imageFiles, loadImage } from './onnx-testdata.js';
import path from 'node:path';

const SSD = path.join(FIXTURES, 'models/ssdlite_mobilenet_v2_coco_300.onnx');

function stats(partial: Partial<TensorStatistics> & { range: number }): TensorStatistics {
  return { name: 't', count: 1000, nanCount: 0, posInfCount: 0, negInfCount: 0, zeroCount: 0, min: 0, max: 0, absMax: partial.range / 2, hist: new Float64Array(HISTOGRAM_BINS), ...partial };
}

describe('FP16 range rules', () => {
  it('keeps a tensor at or above 2^15 in FP32, not one below', () => {
    expect(fp16RangeVerdict(stats({ range: 65536, absMax: 40000 }))).toMatch(/max \|x\| 4\.000e\+4 .*at or above 32768/);
    expect(fp16RangeVerdict(stats({ range: 32768, absMax: 30000 }))).toBeUndefined();
  });

  it('counts the nonzero share below 2^-14 exactly when 2^-14 is a bin edge', () => {
    // range 2^-3: bins of 2^-16, so bins 0..3 lie below 2^-14. 100 zeros, 900 nonzero values.
    const h = new Float64Array(HISTOGRAM_BINS);
    h[0] = 100 + 5;
    h[1] = 3;
    h[4] = 892; // at 2^-14 exactly: normal
    expect(fp16RangeVerdict(stats({ range: 2 ** -3, zeroCount: 100, hist: h }))).toBeUndefined(); // 8/900 = 0.89%
    h[1] = 10;
    h[4] = 885;
    expect(fp16RangeVerdict(stats({ range: 2 ** -3, zeroCount: 100, hist: h }))).toMatch(/^1\.7% of its nonzero values are below/); // 15/900
    // range 1: bins of 2^-13 are wider than 2^-14; the tiny values are < 1.2e-4 of the largest: no verdict.
    const wide = new Float64Array(HISTOGRAM_BINS);
    wide[0] = 500;
    wide[8191] = 500;
    expect(fp16RangeVerdict(stats({ range: 1, hist: wide }))).toBeUndefined();
  });

  it('refuses subnormal float16 scales', () => {
    expect(fp16ScaleVerdict(FP16_MIN_NORMAL / 2)).toMatch(/subnormal/);
    expect(fp16ScaleVerdict(0.01)).toBeUndefined();
  });
});

async function runOutputs(label: string, model: OnnxModel, inputName: string, images: Tensor[], outputs: string[]): Promise<Array<Record<string, Float32Array>>> {
  const session = await onnxruntimeBackend.open({ path: label, bytes: saveOnnxModel(model) }, { threads: 2 });
  const out: Array<Record<string, Float32Array>> = [];
  try {
    for (const x of images) {
      const r = await session.run({ [inputName]: x });
      out.push(Object.fromEntries(outputs.map((o) => [o, Float32Array.from(r[o]!.data as Float32Array)])));
    }
  } finally {
    await session.release();
  }
  return out;
}

interface Built {
  int8: Array<Record<string, Float32Array>>;
  mixed: Array<Record<string, Float32Array>>;
  fp32: Array<Record<string, Float32Array>>;
  layers: Record<'INT8' | 'FP16' | 'FP32', number>;
  mixedModel: OnnxModel;
}

/** INT8 (rest FP32) and INT8 + FP16 (as written for TensorRT) from minmax scales on the images, run on the same images. */
async function build(file: string, inputName: string, images: Tensor[], outputs: string[]): Promise<Built> {
  const model = await loadOnnxModel(file);
  const ref = await fp32Reference(file, model, inputName, images, outputs[0]!);
  const scales = new Map([...ref.amax].filter(([, a]) => a > 0).map(([n, a]) => [n, a / 127]));
  const int8 = buildMixedPrecisionModel(model, { activationScales: scales, file });
  const mixed = buildMixedPrecisionModel(model, { activationScales: scales, file, highPrecision: {} });
  expect(checkModel(mixed.model)).toEqual([]);
  const a = mixed.autocast!;
  const layers = { INT8: countLayers(a.layersByType.INT8), FP16: countLayers(a.layersByType.FP16), FP32: countLayers(a.layersByType.FP32) };
  return {
    fp32: await runOutputs(file, model, inputName, images, outputs),
    int8: await runOutputs(`${file} int8`, int8.model, inputName, images, outputs),
    mixed: await runOutputs(`${file} int8+fp16`, mixed.model, inputName, images, outputs),
    layers,
    mixedModel: mixed.model,
  };
}

/** Every Q/DQ scale is float16 and the graph's interface is float32. */
function expectFp16QdqWithFp32Io(model: OnnxModel): void {
  const g = graphOf(model);
  const inits = new Map(g.initializer.map((t) => [t.name, t]));
  const qdq = g.node.filter((n) => n.opType === 'QuantizeLinear' || n.opType === 'DequantizeLinear');
  expect(qdq.length).toBeGreaterThan(0);
  const scaleTypes = new Set(qdq.map((n) => inits.get(n.input[1]!)?.dataType));
  expect(scaleTypes).toEqual(new Set([ELEM.FLOAT16]));
  for (const v of [...g.input, ...g.output]) expect(v.type?.tensorType?.elemType, v.name).toBe(ELEM.FLOAT);
  expect(model.opsetImport.find((o) => (o.domain ?? '') === '')!.version).toBe(19);
}

describe('INT8 + FP16 on the fixtures', () => {
  it('MobileNetV2: 65 INT8, 45 FP16, 0 FP32 layers; top-1 as INT8 alone, outputs within FP16 noise', async () => {
    const images = await Promise.all(imageFiles().slice(0, 6).map((f) => loadImage(f, 224, 224)));
    const b = await build(MOBILENET, 'input', images, ['output']);
    expect(b.layers).toEqual({ INT8: 65, FP16: 45, FP32: 0 });
    expectFp16QdqWithFp32Io(b.mixedModel);
    const top = (runs: Array<Record<string, Float32Array>>) => runs.map((r) => argmax(r.output!));
    const ref = top(b.fp32);
    const agree = (runs: Array<Record<string, Float32Array>>) => top(runs).filter((t, i) => t === ref[i]).length;
    // Tolerance: at most one image of six may change its top-1 between INT8 and INT8 + FP16.
    expect(Math.abs(agree(b.mixed) - agree(b.int8))).toBeLessThanOrEqual(1);
    // FP16 noise: the mean error (1 - cosine against FP32) of INT8 + FP16 is within 25% (+1e-4) of INT8's.
    const error = (runs: Array<Record<string, Float32Array>>) => mean(runs.map((r, i) => 1 - cosine(r.output!, b.fp32[i]!.output!)));
    // Measured on these six images: INT8 0.0112, INT8 + FP16 0.0084.
    expect(error(b.mixed)).toBeLessThanOrEqual(1.25 * error(b.int8) + 1e-4);
  }, 120_000);
});

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

describe('INT8 + FP16 on the detectors', () => {
  it('PP-OCR det: text mask IoU against FP32 as INT8 alone', async () => {
    // The photos with text for PP-OCR (the others have no pixel above 0.3 in FP32).
    const withText = ['opencv_doc__pca_test1.jpg', '../street/vtest_001.jpg', '../street/vtest_007.jpg'];
    const images = await Promise.all(withText.map((f) => loadImage(f, 320, 320, { bgr: true, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] })));
    const out = 'sigmoid_0.tmp_0';
    const b = await build(PPOCR, 'x', images, [out]);
    // The FP32 layer: a BatchNormalization whose variance exceeds 65504 (src/onnx/fp16.ts keeps it in FP32).
    expect(b.layers).toEqual({ INT8: 64, FP16: 265, FP32: 1 });
    expectFp16QdqWithFp32Io(b.mixedModel);
    // DB's binarisation threshold 0.3: IoU of the text masks, summed over the images.
    const iou = (runs: Array<Record<string, Float32Array>>) => {
      let inter = 0;
      let union = 0;
      runs.forEach((r, i) => {
        const p = r[out]!;
        const q = b.fp32[i]![out]!;
        for (let k = 0; k < p.length; k++) {
          const a = p[k]! > 0.3;
          const c = q[k]! > 0.3;
          if (a && c) inter++;
          if (a || c) union++;
        }
      });
      return inter / union;
    };
    // Measured: INT8 0.9633, INT8 + FP16 0.9633. Tolerance 0.01 of IoU.
    expect(iou(b.int8)).toBeGreaterThan(0.9);
    expect(Math.abs(iou(b.mixed) - iou(b.int8))).toBeLessThanOrEqual(0.01);
  }, 180_000);

  it('SSD: scores and boxes against FP32 as INT8 alone', async () => {
    const images = await Promise.all(['vtest_001.jpg', 'vtest_003.jpg', 'vtest_005.jpg', 'vtest_007.jpg'].map((f) => loadImage(`../street/${f}`, 300, 300, { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] })));
    const b = await build(SSD, 'input', images, ['scores', 'boxes']);
    expect(b.layers).toEqual({ INT8: 88, FP16: 139, FP32: 0 });
    expectFp16QdqWithFp32Io(b.mixedModel);
    const CLASSES = 90;
    // Differences against FP32: the scores of every anchor and class, the boxes (normalised yxyx) of the anchors
    // whose best FP32 score is above 0.3 (the ones that become detections), as max and mean.
    const diffs = (runs: Array<Record<string, Float32Array>>) => {
      let maxScore = 0;
      let sumScore = 0;
      let nScore = 0;
      let maxBox = 0;
      let sumBox = 0;
      let nBox = 0;
      runs.forEach((r, i) => {
        const s = r.scores!;
        const s32 = b.fp32[i]!.scores!;
        for (let k = 0; k < s.length; k++) {
          const d = Math.abs(s[k]! - s32[k]!);
          maxScore = Math.max(maxScore, d);
          sumScore += d;
          nScore++;
        }
        for (let a = 0; a < s32.length / CLASSES; a++) {
          if (Math.max(...s32.subarray(a * CLASSES, (a + 1) * CLASSES)) <= 0.3) continue;
          for (let c = 0; c < 4; c++) {
            const d = Math.abs(r.boxes![a * 4 + c]! - b.fp32[i]!.boxes![a * 4 + c]!);
            maxBox = Math.max(maxBox, d);
            sumBox += d;
            nBox++;
          }
        }
      });
      return { maxScore, meanScore: sumScore / nScore, maxBox, meanBox: sumBox / Math.max(1, nBox), boxes: nBox / 4 };
    };
    const int8 = diffs(b.int8);
    const mixed = diffs(b.mixed);
    // Measured: INT8 max score 0.092, mean 1.06e-4, max box 0.0063, mean 7.9e-4 (39 anchors); INT8 + FP16 0.101,
    // 1.04e-4, 0.0046, 8.8e-4.
    expect(int8.boxes).toBeGreaterThan(0);
    // Tolerance (FP16 noise on top of INT8): means within 25% (+1e-3) of INT8's, maxima within 0.03 / 0.01.
    expect(mixed.meanScore).toBeLessThanOrEqual(1.25 * int8.meanScore + 1e-3);
    expect(mixed.meanBox).toBeLessThanOrEqual(1.25 * int8.meanBox + 1e-3);
    expect(mixed.maxScore).toBeLessThanOrEqual(int8.maxScore + 0.03);
    expect(mixed.maxBox).toBeLessThanOrEqual(int8.maxBox + 0.01);
  }, 180_000);
});

describe('INT8 + FP16 with a precision map (--mixed auto writes one)', () => {
  it('keeps the map\'s fp32 layer in FP32 and its fp16 layer in FP16; the rest INT8 + FP16', async () => {
    const model = await loadOnnxModel(MOBILENET);
    const { listActivations } = await import('../../src/onnx/graph.js');
    const scales = new Map(listActivations(model).map((a) => [a.name, 0.05]));
    const precisionMap = new Map([
      ['bn_Conv1', 'fp32' as const],
      ['expanded_conv_depthwise_BN', 'fp16' as const],
    ]);
    const r = buildMixedPrecisionModel(model, { activationScales: scales, precisionMap, highPrecision: {} });
    expect(checkModel(r.model)).toEqual([]);
    const a = r.autocast!;
    expect(a.layersByType.INT8.Conv).toBe(50);
    expect(a.layersByType.FP32).toEqual({ Conv: 1 });
    expect(a.layersByType.FP16.Conv).toBe(1);
    expect(a.fp32Layers).toEqual([{ layer: 'bn_Conv1', op: 'Conv', reason: 'the precision map keeps it in FP32' }]);
    // The FP32 convolution reads the float32 graph input directly (no Cast in between) and its weights stay float32.
    const g = graphOf(r.model);
    const conv = g.node.find((n) => n.name === 'bn_Conv1')!;
    const inits = new Map(g.initializer.map((t) => [t.name, t]));
    expect(inits.get(conv.input[1]!)?.dataType).toBe(ELEM.FLOAT);
  });
});

describe('Q/DQ types next to FP32 layers', () => {
  it('gives an FP32 reader of a shared DQ its own float32 DQ: no layer reads a DQ through a Cast', async () => {
    const { makeModel, makeNode, makeValueInfo } = await import('../../src/onnx/build.js');
    const { makeTensor, tensorToProto } = await import('../../src/onnx/model.js');
    const w = (name: string, o: number, i: number) => tensorToProto(name, makeTensor('float32', [o, i, 1, 1], Float32Array.from({ length: o * i }, (_, k) => ((k % 7) - 3) / 8)));
    const model = makeModel({
      nodes: [
        makeNode('Conv', ['x', 'w1'], ['a'], { name: 'conv1' }),
        makeNode('Conv', ['a', 'w2'], ['b'], { name: 'conv2' }),
        makeNode('Conv', ['a', 'w3'], ['c'], { name: 'conv3' }),
        makeNode('Add', ['b', 'c'], ['y'], { name: 'add' }),
      ],
      inputs: [makeValueInfo('x', ELEM.FLOAT, [1, 4, 8, 8])],
      outputs: [makeValueInfo('y', ELEM.FLOAT, [1, 8, 8, 8])],
      initializers: [w('w1', 8, 4), w('w2', 8, 8), w('w3', 8, 8)],
    });
    // 'c' kept in FP32 (as a range rule would): conv3 writes float32, and reads 'a' through its own DQ.
    const r = buildMixedPrecisionModel(model, { activationScales: new Map([['x', 1 / 127], ['a', 2 / 127]]), residualAdd: false, highPrecision: { fp32Tensors: new Map([['c', 'test']]) } });
    expect(checkModel(r.model)).toEqual([]);
    const g = graphOf(r.model);
    const inits = new Map(g.initializer.map((t) => [t.name, t]));
    const producer = new Map(g.node.flatMap((n) => n.output.map((o) => [o, n] as const)));
    for (const conv of g.node.filter((n) => n.opType === 'Conv')) {
      const dq = producer.get(conv.input[0]!)!;
      expect(dq.opType, conv.name).toBe('DequantizeLinear');
      const weightDq = producer.get(conv.input[1]!)!;
      expect(weightDq.opType, conv.name).toBe('DequantizeLinear');
      const expected = conv.name === 'conv3' ? ELEM.FLOAT : ELEM.FLOAT16;
      expect(inits.get(dq.input[1]!)!.dataType, conv.name).toBe(expected);
      expect(inits.get(weightDq.input[1]!)!.dataType, conv.name).toBe(expected);
    }
    expect(r.autocast!.layersByType).toEqual({ INT8: { Conv: 3 }, FP16: {}, FP32: { Add: 1 } }); // the Add reads 'c'
    const x = { dtype: 'float32' as const, dims: [1, 4, 8, 8], data: Float32Array.from({ length: 256 }, (_, k) => ((k * 37) % 101) / 101) };
    const [y8, y] = [
      (await runOutputs('int8', buildMixedPrecisionModel(model, { activationScales: new Map([['x', 1 / 127], ['a', 2 / 127]]), residualAdd: false }).model, 'x', [x], ['y']))[0]!.y!,
      (await runOutputs('int8+fp16', r.model, 'x', [x], ['y']))[0]!.y!,
    ];
    for (let i = 0; i < y.length; i++) expect(Math.abs(y[i]! - y8[i]!)).toBeLessThan(0.01);
  });
});
