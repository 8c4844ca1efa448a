import { describe, expect, it } from 'vitest';
import { buildCompareReport, buildHistograms, evaluateGate, histogramForDisplay, pickWinner, VariantComparison } from '../../src/compare/report.js';
import type { VariantReport } from '../../src/compare/types.js';
import type { TensorStatistics } from '../../src/stats/types.js';
import type { Tensor } from '../../src/tensor.js';
import { syntheticReport } from './compare-fixture.js';

const f32 = (dims: number[], values: number[]): Tensor => ({ dtype: 'float32', dims, data: Float32Array.from(values) });

function variant(name: string, precision: VariantReport['precision'], agreement: number, cosineMean: number, cosineMin: number): VariantReport {
  return { name, precision, algorithm: name.replace('int8-', ''), images: 10, agreement, cosineMean, cosineMin, outputs: [], worst: [] };
}

function stats(hist: number[], range: number, absMax: number): TensorStatistics {
  const count = hist.reduce((a, b) => a + b, 0);
  return { name: 't', count, nanCount: 0, posInfCount: 0, negInfCount: 0, zeroCount: 0, min: -absMax, max: absMax, absMax, range, hist: Float64Array.from(hist) };
}

describe('winner', () => {
  it('best agreement, then mean cosine, then worst cosine, then name', () => {
    expect(pickWinner([variant('int8-a', 'int8', 0.9, 0.99, 0.9), variant('int8-b', 'int8', 0.95, 0.98, 0.8)])!.name).toBe('int8-b');
    const w = pickWinner([variant('int8-a', 'int8', 0.9, 0.99, 0.9), variant('int8-b', 'int8', 0.9, 0.995, 0.8)])!;
    expect(w.name).toBe('int8-b');
    expect(w.reason).toMatch(/tied on agreement with int8-a; higher mean cosine/);
    expect(pickWinner([variant('int8-a', 'int8', 0.9, 0.99, 0.9), variant('int8-b', 'int8', 0.9, 0.99, 0.95)])!.name).toBe('int8-b');
    expect(pickWinner([variant('int8-b', 'int8', 0.9, 0.99, 0.9), variant('int8-a', 'int8', 0.9, 0.99, 0.9)])!.name).toBe('int8-a');
  });
  it('FP16 and FP32 never win; no INT8 means no winner', () => {
    expect(pickWinner([variant('fp16', 'fp16', 1, 1, 1), variant('int8-x', 'int8', 0.5, 0.9, 0.1)])!.name).toBe('int8-x');
    expect(pickWinner([variant('fp32', 'fp32', 1, 1, 1)])).toBeUndefined();
  });
});

describe('gate (--max-drop)', () => {
  // 4 images, 2 classes; FP32 predicts 0,0,1,1. "good" flips one image, "bad" flips two.
  const ref = f32([4, 2], [0.9, 0.1, 0.8, 0.2, 0.3, 0.7, 0.4, 0.6]);
  const good = f32([4, 2], [0.9, 0.1, 0.4, 0.6, 0.3, 0.7, 0.4, 0.6]);
  const bad = f32([4, 2], [0.1, 0.9, 0.4, 0.6, 0.3, 0.7, 0.4, 0.6]);
  const files = ['a', 'b', 'c', 'd'];
  function report(labels?: number[]): VariantReport[] {
    return [
      ['fp32', 'fp32', ref],
      ['int8-good', 'int8', good],
      ['int8-bad', 'int8', bad],
    ].map(([name, precision, out]) => {
      const c = new VariantComparison({ name: name as string, precision: precision as 'fp32' | 'int8' });
      c.addOutputs({ output: ref }, { output: out as Tensor }, files, labels);
      return c.result();
    });
  }
  it('unlabelled: 100 x (1 - top-1 agreement) of the INT8 winner', () => {
    const variants = report();
    const winner = pickWinner(variants);
    expect(winner!.name).toBe('int8-good');
    const pass = evaluateGate(variants, 25, 'output', winner);
    expect(pass).toEqual({ maxDrop: 25, metric: 'top1-agreement', variants: [{ name: 'int8-good', drop: 25, passed: true }], passed: true });
    expect(evaluateGate(variants, 24.9, 'output', winner).passed).toBe(false);
  });
  it('labelled: top-1 accuracy points against FP32', () => {
    // labels 0,1,1,1: FP32 gets 3/4, good gets 4/4 (a gain), so its drop is -25 points
    const variants = report([0, 1, 1, 1]);
    expect(variants[1]!.top1).toBe(1);
    expect(variants[1]!.top1Drop).toBe(-25);
    expect(variants[2]!.top1Drop).toBe(0); // bad: 0->1 wrong, 1 right, 2,3 right = 3/4
    const g = evaluateGate(variants, 0, 'output', pickWinner(variants));
    expect(g.metric).toBe('top1-accuracy');
    expect(g.passed).toBe(true);
  });
  it('dense map: 100 x (1 - IoU of the thresholded maps), which flipped text pixels cannot hide behind background', () => {
    // One 1x10x10 map: FP32 marks 4 pixels >= 0.3 (a "word"); the variant keeps 1 of them and adds 2 elsewhere.
    // Same side: 100 - 3 - 2 = 95 of 100 pixels (95%); IoU: 1 / (4 + 2) = 1/6.
    const refMap = new Array(100).fill(0.01);
    const varMap = new Array(100).fill(0.01);
    for (const i of [10, 11, 12, 13]) refMap[i] = 0.9;
    for (const i of [10, 50, 51]) varMap[i] = 0.8;
    const c = new VariantComparison({ name: 'int8-x', precision: 'int8' });
    c.addOutputs({ map: f32([1, 1, 10, 10], refMap) }, { map: f32([1, 1, 10, 10], varMap) }, ['a']);
    const v = c.result();
    expect(v.outputs[0]!.sameSideFraction).toBe(0.95);
    expect(v.outputs[0]!.iou).toBe(1 / 6);
    expect(v.agreement).toBe(1 / 6);
    const g = evaluateGate([v], 10, 'map', pickWinner([v]));
    expect(g.metric).toBe('threshold-iou');
    expect(g.variants[0]!.drop).toBeCloseTo((100 * 5) / 6, 12);
    expect(g.passed).toBe(false);
    // Both maps empty everywhere: they agree.
    const empty = new VariantComparison({ name: 'int8-e', precision: 'int8' });
    empty.addOutputs({ map: f32([1, 1, 2, 2], [0, 0.1, 0, 0]) }, { map: f32([1, 1, 2, 2], [0, 0.2, 0, 0]) }, ['a']);
    expect(empty.result().agreement).toBe(1);
  });
  it('refuses a gate on an output with no agreement measure', () => {
    const c = new VariantComparison({ name: 'int8-x', precision: 'int8' });
    c.addOutputs({ score: f32([2, 1], [1, 2]) }, { score: f32([2, 1], [1, 2.5]) }, ['a', 'b']);
    expect(() => evaluateGate([c.result()], 1, 'score', undefined)).toThrow(/--max-drop needs labels, a classifier output/);
  });
  it('buildCompareReport computes the gate from settings.maxDrop', () => {
    expect(syntheticReport({ maxDrop: 50 }).gate!.passed).toBe(true);
    const failed = syntheticReport({ maxDrop: 0 });
    expect(failed.gate!.passed).toBe(false);
    expect(failed.gate!.variants.map((v) => v.name)).toEqual(['fp16', failed.winner!.name]);
  });
});

