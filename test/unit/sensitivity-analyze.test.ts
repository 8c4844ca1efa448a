/**
 * Sensitivity analysis on the real MobileNetV2 fixture (3 photos, a MinMax cache made here): the variant models
 * hold exactly the Q/DQ they should, the float twin reproduces FP32, the two model builders (variants by Q/DQ
 * removal, maps by apply.ts) agree, and the ranking is deterministic.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibrate } from '../../src/app/calibrate.js';
import { UserError } from '../../src/errors.js';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { graphOf, saveOnnxModel } from '../../src/onnx/model.js';
import { buildMixedPrecisionModel, quantizableLayers } from '../../src/precision/apply.js';
import { measureSensitivity, prepareSensitivity, type SensitivityContext } from '../../src/sensitivity/analyze.js';
import { evaluateModel } from '../../src/sensitivity/evaluate.js';
import { IMAGES, MOBILENET } from './onnx-testdata.js';

let tmp: string;
let ctx: SensitivityContext;
const data = { data: IMAGES, preprocess: { preset: 'raw01' }, maxImages: 3, batch: 2 };

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-sensitivity-'));
  const r = await calibrate({ model: MOBILENET, data, algorithms: ['minmax'], trtVersion: '10.3.0', outDir: tmp });
  ctx = await prepareSensitivity({ model: MOBILENET, cache: r.caches[0]!.file, data, threads: 1 });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const ops = (m: Parameters<typeof graphOf>[0]) => graphOf(m).node.map((n) => n.opType);
const count = (list: string[], op: string) => list.filter((o) => o === op).length;

describe('evaluation data', () => {
  it('keeps the images decoded once with their FP32 outputs, within the stated bound', () => {
    expect(ctx.data.files).toHaveLength(3);
    expect(ctx.data.batches.map((b) => b.dims)).toEqual([[2, 3, 224, 224], [1, 3, 224, 224]]);
    expect(ctx.data.fp32Outputs.map((o) => o.output!.dims)).toEqual([[2, 5], [1, 5]]);
    expect(ctx.data.bytes).toBe(3 * 3 * 224 * 224 * 4 + 3 * 5 * 4);
  });

  it('refuses more images than --max-memory allows, before decoding, with the count that fits', async () => {
    const err = await prepareSensitivity({ model: MOBILENET, cache: ctx.cache.file, data, maxMemoryBytes: 1_000_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).message).toBe('Keeping 3 preprocessed images in memory takes 3 x 3x224x224 x 4 bytes = 1.7 MiB, above the limit of 1.0 MiB.');
    expect((err as UserError).hint).toMatch(/^Use --max-images 1 /);
    await expect(prepareSensitivity({ model: MOBILENET, cache: ctx.cache.file, data, layers: ['no_such_layer*'] })).rejects.toThrow(/--layers: no quantizable layer matches "no_such_layer\*"/);
  });
});

describe('variant models', () => {
  it('lists the layers the Q/DQ writer quantizes: 52 Conv, 3 Gemm and 10 residual Adds', () => {
    const layers = ctx.builder.layers;
    expect(layers.map((l) => l.name)).toEqual(quantizableLayers(ctx.model, ctx.scales).map((l) => l.name));
    expect(layers).toHaveLength(65);
    expect(count(layers.map((l) => l.op), 'Conv')).toBe(52);
    expect(count(layers.map((l) => l.op), 'Gemm')).toBe(3);
    expect(layers.filter((l) => l.kind === 'residual-add').map((l) => l.name)).toEqual(
      ['block_2_add', 'block_4_add', 'block_5_add', 'block_7_add', 'block_8_add', 'block_9_add', 'block_11_add', 'block_12_add', 'block_14_add', 'block_15_add'],
    );
    for (const l of layers) {
      expect(l.activations).toHaveLength(1);
      expect(l.weights).toHaveLength(l.kind === 'weighted' ? 1 : 0);
    }
  });

  it('builds float, full INT8 and single-layer variants with exactly their Q/DQ', async () => {
    const none = ops(ctx.builder.build(new Set()).model);
    expect(count(none, 'QuantizeLinear') + count(none, 'DequantizeLinear')).toBe(0);
    expect(none).toEqual(ops(ctx.model));
    const all = ctx.builder.build(new Set(ctx.builder.layers.map((l) => l.name))).model;
    expect(Buffer.from(saveOnnxModel(all)).equals(Buffer.from(saveOnnxModel(ctx.full.model)))).toBe(true);
    // One convolution: its input's Q/DQ pair and its weight's DQ. A residual Add: its skip input's pair.
    const conv = ops(ctx.builder.build(new Set(['block_1_project_BN'])).model);
    expect([count(conv, 'QuantizeLinear'), count(conv, 'DequantizeLinear')]).toEqual([1, 2]);
    const add = ops(ctx.builder.build(new Set(['block_2_add'])).model);
    expect([count(add, 'QuantizeLinear'), count(add, 'DequantizeLinear')]).toEqual([1, 1]);
  });

  it('gives FP32 exactly when nothing is quantized, and a float twin equal to the FP32 layer output', async () => {
    // Bit for bit: the FP32 pass exposes only layer inputs, which leaves onnxruntime's fusions as in a plain run.
    const float = await evaluateModel(ctx.builder.build(new Set()).model, ctx.data);
    expect(float.score).toMatchObject({ agreement: 1, drop: 0, cosineMean: 1, cosineMin: 1 });

    const layer = ctx.builder.layer('block_1_project_BN');
    const v = ctx.builder.build(new Set([layer.name]), { twin: layer.name });
    const session = await onnxruntimeBackend.open({ path: 'twin.onnx', bytes: saveOnnxModel(v.model) }, { expose: [v.twin!.reference, v.twin!.output] });
    const reference = await onnxruntimeBackend.open({ path: MOBILENET }, { expose: [layer.output] });
    const batch = ctx.data.batches[0]!;
    const feed = { input: { dtype: 'float32' as const, dims: batch.dims, data: batch.data } };
    const got = await session.run(feed, [v.twin!.reference, v.twin!.output]);
    const want = await reference.run(feed, [layer.output]);
    await session.release();
    await reference.release();
    expect(got[v.twin!.reference]!.data).toEqual(want[layer.output]!.data);
    expect(got[v.twin!.output]!.data).not.toEqual(want[layer.output]!.data);
  });

  it('agrees with the precision-map builder where both describe the same Q/DQ', async () => {
    // expanded_conv_depthwise_BN feeds no residual Add: "only it in INT8" is the map with every other layer FP32.
    const name = 'expanded_conv_depthwise_BN';
    const map = new Map(ctx.builder.layers.map((l) => [l.name, l.name === name ? ('int8' as const) : ('fp32' as const)]));
    const a = await evaluateModel(ctx.builder.build(new Set([name])).model, ctx.data);
    const built = buildMixedPrecisionModel(ctx.model, { activationScales: ctx.scales, precisionMap: map });
    expect(built.int8Layers).toEqual([name]);
    const b = await evaluateModel(built.model, ctx.data);
    expect(b.score).toEqual(a.score);
  });
});

describe('measureSensitivity', () => {
  it('ranks the selected layers deterministically, with their own SNRs and both measures', async () => {
    const options = { measure: 'both' as const, layers: ['bn_Conv1', 'expanded_conv_*', 'block_2_add'] };
    const r1 = await measureSensitivity(ctx, options);
    expect(r1.layers.map((l) => l.name).sort()).toEqual(['block_2_add', 'bn_Conv1', 'expanded_conv_depthwise_BN', 'expanded_conv_project_BN']);
    expect(r1.layers.map((l) => l.rank)).toEqual([1, 2, 3, 4]);
    expect(r1.variants).toBe(1 + 2 * 4);
    for (const l of r1.layers) {
      expect(l.oneAtATime!.images).toBe(3);
      expect(l.leaveOneOut!.images).toBe(3);
      expect(Number.isFinite(l.inputSnrDb)).toBe(true);
      expect(l.outputSnrDb).toBeGreaterThan(0);
      expect(l.fp16.enough).toBe(true);
      if (l.kind === 'weighted') expect(l.weightSnrDb).toBeGreaterThan(20);
      else expect(l.weightSnrDb).toBeUndefined();
      // Keys in decreasing order.
    }
    const keys = r1.layers.map((l) => l.sensitivity);
    expect([...keys].sort((a, b) => b - a)).toEqual(keys);
    const r2 = await measureSensitivity(ctx, { ...options, layers: [...options.layers].reverse() });
    expect(r2.layers).toEqual(r1.layers);
    expect(r2.fullInt8).toEqual(r1.fullInt8);
  });
});
