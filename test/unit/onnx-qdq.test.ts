import { describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { makeModel, makeNode, makeValueInfo } from '../../src/onnx/build.js';
import { analyzeGraph } from '../../src/onnx/graph.js';
import { ELEM, defaultOpset, graphOf, loadOnnxModel, makeTensor, saveOnnxModel, tensorFromProto, tensorToProto, type OnnxModel } from '../../src/onnx/model.js';
import { upgradeOpset } from '../../src/onnx/opset.js';
import { checkModel } from '../../src/onnx/check.js';
import { quantizeQdq, quantizeWeights, roundHalfEven, weightScales } from '../../src/onnx/qdq.js';
import { MOBILENET, PPOCR, argmax, cosine, fp32Reference, imageFiles, loadImage, runAll } from './onnx-testdata.js';

const f32 = (dims: number[], values: number[]) => makeTensor('float32', dims, values);

async function runOnce(model: OnnxModel, feed: Record<string, ReturnType<typeof f32>>, output: string): Promise<Float32Array> {
  const session = await onnxruntimeBackend.open({ path: 'test.onnx', bytes: saveOnnxModel(model) }, { threads: 1 });
  const out = (await session.run(feed))[output]!.data as Float32Array;
  await session.release();
  return out;
}

describe('weight quantization arithmetic', () => {
  it('rounds half to even like QuantizeLinear', () => {
    expect([2.5, 3.5, -2.5, -3.5, 0.5, -0.5, 1.4, -1.6].map(roundHalfEven)).toEqual([2, 4, -2, -4, 0, -0, 1, -2]);
  });

  it('computes per-channel scales along the axis, scale 1 for an all-zero channel', () => {
    // dims [2, 3] (Gemm weight [K=2, N=3] with transB=0: axis 1 -> 3 channels)
    const w = new Float32Array([1, -6, 0, -2, 3, 0]);
    expect(Array.from(weightScales(w, [2, 3], 1))).toEqual([2 / 127, 6 / 127, 1].map(Math.fround));
    expect(Array.from(weightScales(w, [2, 3], 0))).toEqual([6 / 127, 3 / 127].map(Math.fround));
    expect(Array.from(weightScales(w, [2, 3], null))).toEqual([Math.fround(6 / 127)]);
    const q = quantizeWeights(w, [2, 3], 1, weightScales(w, [2, 3], 1));
    expect(Array.from(q)).toEqual([64, -127, 0, -127, 64, 0]); // 1/(2/127) = 63.5 -> 64 (float32 scale slightly below)
  });
});

describe('Q/DQ on a tiny Conv, checked by hand', () => {
  // y = Conv1x1(x, W) + b with W = [[127, -3.5], [1.25, 63.5]] (as [m][c]), b = [0.5, -0.25].
  // Per-channel scales: max|W_0| = 127 -> 1; max|W_1| = 63.5 -> 0.5 (exact in float32).
  // q = round_half_even(W / s): [[127, -3.5 -> -4], [2.5 -> 2, 127]]; dequantized [[127, -4], [1, 63.5]].
  // x scale 0.25: x/0.25 rounded half to even and saturated to [-128, 127].
  const model = () =>
    makeModel({
      inputs: [makeValueInfo('x', ELEM.FLOAT, [1, 2, 2, 2])],
      outputs: [makeValueInfo('y', ELEM.FLOAT, [1, 2, 2, 2])],
      initializers: [tensorToProto('W', f32([2, 2, 1, 1], [127, -3.5, 1.25, 63.5])), tensorToProto('b', f32([2], [0.5, -0.25]))],
      nodes: [makeNode('Conv', ['x', 'W', 'b'], ['y'], { name: 'conv' })],
    });
  const x = f32([1, 2, 2, 2], [1.1, -0.3, 0.125, 40, 0.375, -40, 2.0, -0.1]);

  it('stores int8 weights with per-channel scales and quantizes the input per tensor', async () => {
    const r = quantizeQdq(model(), { activationScales: new Map([['x', 0.25]]) });
    expect(r.quantizedNodes).toEqual(['conv']);
    expect(r.quantizedTensors).toEqual(['x']);
    expect(r.weights).toEqual([{ tensor: 'W', node: 'conv', axis: 0, scales: new Float32Array([1, 0.5]) }]);
    const g = graphOf(r.model);
    const init = new Map(g.initializer.map((t) => [t.name, tensorFromProto(t)]));
    expect(init.has('W')).toBe(false); // the float weight is gone
    expect(init.get('W_quantized')).toEqual({ dtype: 'int8', dims: [2, 2, 1, 1], data: new Int8Array([127, -4, 2, 127]) });
    expect(init.get('W_scale')).toEqual({ dtype: 'float32', dims: [2], data: new Float32Array([1, 0.5]) });
    expect(init.get('W_zero_point')).toEqual({ dtype: 'int8', dims: [2], data: new Int8Array([0, 0]) });
    expect(init.get('x_scale')!.data).toEqual(new Float32Array([0.25]));
    expect(init.get('x_zero_point')).toEqual({ dtype: 'int8', dims: [], data: new Int8Array([0]) });
    expect(g.node.map((n) => n.opType)).toEqual(['QuantizeLinear', 'DequantizeLinear', 'DequantizeLinear', 'Conv']);
    const wdq = g.node[2]!;
    expect(wdq.attribute.find((a) => a.name === 'axis')?.i).toBe(0);
    expect(checkModel(r.model)).toEqual([]);
    // The checker notices a per-axis scale that does not match the channels.
    const broken = quantizeQdq(model(), { activationScales: new Map([['x', 0.25]]) }).model;
    graphOf(broken).initializer.find((t) => t.name === 'W_scale')!.dims = [3];
    graphOf(broken).initializer.find((t) => t.name === 'W_scale')!.rawData = new Uint8Array(new Float32Array([1, 0.5, 1]).buffer);
    expect(checkModel(broken)).toContain("DequantizeLinear 'W_DequantizeLinear': scale and zero point shapes differ");
    expect(checkModel(broken)).toContain("DequantizeLinear 'W_DequantizeLinear': 3 scales for 2 channels on axis 0");
    expect(g.node[3]!.input).toEqual(['x_DequantizeLinear_Output', 'W_DequantizeLinear_Output', 'b']);

    // xq: channel 0 [1.0, -0.25, 0 (0.5 -> 0), 31.75 (160 -> 127)], channel 1 [0.5 (1.5 -> 2), -32 (-160 -> -128), 2.0, 0]
    // y0 = 127*xq0 - 4*xq1 + 0.5;  y1 = 1*xq0 + 63.5*xq1 - 0.25
    const y = await runOnce(r.model, { x }, 'y');
    expect(Array.from(y)).toEqual([125.5, 96.75, -7.5, 4032.75, 32.5, -2032.5, 126.75, 31.5]);
  });

  it('keeps a node in float when the precision map says so or its scale is missing', () => {
    const fp16 = quantizeQdq(model(), { activationScales: new Map([['x', 0.25]]), precisionMap: new Map([['conv', 'fp16']]) });
    expect(fp16.quantizedNodes).toEqual([]);
    expect(fp16.skipped).toEqual([{ node: 'conv', op: 'Conv', reason: 'precision fp16 requested' }]);
    const noScale = quantizeQdq(model(), { activationScales: new Map() });
    expect(noScale.skipped[0]!.reason).toBe("no scale for 'x' in the calibration cache");
    expect(graphOf(noScale.model).node.map((n) => n.opType)).toEqual(['Conv']);
  });

  it('rejects a negative or NaN scale', () => {
    expect(() => quantizeQdq(model(), { activationScales: new Map([['x', -1]]), file: 'm.onnx' })).toThrow(UserError);
    expect(() => quantizeQdq(model(), { activationScales: new Map([['x', NaN]]) })).toThrow(/finite/);
  });
});

describe('weight axes', () => {
  it('uses axis 0 for Gemm transB=1, 1 for Gemm transB=0 and MatMul, 1 for ConvTranspose', async () => {
    const m = makeModel({
      inputs: [makeValueInfo('x', ELEM.FLOAT, [2, 4]), makeValueInfo('img', ELEM.FLOAT, [1, 3, 2, 2])],
      outputs: [makeValueInfo('g2', ELEM.FLOAT), makeValueInfo('mm', ELEM.FLOAT), makeValueInfo('ct', ELEM.FLOAT)],
      initializers: [
        tensorToProto('Bt', f32([3, 4], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])), // [N=3, K=4]
        tensorToProto('B', f32([3, 5], Array.from({ length: 15 }, (_, i) => i - 7))), // [K=3, N=5]
        tensorToProto('M', f32([5, 2], [1, -1, 2, -2, 3, -3, 4, -4, 5, -5])), // [K=5, N=2]
        tensorToProto('T', f32([3, 6, 2, 2], Array.from({ length: 72 }, (_, i) => Math.sin(i)))), // [C=3, M=6, 2, 2]
      ],
      nodes: [
        makeNode('Gemm', ['x', 'Bt'], ['g1'], { name: 'gemm_t', attributes: { transB: { int: 1 } } }),
        makeNode('Gemm', ['g1', 'B'], ['g2'], { name: 'gemm' }),
        makeNode('MatMul', ['g2', 'M'], ['mm'], { name: 'matmul' }),
        makeNode('ConvTranspose', ['img', 'T'], ['ct'], { name: 'deconv' }),
      ],
    });
    const scales = new Map([['x', 0.1], ['g1', 0.5], ['g2', 2], ['img', 0.01]]);
    const r = quantizeQdq(m, { activationScales: scales });
    expect(r.weights.map((w) => [w.node, w.axis, w.scales.length])).toEqual([
      ['gemm_t', 0, 3],
      ['gemm', 1, 5],
      ['matmul', 1, 2],
      ['deconv', 1, 6],
    ]);
    expect(Array.from(r.weights[0]!.scales)).toEqual([4 / 127, 8 / 127, 12 / 127].map(Math.fround));
    expect(Array.from(r.weights[2]!.scales)).toEqual([5 / 127, 5 / 127].map(Math.fround));
    // It runs and stays close to float.
    const x = f32([2, 4], [0.1, -0.2, 0.3, 0.4, 0.5, 0.6, -0.7, 0.8]);
    const img = f32([1, 3, 2, 2], Array.from({ length: 12 }, (_, i) => Math.cos(i)));
    const a = await runOnce(m, { x, img }, 'mm');
    const b = await runOnce(r.model, { x, img }, 'mm');
    expect(cosine(a, b)).toBeGreaterThan(0.99);
  });
});

