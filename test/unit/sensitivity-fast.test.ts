/**
 * The fast sensitivity search (proxy then measure): the proxy pass against a hand-computed two-layer model, the
 * candidate rule and the proxy/measured agreement by hand, and on the MobileNetV2 fixture (3 photos, a MinMax
 * cache made here) the measured layers' numbers equal to the exhaustive search's, the report's fields, and the
 * same report whatever the batch size or the order of --layers.
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
import { measureSensitivity, prepareSensitivity, type SensitivityContext, type SensitivityReport } from '../../src/sensitivity/analyze.js';
import { prepareEvaluationData, subsetEvaluationData } from '../../src/sensitivity/data.js';
import { evaluateModel } from '../../src/sensitivity/evaluate.js';
import { proxyPass } from '../../src/sensitivity/proxy.js';
import { candidateCount, proxyAgreement, proxyCandidates } from '../../src/sensitivity/rank.js';
import { VariantBuilder } from '../../src/sensitivity/variants.js';
import { IMAGES, MOBILENET, arrayDataset } from './onnx-testdata.js';

const f32 = (dims: number[], values: number[]) => makeTensor('float32', dims, values);
const fr = Math.fround;
const rhe = (x: number) => {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
};
/** QuantizeLinear then DequantizeLinear in float32, as onnxruntime computes them (int8, zero point 0). */
const qdq = (x: number, s: number) => fr(Math.max(-128, Math.min(127, rhe(fr(x / s)))) * s);
const snr = (ref: number[], got: number[]) => {
  let s = 0;
  let n = 0;
  ref.forEach((r, i) => {
    s += r * r;
    n += (r - got[i]!) ** 2;
  });
  return 10 * Math.log10(s / n);
};

describe('the proxy pass, by hand', () => {
  // conv1: h = 2x + 0.25 (1x1, one channel), relu, conv2: y = 0.7 r. Scales: x 1/127, r 3/127.
  const model = makeModel({
    nodes: [
      makeNode('Conv', ['x', 'w1', 'b1'], ['h'], { name: 'conv1' }),
      makeNode('Relu', ['h'], ['r'], { name: 'relu' }),
      makeNode('Conv', ['r', 'w2'], ['y'], { name: 'conv2' }),
    ],
    inputs: [makeValueInfo('x', ELEM.FLOAT, ['N', 1, 2, 2])],
    outputs: [makeValueInfo('y', ELEM.FLOAT, ['N', 1, 2, 2])],
    initializers: [tensorToProto('w1', f32([1, 1, 1, 1], [2])), tensorToProto('b1', f32([1], [0.25])), tensorToProto('w2', f32([1, 1, 1, 1], [0.7]))],
  });
  const sx = fr(1 / 127);
  const sr = fr(3 / 127);
  const images = [
    [0.1, 0.26, 0.5, 1.0],
    [0.2, -0.3, 0, -0.9],
    [0.33, 0.77, -0.05, 0.6],
  ];

  async function run(batchSize: number) {
    const scales = new Map([['x', sx], ['r', sr]]);
    const full = quantizeQdq(model, { activationScales: scales, file: 'two.onnx' });
    const builder = new VariantBuilder(model, full);
    const session = await onnxruntimeBackend.open({ path: 'two.onnx', bytes: saveOnnxModel(model) }, { threads: 1 });
    try {
      const data = await prepareEvaluationData({ dataset: arrayDataset(images, [1, 2, 2], batchSize), session });
      return { builder, result: await proxyPass(builder, builder.layers, data, { threads: 1 }) };
    } finally {
      await session.release();
    }
  }

  it("gives each layer's own output SNR: the layer in INT8 on its FP32 input against FP32", async () => {
    const { builder, result } = await run(2);
    expect(builder.layers.map((l) => l.name)).toEqual(['conv1', 'conv2']);
    // Per-channel symmetric weights: scale max|w|/127, q = 127.
    const w1 = fr(127 * fr(2 / 127));
    const w2 = fr(127 * fr(fr(0.7) / 127));
    const xs = images.flat();
    const h = xs.map((x) => fr(fr(2 * x) + 0.25));
    const h8 = xs.map((x) => fr(fr(qdq(x, sx) * w1) + 0.25));
    // conv2's twin reads the FP32 relu output (not conv1's INT8 one): everything upstream of the layer is float.
    const r = h.map((v) => Math.max(0, v));
    const y = r.map((v) => fr(fr(0.7) * v));
    const y8 = r.map((v) => fr(qdq(v, sr) * w2));
    const conv1 = result.layers.get('conv1')!;
    const conv2 = result.layers.get('conv2')!;
    expect(conv1.outputSnrDb).toBeCloseTo(snr(h, h8), 4);
    expect(conv2.outputSnrDb).toBeCloseTo(snr(y, y8), 4);
    // The FP32 output's range for the FP16 check.
    expect(conv1.outputAbsMax).toBe(Math.max(...h.map(Math.abs)));
    expect(conv2.outputAbsMax).toBe(Math.max(...y.map(Math.abs)));
    expect(result.runs).toBe(2);
  });

  it('gives the same numbers whatever the batch size', async () => {
    const a = (await run(1)).result;
    const b = (await run(3)).result;
    expect([...b.layers]).toEqual([...a.layers]);
  });
});

