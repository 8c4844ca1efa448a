import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { correctBiases, perImageChannelMeans } from '../../src/calibrators/bias-correction.js';
import { applyBiasShifts } from '../../src/onnx/bias.js';
import { makeModel, makeNode, makeValueInfo } from '../../src/onnx/build.js';
import { ELEM, graphOf, loadOnnxModel, makeTensor, saveOnnxModel, tensorFromProto, tensorToProto, type OnnxModel } from '../../src/onnx/model.js';
import { quantizeQdq } from '../../src/onnx/qdq.js';
import type { Tensor } from '../../src/tensor.js';
import { MOBILENET, arrayDataset, loadImage, imageFiles } from './onnx-testdata.js';

const f32 = (dims: number[], values: number[]) => makeTensor('float32', dims, values);

function initializer(model: OnnxModel, name: string): Float32Array {
  return tensorFromProto(graphOf(model).initializer.find((t) => t.name === name)!).data as Float32Array;
}

async function runOnce(model: OnnxModel, feed: Record<string, Tensor>, outputs: string[]): Promise<Record<string, Tensor>> {
  const session = await onnxruntimeBackend.open({ path: 'test.onnx', bytes: saveOnnxModel(model) }, { threads: 1, expose: outputs.filter((o) => !graphOf(model).output.some((g) => g.name === o)) });
  try {
    return await session.run(feed, outputs);
  } finally {
    await session.release();
  }
}