describe('opset upgrade 11 -> 13', () => {
  const opset11 = () =>
    makeModel({
      opset: 11,
      inputs: [makeValueInfo('x', ELEM.FLOAT, [1, 4, 3, 3])],
      outputs: [makeValueInfo('y', ELEM.FLOAT), makeValueInfo('s', ELEM.FLOAT), makeValueInfo('r', ELEM.FLOAT)],
      initializers: [tensorToProto('W', f32([4, 4, 1, 1], Array.from({ length: 16 }, (_, i) => (i % 5) - 2)))],
      nodes: [
        makeNode('Conv', ['x', 'W'], ['c'], { name: 'conv' }),
        makeNode('Split', ['c'], ['c1', 'c2'], { name: 'split', attributes: { axis: { int: 1 }, split: { ints: [1, 3] } } }),
        makeNode('Squeeze', ['c1'], ['sq'], { name: 'squeeze', attributes: { axes: { ints: [1] } } }),
        makeNode('Unsqueeze', ['sq'], ['y'], { name: 'unsqueeze', attributes: { axes: { ints: [0] } } }),
        makeNode('Softmax', ['c2'], ['s'], { name: 'softmax' }), // opset 11: over the flattened dims 1..3
        makeNode('ReduceSum', ['c2'], ['r'], { name: 'reducesum', attributes: { axes: { ints: [2, 3] }, keepdims: { int: 0 } } }),
      ],
    });
  const x = f32([1, 4, 3, 3], Array.from({ length: 36 }, (_, i) => Math.sin(i * 0.7)));

  it('converts attribute-to-input ops and the old Softmax, with identical results', async () => {
    const up = upgradeOpset(opset11());
    expect(defaultOpset(up.model)).toBe(13);
    expect(up.converted).toEqual(['Split split', 'Squeeze squeeze', 'Unsqueeze unsqueeze', 'Softmax softmax', 'ReduceSum reducesum']);
    for (const out of ['y', 's', 'r']) {
      const a = await runOnce(opset11(), { x }, out);
      const b = await runOnce(up.model, { x }, out);
      expect(Array.from(b), out).toEqual(Array.from(a));
    }
  });

  it('quantizes an opset 11 model per channel after upgrading it', async () => {
    const r = quantizeQdq(opset11(), { activationScales: new Map([['x', 1 / 127]]) });
    expect(checkModel(r.model)).toEqual([]);
    expect(r.opset.from).toBe(11);
    expect(r.opset.to).toBe(13);
    expect(r.weights[0]!.axis).toBe(0);
    await runOnce(r.model, { x }, 'y');
  });

  it('refuses what it cannot convert', () => {
    const old = makeModel({ opset: 9, inputs: [makeValueInfo('x', ELEM.FLOAT, [1])], outputs: [makeValueInfo('y', ELEM.FLOAT)], nodes: [makeNode('Relu', ['x'], ['y'])] });
    expect(() => upgradeOpset(old, { file: 'old.onnx' })).toThrow(/old.onnx uses opset 9/);
    const up = makeModel({
      opset: 11,
      inputs: [makeValueInfo('x', ELEM.FLOAT, [1, 1, 2, 2])],
      outputs: [makeValueInfo('y', ELEM.FLOAT)],
      initializers: [tensorToProto('sc', f32([4], [1, 1, 2, 2]))],
      nodes: [makeNode('Upsample', ['x', 'sc'], ['y'], { name: 'up' })],
    });
    expect(() => upgradeOpset(up)).toThrow(/node 'up' is Upsample/);
  });
});

