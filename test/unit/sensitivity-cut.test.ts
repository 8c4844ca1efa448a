/**
 * One-at-a-time variants cut at their layer (src/sensitivity/cut.ts): the cut's tensors on MobileNetV2 named by
 * hand from its graph (a residual Add reads the block's input and its projection), the first layers kept whole,
 * the cut model closed (every node reads only the cut, initializers or earlier nodes), the same numbers as the
 * whole variant on MobileNetV2 and on the SSD detector (two heads, the task metric), the memory budget's groups
 * worked out by hand, and the search's report of it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibrate } from '../../src/app/calibrate.js';
import { graphOf, saveOnnxModel } from '../../src/onnx/model.js';
import { pruneToOutputs } from '../../src/onnx/expose.js';
import { measureSensitivity, prepareSensitivity, type SensitivityContext } from '../../src/sensitivity/analyze.js';
import { VariantCuts, bytesPerImage, cutVariant, planCutGroups, planCuts, producedTensors, type CutPlan } from '../../src/sensitivity/cut.js';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { evaluateModel } from '../../src/sensitivity/evaluate.js';
import { FIXTURES, IMAGES, MOBILENET } from './onnx-testdata.js';

const SSD = path.join(FIXTURES, 'models/ssdlite_mobilenet_v2_coco_300.onnx');

/** A sensitivity context on `model` with a MinMax cache made here, for the enclosing describe block. */
function minmaxContext(model: string, data: { data: string; preprocess: { preset: string }; maxImages: number; batch: number }, set: (ctx: SensitivityContext) => void): void {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-sensitivity-cut-'));
    const r = await calibrate({ model, data, algorithms: ['minmax'], trtVersion: '10.3.0', outDir: tmp });
    set(await prepareSensitivity({ model, cache: r.caches[0]!.file, data, threads: 1 }));
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });
}

/** The plan over every layer of the context, for its kept images. */
function planOf(ctx: SensitivityContext, file: string, budget?: number): Promise<CutPlan> {
  return planCuts({
    model: ctx.model,
    file,
    inputName: ctx.data.inputName,
    layers: ctx.builder.layers.map((l) => ({ name: l.name, output: l.output })),
    images: ctx.data.files.length,
    threads: 1,
    ...(budget !== undefined ? { budget } : {}),
  });
}
const STREET = path.join(FIXTURES, 'street');

describe('planCutGroups', () => {
  const sizes = new Map<string, number | undefined>([
    ['a', 100],
    ['b', 50],
    ['c', 300],
    ['d', undefined],
  ]);
  it('groups layers in order while their cuts fit, shared tensors counted once', () => {
    // 2 images, budget 500 bytes: x1 {a,b} = 300; x2 {b} adds nothing; x3 {c} adds 600 > 500 alone: whole;
    // x4 {a} 200 -> still the first group (a, b: 300); x5 {d}: unknown size, whole.
    const items = [
      { name: 'x1', cut: ['a', 'b'] },
      { name: 'x2', cut: ['b'] },
      { name: 'x3', cut: ['c'] },
      { name: 'x4', cut: ['a'] },
      { name: 'x5', cut: ['d'] },
    ];
    const { groups, whole } = planCutGroups(items, sizes, 2, 500);
    expect(groups.map((g) => g.map((i) => i.name))).toEqual([['x1', 'x2', 'x4']]);
    expect(whole.map((i) => i.name)).toEqual(['x3', 'x5']);
  });
  it('starts a new group when the next cut does not fit beside the current one', () => {
    // 1 image, budget 350: {a,b} 150, then {c} 300 -> 450 > 350: a second group; then {b} 50 -> 350 fits.
    const { groups } = planCutGroups(
      [
        { name: 'x1', cut: ['a', 'b'] },
        { name: 'x2', cut: ['c'] },
        { name: 'x3', cut: ['b'] },
      ],
      sizes,
      1,
      350,
    );
    expect(groups.map((g) => g.map((i) => i.name))).toEqual([['x1'], ['x2', 'x3']]);
  });
  it('sizes one image of a batch-first tensor, unknown for a dynamic dim', () => {
    expect(bytesPerImage({ name: 't', dtype: 'float32', dims: ['N', 32, 112, 112] })).toBe(4 * 32 * 112 * 112);
    expect(bytesPerImage({ name: 't', dtype: 'float32', dims: ['N', 3, 'H', 'W'] })).toBeUndefined();
  });
});