describe('the candidate rule and the agreement, by hand', () => {
  const layers = (snrs: Array<[string, number]>) => snrs.map(([name, outputSnrDb]) => ({ name, outputSnrDb }));

  it('takes max(min, ceil(share x layers)) lowest SNRs, then any within the margin of the last', () => {
    expect(candidateCount(65)).toBe(13);
    expect(candidateCount(10)).toBe(8);
    expect(candidateCount(5)).toBe(5);
    const l = layers([['a', 30], ['b', 20], ['c', 25], ['d', 25.05], ['e', 26], ['f', Number.NaN], ['g', 24.99]]);
    // Proxy order: b 20, g 24.99, c 25, d 25.05, e 26, f NaN (least sensitive).
    expect(proxyCandidates(l, { min: 2, share: 0, marginDb: 0 }).map((x) => x.name)).toEqual(['b', 'g']);
    expect(proxyCandidates(l, { min: 2, share: 0, marginDb: 0.1 }).map((x) => x.name)).toEqual(['b', 'g', 'c', 'd']);
    expect(proxyCandidates(l, { min: 1, share: 0.5, marginDb: 0 }).map((x) => x.name)).toEqual(['b', 'g', 'c', 'd']);
    expect(proxyCandidates(l, { min: 6, share: 0, marginDb: 0 }).map((x) => x.name)).toEqual(['b', 'g', 'c', 'd', 'e', 'a']);
    // Ties on the SNR: by name, whatever the input order.
    const tie = layers([['z', 10], ['y', 10], ['x', 12]]);
    expect(proxyCandidates([...tie].reverse(), { min: 1, share: 0, marginDb: 0 }).map((x) => x.name)).toEqual(['y', 'z']);
  });

  it("lists the layers the proxy places differently, with Kendall's tau", () => {
    // Measured a > b > c > d; proxy b, a, c, d: one discordant pair of six -> tau = (5 - 1) / 6.
    const r = proxyAgreement(['a', 'b', 'c', 'd'], ['b', 'x', 'a', 'c', 'd']);
    expect(r.disagreements).toEqual([
      { layer: 'a', proxyRank: 2, measuredRank: 1 },
      { layer: 'b', proxyRank: 1, measuredRank: 2 },
    ]);
    expect(r.kendallTau).toBeCloseTo(4 / 6, 12);
    expect(proxyAgreement(['a', 'b'], ['a', 'b']).kendallTau).toBe(1);
    expect(proxyAgreement(['a', 'b', 'c'], ['c', 'b', 'a']).kendallTau).toBe(-1);
  });
});

