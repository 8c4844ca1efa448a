/**
 * The one-at-a-time variant's float twin, compared inside the graph (VariantBuilder.build, evaluate.ts TwinTotals):
 * against a hand-computed one-layer model (143 values per image: a row length that is no multiple of the SIMD packet),
 * the same bytes at any batch size and thread count, float16 overflow and NaN on the safe side of the FP16 check,
 * and on the MobileNetV2 fixture (3 photos, a MinMax cache made here) a score equal to the variant's without twin.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibrate } from '../../src/app/calibrate.js';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { makeModel, makeNode, makeValueInfo } from '../../src/onnx/build.js';
import { ELEM, makeTensor, saveOnnxModel, tensorToProto } from '../../src/onnx/model.js';
import { quantizeQdq } from '../../src/onnx/qdq.js';
import { ensureInputNoise, fp16Check, prepareSensitivity, type SensitivityContext } from '../../src/sensitivity/analyze.js';
import { prepareEvaluationData } from '../../src/sensitivity/data.js';
import { TwinTotals, evaluateModel } from '../../src/sensitivity/evaluate.js';
import { roundToFloat16 } from '../../src/sensitivity/noise.js';
import { VariantBuilder } from '../../src/sensitivity/variants.js';
import { IMAGES, MOBILENET, arrayDataset } from './onnx-testdata.js';

const fr = Math.fround;
const rhe = (x: number) => {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
};
/** QuantizeLinear then DequantizeLinear in float32, as onnxruntime computes them (int8, zero point 0). */
const qdq = (x: number, s: number) => fr(Math.max(-128, Math.min(127, rhe(fr(x / s)))) * s);

/** conv: h = w x + 0.25 (1x1, one channel, 11x13 images), then relu (the model's output). */
function oneConv(w: number) {
  return makeModel({
    nodes: [makeNode('Conv', ['x', 'w', 'b'], ['h'], { name: 'conv' }), makeNode('Relu', ['h'], ['y'], { name: 'relu' })],
    inputs: [makeValueInfo('x', ELEM.FLOAT, ['N', 1, 11, 13])],
    outputs: [makeValueInfo('y', ELEM.FLOAT, ['N', 1, 11, 13])],
    initializers: [tensorToProto('w', makeTensor('float32', [1, 1, 1, 1], [w])), tensorToProto('b', makeTensor('float32', [1], [0.25]))],
  });
}

async function twinOf(images: number[][], options: { w: number; scale: number; batch: number; threads: number }) {
  const model = oneConv(options.w);
  const full = quantizeQdq(model, { activationScales: new Map([['x', options.scale]]), file: 'one.onnx' });
  const builder = new VariantBuilder(model, full);
  const session = await onnxruntimeBackend.open({ path: 'one.onnx', bytes: saveOnnxModel(model) }, { threads: options.threads });
  try {
    const data = await prepareEvaluationData({ dataset: arrayDataset(images, [1, 11, 13], options.batch), session });
    const v = builder.build(new Set(['conv']), { twin: 'conv' });
    return (await evaluateModel(v.model, data, { threads: options.threads, twin: v.twin! })).twin!;
  } finally {
    await session.release();
  }
}

