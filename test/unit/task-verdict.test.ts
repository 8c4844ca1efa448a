import { describe, expect, it } from 'vitest';
import { buildCompareReport, evaluateGate, pickWinner } from '../../src/compare/report.js';
import { createClassifyEvaluator } from '../../src/compare/task/classify.js';
import type { ImageGeometry, TaskMetrics } from '../../src/compare/task/types.js';
import type { VariantReport } from '../../src/compare/types.js';
import { UserError } from '../../src/errors.js';

const geometry = (file: string): ImageGeometry => ({ file, width: 10, height: 10, inputWidth: 10, inputHeight: 10, scaleX: 1, scaleY: 1, offsetX: 0, offsetY: 0 });
const scores = (rows: number[][]) => ({ prediction: { dtype: 'float32' as const, dims: [rows.length, rows[0]!.length], data: Float32Array.from(rows.flat()) } });

describe('the classify evaluator', () => {
  it('counts top-1 agreement with FP32 and top-1 against labels, batch by batch (hand-computed)', () => {
    const ev = createClassifyEvaluator({ output: 'prediction', labels: new Map([['/d/a.jpg', 0], ['/d/b.jpg', 1], ['/d/c.jpg', 1]]) });
    // FP32 top-1: a -> 0, b -> 1, c -> 2 (c's tie between 1 and 2 is not one: 0.5 < 0.6).
    // INT8 top-1: a -> 0, b -> 2, c -> 2; on a tie (b: 0.4, 0.4) the first index wins, as in metrics.ts' argmax.
    const batches = [
      { files: ['/d/a.jpg', '/d/b.jpg'], fp32: [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]], int8: [[0.7, 0.2, 0.1], [0.2, 0.3, 0.5]] },
      { files: ['/d/c.jpg'], fp32: [[0.1, 0.3, 0.6]], int8: [[0.1, 0.2, 0.7]] },
    ];
    for (const b of batches) {
      const g = b.files.map(geometry);
      ev.addReference(scores(b.fp32), g);
      ev.addVariant('fp32', scores(b.fp32), g);
      ev.addVariant('int8', scores(b.int8), g);
    }
    const m = ev.finish();
    // fp32: agreement 3/3; against labels a (0 = 0) and b (1 = 1) right, c (2 != 1) wrong: 2/3.
    expect(m.get('fp32')).toEqual({ kind: 'classify', metric: 'top-1 agreement', value: 1, valueLabels: 2 / 3, classify: { top1Agreement: 1, top1: 2 / 3, top1Labels: 2 / 3 } });
    // int8: agrees on a and c (2/3); against labels only a is right (1/3).
    expect(m.get('int8')).toMatchObject({ value: 2 / 3, valueLabels: 1 / 3 });
  });
});

function variant(name: string, precision: 'fp32' | 'fp16' | 'int8', task: TaskMetrics, agreement: number, cosineMean = 0.99): VariantReport {
  return {
    name,
    precision,
    ...(precision === 'int8' ? { algorithm: name.replace('int8-', '') } : {}),
    images: 4,
    agreement,
    cosineMean,
    cosineMin: cosineMean,
    outputs: [{ name: 'boxes', kind: 'dense', dims: [100, 4], images: 4, elements: 1600, nonFinite: 0, cosineMean, cosineMin: cosineMean, cosine: cosineMean, snrDb: 30, meanAbsErr: 0, maxAbsErr: 0, iou: agreement }],
    worst: [],
    task,
  };
}

const detect = (value: number, valueLabels?: number): TaskMetrics => ({ kind: 'detect', metric: 'mAP@[.5:.95]', value, map: value, ...(valueLabels !== undefined ? { valueLabels, mapLabels: valueLabels } : {}) });

const base = {
  tool: { name: 'trt-calib', version: '0' },
  model: { file: 'm.onnx', inputs: [], outputs: [] },
  data: { source: 'd', images: 4, skipped: 0 },
};
const settings = (maxDrop?: number) => ({ backend: 'onnxruntime', batchSize: 1, precisions: ['fp32' as const, 'int8' as const], algorithms: [], threshold: 0.3, worstCount: 5, ...(maxDrop !== undefined ? { maxDrop } : {}) });

describe('the task metric is the verdict', () => {
  it('the winner has the highest mAP even when its output agreement is lower', () => {
    const variants = [variant('int8-entropy2', 'int8', detect(0.78), 0.95), variant('int8-minmax', 'int8', detect(0.89), 0.9)];
    const w = pickWinner(variants)!;
    expect(w.name).toBe('int8-minmax');
    expect(w.task).toEqual({ kind: 'detect', metric: 'mAP@[.5:.95]', value: 0.89, against: 'fp32' });
    expect(w.reason).toBe('highest mAP@[.5:.95] against FP32; next best int8-entropy2');
    // Tied on mAP: the agreement decides, as before tasks.
    const tied = pickWinner([variant('int8-a', 'int8', detect(0.8), 0.9), variant('int8-b', 'int8', detect(0.8), 0.95)])!;
    expect(tied.name).toBe('int8-b');
    expect(tied.reason).toMatch(/^tied on mAP@\[\.5:\.95\] with int8-a; highest agreement/);
  });

  it('--max-drop counts points of mAP: (1 - mAP) x 100 against FP32, FP32 minus the variant against labels', () => {
    const make = () => [variant('fp32', 'fp32', detect(1), 1), variant('int8-minmax', 'int8', detect(0.89), 0.9)];
    const passed = buildCompareReport({ ...base, settings: settings(11.5), variants: make() });
    expect(passed.variants[1]!.taskDrop).toBeCloseTo(11, 12);
    expect(passed.gate).toMatchObject({ metric: 'map', taskMetric: 'mAP@[.5:.95]', passed: true });
    const failed = buildCompareReport({ ...base, settings: settings(10.5), variants: make() });
    expect(failed.gate).toMatchObject({ metric: 'map', passed: false, variants: [{ name: 'int8-minmax', passed: false }] });

    // Labels: FP32 scores 0.40 against them, INT8 0.37: a drop of 3 points (not 63).
    const labelled = [variant('fp32', 'fp32', detect(1, 0.4), 1), variant('int8-minmax', 'int8', detect(0.89, 0.37), 0.9)];
    const r = buildCompareReport({ ...base, settings: settings(2.5), variants: labelled });
    expect(r.variants[1]!.taskDrop).toBeCloseTo(3, 12);
    expect(r.gate).toMatchObject({ metric: 'map-labels', passed: false });
    expect(r.winner!.task!.against).toBe('labels');
  });

  it('without a task metric (raw) --max-drop is refused, naming --task', () => {
    const raw: TaskMetrics = { kind: 'raw', metric: 'mean cosine', value: 0.99 };
    const variants = [variant('int8-minmax', 'int8', raw, 0.9)];
    expect(() => evaluateGate(variants, 1, 'boxes', pickWinner(variants))).toThrow(UserError);
    expect(() => evaluateGate(variants, 1, 'boxes', pickWinner(variants))).toThrow(/--task raw/);
  });
});
