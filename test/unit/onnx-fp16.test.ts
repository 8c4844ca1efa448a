import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { removeOnnxruntimeDebugLog } from '../../src/backends/onnxruntime-debug-log.js';
import { makeModel, makeNode, makeValueInfo } from '../../src/onnx/build.js';
import { foldBatchNorms } from '../../src/onnx/fold.js';
import { checkModel } from '../../src/onnx/check.js';
import { convertToFp16WithReport, float16BitsToFloat32, float32ToFloat16Bits } from '../../src/onnx/fp16.js';
import { ELEM, decodeOnnxModel, graphOf, loadOnnxModel, makeTensor, saveOnnxModel, tensorToProto, type OnnxModel } from '../../src/onnx/model.js';
import { MOBILENET, PPOCR, argmax, cosine, fp32Reference, imageFiles, loadImage, runAll } from './onnx-testdata.js';

// onnxruntime's empty mat-debug-<pid>.log (src/backends/onnxruntime-debug-log.ts): these tests open onnxruntime-node sessions directly, not through src/backends.
afterAll(removeOnnxruntimeDebugLog);

describe('float32 -> float16 bits', () => {
  it('matches IEEE binary16 with round to nearest even', () => {
    const cases: Array<[number, number]> = [
      [1, 0x3c00],
      [-2, 0xc000],
      [0.1, 0x2e66],
      [1 / 3, 0x3555],
      [65504, 0x7bff], // largest finite
      [65520, 0x7c00], // rounds up to infinity
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // exactly half of it: ties to even (0)
      [3 * 2 ** -25, 0x0002], // 1.5 subnormal steps: ties to even (2)
      [1 + 2 ** -11, 0x3c00], // halfway between 1 and the next half: even (1)
      [1 + 3 * 2 ** -11, 0x3c02], // halfway between 0x3c01 and 0x3c02: even
      [0, 0],
      [Infinity, 0x7c00],
    ];
    for (const [v, bits] of cases) expect(float32ToFloat16Bits(v), String(v)).toBe(bits);
    expect(Number.isNaN(float16BitsToFloat32(float32ToFloat16Bits(NaN)))).toBe(true);
    expect(float32ToFloat16Bits(-0)).toBe(0x8000);
    for (const bits of [0x3c00, 0x2e66, 0x7bff, 0x0001, 0x8001, 0x3555]) expect(float32ToFloat16Bits(float16BitsToFloat32(bits))).toBe(bits);
  });
});