describe('cut variants on the MobileNetV2 fixture', () => {
  let ctx: SensitivityContext;
  minmaxContext(MOBILENET, { data: IMAGES, preprocess: { preset: 'raw01' }, maxImages: 3, batch: 2 }, (c) => (ctx = c));

  const cutOf = (name: string) => {
    const l = ctx.builder.layer(name);
    const v = ctx.builder.build(new Set([name]), { twin: name });
    return { l, v, cut: cutVariant(v.model, l.output, producedTensors(ctx.model)) };
  };

  it('cuts a residual Add at the block input and the projection it adds, a projection at its input and the skip', () => {
    // block_8_add = Add(block_7_add, block_8_project_BN): its quantized slot is the skip (block_7_add).
    expect(cutOf('block_8_add').cut!.inputs).toEqual(['block_7_add', 'block_8_project_BN']);
    // block_8_project_BN reads block_8_depthwise_relu; block_8_add downstream also reads block_7_add.
    expect(new Set(cutOf('block_8_project_BN').cut!.inputs)).toEqual(new Set(['block_8_depthwise_relu', 'block_7_add']));
    // The last Gemm: its input only.
    expect(cutOf('dense_3').cut!.inputs).toEqual(['dense_2_relu']);
  });

  it('runs the first layers whole: their cut would keep almost every node', () => {
    expect(cutOf('bn_Conv1').cut).toBeUndefined();
    expect(cutOf('expanded_conv_depthwise_BN').cut).toBeUndefined();
  });

  it('makes a closed model: inputs the cut, nodes reading only the cut, initializers or earlier nodes; the same outputs', () => {
    const { v, cut } = cutOf('block_8_project_BN');
    const m = cut!.model(new Map(cut!.inputs.map((t) => [t, { name: t, dtype: 'float32' as const, dims: ['N', 64, 14, 14] }])));
    const g = graphOf(m);
    expect(g.input.map((i) => i.name)).toEqual(cut!.inputs);
    expect(g.output.map((o) => o.name)).toEqual(graphOf(v.model).output.map((o) => o.name));
    expect(g.node.length).toBe(cut!.nodes);
    expect(cut!.nodes).toBeLessThan(cut!.of);
    const available = new Set([...cut!.inputs, ...g.initializer.map((t) => t.name)]);
    for (const n of g.node) {
      for (const i of n.input) if (i) expect(available.has(i), `${n.name} reads ${i}`).toBe(true);
      for (const o of n.output) if (o) available.add(o);
    }
    // No node upstream of the layer but its own Q/DQ: the depthwise convolution before it is not in the cut model.
    expect(g.node.some((n) => n.output.includes('block_8_depthwise_relu'))).toBe(false);
  });

  it('gives the whole variant\'s numbers from the cut (score, twin SNR and FP16 check)', async () => {
    const names = ['block_3_depthwise_BN', 'block_8_add', 'block_13_project_BN', 'dense_3'];
    const variants = names.map((name) => ({ name, variant: ctx.builder.build(new Set([name]), { twin: name }).model, output: ctx.builder.layer(name).output }));
    const cuts = new VariantCuts(await planOf(ctx, MOBILENET), variants, ctx.data);
    try {
      expect(cuts.summary).toMatchObject({ cut: 4, whole: 0, fp32Passes: 1 });
      for (const name of names) {
        const v = ctx.builder.build(new Set([name]), { twin: name });
        const whole = await evaluateModel(v.model, ctx.data, { threads: 1, twin: v.twin! });
        const p = await cuts.prepared(name);
        expect(p).toBeDefined();
        const fromCut = await evaluateModel(p!.model, ctx.data, { threads: 1, twin: v.twin!, feeds: p!.feeds });
        expect(fromCut.score.agreeCount).toBe(whole.score.agreeCount);
        expect(fromCut.score.cosineMean).toBeCloseTo(whole.score.cosineMean, 7);
        expect(fromCut.score.cosineMin).toBeCloseTo(whole.score.cosineMin, 7);
        expect(Math.abs(fromCut.twin!.snrDb - whole.twin!.snrDb)).toBeLessThan(1e-3);
        // The layer's FP32 output from the cut: the same up to float32 rounding (onnxruntime fuses differently).
        expect(Math.abs(fromCut.twin!.reference.absMax - whole.twin!.reference.absMax)).toBeLessThan(1e-6 * whole.twin!.reference.absMax);
      }
    } finally {
      cuts.release();
    }
  });

  it('runs a group\'s FP32 pass on the prefix that computes its cut tensors: the full model\'s values', async () => {
    const tensors = ['block_3_depthwise_relu', 'block_2_add'];
    const prefix = pruneToOutputs(ctx.model, tensors);
    const g = graphOf(prefix);
    expect(g.output.map((o) => o.name)).toEqual(tensors);
    expect(g.input.map((i) => i.name)).toEqual([ctx.data.inputName]);
    // Nothing past block 3's depthwise convolution, every node before it that the tensors need.
    expect(g.node.some((n) => n.output.includes('block_3_project_BN'))).toBe(false);
    expect(g.node.some((n) => n.output.includes('bn_Conv1'))).toBe(true);
    expect(g.node.length).toBeLessThan(graphOf(ctx.model).node.length / 4);
    const read = new Set(g.node.flatMap((n) => n.input));
    expect(g.initializer.every((t) => read.has(t.name))).toBe(true);
    const b = ctx.data.batches[0]!;
    const feed = { [ctx.data.inputName]: { dtype: 'float32' as const, dims: b.dims, data: b.data } };
    const full = await onnxruntimeBackend.open({ path: MOBILENET }, { threads: 1, expose: tensors });
    const part = await onnxruntimeBackend.open({ path: MOBILENET, bytes: saveOnnxModel(prefix) }, { threads: 1 });
    try {
      const want = await full.run(feed, tensors);
      const got = await part.run(feed, tensors);
      for (const t of tensors) {
        expect(got[t]!.dims).toEqual(want[t]!.dims);
        const a = got[t]!.data as Float32Array;
        const e = want[t]!.data as Float32Array;
        let worst = 0;
        for (let i = 0; i < e.length; i++) worst = Math.max(worst, Math.abs(a[i]! - e[i]!));
        expect(worst).toBeLessThan(1e-4);
      }
    } finally {
      await full.release();
      await part.release();
    }
  });

  it('runs a layer whole when its cut does not fit the memory budget', async () => {
    const name = 'block_3_depthwise_BN';
    const variants = [{ name, variant: ctx.builder.build(new Set([name]), { twin: name }).model, output: ctx.builder.layer(name).output }];
    const cuts = new VariantCuts(await planOf(ctx, MOBILENET, 1024), variants, ctx.data);
    expect(cuts.summary).toEqual({ cut: 0, whole: 1, fp32Passes: 0, peakBytes: 0 });
    expect(await cuts.prepared(name)).toBeUndefined();
  });

  it('plans over every layer: a layer gets the same bits whichever layers are measured beside it', async () => {
    const chosen = ['block_3_depthwise_BN', 'block_13_project_BN'];
    const all = await measureSensitivity(ctx, { exhaustive: true });
    const some = await measureSensitivity(ctx, { exhaustive: true, layers: chosen });
    for (const name of chosen) {
      const a = all.layers.find((l) => l.name === name)!;
      const b = some.layers.find((l) => l.name === name)!;
      expect(b.oneAtATime).toEqual(a.oneAtATime);
      expect(b.outputSnrDb).toBe(a.outputSnrDb);
    }
  });

  it('reports the cuts of the search: the exhaustive search cuts every layer past the first ones, in one FP32 run', async () => {
    const report = await measureSensitivity(ctx, { exhaustive: true });
    expect(report.cuts!.cut + report.cuts!.whole).toBe(ctx.builder.layers.length);
    expect(report.cuts!.whole).toBeGreaterThanOrEqual(2);
    expect(report.cuts!.whole).toBeLessThan(10);
    expect(report.cuts!.fp32Passes).toBe(1);
    expect(report.cuts!.peakBytes).toBeGreaterThan(0);
  });
});