describe('bias correction, checked by hand', () => {
  it('Conv 1x1: the shift is W * (E[x] - E[Q(x)]) when the weight quantizes exactly', async () => {
    // y = 2 * x + 0.25 on [1, 1, 2, 2]; x amax 1 -> scale 1/127. W = 2 quantizes to 127 * (2/127) exactly.
    const model = makeModel({
      nodes: [makeNode('Conv', ['x', 'w', 'b'], ['y'], { name: 'conv' })],
      inputs: [makeValueInfo('x', ELEM.FLOAT, [1, 1, 2, 2])],
      outputs: [makeValueInfo('y', ELEM.FLOAT, [1, 1, 2, 2])],
      initializers: [tensorToProto('w', f32([1, 1, 1, 1], [2])), tensorToProto('b', f32([1], [0.25]))],
    });
    // Image 1: 0.1*127 = 12.7 -> 13; 0.26*127 = 33.02 -> 33; 0.5*127 = 63.5 -> 64 (half to even); 1 -> 127.
    // Image 2: 0.2*127 = 25.4 -> 25; three zeros.
    const images = [
      [0.1, 0.26, 0.5, 1.0],
      [0.2, 0, 0, 0],
    ];
    const meanX = (0.1 + 0.26 + 0.5 + 1.0 + 0.2) / 8;
    const meanQ = (13 + 33 + 64 + 127 + 25) / 127 / 8;
    const r = await correctBiases({ model, file: 'conv.onnx', activationScales: new Map([['x', 1 / 127]]), dataset: arrayDataset(images, [1, 2, 2]), mode: 'full' });
    expect(r.layers.map((l) => l.node)).toEqual(['conv']);
    expect(r.layers[0]!.shift[0]).toBeCloseTo(2 * (meanX - meanQ), 6);
    expect(initializer(r.model, 'b')[0]).toBeCloseTo(0.25 + 2 * (meanX - meanQ), 6);
    expect(r.images).toBe(2);
    // weights mode: W = 2 quantizes exactly, so there is nothing to correct although the input rounds.
    const w = await correctBiases({ model, file: 'conv.onnx', activationScales: new Map([['x', 1 / 127]]), dataset: arrayDataset(images, [1, 2, 2]), mode: 'weights' });
    expect(Math.abs(w.layers[0]!.shift[0]!)).toBeLessThan(1e-7);
  });

  it('Gemm without C: creates C = shift / beta from the weight rounding error', async () => {
    // Y = A * B * alpha + beta * C with A [1, 2], B [2, 2] (transB 0: channels are B's columns), beta 0.5.
    // A's amax 127 -> scale 1: integer inputs quantize exactly, so the whole shift is the weights'.
    const B = [1, 0.3, 0.5, 1]; // column 0: [1, 0.5], column 1: [0.3, 1]
    const model = makeModel({
      nodes: [makeNode('Gemm', ['a', 'B'], ['y'], { name: 'gemm', attributes: { beta: { float: 0.5 } } })],
      inputs: [makeValueInfo('a', ELEM.FLOAT, [1, 2])],
      outputs: [makeValueInfo('y', ELEM.FLOAT, [1, 2])],
      initializers: [tensorToProto('B', f32([2, 2], B))],
    });
    // Per-column scales max|B_n|/127 = 1/127 for both; q = round_half_even(B * 127) in float32:
    // 0.5 * 127 = 63.5 -> 64 (0.50393...), 0.3 * 127 = 38.1 -> 38 (0.29921...), 1 -> 127.
    const s = Math.fround(1 / 127);
    const Bq = [127 * s, 38 * s, 64 * s, 127 * s];
    const images = [
      [3, -2],
      [1, 5],
    ];
    const shift = [0, 1].map((n) => images.reduce((acc, a) => acc + a[0]! * (B[n]! - Bq[n]!) + a[1]! * (B[2 + n]! - Bq[2 + n]!), 0) / images.length);
    const r = await correctBiases({ model, file: 'gemm.onnx', activationScales: new Map([['a', 1]]), dataset: arrayDataset(images, [2]), mode: 'full' });
    const gemm = graphOf(r.model).node[0]!;
    expect(gemm.input.length).toBe(3);
    const C = initializer(r.model, gemm.input[2]!);
    expect(C[0]).toBeCloseTo(shift[0]! / 0.5, 5);
    expect(C[1]).toBeCloseTo(shift[1]! / 0.5, 5);
    // The input quantizes exactly: the weights mode measures the same shift.
    const w = await correctBiases({ model, file: 'gemm.onnx', activationScales: new Map([['a', 1]]), dataset: arrayDataset(images, [2]), mode: 'weights' });
    expect(w.layers[0]!.shift[0]).toBeCloseTo(shift[0]!, 5);
    expect(w.layers[0]!.shift[1]).toBeCloseTo(shift[1]!, 5);
    // With C in place, the quantized model's mean output equals the FP32 one.
    const scales = new Map([['a', 1]]);
    const q = quantizeQdq(r.model, { activationScales: scales }).model;
    let qMean = [0, 0];
    let fMean = [0, 0];
    for (const a of images) {
      const yq = (await runOnce(q, { a: f32([1, 2], a) }, ['y'])).y!.data as Float32Array;
      const yf = (await runOnce(model, { a: f32([1, 2], a) }, ['y'])).y!.data as Float32Array;
      qMean = qMean.map((m, i) => m + yq[i]! / images.length);
      fMean = fMean.map((m, i) => m + yf[i]! / images.length);
    }
    expect(qMean[0]).toBeCloseTo(fMean[0]!, 5);
    expect(qMean[1]).toBeCloseTo(fMean[1]!, 5);
  });

  it('corrects layer by layer: each layer sees the corrected layers before it (Conv -> Relu -> Conv)', async () => {
    // Two 1x1 convs, 2 channels, a Relu between; the second conv's shift depends on the first one's correction.
    const model = makeModel({
      nodes: [
        makeNode('Conv', ['x', 'w1'], ['h'], { name: 'conv1' }),
        makeNode('Relu', ['h'], ['r'], { name: 'relu' }),
        makeNode('Conv', ['r', 'w2', 'b2'], ['y'], { name: 'conv2' }),
      ],
      inputs: [makeValueInfo('x', ELEM.FLOAT, [1, 2, 2, 2])],
      outputs: [makeValueInfo('y', ELEM.FLOAT, [1, 2, 2, 2])],
      initializers: [
        tensorToProto('w1', f32([2, 2, 1, 1], [0.9, -0.37, 0.21, 0.77])),
        tensorToProto('w2', f32([2, 2, 1, 1], [1.13, 0.41, -0.66, 0.29])),
        tensorToProto('b2', f32([2], [0.1, -0.2])),
      ],
    });
    const images = [
      [0.3, 0.8, -0.2, 0.05, 0.61, -0.4, 0.33, 0.9],
      [-0.7, 0.12, 0.44, 0.5, 0.02, 0.7, -0.15, 0.36],
      [0.25, -0.31, 0.48, 0.93, -0.58, 0.11, 0.27, -0.09],
    ];
    // Coarse scales so that the input quantization shifts the means visibly.
    const scales = new Map([
      ['x', 1 / 7],
      ['r', 1 / 5],
    ]);
    const r = await correctBiases({ model, file: 'chain.onnx', activationScales: scales, dataset: arrayDataset(images, [2, 2, 2]), mode: 'full' });
    expect(r.layers.map((l) => l.node)).toEqual(['conv1', 'conv2']);
    expect(graphOf(r.model).node[0]!.input.length).toBe(3); // conv1 got a bias
    const q = quantizeQdq(r.model, { activationScales: scales }).model;
    const mean = async (m: OnnxModel, name: string) => {
      const sum = new Float64Array(2);
      for (const image of images) {
        const t = (await runOnce(m, { x: f32([1, 2, 2, 2], image) }, [name]))[name]!;
        perImageChannelMeans(t, 1).forEach((v, c) => (sum[c] += v / images.length));
      }
      return Array.from(sum);
    };
    // After the correction, both layers' channel means in the quantized model are the FP32 model's.
    for (const name of ['h', 'y']) {
      const [fp, qq] = [await mean(model, name), await mean(q, name)];
      expect(qq[0]).toBeCloseTo(fp[0]!, 5);
      expect(qq[1]).toBeCloseTo(fp[1]!, 5);
    }
    // Correcting conv2 against the uncorrected conv1 would leave its mean off: the order matters here.
    const conv2Alone = await correctBiases({ model: applyBiasShifts(model, new Map()).model, file: 'chain.onnx', activationScales: scales, precisionMap: new Map([['conv1', 'fp32']]), dataset: arrayDataset(images, [2, 2, 2]), mode: 'full' });
    expect(Math.abs(conv2Alone.layers[0]!.shift[0]! - r.layers[1]!.shift[0]!)).toBeGreaterThan(1e-4);
  });

  it('spills the activations at the cuts to a temporary folder past its budget: same biases, nothing left behind', async () => {
    const model = makeModel({
      nodes: [
        makeNode('Conv', ['x', 'w1'], ['h'], { name: 'conv1' }),
        makeNode('Relu', ['h'], ['r'], { name: 'relu' }),
        makeNode('Conv', ['r', 'w2'], ['y'], { name: 'conv2' }),
        makeNode('Add', ['y', 'h'], ['z'], { name: 'add' }),
      ],
      inputs: [makeValueInfo('x', ELEM.FLOAT, [1, 2, 1, 2])],
      outputs: [makeValueInfo('z', ELEM.FLOAT, [1, 2, 1, 2])],
      initializers: [tensorToProto('w1', f32([2, 2, 1, 1], [0.93, -0.41, 0.27, 0.68])), tensorToProto('w2', f32([2, 2, 1, 1], [0.52, 0.31, -0.77, 0.19]))],
    });
    const images = [
      [0.3, -0.8, 0.2, 0.6],
      [-0.1, 0.5, 0.9, -0.4],
    ];
    const scales = new Map([
      ['x', 1 / 9],
      ['r', 1 / 11],
      ['h', 1 / 11],
    ]);
    const before = new Set(readdirSync(tmpdir()).filter((f) => f.startsWith('trt-calib-bc-')));
    const inMemory = await correctBiases({ model, file: 'm.onnx', activationScales: scales, dataset: arrayDataset(images, [2, 1, 2]), mode: 'full' });
    const spilled = await correctBiases({ model, file: 'm.onnx', activationScales: scales, dataset: arrayDataset(images, [2, 1, 2]), mode: 'full', frontierBytes: 0 });
    expect(inMemory.spilledBytes).toBe(0);
    expect(spilled.spilledBytes).toBeGreaterThan(0);
    expect(Buffer.from(saveOnnxModel(spilled.model))).toEqual(Buffer.from(saveOnnxModel(inMemory.model)));
    expect(readdirSync(tmpdir()).filter((f) => f.startsWith('trt-calib-bc-') && !before.has(f))).toEqual([]);
  });

  it('gives the same biases whatever the batch size of the dataset', async () => {
    const model = makeModel({
      nodes: [makeNode('Conv', ['x', 'w'], ['y'], { name: 'conv' })],
      inputs: [makeValueInfo('x', ELEM.FLOAT, ['N', 1, 2, 2])],
      outputs: [makeValueInfo('y', ELEM.FLOAT, ['N', 1, 2, 2])],
      initializers: [tensorToProto('w', f32([1, 1, 1, 1], [0.7]))],
    });
    const images = [
      [0.1, 0.26, 0.5, 1.0],
      [0.2, 0.33, 0.9, 0.01],
      [0.6, 0.12, 0.45, 0.8],
    ];
    for (const mode of ['full', 'weights'] as const) {
      const run = (batch: number) => correctBiases({ model, file: 'conv.onnx', activationScales: new Map([['x', 1 / 127]]), dataset: arrayDataset(images, [1, 2, 2], batch), mode });
      const [a, b] = [await run(1), await run(2)];
      expect(Buffer.from(saveOnnxModel(a.model))).toEqual(Buffer.from(saveOnnxModel(b.model)));
    }
  });
});