describe('MobileNetV2 Q/DQ', () => {
  it('quantizes every Conv and Gemm and the residual Adds, and stays close to FP32', async () => {
    const model = await loadOnnxModel(MOBILENET);
    const files = imageFiles();
    const images = await Promise.all(files.map((f) => loadImage(f, 224, 224)));
    const { amax, outputs } = await fp32Reference(MOBILENET, model, 'input', images, 'output');
    const r = quantizeQdq(model, { activationScales: new Map([...amax].map(([k, v]) => [k, v / 127])) });
    expect(r.skipped).toEqual([]);
    expect(r.quantizedNodes.length).toBe(52 + 3); // every Conv and Gemm
    expect(r.residualAdds.length).toBe(10); // every Add in MobileNetV2 is a residual
    const g = graphOf(r.model);
    // The residual input of each Add is dequantized; the other input is the project Conv's output.
    for (const add of g.node.filter((n) => n.opType === 'Add')) {
      expect(add.input.filter((i) => i.endsWith('_DequantizeLinear_Output')).length).toBe(1);
    }
    expect(g.initializer.filter((t) => t.dataType === ELEM.INT8 && t.dims.length === 4).length).toBe(52);
    expect(checkModel(r.model)).toEqual([]);
    const q = await runAll('q.onnx', saveOnnxModel(r.model), 'input', images, 'output');
    const cos = q.map((y, i) => cosine(y, outputs[i]!));
    const mean = cos.reduce((a, b) => a + b, 0) / cos.length;
    const agree = q.filter((y, i) => argmax(y) === argmax(outputs[i]!)).length;
    expect(mean).toBeGreaterThan(0.98);
    expect(agree).toBeGreaterThanOrEqual(files.length - 1);
  });
});