describe('display histograms', () => {
  it('cuts trailing empty bins, then sums groups of neighbouring bins', () => {
    // 8 bins over [0, 8): data ends in bin 3; groups of 2 -> [1+2, 0+3]
    const h = histogramForDisplay(stats([1, 2, 0, 3, 0, 0, 0, 0], 8, 3.5), [{ algorithm: 'minmax', amax: 3.5 }], 2);
    expect(h.counts).toEqual([3, 3]);
    expect(h.binWidth).toBe(2);
    expect(h.upper).toBe(4);
    expect(h.thresholds).toEqual([{ algorithm: 'minmax', amax: 3.5 }]);
  });
  it('2048 bins become at most 128, keeping the total count', () => {
    const hist = Array.from({ length: 2048 }, (_, i) => (i < 1000 ? 1 + (i % 3) : 0));
    const h = histogramForDisplay(stats(hist, 4, 1.95), [], 128);
    expect(h.counts.length).toBe(125); // 1000 used bins in groups of 8
    expect(h.binWidth).toBe((4 / 2048) * 8);
    expect(h.counts.reduce((a, b) => a + b, 0)).toBe(hist.reduce((a, b) => a + b, 0));
  });
  it('an all-zero tensor is one bar', () => {
    expect(histogramForDisplay(stats([5, 0, 0], 0, 0), [], 128)).toMatchObject({ counts: [5], upper: 0 });
  });
  it('buildHistograms attaches each algorithm threshold and orders by layer SNR', () => {
    const a = { ...stats([1, 1], 2, 1.5), name: 'a' };
    const b = { ...stats([1, 1], 2, 1.5), name: 'b' };
    const hs = buildHistograms([a, b], [{ algorithm: 'minmax', amax: { a: 1.5, b: 1.4 } }, { algorithm: 'entropy2', amax: new Map([['b', 0.7]]) }], new Map([['b', 10], ['a', 20]]));
    expect(hs.map((h) => h.name)).toEqual(['b', 'a']);
    expect(hs[0]!.thresholds).toEqual([{ algorithm: 'minmax', amax: 1.4 }, { algorithm: 'entropy2', amax: 0.7 }]);
    expect(hs[1]!.thresholds).toEqual([{ algorithm: 'minmax', amax: 1.5 }]);
  });
});

describe('report assembly', () => {
  it('is the same whatever the batch size', () => {
    const a = syntheticReport({ batchSize: 1, labels: true, dense: true });
    const b = syntheticReport({ batchSize: 7, labels: true, dense: true });
    expect(JSON.stringify(b.variants)).toBe(JSON.stringify(a.variants));
    expect(b.winner).toEqual(a.winner);
  });
  it('FP32 against itself is exact; the primary output is the classifier; notes say what is unlabelled', () => {
    const r = syntheticReport({ labels: true, dense: true });
    const fp32 = r.variants[0]!;
    expect(fp32).toMatchObject({ name: 'fp32', agreement: 1, cosineMean: 1, cosineMin: 1, top1Drop: 0 });
    expect(fp32.outputs[0]!.snrDb).toBe(Infinity);
    expect(r.primaryOutput).toBe('output');
    expect(r.variants[1]!.outputs[1]!.kind).toBe('dense');
    expect(r.notes.some((n) => /had no label/.test(n))).toBe(true);
    // the least noisy INT8 variant wins
    expect(r.winner!.name).toBe('int8-entropy2');
    const layers = r.variants.find((v) => v.name === 'int8-entropy2')!.layers!;
    expect(layers.length).toBe(27);
    for (let i = 1; i < layers.length; i++) expect(layers[i]!.snrDb).toBeGreaterThanOrEqual(layers[i - 1]!.snrDb);
  });
  it('refuses two variants with the same name', () => {
    const r = syntheticReport();
    expect(() => buildCompareReport({ ...r, variants: [r.variants[0]!, r.variants[0]!] })).toThrow(/Two variants are named "fp32"/);
  });
});