describe('the bias-corrected MobileNetV2', () => {
  it('differs from the input only in biases; zero shifts leave the outputs unchanged', async () => {
    const model = await loadOnnxModel(MOBILENET);
    const g = graphOf(model);
    const convs = g.node.filter((n) => n.opType === 'Conv').slice(0, 3);
    const shifts = new Map(convs.map((n, i) => [n.name, new Float64Array(tensorFromProto(g.initializer.find((t) => t.name === n.input[1])!).dims[0]!).fill(i === 0 ? 0 : 0.01)]));
    const out = applyBiasShifts(model, shifts).model;
    const h = graphOf(out);
    // Same nodes, same inputs; only the three biases' values changed.
    expect(h.node.map((n) => [n.opType, n.input, n.output])).toEqual(g.node.map((n) => [n.opType, n.input, n.output]));
    const changed = h.initializer.filter((t, i) => Buffer.compare(Buffer.from(saveTensor(t)), Buffer.from(saveTensor(g.initializer[i]!))) !== 0).map((t) => t.name);
    expect(changed.sort()).toEqual(convs.slice(1).map((n) => n.input[2]!).sort());
    // Zero shifts: the FP32 outputs stay the original's.
    const zero = applyBiasShifts(model, new Map(convs.map((n) => [n.name, new Float64Array(shifts.get(n.name)!.length)]))).model;
    const image = await loadImage(imageFiles()[0]!, 224, 224);
    const name = g.output[0]!.name;
    const input = g.input[0]!.name;
    const [a, b] = [(await runOnce(model, { [input]: image }, [name]))[name]!.data as Float32Array, (await runOnce(zero, { [input]: image }, [name]))[name]!.data as Float32Array];
    for (let i = 0; i < a.length; i++) expect(b[i]).toBeCloseTo(a[i]!, 6);
  });
});

function saveTensor(t: Parameters<typeof tensorFromProto>[0]): Uint8Array {
  const x = tensorFromProto(t);
  return new Uint8Array(x.data.buffer, x.data.byteOffset, x.data.byteLength);
}