describe('PP-OCRv4 det Q/DQ (opset 11, Constant-node weights)', () => {
  it('upgrades, quantizes the Constant weights and runs close to FP32 on a photo with text-like edges', async () => {
    const model = await loadOnnxModel(PPOCR);
    const pre = { bgr: true, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
    const images = await Promise.all(imageFiles().map((f) => loadImage(f, 320, 416, pre)));
    const out = 'sigmoid_0.tmp_0';
    const { amax, outputs } = await fp32Reference(PPOCR, model, 'x', images, out);
    const r = quantizeQdq(model, { activationScales: new Map([...amax].map(([k, v]) => [k, v / 127])) });
    expect(r.opset).toEqual({ from: 11, to: 13, converted: [] });
    expect(r.skipped).toEqual([]);
    const convs = analyzeGraph(model).nodes.filter((n) => n.opType === 'Conv' || n.opType === 'ConvTranspose');
    expect(r.quantizedNodes.length).toBe(convs.length);
    // The Constant nodes that held quantized weights are gone; the weights are int8 initializers now.
    const g = graphOf(r.model);
    const constants = new Set(g.node.filter((n) => n.opType === 'Constant').map((n) => n.output[0]));
    for (const w of r.weights) expect(constants.has(w.tensor)).toBe(false);
    expect(g.initializer.filter((t) => t.dataType === ELEM.INT8 && t.dims.length === 4).length).toBe(convs.length);
    expect(checkModel(r.model)).toEqual([]);
    const q = await runAll('q.onnx', saveOnnxModel(r.model), 'x', images, out);
    // pca_test1 is the one photo where the detector finds many text-like pixels (> 0.3); on the others the map
    // is almost empty and a cosine says little.
    const i = imageFiles().indexOf('opencv_doc__pca_test1.jpg');
    let same = 0;
    for (let j = 0; j < q[i]!.length; j++) if (q[i]![j]! > 0.3 === outputs[i]![j]! > 0.3) same++;
    expect(same / q[i]!.length).toBeGreaterThan(0.98);
    expect(cosine(q[i]!, outputs[i]!)).toBeGreaterThan(0.95);
  });
});

describe('rule 6: Q/DQ on pooling and Resize between INT8 layers (option pooling)', () => {
  // x -> conv_a -> Relu -> r -> MaxPool -> p -> conv_b -> b -> Resize(x2, nearest) -> u -> conv_c -> y
  //                                                    b -> GlobalAveragePool -> g -> Sigmoid -> s   (float reader)
  // x -> AveragePool -> ap -> conv_d -> d                                             (graph input, no INT8 producer)
  const w = (name: string, seed: number) => tensorToProto(name, f32([2, 2, 1, 1], [0.5 + seed, -0.25, 0.75, 1 - seed / 2]));
  const model = () =>
    makeModel({
      inputs: [makeValueInfo('x', ELEM.FLOAT, [1, 2, 4, 4])],
      outputs: [makeValueInfo('y', ELEM.FLOAT, [1, 2, 4, 4]), makeValueInfo('s', ELEM.FLOAT, [1, 2, 1, 1]), makeValueInfo('d', ELEM.FLOAT, [1, 2, 2, 2])],
      initializers: [w('Wa', 0), w('Wb', 1), w('Wc', 2), w('Wd', 3), tensorToProto('up', f32([4], [1, 1, 2, 2]))],
      nodes: [
        makeNode('Conv', ['x', 'Wa'], ['a'], { name: 'conv_a' }),
        makeNode('Relu', ['a'], ['r'], { name: 'relu' }),
        makeNode('MaxPool', ['r'], ['p'], { name: 'maxpool', attributes: { kernel_shape: { ints: [2, 2] }, strides: { ints: [2, 2] } } }),
        makeNode('Conv', ['p', 'Wb'], ['b'], { name: 'conv_b' }),
        makeNode('Resize', ['b', '', 'up'], ['u'], { name: 'resize', attributes: { mode: { string: 'nearest' } } }),
        makeNode('Conv', ['u', 'Wc'], ['y'], { name: 'conv_c' }),
        makeNode('GlobalAveragePool', ['b'], ['g'], { name: 'gap' }),
        makeNode('Sigmoid', ['g'], ['s'], { name: 'sigmoid' }),
        makeNode('AveragePool', ['x'], ['ap'], { name: 'avgpool', attributes: { kernel_shape: { ints: [2, 2] }, strides: { ints: [2, 2] } } }),
        makeNode('Conv', ['ap', 'Wd'], ['d'], { name: 'conv_d' }),
      ],
    });
  // One scale on each side of the MaxPool and of the Resize, as TensorRT's propagation assumes: max and nearest
  // sampling commute with rounding, so the results must not change (bit for bit).
  const scales = new Map([['x', 0.05], ['r', 0.04], ['p', 0.04], ['b', 0.03], ['u', 0.03], ['g', 0.03], ['ap', 0.05]]);
  const x = f32([1, 2, 4, 4], Array.from({ length: 32 }, (_, i) => Math.sin(i * 1.3) * 3));
  const inputsOf = (m: OnnxModel) => new Map(graphOf(m).node.map((n) => [n.name, n.input]));

  it('is off by default', () => {
    const r = quantizeQdq(model(), { activationScales: scales });
    expect(r.poolingNodes).toEqual([]);
    expect(inputsOf(r.model).get('maxpool')).toEqual(['r']);
    expect(inputsOf(r.model).get('resize')).toEqual(['b', '', 'up']);
  });

  it('quantizes the data input of MaxPool and Resize between INT8 layers only, and onnxruntime runs it unchanged', async () => {
    const plain = quantizeQdq(model(), { activationScales: scales });
    const r = quantizeQdq(model(), { activationScales: scales, pooling: true });
    expect(r.poolingNodes).toEqual(['maxpool', 'resize']);
    const ins = inputsOf(r.model);
    expect(ins.get('maxpool')).toEqual(['r_DequantizeLinear_Output']); // Conv+Relu before it, conv_b after it
    expect(ins.get('resize')).toEqual(['b_DequantizeLinear_Output', '', 'up']); // roi and scales stay as they are
    expect(ins.get('gap')).toEqual(['b']); // read by a float Sigmoid
    expect(ins.get('avgpool')).toEqual(['x']); // its producer is the graph input, not an INT8 layer
    // Two new pairs: r (for the MaxPool) and b (for the Resize; conv_c reads u, which had its pair already).
    const ops = graphOf(r.model).node.map((n) => n.opType);
    expect(ops.filter((o) => o === 'QuantizeLinear').length).toBe(graphOf(plain.model).node.filter((n) => n.opType === 'QuantizeLinear').length + 2);
    expect(r.quantizedTensors.sort()).toEqual(['ap', 'b', 'p', 'r', 'u', 'x']);
    expect(checkModel(r.model)).toEqual([]);
    for (const out of ['y', 's', 'd']) {
      const a = await runOnce(plain.model, { x }, out);
      const b = await runOnce(r.model, { x }, out);
      expect(Array.from(b), out).toEqual(Array.from(a));
    }
    // A coarser scale before the MaxPool than after it does change the result: the Q/DQ is really there.
    const coarse = quantizeQdq(model(), { activationScales: new Map([...scales, ['r', 0.5]]), pooling: true });
    const y0 = await runOnce(plain.model, { x }, 'y');
    const y1 = await runOnce(coarse.model, { x }, 'y');
    expect(Array.from(y1)).not.toEqual(Array.from(y0));
  });

  it('leaves a pooling op alone when its input has no scale or the precision map keeps it out of INT8', () => {
    const noScale = quantizeQdq(model(), { activationScales: new Map([...scales].filter(([k]) => k !== 'r')), pooling: true });
    expect(noScale.poolingNodes).toEqual(['resize']);
    const mapped = quantizeQdq(model(), { activationScales: scales, pooling: true, precisionMap: new Map([['resize', 'fp16']]) });
    expect(mapped.poolingNodes).toEqual(['maxpool']);
    expect(inputsOf(mapped.model).get('resize')).toEqual(['b', '', 'up']);
  });
});