/** Casts in onnxruntime's optimised graph that the converted model did not contain (onnxruntime-inserted). */
async function foreignCasts(bytes: Uint8Array): Promise<string[]> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'trt-calib-fp16-'));
  try {
    const file = path.join(dir, 'opt.onnx');
    await ort.InferenceSession.create(bytes, { logSeverityLevel: 4, graphOptimizationLevel: 'basic', optimizedModelFilePath: file });
    const ours = new Set(graphOf(decodeOnnxModel(bytes, 'm')).node.filter((n) => n.opType === 'Cast').map((n) => n.name));
    const optimised = decodeOnnxModel(await readFile(file), 'opt');
    return graphOf(optimised).node.filter((n) => n.opType === 'Cast' && !ours.has(n.name)).map((n) => n.name);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('MobileNetV2 FP16', () => {
  it('stores float16 weights, keeps float32 I/O, needs no casts from onnxruntime and stays close to FP32', async () => {
    const model = await loadOnnxModel(MOBILENET);
    const r = convertToFp16WithReport(model);
    const g = graphOf(r.model);
    expect(g.input[0]!.type!.tensorType!.elemType).toBe(ELEM.FLOAT);
    expect(g.output[0]!.type!.tensorType!.elemType).toBe(ELEM.FLOAT);
    expect(g.initializer.filter((t) => t.dataType === ELEM.FLOAT).map((t) => t.name)).toEqual([]);
    // Every float32 weight (Clip bounds, Conv and Gemm weights and biases) is now float16; the Pad pads stay int64.
    const floats = graphOf(model).initializer.filter((t) => t.dataType === ELEM.FLOAT).length;
    expect(floats).toBe(35 * 2 + 52 * 2 + 3 * 2);
    expect(g.initializer.filter((t) => t.dataType === ELEM.FLOAT16).length).toBe(floats);
    expect(r.fp16Nodes.length + r.emulatedNodes.length).toBe(111);
    expect(r.float32Nodes).toEqual([]);
    expect(checkModel(r.model)).toEqual([]);
    const bytes = saveOnnxModel(r.model);
    expect(await foreignCasts(bytes)).toEqual([]);

    const images = await Promise.all(imageFiles().map((f) => loadImage(f, 224, 224)));
    const { outputs } = await fp32Reference(MOBILENET, model, 'input', images, 'output');
    const half = await runAll('fp16.onnx', bytes, 'input', images, 'output');
    for (let i = 0; i < images.length; i++) {
      expect(cosine(half[i]!, outputs[i]!)).toBeGreaterThan(0.995);
      expect(argmax(half[i]!)).toBe(argmax(outputs[i]!));
    }
  });

  it('writes a pure float16 graph for TensorRT when asked', async () => {
    const r = convertToFp16WithReport(await loadOnnxModel(MOBILENET), { cpuFallback: false });
    expect(r.emulatedNodes).toEqual([]);
    // Only the two boundary casts: input float32 -> float16 and output float16 -> float32.
    expect(graphOf(r.model).node.filter((n) => n.opType === 'Cast').length).toBe(2);
  });
});

describe('PP-OCRv4 det FP16', () => {
  it('folds its BatchNorms, converts Constant weights and stays close to FP32', async () => {
    const model = await loadOnnxModel(PPOCR);
    const r = convertToFp16WithReport(model);
    expect(r.foldedBatchNorms).toEqual(['p2o.Conv.0 + p2o.BatchNormalization.0', 'p2o.Conv.61 + p2o.BatchNormalization.1']);
    expect(r.clampedWeights).toEqual([]);
    expect(r.float32Nodes).toEqual([]);
    expect(checkModel(r.model)).toEqual([]);
    const bytes = saveOnnxModel(r.model);
    expect(await foreignCasts(bytes)).toEqual([]);
    const pre = { bgr: true, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
    const file = 'opencv_doc__pca_test1.jpg';
    const images = [await loadImage(file, 320, 416, pre)];
    const { outputs } = await fp32Reference(PPOCR, model, 'x', images, 'sigmoid_0.tmp_0');
    const [half] = await runAll('fp16.onnx', bytes, 'x', images, 'sigmoid_0.tmp_0');
    let same = 0;
    for (let j = 0; j < half!.length; j++) if (half![j]! > 0.3 === outputs[0]![j]! > 0.3) same++;
    expect(same / half!.length).toBeGreaterThan(0.999);
    expect(cosine(half!, outputs[0]!)).toBeGreaterThan(0.999);
  });
});

describe('fp16 conversion rules on small graphs', () => {
  // x -> Conv(W) -> BN -> Relu -> y ; x -> Shape -> Cast(float) -> Mul([1,4,0.5,0.5]) -> Cast(int64) -> Reshape(x)
  function small(): OnnxModel {
    const W = makeTensor('float32', [2, 2, 1, 1], [1, -2, 3, 0.5]);
    return makeModel({
      inputs: [makeValueInfo('x', ELEM.FLOAT, [1, 2, 2, 2])],
      outputs: [makeValueInfo('y', ELEM.FLOAT), makeValueInfo('z', ELEM.FLOAT)],
      initializers: [
        tensorToProto('W', W),
        tensorToProto('gamma', makeTensor('float32', [2], [2, 0.5])),
        tensorToProto('beta', makeTensor('float32', [2], [0.1, -0.1])),
        tensorToProto('mean', makeTensor('float32', [2], [0.3, 0.2])),
        tensorToProto('var', makeTensor('float32', [2], [4, 1e5])), // above the float16 range
        tensorToProto('half', makeTensor('float32', [4], [1, 4, 0.5, 0.5])),
      ],
      nodes: [
        makeNode('Conv', ['x', 'W'], ['c'], { name: 'conv' }),
        makeNode('BatchNormalization', ['c', 'gamma', 'beta', 'mean', 'var'], ['bn'], { name: 'bn' }),
        makeNode('Relu', ['bn'], ['y'], { name: 'relu' }),
        makeNode('Shape', ['x'], ['shape'], { name: 'shape' }),
        makeNode('Cast', ['shape'], ['shapef'], { name: 'to_float', attributes: { to: { int: ELEM.FLOAT } } }),
        makeNode('Mul', ['shapef', 'half'], ['scaled'], { name: 'scale_shape' }),
        makeNode('Cast', ['scaled'], ['newshape'], { name: 'to_int', attributes: { to: { int: ELEM.INT64 } } }),
        makeNode('Reshape', ['x', 'newshape'], ['z0'], { name: 'reshape' }),
        makeNode('Identity', ['z0'], ['z'], { name: 'identity' }),
      ],
    });
  }
  const x = makeTensor('float32', [1, 2, 2, 2], [0.5, 1, -1, 2, 0.25, -0.5, 3, 1]);

  it('folds BatchNorm exactly enough, leaves shape arithmetic in float32 and keeps blocked nodes float32', async () => {
    const folded = foldBatchNorms(small());
    expect(folded.folded).toEqual(['conv + bn']);
    const run = async (m: OnnxModel, out: string) => {
      const s = await ort.InferenceSession.create(saveOnnxModel(m), { logSeverityLevel: 4 });
      const r = await s.run({ x: new ort.Tensor('float32', x.data as Float32Array, x.dims) });
      return r[out]!.data as Float32Array;
    };
    const y0 = await run(small(), 'y');
    const y1 = await run(folded.model, 'y');
    for (let i = 0; i < y0.length; i++) expect(y1[i]).toBeCloseTo(y0[i]!, 5);

    const r = convertToFp16WithReport(small(), { blockList: ['relu'] });
    expect(r.float32Nodes).toEqual(['relu']);
    // Shape arithmetic (Shape -> Cast -> Mul -> Cast) stays float32: untouched nodes are not listed at all.
    const listed = new Set([...r.fp16Nodes, ...r.emulatedNodes, ...r.float32Nodes]);
    for (const n of ['to_float', 'scale_shape', 'to_int']) expect(listed.has(n)).toBe(false);
    const g = graphOf(r.model);
    expect(g.node.find((n) => n.name === 'scale_shape')!.input).toEqual(['shapef', 'half']);
    const yh = await run(r.model, 'y');
    for (let i = 0; i < y0.length; i++) expect(Math.abs(yh[i]! - y0[i]!)).toBeLessThan(2e-3 * Math.max(1, Math.abs(y0[i]!)));
    expect(Array.from(await run(r.model, 'z'))).toEqual(Array.from(x.data as Float32Array).map((v) => float16BitsToFloat32(float32ToFloat16Bits(v))));

    // Without folding, the BatchNorm's variance (1e5) is beyond float16: that node stays float32.
    const unfolded = convertToFp16WithReport(small(), { foldBatchNorm: false });
    expect(unfolded.outOfRangeNodes).toEqual(['bn']);
    expect(unfolded.clampedWeights).toEqual([]);
    const yu = await run(unfolded.model, 'y');
    for (let i = 0; i < y0.length; i++) expect(Math.abs(yu[i]! - y0[i]!)).toBeLessThan(2e-3 * Math.max(1, Math.abs(y0[i]!)));
  });

  it('changes I/O types with keepIo false', () => {
    const r = convertToFp16WithReport(small(), { keepIo: false });
    const g = graphOf(r.model);
    expect(g.input[0]!.type!.tensorType!.elemType).toBe(ELEM.FLOAT16);
    expect(g.output.map((o) => o.type!.tensorType!.elemType)).toEqual([ELEM.FLOAT16, ELEM.FLOAT16]);
    expect(g.node.filter((n) => n.opType === 'Cast' && n.attribute[0]!.i === ELEM.FLOAT && n.output.some((o) => o === 'y' || o === 'z'))).toEqual([]);
  });
});