describe('cut variants on the SSD detector', () => {
  let ctx: SensitivityContext;
  minmaxContext(SSD, { data: STREET, preprocess: { preset: 'raw01' }, maxImages: 2, batch: 1 }, (c) => (ctx = c));

  it('computes the head that does not depend on the layer from its own cut: the same mAP and outputs', async () => {
    expect(ctx.task.kind).toBe('detect');
    // A class-head layer: the box head and everything shared stay FP32, fed from the cut.
    const names = ['BoxPredictor_5_ClassPredictor_Conv2D', 'BoxPredictor_0_ClassPredictor_depthwise_depthwise'];
    const variants = names.map((name) => ({ name, variant: ctx.builder.build(new Set([name]), { twin: name }).model, output: ctx.builder.layer(name).output }));
    const cuts = new VariantCuts(await planOf(ctx, SSD), variants, ctx.data);
    try {
      expect(cuts.summary.cut).toBe(2);
      for (const name of names) {
        const v = ctx.builder.build(new Set([name]), { twin: name });
        const whole = await evaluateModel(v.model, ctx.data, { threads: 1, twin: v.twin! });
        const p = (await cuts.prepared(name))!;
        const fromCut = await evaluateModel(p.model, ctx.data, { threads: 1, twin: v.twin!, feeds: p.feeds });
        expect(fromCut.score.metric).toBe(whole.score.metric);
        expect(fromCut.score.value).toBe(whole.score.value);
        expect(fromCut.score.cosineMean).toBeCloseTo(whole.score.cosineMean, 7);
        expect(Math.abs(fromCut.twin!.snrDb - whole.twin!.snrDb)).toBeLessThan(1e-3);
      }
    } finally {
      cuts.release();
    }
  });
});