describe('fast search on the MobileNetV2 fixture', () => {
  let tmp: string;
  let ctx: SensitivityContext;
  let fast: SensitivityReport;
  let exhaustive: SensitivityReport;
  const data = { data: IMAGES, preprocess: { preset: 'raw01' }, maxImages: 3, batch: 2 };
  const layers = ['bn_Conv1', 'expanded_conv_*', 'block_1_*', 'block_2_*'];
  const rule = { min: 3, share: 0, marginDb: 0 };

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-sensitivity-fast-'));
    const r = await calibrate({ model: MOBILENET, data, algorithms: ['minmax'], trtVersion: '10.3.0', outDir: tmp });
    ctx = await prepareSensitivity({ model: MOBILENET, cache: r.caches[0]!.file, data, threads: 1 });
    fast = await measureSensitivity(ctx, { layers, candidates: rule });
    exhaustive = await measureSensitivity(ctx, { layers, exhaustive: true });
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it("measures the proxy's candidates exactly as the exhaustive search does, and ranks them first", () => {
    expect(fast.search.method).toBe('proxy-then-measure');
    expect(fast.search.rule).toMatchObject({ ...rule, taken: 3 });
    expect(fast.variants).toBe(1 + 3);
    expect(exhaustive.variants).toBe(1 + 10);
    const byName = new Map(exhaustive.layers.map((l) => [l.name, l]));
    // The candidates: the three lowest own output SNRs (the exhaustive search's outputSnrDb, to 0.01 dB).
    const lowest = [...exhaustive.layers].sort((a, b) => a.outputSnrDb! - b.outputSnrDb!).slice(0, 3).map((l) => l.name);
    expect([...fast.search.measured].sort()).toEqual([...lowest].sort());
    const measured = fast.layers.slice(0, 3);
    expect(measured.map((l) => l.name)).toEqual(exhaustive.layers.map((l) => l.name).filter((n) => lowest.includes(n)));
    for (const l of measured) {
      const e = byName.get(l.name)!;
      expect(l.rankedBy).toBe('measured');
      expect(l.oneAtATime).toEqual(e.oneAtATime);
      expect(l.sensitivity).toBe(e.sensitivity);
      // The layer's own output SNR and FP16 check: the proxy pass's (the twin's pair, in another graph; its FP16
      // SNR from every 8th value) where the exhaustive search has its float twin's.
      expect(Math.abs(l.outputSnrDb! - e.outputSnrDb!)).toBeLessThan(0.01);
      expect(l.fp16.enough).toBe(e.fp16.enough);
      expect(l.fp16.inputAbsMax).toBe(e.fp16.inputAbsMax);
      expect(Math.abs(l.fp16.outputAbsMax! - e.fp16.outputAbsMax!)).toBeLessThan(1e-5 * e.fp16.outputAbsMax!);
      expect(Math.abs(l.fp16.outputFp16SnrDb! - e.fp16.outputFp16SnrDb!)).toBeLessThan(0.5);
    }
    expect(fast.fullInt8).toEqual(exhaustive.fullInt8);
  });

  it('ranks the others after them by the proxy, and says which were measured and where the orders disagree', () => {
    const rest = fast.layers.slice(3);
    expect(rest.map((l) => l.rank)).toEqual([4, 5, 6, 7, 8, 9, 10]);
    expect(fast.search.proxyRanked).toEqual(rest.map((l) => l.name));
    const snrs = rest.map((l) => l.outputSnrDb!);
    expect([...snrs].sort((a, b) => a - b)).toEqual(snrs);
    for (const l of rest) {
      expect(l.rankedBy).toBe('proxy');
      expect(l.oneAtATime).toBeUndefined();
      expect(l.sensitivity).toBeUndefined();
      expect(Math.abs(l.outputSnrDb! - exhaustive.layers.find((e) => e.name === l.name)!.outputSnrDb!)).toBeLessThan(0.01);
      expect(l.fp16.enough).toBe(true);
      expect(l.fp16.outputAbsMax).toBe(exhaustive.layers.find((e) => e.name === l.name)!.fp16.outputAbsMax);
      // The output's float16 rounding SNR too, from the proxy pass's sums (what the float twin measures).
      expect(Math.abs(l.fp16.outputFp16SnrDb! - exhaustive.layers.find((e) => e.name === l.name)!.fp16.outputFp16SnrDb!)).toBeLessThan(1);
    }
    const order = proxyAgreement(fast.layers.slice(0, 3).map((l) => l.name), [...fast.layers].sort((a, b) => a.outputSnrDb! - b.outputSnrDb!).map((l) => l.name));
    expect(fast.search.disagreements).toEqual(order.disagreements);
    expect(fast.search.kendallTau).toBe(order.kendallTau);
    expect(exhaustive.search).toEqual({ method: 'exhaustive', measured: exhaustive.layers.map((l) => l.name).sort((a, b) => ctx.builder.layer(a).node - ctx.builder.layer(b).node), proxyRanked: [] });
    expect(exhaustive.layers.every((l) => l.rankedBy === 'measured' && l.oneAtATime !== undefined)).toBe(true);
  });

  it('is exhaustive for leave-one-out, and says why', async () => {
    const r = await measureSensitivity(ctx, { layers: ['bn_Conv1'], measure: 'leave-one-out' });
    expect(r.search).toMatchObject({ method: 'exhaustive', why: '--measure leave-one-out: the proxy stands in for one-at-a-time only' });
  });

  it('--hardest N: measures the candidates on the N images full INT8 gets furthest from FP32, the rest on all', async () => {
    // 5 images here, the 2 hardest by full INT8's per-image cosine (worked out independently below).
    const c5 = await prepareSensitivity({ model: MOBILENET, cache: ctx.cache.file, data: { ...data, maxImages: 5 }, threads: 1 });
    const all = new Set(c5.builder.layers.map((l) => l.name));
    const full = await evaluateModel(c5.builder.build(all).model, c5.data, { threads: 1, worstCount: 5 });
    const byCosine = [...full.report.worst].sort((a, b) => a.cosine - b.cosine || a.index - b.index);
    const hardest = byCosine.slice(0, 2).map((w) => w.index).sort((a, b) => a - b);
    expect(byCosine[1]!.cosine).toBeLessThan(byCosine[2]!.cosine); // the choice is not a tie
    const plain = await measureSensitivity(c5, { layers, candidates: rule });
    const hard = await measureSensitivity(c5, { layers, candidates: rule, hardest: 2 });
    expect(hard.search.hardest).toMatchObject({ images: 2, of: 5, files: hardest.map((i) => c5.data.files[i]) });
    expect(hard.fullInt8).toEqual(plain.fullInt8); // over every image
    // The proxy pass (and so the candidates, and every layer's own SNR and FP16 check) is over every image.
    expect(hard.search.measured).toEqual(plain.search.measured);
    const plainBy = new Map(plain.layers.map((l) => [l.name, l]));
    const sub = subsetEvaluationData(c5.data, hardest, 2);
    expect(sub.files).toEqual(hardest.map((i) => c5.data.files[i]));
    for (const l of hard.layers) {
      const p = plainBy.get(l.name)!;
      expect(l.outputSnrDb, l.name).toBe(l.rankedBy === 'measured' ? (await proxyPass(c5.builder, [c5.builder.layer(l.name)], c5.data, { threads: 1 })).layers.get(l.name)!.outputSnrDb : p.outputSnrDb);
      if (l.rankedBy !== 'measured') continue;
      // Its score: the same variant on the two images alone (run whole here, from its cut in the search: the same
      // up to float32 rounding, src/sensitivity/cut.ts).
      expect(l.oneAtATime!.images).toBe(2);
      const v = c5.builder.build(new Set([l.name]));
      const alone = (await evaluateModel(v.model, sub, { threads: 1, name: l.name })).score;
      expect({ ...l.oneAtATime!, cosineMean: 0, cosineMin: 0 }).toEqual({ ...alone, cosineMean: 0, cosineMin: 0 });
      expect(l.oneAtATime!.cosineMean).toBeCloseTo(alone.cosineMean, 7);
      expect(l.oneAtATime!.cosineMin).toBeCloseTo(alone.cosineMin, 7);
    }
    await expect(measureSensitivity(c5, { layers, hardest: 2, exhaustive: true })).rejects.toThrow(/--hardest works with the default search/);
    // N at or above the number of images: the default search.
    const same = await measureSensitivity(c5, { layers, candidates: rule, hardest: 5 });
    expect(same.search.hardest).toBeUndefined();
    expect(same.layers).toEqual(plain.layers);
  });

  it('--hardest: the subset holds exactly those images, their FP32 outputs and labels, in batches', async () => {
    const c5 = await prepareSensitivity({ model: MOBILENET, cache: ctx.cache.file, data: { ...data, maxImages: 5, batch: 2 }, threads: 1 });
    c5.data.labels = [0, 1, 2, 3, 4];
    const sub = subsetEvaluationData(c5.data, [4, 1, 3], 2);
    expect(sub.files).toEqual([1, 3, 4].map((i) => c5.data.files[i]));
    expect(sub.labels).toEqual([1, 3, 4]);
    expect(sub.batches.map((b) => b.dims[0])).toEqual([2, 1]);
    // Against the images decoded on their own, and FP32 run on them.
    const per = 3 * 224 * 224;
    const flat = (bs: typeof c5.data.batches) => bs.flatMap((b) => Array.from({ length: b.files.length }, (_, j) => b.data.subarray(j * per, (j + 1) * per)));
    const images = flat(c5.data.batches);
    flat(sub.batches).forEach((img, k) => expect(img).toEqual(images[[1, 3, 4][k]!]));
    const session = await onnxruntimeBackend.open({ path: MOBILENET }, { threads: 1 });
    try {
      for (const [k, b] of sub.batches.entries()) {
        const out = await session.run({ input: { dtype: 'float32', dims: b.dims, data: b.data } });
        expect(sub.fp32Outputs[k]!.output!.data).toEqual(out.output!.data);
      }
    } finally {
      await session.release();
    }
    expect(sub.bytes).toBe(3 * per * 4 + 3 * 5 * 4);
  });

  it('gives the same report whatever the batch size and the order of --layers', async () => {
    const ctx1 = await prepareSensitivity({ model: MOBILENET, cache: ctx.cache.file, data: { ...data, batch: 1 }, threads: 1 });
    const again = await measureSensitivity(ctx1, { layers: [...layers].reverse(), candidates: rule });
    expect(again.layers).toEqual(fast.layers);
    expect({ ...again.search, proxySeconds: 0 }).toEqual({ ...fast.search, proxySeconds: 0 });
  });
});
