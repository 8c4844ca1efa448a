import { describe, expect, it } from 'vitest';
import { alphaGrid, chooseAlphas, dequantizedAt, searchWeightScales } from '../../src/calibrators/weight-search.js';
import { makeModel, makeNode, makeValueInfo } from '../../src/onnx/build.js';
import { ELEM, graphOf, loadOnnxModel, makeTensor, tensorFromProto, tensorToProto } from '../../src/onnx/model.js';
import { quantizeQdq } from '../../src/onnx/qdq.js';
import { MOBILENET, arrayDataset, fp32Reference, imageFiles, loadImage } from './onnx-testdata.js';

const f32 = (dims: number[], values: number[]) => makeTensor('float32', dims, values);

describe('weight search, checked by hand', () => {
  // Conv 1x1, 2 -> 2 channels: output channel 0 has weights [1.0, 0.1], channel 1 [0.1, 1.0]; max |W_c| = 1.
  // The input scale is 1/127, so inputs 0 and 1 quantize exactly: the errors are the weights' alone.
  // Grid {0.5, 0.75, 1}: scale alpha/127. The weight 1.0 always becomes 127 -> alpha (clipped below 1).
  // The weight 0.1: alpha 1: 12.7 -> 13 -> 0.102362 (error 0.002362); alpha 0.75: 16.93 -> 17 -> 0.100394
  // (0.000394); alpha 0.5: 25.4 -> 25 -> 0.098425 (0.001575).
  const model = makeModel({
    nodes: [makeNode('Conv', ['x', 'w', 'b'], ['y'], { name: 'conv' })],
    inputs: [makeValueInfo('x', ELEM.FLOAT, ['N', 2, 1, 1])],
    outputs: [makeValueInfo('y', ELEM.FLOAT, ['N', 2, 1, 1])],
    initializers: [tensorToProto('w', f32([2, 2, 1, 1], [1.0, 0.1, 0.1, 1.0])), tensorToProto('b', f32([2], [0.5, -0.5]))],
  });
  const scales = new Map([['x', 1 / 127]]);
  const search = (images: number[][], batchSize = 1) =>
    searchWeightScales({ model, file: 'conv.onnx', activationScales: scales, dataset: arrayDataset(images, [2, 1, 1], batchSize), grid: 3, low: 0.5 });

  it('the grid: evenly from low to 1', () => {
    expect(alphaGrid(3, 0.5)).toEqual([0.5, 0.75, 1]);
    expect(alphaGrid(20, 0.5)).toHaveLength(20);
    expect(alphaGrid(20, 0.5)[0]).toBe(0.5);
    expect(alphaGrid(20, 0.5)[19]).toBe(1);
  });

  it('dequantized weights at a scale: clipped at 127 steps, rounded half to even', () => {
    const w = { dtype: 'float32' as const, dims: [2, 2, 1, 1], data: Float32Array.from([1.0, 0.1, 0.1, 1.0]) };
    const amax = Float32Array.from([1 / 127, 1 / 127]);
    const at = dequantizedAt(w, 0, amax, 0.75);
    expect(at[0]).toBeCloseTo(0.75, 6);
    expect(at[1]).toBeCloseTo((17 * 0.75) / 127, 6);
  });

  it('x = [0, 1]: channel 0 sees only its 0.1 weight and takes 0.75; channel 1 its 1.0 weight and keeps 1', async () => {
    const r = await search([[0, 1]]);
    expect(r.layers.map((l) => l.node)).toEqual(['conv']);
    const s = r.weightScales.get('w')!;
    expect(s[0]).toBeCloseTo(0.75 / 127, 9);
    expect(s[1]).toBeCloseTo(1 / 127, 9);
    const layer = r.layers[0]!;
    expect(layer.shrunk).toBe(1);
    // At alpha 1: channel 0 (0.1 - 13/127)^2, channel 1 exact; chosen: channel 0 (0.1 - 17*0.75/127)^2.
    expect(layer.errorBefore).toBeCloseTo((0.1 - 13 / 127) ** 2, 9);
    expect(layer.errorAfter).toBeCloseTo((0.1 - (17 * 0.75) / 127) ** 2, 9);
  });

  it('x = [0, 1] and [1, 0]: clipping the 1.0 weight costs (1 - alpha)^2, so both channels keep max|W|/127', async () => {
    const r = await search([[0, 1], [1, 0]]);
    const s = r.weightScales.get('w')!;
    expect(s[0]).toBeCloseTo(1 / 127, 9);
    expect(s[1]).toBeCloseTo(1 / 127, 9);
    expect(r.layers[0]!.shrunk).toBe(0);
    expect(r.images).toBe(2);
  });

  it('the Q/DQ model carries the chosen scales', async () => {
    const r = await search([[0, 1]]);
    const q = quantizeQdq(model, { activationScales: scales, weightScales: r.weightScales });
    const g = graphOf(q.model);
    const scale = tensorFromProto(g.initializer.find((t) => t.name === 'w_scale')!).data as Float32Array;
    expect(scale[0]).toBeCloseTo(0.75 / 127, 9);
    const int8 = tensorFromProto(g.initializer.find((t) => t.name === 'w_quantized')!).data as Int8Array;
    expect(Array.from(int8)).toEqual([127, 17, 13, 127]);
  });

  it('ties go to the larger alpha (the default scale)', () => {
    const errors = [Float64Array.from([1, 2]), Float64Array.from([1, 1]), Float64Array.from([1, 1])];
    expect(Array.from(chooseAlphas(errors))).toEqual([2, 2]);
    expect(Array.from(chooseAlphas([Float64Array.from([0.5]), Float64Array.from([1])]))).toEqual([0]);
  });

  it('MatMul: the channels are the last axis of the weight', async () => {
    const mm = makeModel({
      nodes: [makeNode('MatMul', ['x', 'w'], ['y'], { name: 'mm' })],
      inputs: [makeValueInfo('x', ELEM.FLOAT, ['N', 2])],
      outputs: [makeValueInfo('y', ELEM.FLOAT, ['N', 2])],
      // Columns are the output channels: column 0 = [1.0, 0.1], column 1 = [0.1, 1.0].
      initializers: [tensorToProto('w', f32([2, 2], [1.0, 0.1, 0.1, 1.0]))],
    });
    const r = await searchWeightScales({ model: mm, file: 'mm.onnx', activationScales: scales, dataset: arrayDataset([[0, 1]], [2]), grid: 3, low: 0.5 });
    const s = r.weightScales.get('w')!;
    expect(s[0]).toBeCloseTo(0.75 / 127, 9);
    expect(s[1]).toBeCloseTo(1 / 127, 9);
  });
});