describe('the float twin, by hand', () => {
  const images = Array.from({ length: 5 }, (_, i) => Array.from({ length: 143 }, (_, k) => fr(Math.sin(1 + 7 * i + 3 * k) * (0.2 + (k % 10) / 10))));
  const sx = fr(1 / 127);

  it("gives the layer's output SNR and cosine against FP32, and its FP32 range and FP16 rounding SNR", async () => {
    const twin = await twinOf(images, { w: 2, scale: sx, batch: 2, threads: 1 });
    const w8 = fr(127 * fr(2 / 127));
    const xs = images.flat();
    const h = xs.map((x) => fr(fr(2 * x) + 0.25));
    const h8 = xs.map((x) => fr(fr(qdq(x, sx) * w8) + 0.25));
    let [ref2, var2, err2, dot, f16] = [0, 0, 0, 0, 0];
    h.forEach((r, i) => {
      const o = h8[i]!;
      ref2 += r * r;
      var2 += o * o;
      err2 += (r - o) ** 2;
      dot += r * o;
      f16 += (r - roundToFloat16(r)) ** 2;
    });
    expect(err2).toBeGreaterThan(0);
    expect(twin.snrDb).toBeCloseTo(10 * Math.log10(ref2 / err2), 5);
    expect(twin.cosine).toBeCloseTo(dot / Math.sqrt(ref2 * var2), 8);
    expect(twin.cosine).toBeLessThan(1);
    expect(twin.reference.absMax).toBe(Math.max(...h.map(Math.abs)));
    // Every element's float16 rounding (the FP32 pass samples every 8th; the graph takes them all).
    expect(twin.reference.fp16SnrDb).toBeCloseTo(10 * Math.log10(ref2 / f16), 4);
  });

  it('gives the same bytes whatever the batch size and the thread count', async () => {
    const a = await twinOf(images, { w: 2, scale: sx, batch: 1, threads: 1 });
    for (const [batch, threads] of [[2, 1], [5, 1], [3, 2]] as const) {
      expect(await twinOf(images, { w: 2, scale: sx, batch, threads })).toEqual(a);
    }
  });

  it('reports a float16 overflow and a NaN on the unsafe side: FP16 is then not enough', async () => {
    // 2 x 40000 + 0.25 rounds to infinity in float16: the round trip's noise is infinite.
    const big = [images[0]!, images[1]!.map((x, k) => (k === 4 ? 40000 : x))];
    const over = await twinOf(big, { w: 2, scale: fr(40000 / 127), batch: 2, threads: 1 });
    expect(over.reference.absMax).toBe(80000.25);
    expect(over.reference.fp16SnrDb).toBe(Number.NEGATIVE_INFINITY);
    expect(Number.isFinite(over.snrDb)).toBe(true);

    const nan = await twinOf([images[0]!, images[1]!.map((x, k) => (k === 4 ? Number.NaN : x))], { w: 2, scale: sx, batch: 1, threads: 1 });
    expect(nan.reference).toEqual({ absMax: Number.POSITIVE_INFINITY, fp16SnrDb: Number.NEGATIVE_INFINITY });
    expect(nan.snrDb).toBe(Number.NEGATIVE_INFINITY);
    expect(nan.cosine).toBeNaN();
  });

  it('adds per-image sums in image order, with PairSums edge cases and non-finite sums made safe', () => {
    const sums = (ref2: number[], var2: number[], err2: number[], fp16Err2 = ref2.map(() => 0), max = ref2.map(() => 1), min = ref2.map(() => -1)) => ({ ref2, var2, err2, fp16Err2, max, min });
    const t = new TwinTotals();
    t.add(sums([4, 1], [4, 1], [0, 0]), 2);
    expect([t.snrDb, t.cosine]).toEqual([Number.POSITIVE_INFINITY, 1]);
    t.add(sums([5], [5], [0.5], [0.05], [3], [-7]), 1);
    // ref2 10, var2 10, err2 0.5: cos = (10 + 10 - 0.5) / 20.
    expect(t.snrDb).toBeCloseTo(10 * Math.log10(10 / 0.5), 12);
    expect(t.cosine).toBeCloseTo(19.5 / 20, 14);
    expect(t.reference).toEqual({ absMax: 7, fp16SnrDb: 10 * Math.log10(10 / 0.05) });
    const zero = new TwinTotals();
    zero.add(sums([0], [2], [2]), 1);
    expect([zero.snrDb, zero.cosine]).toEqual([Number.NEGATIVE_INFINITY, 0]);
    const inf = new TwinTotals();
    inf.add(sums([1], [Number.POSITIVE_INFINITY], [Number.POSITIVE_INFINITY]), 1);
    expect(inf.snrDb).toBe(Number.NEGATIVE_INFINITY);
    expect(inf.cosine).toBeNaN();
    expect(inf.reference.absMax).toBe(1);
    const nanMax = new TwinTotals();
    nanMax.add(sums([1], [1], [0], [0], [Number.NaN], [0]), 1);
    expect(nanMax.reference).toEqual({ absMax: Number.POSITIVE_INFINITY, fp16SnrDb: Number.NEGATIVE_INFINITY });
    expect(() => new TwinTotals().add(sums([1, 2], [1], [0, 0]), 2)).toThrow(/var2: 1 values for 2 images/);
  });
});

describe('the float twin on the MobileNetV2 fixture', () => {
  let tmp: string;
  let ctx: SensitivityContext;
  const data = { data: IMAGES, preprocess: { preset: 'raw01' }, maxImages: 3, batch: 2 };

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-sensitivity-twin-'));
    const r = await calibrate({ model: MOBILENET, data, algorithms: ['minmax'], trtVersion: '10.3.0', outDir: tmp });
    ctx = await prepareSensitivity({ model: MOBILENET, cache: r.caches[0]!.file, data, threads: 1 });
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  // An early depthwise convolution (32x112x112 values per image) and the last Gemm (5 per image).
  const layers = ['expanded_conv_depthwise_BN', 'dense_3'];

  it("leaves the variant's scored outputs as they are: the same score as without the twin", async () => {
    for (const name of layers) {
      const withTwin = ctx.builder.build(new Set([name]), { twin: name });
      const a = await evaluateModel(withTwin.model, ctx.data, { twin: withTwin.twin! });
      const b = await evaluateModel(ctx.builder.build(new Set([name])).model, ctx.data);
      expect(a.score).toEqual(b.score);
      expect(a.report.outputs).toEqual(b.report.outputs);
      expect(a.twin!.snrDb).toBeGreaterThan(10);
      expect(a.twin!.cosine).toBeLessThan(1);
    }
  });

  it('gives the same twin numbers at batch 1 and batch 2, at 1 and 2 threads', async () => {
    const ctx1 = await prepareSensitivity({ model: MOBILENET, cache: ctx.cache.file, data: { ...data, batch: 1 }, threads: 2 });
    for (const name of layers) {
      const v = ctx.builder.build(new Set([name]), { twin: name });
      const a = await evaluateModel(v.model, ctx.data, { threads: 1, twin: v.twin! });
      const b = await evaluateModel(v.model, ctx1.data, { threads: 2, twin: v.twin! });
      expect(b.twin).toEqual(a.twin);
    }
  });

  it('says FP16 is not enough for an output that overflows float16 or holds NaN', async () => {
    const l = ctx.builder.layer('expanded_conv_depthwise_BN');
    await ensureInputNoise(ctx);
    expect(fp16Check(ctx, l, { absMax: 135, fp16SnrDb: 73 }).enough).toBe(true);
    expect(fp16Check(ctx, l, { absMax: Number.POSITIVE_INFINITY, fp16SnrDb: Number.NEGATIVE_INFINITY })).toMatchObject({ enough: false, reason: 'its FP32 output holds infinite or NaN values' });
    expect(fp16Check(ctx, l, { absMax: 70000, fp16SnrDb: Number.NEGATIVE_INFINITY })).toMatchObject({ enough: false, reason: 'its output reaches 7.000e+4, beyond the FP16 range (65504)' });
    expect(fp16Check(ctx, l, { absMax: Number.NaN, fp16SnrDb: 73 }).enough).toBe(false);
    expect(fp16Check(ctx, l, { absMax: 135, fp16SnrDb: Number.NaN }).enough).toBe(false);
  });
});
