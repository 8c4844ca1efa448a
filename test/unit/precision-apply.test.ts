/**
 * From a precision map to a model (src/precision/apply.ts) on the MobileNetV2 fixture: INT8 layers get Q/DQ,
 * FP16 layers float16 roundings of their inputs, weights and output, FP32 layers neither; a convolution kept out
 * of INT8 takes its residual Add out too; the model passes the structural checks and runs.
 */
import { describe, expect, it } from 'vitest';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { checkModel } from '../../src/onnx/check.js';
import { ELEM, graphOf, loadOnnxModel, saveOnnxModel, type OnnxNode } from '../../src/onnx/model.js';
import { buildMixedPrecisionModel, quantizableLayers } from '../../src/precision/apply.js';
import { argmax, cosineSimilarity } from '../../src/compare/metrics.js';
import { listActivations } from '../../src/onnx/graph.js';
import { MOBILENET, loadImage, imageFiles } from './onnx-testdata.js';

describe('buildMixedPrecisionModel', async () => {
  const model = await loadOnnxModel(MOBILENET);
  // Any positive scale will do for the structure: 6/127 for every activation.
  const scales = new Map(listActivations(model).map((a) => [a.name, 6 / 127]));
  const map = new Map([
    ['expanded_conv_depthwise_BN', 'fp16'],
    ['block_2_project_BN', 'fp32'],
  ] as const);
  const r = buildMixedPrecisionModel(model, { activationScales: scales, precisionMap: map });
  const nodes = graphOf(r.model).node;
  const producer = new Map<string, OnnxNode>();
  for (const n of nodes) for (const o of n.output) producer.set(o, n);
  const node = (name: string) => nodes.find((n) => n.name === name)!;
  const castTo = (n: OnnxNode | undefined) => (n?.opType === 'Cast' ? n.attribute.find((a) => a.name === 'to')!.i : undefined);

  it('counts the layers: the FP32 convolution takes its residual Add out of INT8', () => {
    const all = quantizableLayers(model, scales).map((l) => l.name);
    expect(all).toHaveLength(65);
    expect(r.fp16Layers).toEqual(['expanded_conv_depthwise_BN']);
    expect(r.fp32Layers).toEqual(['block_2_project_BN']);
    expect(r.int8Layers).toEqual(all.filter((l) => !['expanded_conv_depthwise_BN', 'block_2_project_BN', 'block_2_add'].includes(l)));
    expect(checkModel(r.model)).toEqual([]);
  });

  it('puts Q/DQ on INT8 layers only', () => {
    expect(producer.get(node('block_1_project_BN').input[0]!)?.opType).toBe('DequantizeLinear');
    expect(producer.get(node('block_1_project_BN').input[1]!)?.opType).toBe('DequantizeLinear');
    expect(producer.get(node('block_2_project_BN').input[0]!)?.opType).toBe('Clip'); // float input, as in FP32
    expect(node('block_2_project_BN').input[1]).toBe('block_2_project_BN.weight'); // float weight
    for (const input of node('block_2_add').input) expect(producer.get(input)?.opType).not.toBe('DequantizeLinear');
  });

  it('rounds an FP16 layer\'s input, weight and output through float16', () => {
    const conv = node('expanded_conv_depthwise_BN');
    // Input: Cast(to float) of Cast(to float16) of the activation.
    const inCast = producer.get(conv.input[0]!);
    expect(castTo(inCast)).toBe(ELEM.FLOAT);
    expect(castTo(producer.get(inCast!.input[0]!))).toBe(ELEM.FLOAT16);
    // Weight: a float16 initializer cast back to float.
    const wCast = producer.get(conv.input[1]!);
    expect(castTo(wCast)).toBe(ELEM.FLOAT);
    expect(graphOf(r.model).initializer.find((t) => t.name === wCast!.input[0])?.dataType).toBe(ELEM.FLOAT16);
    // Output: computed under another name, stored as float16, read back as float by the next node.
    const out = conv.output[0]!;
    const next = nodes.find((n) => n.opType === 'Clip' && n.name === 'expanded_conv_depthwise_relu')!;
    const back = producer.get(next.input[0]!);
    expect(castTo(back)).toBe(ELEM.FLOAT);
    const to16 = producer.get(back!.input[0]!);
    expect(castTo(to16)).toBe(ELEM.FLOAT16);
    expect(to16!.input[0]).toBe(out);
  });

  it('runs, close to FP32 where INT8 is off', async () => {
    const image = await loadImage(imageFiles()[0]!, 224, 224);
    const fp32 = await onnxruntimeBackend.open({ path: MOBILENET });
    // Every layer FP16: no INT8 at all, so the output differs from FP32 by float16 rounding only.
    const all16 = buildMixedPrecisionModel(model, { activationScales: scales, precisionMap: new Map(quantizableLayers(model, scales).map((l) => [l.name, 'fp16'] as const)) });
    expect(all16.int8Layers).toEqual([]);
    const mixed = await onnxruntimeBackend.open({ path: 'all16.onnx', bytes: saveOnnxModel(all16.model) });
    const a = (await fp32.run({ input: image })).output!.data as Float32Array;
    const b = (await mixed.run({ input: image })).output!.data as Float32Array;
    await fp32.release();
    await mixed.release();
    expect(Array.from(b)).not.toEqual(Array.from(a));
    expect(argmax(b)).toBe(argmax(a));
    expect(cosineSimilarity(a, b)).toBeGreaterThan(0.9999);
  });
});
