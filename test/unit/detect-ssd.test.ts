import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createDetectionEvaluator,
  decodeDetections,
  evaluateCoco,
  loadCocoLabels,
  readClassNames,
  recognizeDetection,
  writeCocoResults,
  type DetectionOptions,
} from '../../src/compare/task/detect/index.js';
import type { DetectionBox } from '../../src/compare/task/types.js';
import { graphOutputs } from '../../src/onnx/graph.js';
import { loadOnnxModel } from '../../src/onnx/model.js';
import { referenceCocoMap, type RefBox } from './coco-reference.js';
import { COCO_LABELS, perturbSsd, relayouts, runSsdOnStreet, sliceImages, SSD, SSD_SPEC, STREET, type SsdRun } from './detect-fixture.js';

const PERSON = 1;
const CAR = 3;

describe('detection on the SSDLite fixture (street frames)', () => {
  let ssd: SsdRun;
  let noisy: SsdRun['outputs'];
  let fp32: DetectionBox[][];
  let tmp: string | undefined;
  const options: DetectionOptions = { spec: SSD_SPEC, classOffset: 1 };

  beforeAll(async () => {
    ssd = await runSsdOnStreet();
    noisy = perturbSsd(ssd.outputs);
    fp32 = decodeDetections(ssd.outputs, ssd.images, options);
  });
  afterAll(async () => {
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('finds the pedestrians and cars, in the frame, in original pixels', async () => {
    const names = await readClassNames(COCO_LABELS);
    expect(names.get(PERSON)).toBe('person');
    expect(names.get(CAR)).toBe('car');
    expect(ssd.files.length).toBe(4);
    for (const [i, dets] of fp32.entries()) {
      const { width, height } = ssd.images[i]!;
      expect([width, height]).toEqual([768, 576]);
      const people = dets.filter((d) => d.classId === PERSON && d.score > 0.5);
      expect(people.length, `${ssd.files[i]}: persons above 0.5`).toBeGreaterThanOrEqual(3);
      for (const d of dets) {
        expect(d.x1).toBeGreaterThanOrEqual(0);
        expect(d.y1).toBeGreaterThanOrEqual(0);
        expect(d.x2).toBeLessThanOrEqual(width);
        expect(d.y2).toBeLessThanOrEqual(height);
        expect(d.x2).toBeGreaterThan(d.x1);
        expect(d.y2).toBeGreaterThan(d.y1);
        expect(d.score).toBeGreaterThanOrEqual(0.001);
      }
      // Pedestrians are upright: taller than wide, and in original pixels (a box in 300x300 input pixels would be
      // squeezed horizontally by 300/768, and would never reach past x = 300).
      for (const p of people) expect(p.y2 - p.y1).toBeGreaterThan(p.x2 - p.x1);
      expect(Math.max(...people.map((p) => p.x2))).toBeGreaterThan(300);
      // Sorted by score, at most 300.
      expect(dets.length).toBeLessThanOrEqual(300);
      for (let k = 1; k < dets.length; k++) expect(dets[k]!.score).toBeLessThanOrEqual(dets[k - 1]!.score);
    }
  });

  it('is recognised for --task auto from its graph outputs and one FP32 batch', async () => {
    const outputs = graphOutputs(await loadOnnxModel(SSD)).map((o) => ({ name: o.name, dims: o.dims ?? [] }));
    const sample = { boxes: sliceImages(ssd.outputs.boxes!, 0, 1), scores: sliceImages(ssd.outputs.scores!, 0, 1) };
    const r = recognizeDetection(outputs, sample);
    expect(r.spec).toEqual(SSD_SPEC);
    expect(r.classOffset).toBe(1);
    expect(r.reason).toMatch(/normalised \(the sample's values lie in -?\d\.\d+\.\.\d\.\d+\)/);
  });

  it('decodes the same detections whatever the batch size', () => {
    for (let i = 0; i < ssd.files.length; i++) {
      const one = { boxes: sliceImages(ssd.outputs.boxes!, i, i + 1), scores: sliceImages(ssd.outputs.scores!, i, i + 1) };
      expect(decodeDetections(one, [ssd.images[i]!], options)[0]).toEqual(fp32[i]);
    }
  });

  it('gives the same detections and the same mAP in every other layout', () => {
    const layoutsFp32 = relayouts({ outputs: ssd.outputs, images: ssd.images }, { classOffset: 1 });
    const layoutsNoisy = relayouts({ outputs: noisy, images: ssd.images }, { classOffset: 1 });
    const base = createDetectionEvaluator(options);
    base.addReference(ssd.outputs, ssd.images);
    base.addVariant('fp32', ssd.outputs, ssd.images);
    base.addVariant('noisy', noisy, ssd.images);
    const expected = base.finish();
    expect(expected.get('fp32')!.value).toBe(1);
    const noisyMap = expected.get('noisy')!.value;
    expect(noisyMap).toBeGreaterThan(0.05);
    expect(noisyMap).toBeLessThan(0.95);

    for (const [k, layout] of layoutsFp32.entries()) {
      const decoded = decodeDetections(layout.outputs, ssd.images, { ...options, spec: layout.spec });
      expect(decoded.map((d) => d.length), layout.name).toEqual(fp32.map((d) => d.length));
      decoded.forEach((dets, i) =>
        dets.forEach((d, j) => {
          const e = fp32[i]![j]!;
          expect([d.classId, d.score], `${layout.name} image ${i} box ${j}`).toEqual([e.classId, e.score]);
          // Boxes went through float32 cxcywh pixels: equal to float32 rounding.
          for (const c of ['x1', 'y1', 'x2', 'y2'] as const) expect(Math.abs(d[c] - e[c])).toBeLessThan(1e-3);
        }),
      );
      const evaluator = createDetectionEvaluator({ ...options, spec: layout.spec });
      evaluator.addReference(layout.outputs, ssd.images);
      evaluator.addVariant('fp32', layout.outputs, ssd.images);
      evaluator.addVariant('noisy', layoutsNoisy[k]!.outputs, ssd.images);
      const got = evaluator.finish();
      expect(got.get('fp32')!.value, layout.name).toBe(1);
      expect(Math.abs(got.get('noisy')!.value - noisyMap), layout.name).toBeLessThan(1e-9);
      expect(Math.abs(got.get('noisy')!.map50! - expected.get('noisy')!.map50!)).toBeLessThan(1e-9);
      const [a, b] = [got.get('noisy')!.detection!, expected.get('noisy')!.detection!];
      expect([a.lost, a.gained, a.moved, a.referenceDetections, a.detections]).toEqual([b.lost, b.gained, b.moved, b.referenceDetections, b.detections]);
    }
  });

  it('reports FP32-relative metrics a user can read: per-class AP, lost/gained/moved, worst images', async () => {
    const names = await readClassNames(COCO_LABELS);
    const evaluator = createDetectionEvaluator({ ...options, classNames: names, worstCount: 2, keepDetections: true });
    evaluator.addReference(ssd.outputs, ssd.images);
    evaluator.addVariant('fp32', ssd.outputs, ssd.images);
    evaluator.addVariant('noisy', noisy, ssd.images);
    const result = evaluator.finish();
    const self = result.get('fp32')!;
    expect(self).toMatchObject({ kind: 'detect', metric: 'mAP@[.5:.95]', value: 1, map: 1, map50: 1 });
    expect(self.detection).toMatchObject({ lost: 0, gained: 0, moved: 0, meanScoreChange: 0, worst: [] });
    expect(self.detection!.perClass.find((c) => c.classId === PERSON)).toMatchObject({ name: 'person', ap: 1, ap50: 1 });

    const m = result.get('noisy')!.detection!;
    // Scores squared: every detection's score drops (s^2 < s), so FP32 boxes between 0.25 and 0.5 are lost.
    expect(m.meanScoreChange).toBeLessThan(0);
    expect(m.lost).toBeGreaterThan(0);
    expect(m.detections).toBeLessThan(m.referenceDetections);
    // Shifted by 1% of 768 px = 7.68 px: narrow pedestrians (about 30-60 px wide) move below IoU 0.9.
    expect(m.moved).toBeGreaterThan(0);
    expect(m.worst.length).toBe(2);
    expect(m.worst[0]!.lost + m.worst[0]!.moved).toBeGreaterThanOrEqual(m.worst[1]!.lost + m.worst[1]!.moved);
    expect(m.worst[0]!.reference.length).toBeGreaterThan(0);
    expect(m.prCurves.map((c) => c.iou)).toEqual([0.5, 0.75]);
    expect(m.prCurves[0]!.precision.length).toBe(101);
    expect(m.perClass.find((c) => c.classId === PERSON)!.name).toBe('person');
    expect(evaluator.detections('noisy')!.length).toBe(4);
    expect(evaluator.files()).toEqual(ssd.files);
  });

  it('writes COCO results that the independent reference re-scores to the same mAP', async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'trt-calib-det-'));
    const variant = decodeDetections(noisy, ssd.images, options);
    const file = path.join(tmp, 'noisy.json');
    await writeCocoResults(file, ssd.files, variant, STREET);
    const rows = JSON.parse(await fsp.readFile(file, 'utf8')) as Array<{ image_id: string; category_id: number; bbox: number[]; score: number }>;
    expect(rows.length).toBe(variant.reduce((s, d) => s + d.length, 0));
    expect(new Set(rows.map((r) => r.image_id))).toEqual(new Set(['vtest_001.jpg', 'vtest_003.jpg', 'vtest_005.jpg', 'vtest_007.jpg']));
    const gt: RefBox[][] = fp32.map((dets) => dets.filter((d) => d.score >= 0.25).map((d) => ({ x1: d.x1, y1: d.y1, x2: d.x2, y2: d.y2, classId: d.classId })));
    const dets: RefBox[][] = ssd.files.map(() => []);
    for (const r of rows) {
      const [x, y, w, h] = r.bbox as [number, number, number, number];
      dets[ssd.files.findIndex((f) => path.basename(f) === r.image_id)]!.push({ x1: x, y1: y, x2: x + w, y2: y + h, classId: r.category_id, score: r.score });
    }
    const rescored = referenceCocoMap(gt, dets);
    const reported = evaluateCoco(gt, variant);
    expect(Math.abs(rescored.map - reported.map)).toBeLessThan(1e-9);
    expect(Math.abs(rescored.map50 - reported.map50)).toBeLessThan(1e-9);
    expect(reported.map).toBeGreaterThan(0.05);
    // Written atomically: nothing but the file in the folder.
    expect(await fsp.readdir(tmp)).toEqual(['noisy.json']);
  });

  it('scores every variant against labels too, on the labelled images only', async () => {
    tmp ??= await fsp.mkdtemp(path.join(os.tmpdir(), 'trt-calib-det-'));
    // Labels: FP32's detections at 0.5 and above on the first three frames (the fourth is not in the file).
    const images = ssd.files.slice(0, 3).map((f, i) => ({ id: i + 1, file_name: path.basename(f), width: 768, height: 576 }));
    const annotations = images.flatMap((im, i) =>
      fp32[i]!.filter((d) => d.score >= 0.5).map((d, k) => ({ id: i * 1000 + k + 1, image_id: im.id, category_id: d.classId, bbox: [d.x1, d.y1, d.x2 - d.x1, d.y2 - d.y1], iscrowd: 0 })),
    );
    const categories = [...new Set(annotations.map((a) => a.category_id))].map((id) => ({ id, name: `c${id}` }));
    const file = path.join(tmp, 'labels.json');
    await fsp.writeFile(file, JSON.stringify({ images, annotations, categories }));
    const labels = await loadCocoLabels(file, ssd.files, STREET);
    expect(labels.labels.size).toBe(3);
    expect(labels.warnings).toEqual([]);

    const evaluator = createDetectionEvaluator({ ...options, labels: labels.labels });
    evaluator.addReference(ssd.outputs, ssd.images);
    evaluator.addVariant('fp32', ssd.outputs, ssd.images);
    evaluator.addVariant('noisy', noisy, ssd.images);
    const result = evaluator.finish();
    // FP32 finds every label first with its own box: exactly 1.
    expect(result.get('fp32')).toMatchObject({ valueLabels: 1, mapLabels: 1, map50Labels: 1 });
    const got = result.get('noisy')!;
    const gt = [0, 1, 2].map((i) => labels.labels.get(ssd.files[i]!)!);
    const preds = decodeDetections(noisy, ssd.images, options).slice(0, 3);
    const ref = referenceCocoMap(gt, preds);
    expect(Math.abs(got.mapLabels! - ref.map)).toBeLessThan(1e-12);
    expect(Math.abs(got.map50Labels! - ref.map50)).toBeLessThan(1e-12);
    expect(got.valueLabels).toBe(got.mapLabels);
    expect(got.detection!.mapLabels).toBe(got.mapLabels);
    expect(got.detection!.perClassLabels!.length).toBe(ref.perClass.size);
    expect(got.mapLabels).toBeLessThan(1);
    expect(got.mapLabels).not.toBe(got.map);
  });

  it('is fast: decode + NMS per image, and mAP over 20 images', () => {
    const runs = 5;
    // Wall and CPU time: the test machine is shared, and CPU time is what the work itself costs.
    let t0 = performance.now();
    let c0 = process.cpuUsage();
    for (let r = 0; r < runs; r++) decodeDetections(ssd.outputs, ssd.images, options);
    const decodeMs = (performance.now() - t0) / (runs * ssd.files.length);
    let c = process.cpuUsage(c0);
    const decodeCpuMs = (c.user + c.system) / 1000 / (runs * ssd.files.length);
    const variant = decodeDetections(noisy, ssd.images, options);
    const gt = Array.from({ length: 20 }, (_, i) => fp32[i % 4]!.filter((d) => d.score >= 0.25));
    const preds = Array.from({ length: 20 }, (_, i) => variant[i % 4]!);
    t0 = performance.now();
    c0 = process.cpuUsage();
    evaluateCoco(gt, preds);
    const mapMs = performance.now() - t0;
    c = process.cpuUsage(c0);
    const mapCpuMs = (c.user + c.system) / 1000;
    console.log(
      `decode+NMS ${decodeMs.toFixed(2)} ms/image (CPU ${decodeCpuMs.toFixed(2)}), 1917 anchors x 90 classes; ` +
        `inference ${ssd.inferenceMs.toFixed(1)} ms/image (CPU ${ssd.inferenceCpuMs.toFixed(1)}, 1 thread); ` +
        `evaluateCoco on 20 images ${mapMs.toFixed(1)} ms (CPU ${mapCpuMs.toFixed(1)}; ${preds.reduce((s, p) => s + p.length, 0)} detections)`,
    );
    expect(decodeMs).toBeLessThan(200);
    expect(mapMs).toBeLessThan(2000);
  });
});
