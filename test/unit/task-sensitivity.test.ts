import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibrate } from '../../src/app/calibrate.js';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { runComparison } from '../../src/compare/run.js';
import { createDetectionEvaluator } from '../../src/compare/task/detect/index.js';
import { autoMixedPrecision } from '../../src/sensitivity/auto.js';
import { measureSensitivity, prepareSensitivity, type SensitivityContext } from '../../src/sensitivity/analyze.js';
import { createDataset } from '../../src/datasets/dataset.js';
import { saveOnnxModel } from '../../src/onnx/model.js';

const FIXTURES = path.resolve(__dirname, '../fixtures');
const SSD = path.join(FIXTURES, 'models/ssdlite_mobilenet_v2_coco_300.onnx');
const PREPROCESS = { preset: 'raw01', size: 300, scale: 2 / 255, mean: [1, 1, 1], std: [1, 1, 1] };
const TASK = { task: 'detect' as const, boxes: 'boxes:yxyx:norm', scores: 'scores', classOffset: 1 };

let tmp: string;
let cache: string;
let ctx: SensitivityContext;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-task-sensitivity-'));
  const r = await calibrate({ model: SSD, data: { data: path.join(FIXTURES, 'images'), preprocess: PREPROCESS, maxImages: 4 }, algorithms: ['minmax'], trtVersion: '10.3.0', outDir: tmp });
  cache = r.caches[0]!.file;
  ctx = await prepareSensitivity({ model: SSD, cache, data: { data: path.join(FIXTURES, 'street'), preprocess: PREPROCESS, maxImages: 2 }, task: TASK, threads: 2 });
}, 120_000);
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('sensitivity and --mixed auto on a detector, in points of mAP', () => {
  it('scores full INT8 by mAP against FP32, the number compare reports for the same model and images', async () => {
    expect(ctx.task.kind).toBe('detect');
    const report = await measureSensitivity(ctx, { layers: ctx.builder.layers.slice(0, 2).map((l) => l.name) });
    expect(report.budgetMetric).toBe('map');
    expect(report.fullInt8.metric).toBe('map');
    expect(report.fullInt8.drop).toBeCloseTo((1 - report.fullInt8.value) * 100, 12);
    // Detectors rank by the task metric's drop (the 'agreement' ranking), not the cosine.
    expect(report.metric).toBe('agreement');
    for (const l of report.layers) expect(l.sensitivity).toBe(l.oneAtATime!.drop);
    expect(report.layers[0]!.sensitivity).toBeGreaterThanOrEqual(report.layers[1]!.sensitivity);

    // compare's pass on the same fully quantized model and images gives the same mAP.
    const dataset = await createDataset({ data: path.join(FIXTURES, 'street'), preprocess: ctx.preprocess, inputName: 'input', batchSize: 1, maxImages: 2 });
    const reference = await onnxruntimeBackend.open({ path: SSD }, { threads: 2 });
    const all = new Set(ctx.builder.layers.map((l) => l.name));
    const session = await onnxruntimeBackend.open({ path: 'int8.onnx', bytes: saveOnnxModel(ctx.builder.build(all).model) }, { threads: 2 });
    try {
      const spec = { layout: 'boxes-scores' as const, boxes: 'boxes', format: 'yxyx' as const, normalized: true, scores: 'scores' };
      const run = await runComparison({ dataset, reference, variants: [{ spec: { name: 'int8', precision: 'int8' }, session }], task: createDetectionEvaluator({ spec, classOffset: 1 }) });
      expect(run.variants[0]!.task!.map).toBe(report.fullInt8.value);
    } finally {
      await reference.release();
      await session.release();
    }

    // The budget: in mAP points against FP32.
    const { mixed } = await autoMixedPrecision(ctx, { maxDrop: 100, sensitivity: report, out: path.join(tmp, 'ssd.precision.json') });
    expect(mixed.metric).toBe('map');
    expect(mixed.met).toBe(true);
    expect(mixed.chosen.drop).toBeCloseTo((1 - mixed.chosen.agreement) * 100, 9);
  }, 180_000);
});
