/**
 * The mixed-precision search on synthetic problems with hand-computed answers: a fake evaluator stands for
 * "build the model from the map and run it". Each INT8 layer costs a fixed number of points of agreement, so the
 * best map can be worked out by hand.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PrecisionMap } from '../../src/precision/map.js';
import type { EvaluationData } from '../../src/sensitivity/data.js';
import { chooseMixedPrecision, prefixSchedule, type MixedEvaluator } from '../../src/sensitivity/mixed.js';
import { parseLayerCap } from '../../src/sensitivity/auto.js';

const LAYERS = ['A', 'B', 'C', 'D', 'E', 'F'];

/**
 * Agreement = 1 - (sum of the costs of the INT8 layers + the FP16 costs of the FP16 layers + a floor) / 100.
 * int8Layers = layers the map leaves in INT8.
 */
function fakeEvaluator(cost: Record<string, number>, options: { fp16Cost?: Record<string, number>; floor?: number } = {}) {
  const calls: string[] = [];
  const evaluate: MixedEvaluator = async (map: PrecisionMap) => {
    let points = options.floor ?? 0;
    let int8 = 0;
    for (const [layer, p] of map) {
      if (p === 'int8') {
        points += cost[layer] ?? 0;
        int8++;
      } else if (p === 'fp16') points += options.fp16Cost?.[layer] ?? 0;
    }
    calls.push([...map].filter(([, p]) => p !== 'int8').map(([l, p]) => `${l}:${p}`).join(',') || '-');
    const value = 1 - points / 100;
    return { score: { images: 100, metric: 'top1-agreement', value, drop: points, agreeCount: Math.round(value * 100), agreement: value, cosineMean: 1 - points / 1000, cosineMin: 1 - points / 500 }, int8Layers: int8 };
  };
  return { evaluate, calls };
}