describe('weight search on MobileNetV2 (fixture)', () => {
  it('is deterministic: the same scales whatever the batch size and the image order; never above max|W|/127', async () => {
    const model = await loadOnnxModel(MOBILENET);
    const files = imageFiles().slice(0, 3);
    const images = await Promise.all(files.map((f) => loadImage(f, 224, 224)));
    const { amax } = await fp32Reference(MOBILENET, model, 'input', images, 'output');
    const activationScales = new Map([...amax].map(([k, v]) => [k, v / 127]));
    const data = images.map((t) => t.data as Float32Array);
    const run = (d: Float32Array[], batch: number) => searchWeightScales({ model, file: MOBILENET, activationScales, dataset: arrayDataset(d, [3, 224, 224], batch), grid: 4, threads: 1 });
    const a = await run(data, 1);
    const b = await run(data, 3);
    const c = await run([...data].reverse(), 2);
    expect(a.layers.length).toBeGreaterThan(40);
    const qa = quantizeQdq(model, { activationScales });
    for (const w of qa.weights) {
      const s = a.weightScales.get(w.tensor);
      if (!s) continue;
      expect(Array.from(b.weightScales.get(w.tensor)!)).toEqual(Array.from(s));
      expect(Array.from(c.weightScales.get(w.tensor)!)).toEqual(Array.from(s));
      for (let k = 0; k < s.length; k++) expect(s[k]!).toBeLessThanOrEqual(w.scales[k]! * (1 + 1e-6));
    }
    // The search lowers the layers' summed output error (it can only pick alpha 1 where nothing is better).
    const before = a.layers.reduce((x, l) => x + l.errorBefore, 0);
    const after = a.layers.reduce((x, l) => x + l.errorAfter, 0);
    expect(after).toBeLessThan(before);
    expect(a.layers.some((l) => l.shrunk > 0)).toBe(true);
  }, 120_000);
});