const data = {} as EvaluationData; // never read by a fake evaluator
const base = { model: {} as never, scales: new Map(), data, layers: LAYERS };

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-mixed-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('chooseMixedPrecision', () => {
  it('keeps the two costly layers out: walk to the first passing prefix, then nothing can go back', async () => {
    // Costs: A 5, B 3, C 0.5, D 0.4, E 0.3, F 0.2 -> full INT8 drops 9.4 points. Budget 1.5:
    // top 1 out (A): 4.4 fails; top 2 out (A, B): 1.4 passes. Pruning: without B is {A} again (4.4, from the
    // memo, not re-run), without A 6.4: both fail. Then the far end of the curve: every layer out.
    const { evaluate, calls } = fakeEvaluator({ A: 5, B: 3, C: 0.5, D: 0.4, E: 0.3, F: 0.2 });
    const out = path.join(tmp, 'm.precision.json');
    const r = await chooseMixedPrecision({ ...base, ranking: LAYERS, maxDrop: 1.5, evaluate, out });
    expect(r.met).toBe(true);
    expect(r.chosen.keptOut).toEqual([
      { layer: 'A', precision: 'fp16' },
      { layer: 'B', precision: 'fp16' },
    ]);
    expect(r.chosen.drop).toBeCloseTo(1.4, 12);
    expect(r.chosen.int8Layers).toBe(4);
    expect(calls).toEqual(['-', 'A:fp16', 'A:fp16,B:fp16', 'B:fp16', 'A:fp16,B:fp16,C:fp16,D:fp16,E:fp16,F:fp16']);
    expect(r.evaluations).toBe(5);
    expect([...r.map]).toEqual([['A', 'fp16'], ['B', 'fp16'], ['C', 'int8'], ['D', 'int8'], ['E', 'int8'], ['F', 'int8']]);
    expect(r.written).toBe(out);
    expect(await readFile(out, 'utf8')).toBe('{\n  "A": "fp16",\n  "B": "fp16",\n  "C": "int8",\n  "D": "int8",\n  "E": "int8",\n  "F": "int8"\n}\n');
    // The curve: full INT8, the walk, no INT8, the chosen map marked; the target is 1 - 1.5/100.
    expect(r.tradeoff.target).toBeCloseTo(0.985, 12);
    expect(r.tradeoff.metric).toBe('top-1 agreement');
    expect(r.tradeoff.totalLayers).toBe(6);
    expect(r.tradeoff.points.map((p) => p.int8Layers)).toEqual([6, 5, 4, 0]);
    expect(r.tradeoff.chosen).toBe(2);
    expect(r.tradeoff.points[2]!.label).toBe('chosen: top 2 kept out');
  });

  it('prunes a layer the ranking put too high', async () => {
    // Ranking A, C, B but C costs little: top 1 {A} 4.3 and top 2 {A, C} 3.9 fail, top 3 {A, C, B} passes with
    // 0.9. Pruning, least sensitive first: without B is {A, C} (3.9, memo), without C {A, B} 1.3 passes, then
    // without A {B} 6.3 fails.
    const { evaluate, calls } = fakeEvaluator({ A: 5, B: 3, C: 0.4, D: 0.3, E: 0.3, F: 0.3 });
    const r = await chooseMixedPrecision({ ...base, ranking: ['A', 'C', 'B', 'D', 'E', 'F'], maxDrop: 1.5, evaluate });
    expect(r.met).toBe(true);
    expect(r.chosen.keptOut.map((k) => k.layer)).toEqual(['A', 'B']);
    expect(r.chosen.step).toBe('prune');
    expect(calls.slice(0, 6)).toEqual(['-', 'A:fp16', 'A:fp16,C:fp16', 'A:fp16,B:fp16,C:fp16', 'A:fp16,B:fp16', 'B:fp16']);
  });

  it('bisects after the walk has started to take larger steps', async () => {
    // 12 layers costing 1 point each, budget 1.5 points: 11 must go out. Schedule 1..8, 12 (cap 12):
    // 8 fails, 12 passes; bisect 10 (2 points, fails), 11 (1 point, passes).
    const layers = Array.from({ length: 12 }, (_, i) => `L${String(i).padStart(2, '0')}`);
    const { evaluate, calls } = fakeEvaluator(Object.fromEntries(layers.map((l) => [l, 1])));
    const r = await chooseMixedPrecision({ ...base, layers, ranking: layers, maxDrop: 1.5, evaluate });
    expect(prefixSchedule(12)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 12]);
    expect(calls.slice(0, 12).map((c) => (c === '-' ? 0 : c.split(',').length))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 10, 11]);
    expect(r.chosen.keptOut).toHaveLength(11);
    expect(r.chosen.drop).toBe(1);
  });

  it('puts a layer whose values FP16 cannot hold in FP32', async () => {
    const { evaluate } = fakeEvaluator({ A: 5, B: 3 });
    const r = await chooseMixedPrecision({ ...base, ranking: LAYERS, maxDrop: 1, evaluate, fp16NotEnough: new Map([['B', 'its output reaches 1e+05']]) });
    expect(r.chosen.keptOut).toEqual([
      { layer: 'A', precision: 'fp16' },
      { layer: 'B', precision: 'fp32' },
    ]);
    expect(r.map.get('B')).toBe('fp32');
  });

  it('finds empirically where FP16 is not enough: FP32 walk, then FP16 wherever the budget still holds', async () => {
    // A costs 5 in INT8 and still 4 in FP16 (FP16 is not enough for it); B costs 3 in INT8, nothing in FP16.
    // FP16 walk: {A} 7, {A,B} 4, and 4 up to all six: no prefix passes. FP32 check, all six in FP32: 0 passes.
    // FP32 walk: {A} 3 fails, {A,B} 0 passes. Pruning: without B is {A} (memo), without A {B} 5: both fail.
    // Precision, in ranking order: A to FP16 gives 4 (refused), B to FP16 gives 0 (kept). The far end, all in
    // FP16, is the FP16 walk's last prefix (memo).
    const { evaluate } = fakeEvaluator({ A: 5, B: 3 }, { fp16Cost: { A: 4 } });
    const r = await chooseMixedPrecision({ ...base, ranking: LAYERS, maxDrop: 1, evaluate });
    expect(r.met).toBe(true);
    expect(r.chosen.keptOut).toEqual([
      { layer: 'A', precision: 'fp32' },
      { layer: 'B', precision: 'fp16' },
    ]);
    expect(r.points.map((p) => p.step)).toEqual(['all-int8', ...Array(6).fill('prefix'), 'fp32-check', 'prefix', 'prefix', 'prune', 'precision', 'precision']);
  });

  it('reports the best trade-off and why when the budget cannot be met', async () => {
    // A floor of 2 points that no precision removes (e.g. FP16 itself): even no INT8 at all drops 2 > 1.
    const { evaluate } = fakeEvaluator({ A: 5, B: 3 }, { floor: 2 });
    const r = await chooseMixedPrecision({ ...base, ranking: LAYERS, maxDrop: 1, evaluate });
    expect(r.met).toBe(false);
    expect(r.reason).toMatch(/^even with no layer in INT8 .* top-1 agreement is 98\.00%, below the target 99\.00%.*; within the cap the best is 98\.00% with 2 layer\(s\) out$/);
    // Best: the highest agreement (98%), with the fewest layers out: A and B (the rest cost nothing).
    expect(r.chosen.keptOut.map((k) => k.layer)).toEqual(['A', 'B']);
    expect(r.written).toBeUndefined();
  });

  it('says when the cap is what stops it', async () => {
    // A 5, B 3, C 2, cap 2: the walk passes the cap, top 3 (0 points) passes; no layer can go back (without C
    // {A, B} 2, without B {A, C} 3, without A {B, C} 5). Within the cap the best is {A, B}: 98%.
    const { evaluate } = fakeEvaluator({ A: 5, B: 3, C: 2 });
    const r = await chooseMixedPrecision({ ...base, ranking: LAYERS, maxDrop: 1, maxNonInt8: 2, evaluate, out: path.join(tmp, 'never.json') });
    expect(r.met).toBe(false);
    expect(r.reason).toBe(
      'meeting the target 99.00% needs 3 layers out of INT8 (A, B, C), more than the cap of 2; within the cap the best is 98.00% with 2 layer(s) out: raise the cap (--max-layers) or the budget',
    );
    expect(r.chosen.keptOut.map((k) => k.layer)).toEqual(['A', 'B']);
    await expect(readFile(path.join(tmp, 'never.json'))).rejects.toThrow(/ENOENT/);
  });

  it('meets a cap that only a pruned longer prefix fits', async () => {
    // Ranking A, C, D, B: C and D cost little, B costs 3. Cap 2: top 1 {A} 3.2, top 2 {A,C} 3.1, top 3 {A,C,D}
    // 3.0 fail, top 4 passes (0); pruning: without B fails, without D {A,C,B} 0.1 passes, without C {A,B} 0.2
    // passes, without A {B} 5.2 fails: {A, B}, within the cap.
    const { evaluate } = fakeEvaluator({ A: 5, B: 3, C: 0.1, D: 0.1 });
    const r = await chooseMixedPrecision({ ...base, ranking: ['A', 'C', 'D', 'B', 'E', 'F'], maxDrop: 0.5, maxNonInt8: 2, evaluate });
    expect(r.met).toBe(true);
    expect(r.chosen.keptOut.map((k) => k.layer)).toEqual(['A', 'B']);
  });

  it('keeps every layer in INT8 when full INT8 meets the budget', async () => {
    const { evaluate, calls } = fakeEvaluator({ A: 0.5 });
    const r = await chooseMixedPrecision({ ...base, ranking: LAYERS, maxDrop: 1, evaluate });
    expect(r.met).toBe(true);
    expect(r.chosen.keptOut).toEqual([]);
    expect([...r.map.values()].every((p) => p === 'int8')).toBe(true);
    expect(calls).toEqual(['-', 'A:fp16,B:fp16,C:fp16,D:fp16,E:fp16,F:fp16']);
  });

  it('refuses bad budgets and rankings', async () => {
    const { evaluate } = fakeEvaluator({});
    await expect(chooseMixedPrecision({ ...base, ranking: LAYERS, maxDrop: -1, evaluate })).rejects.toThrow(/Expected a number of points >= 0 for --max-drop but received -1/);
    await expect(chooseMixedPrecision({ ...base, ranking: ['A', 'Z'], maxDrop: 1, evaluate })).rejects.toThrow(/not among the quantizable layers: Z/);
  });
});

describe('--max-layers', () => {
  it('takes a count or a percentage of the quantizable layers', () => {
    expect(parseLayerCap('6', 65)).toBe(6);
    expect(parseLayerCap('10%', 65)).toBe(6);
    expect(parseLayerCap('10%', 5)).toBe(1);
    expect(parseLayerCap('0', 65)).toBe(0);
    expect(parseLayerCap(100, 65)).toBe(65);
    expect(() => parseLayerCap('ten', 65)).toThrow(/Expected a number of layers or a percentage/);
    expect(() => parseLayerCap('150%', 65)).toThrow(/at most 100%/);
  });
});
