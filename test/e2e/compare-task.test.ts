/**
 * compare judged in the task's own terms, through the built CLI on the fixtures: the SSD detector by mAP against FP32
 * (and against COCO labels), the MobileNetV2 classifier by top-1 as before tasks, the PP-OCR text detector as a binary
 * segmentation; --save-detections re-scored by the independent COCO reference; the gate in mAP points both ways;
 * bad input refused before the pass.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { referenceCocoMap, type RefBox } from '../unit/coco-reference.js';
import { FIXTURES, IMAGES, MOBILENET, PPOCR, assertBuilt, runCli } from './cli.js';

const SSD = path.join(FIXTURES, 'models/ssdlite_mobilenet_v2_coco_300.onnx');
const COCO_NAMES = path.join(FIXTURES, 'models/coco_labels.txt');
const STREET = path.join(FIXTURES, 'street');
// The SSD's preprocessing: RGB stretched to 300 x 300, x * 2/255 - 1.
const SSD_PRE = ['--preset', 'raw01', '--size', '300', '--scale', String(2 / 255), '--mean', '1,1,1', '--std', '1,1,1'];
const SSD_FLAGS = ['--boxes', 'boxes:yxyx:norm', '--scores', 'scores', '--class-offset', '1', '--classes', COCO_NAMES];
const PERSON = 1;
const CAR = 3;

let tmp: string;
let calib: string;
const ssdCache = (algo: string) => path.join(calib, `ssdlite_mobilenet_v2_coco_300.${algo}.cache`);

beforeAll(async () => {
  assertBuilt();
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-compare-task-'));
  calib = path.join(tmp, 'calib');
  const r = await runCli(['--model', SSD, '--data', IMAGES, ...SSD_PRE, '--algo', 'entropy2,minmax', '--trt-version', '10.3.0', '--out-dir', calib, '--quiet']);
  if (r.code !== 0) throw new Error(`calibration failed: ${r.stderr}`);
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Hand-drawn COCO annotations of two street frames, one image that is not in --data and one unknown category. */
async function cocoLabels(): Promise<string> {
  const file = path.join(tmp, 'instances_street.json');
  const json = {
    images: [
      { id: 1, file_name: 'vtest_001.jpg', width: 768, height: 576 },
      { id: 2, file_name: 'vtest_003.jpg', width: 768, height: 576 },
      { id: 3, file_name: 'elsewhere/not_in_data.jpg', width: 768, height: 576 },
    ],
    annotations: [
      { id: 1, image_id: 1, category_id: PERSON, bbox: [555, 239, 47, 89], area: 4183, iscrowd: 0 },
      { id: 2, image_id: 1, category_id: PERSON, bbox: [306, 213, 30, 81], area: 2430, iscrowd: 0 },
      { id: 3, image_id: 1, category_id: CAR, bbox: [725, 48, 43, 50], area: 2150, iscrowd: 0 },
      { id: 4, image_id: 2, category_id: PERSON, bbox: [372, 180, 34, 80], area: 2720, iscrowd: 0 },
      { id: 5, image_id: 2, category_id: PERSON, bbox: [560, 222, 35, 84], area: 2940, iscrowd: 0 },
      { id: 6, image_id: 2, category_id: 999, bbox: [10, 10, 20, 20], area: 400, iscrowd: 0 },
      { id: 7, image_id: 3, category_id: PERSON, bbox: [10, 10, 20, 20], area: 400, iscrowd: 0 },
    ],
    categories: [
      { id: PERSON, name: 'person' },
      { id: CAR, name: 'car' },
    ],
  };
  await writeFile(file, JSON.stringify(json));
  return file;
}

interface CocoResultRow {
  image_id: string;
  category_id: number;
  bbox: [number, number, number, number];
  score: number;
}

/** A COCO results file grouped by image (in `images` order) as the reference's boxes. */
async function readResults(file: string, images: readonly string[], minScore = 0): Promise<RefBox[][]> {
  const rows = JSON.parse(await readFile(file, 'utf8')) as CocoResultRow[];
  return images.map((id) =>
    rows.filter((r) => r.image_id === id && r.score >= minScore).map((r) => ({ x1: r.bbox[0], y1: r.bbox[1], x2: r.bbox[0] + r.bbox[2], y2: r.bbox[1] + r.bbox[3], classId: r.category_id, score: r.score })),
  );
}

describe('compare on the SSD detector: mAP against FP32 is the verdict', () => {
  let report: any;
  const dets = () => path.join(tmp, 'dets');

  it('reports per algorithm mAP and mAP@.5, per-class AP, lost/gained/moved, and the winner by mAP; labels counted', async () => {
    const labels = await cocoLabels();
    const r = await runCli([
      'compare', '--model', SSD, '--data', STREET, ...SSD_PRE, ...SSD_FLAGS,
      '--cache', `${ssdCache('entropy2')},${ssdCache('minmax')}`, '--no-layers', '--labels', labels,
      '--save-detections', dets(), '--max-drop', '100', '--out-dir', calib, '--report-dir', path.join(tmp, 'ssd-report'), '--json',
    ]);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.code).toBe(0);
    report = JSON.parse(r.stdout);
    expect(report.settings.task).toMatchObject({ kind: 'detect', requested: 'auto', outputs: ['boxes', 'scores'], options: { classOffset: 1, gtScore: 0.25, nmsIou: 0.7, maxDetections: 300, scoreFloor: 0.001 } });
    const byName = Object.fromEntries(report.variants.map((v: any) => [v.name, v]));
    // Each cache gives its explicit Q/DQ variant and the implicit-placement bound (judged the same way, never the winner).
    expect(Object.keys(byName).sort()).toEqual(['fp16', 'fp32', 'int8-entropy2', 'int8-entropy2-implicit', 'int8-minmax', 'int8-minmax-implicit']);
    for (const name of ['int8-entropy2-implicit', 'int8-minmax-implicit']) expect(byName[name].task.map).toBeGreaterThanOrEqual(0);
    expect(byName.fp32.task).toMatchObject({ kind: 'detect', metric: 'mAP@[.5:.95]', value: 1, map: 1, map50: 1 });
    expect(byName.fp32.task.detection).toMatchObject({ lost: 0, gained: 0, moved: 0 });
    for (const name of ['int8-entropy2', 'int8-minmax']) {
      const t = byName[name].task;
      expect(t.map).toBe(t.value);
      expect(t.map).toBeGreaterThan(0.5);
      expect(t.map).toBeLessThan(1);
      expect(t.map50).toBeGreaterThanOrEqual(t.map);
      for (const k of ['lost', 'gained', 'moved']) expect(Number.isInteger(t.detection[k])).toBe(true);
      const person = t.detection.perClass.find((c: any) => c.classId === PERSON);
      const car = t.detection.perClass.find((c: any) => c.classId === CAR);
      expect(person).toMatchObject({ name: 'person' });
      expect(car).toMatchObject({ name: 'car' });
      expect(person.groundTruth).toBeGreaterThanOrEqual(12); // >= 3 people per frame above 0.25
      expect(byName[name].taskDrop).toBeCloseTo((byName.fp32.task.mapLabels - t.mapLabels) * 100, 9);
      expect(t.mapLabels).toBeGreaterThanOrEqual(0);
    }
    // The winner is the INT8 variant with the higher mAP (against the labels, as they are given).
    const int8 = ['int8-entropy2', 'int8-minmax'].map((n) => byName[n]);
    const best = int8.reduce((a, b) => (b.task.valueLabels > a.task.valueLabels || (b.task.valueLabels === a.task.valueLabels && b.task.value > a.task.value) ? b : a));
    expect(report.winner.name).toBe(best.name);
    expect(report.winner.task).toMatchObject({ kind: 'detect', metric: 'mAP@[.5:.95]', against: 'labels' });
    expect(report.gate).toMatchObject({ metric: 'map-labels', passed: true });
    // The labels: 2 of 4 frames labelled, 1 entry for an image not in --data, and the unknown category, noted.
    expect(report.data.labels).toMatchObject({ labelled: 2, unlabelled: 2, unmatched: 1 });
    expect(report.notes.join('\n')).toMatch(/not in --data/);
    expect(report.notes.join('\n')).toMatch(/category_id not in "categories"/);
  });

  it('--save-detections files, re-scored by the independent COCO reference, give the reported mAP', async () => {
    const images = ['vtest_001.jpg', 'vtest_003.jpg', 'vtest_005.jpg', 'vtest_007.jpg'];
    const truth = (await readResults(path.join(dets(), 'fp32.json'), images, 0.25)).map((im) => im.map(({ score: _s, ...b }) => b));
    for (const v of report.variants) {
      const predictions = await readResults(path.join(dets(), `${v.name}.json`), images);
      const ref = referenceCocoMap(truth, predictions);
      expect(ref.map, v.name).toBeCloseTo(v.task.map, 9);
      expect(ref.map50, v.name).toBeCloseTo(v.task.map50, 9);
      expect(ref.perClass.get(PERSON)!.ap).toBeCloseTo(v.task.detection.perClass.find((c: any) => c.classId === PERSON).ap, 9);
    }
  });

  it('auto recognises the SSD, and --max-drop in mAP points fails with exit 2 when INT8 loses more', async () => {
    const dir = path.join(tmp, 'ssd-gate');
    const r = await runCli(['compare', '--model', SSD, '--data', STREET, ...SSD_PRE, '--precisions', 'fp32,int8', '--cache', ssdCache('minmax'), '--no-layers', '--max-drop', '1', '--out-dir', calib, '--report-dir', dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/accuracy gate failed \(mAP@\[\.5:\.95\]/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stderr).toMatch(/task: detect \(auto: 'boxes'.*'scores'/);
    expect(r.stdout).toMatch(/variant +mAP@\[\.5:\.95\] +mAP@\.5 +lost +gained +moved/);
    const gated = JSON.parse(await readFile(path.join(dir, 'report.json'), 'utf8'));
    const minmax = gated.variants.find((v: any) => v.name === 'int8-minmax');
    // Auto settles what the flags said: the same detections, so the same mAP as the first run.
    expect(minmax.task.map).toBe(report.variants.find((v: any) => v.name === 'int8-minmax').task.map);
    expect(gated.gate).toMatchObject({ metric: 'map', passed: false });
    expect(gated.gate.variants[0].drop).toBeCloseTo((1 - minmax.task.map) * 100, 9);
    expect(gated.gate.variants[0].drop).toBeGreaterThan(1);
  });

  it('bad input is refused before the pass, writing nothing: --boxes naming a missing output, a flag of another task, --save-detections on a file', async () => {
    const dir = path.join(tmp, 'bad');
    const base = ['compare', '--model', SSD, '--data', STREET, ...SSD_PRE, '--precisions', 'fp32', '--no-layers', '--out-dir', calib, '--report-dir', dir];
    const missing = await runCli([...base, '--boxes', 'detection_boxes:yxyx:norm', '--scores', 'scores']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/--boxes names the output 'detection_boxes', which the model does not have/);
    const keys = await runCli([...base, '--keys', COCO_NAMES]);
    expect(keys.code).toBe(1);
    expect(keys.stderr).toMatch(/--keys applies to --task ocr/);
    const file = path.join(tmp, 'a-file.json');
    await writeFile(file, '[]');
    const save = await runCli([...base, '--save-detections', file]);
    expect(save.code).toBe(1);
    expect(save.stderr).toMatch(/--save-detections.*a-file\.json is a file, not a folder/);
    const quantize = await runCli(['quantize', '--model', SSD, '--cache', ssdCache('minmax'), '--boxes', 'boxes:yxyx:norm', '--scores', 'scores', '--out', path.join(dir, 'q.onnx')]);
    expect(quantize.code).toBe(1);
    expect(quantize.stderr).toMatch(/--task and its flags .* go with --mixed auto/);
    for (const r of [missing, keys, save, quantize]) expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(dir)).toBe(false);
  });
});

describe('compare on the MobileNetV2 classifier: top-1 as before tasks', () => {
  it('auto says classify; the task value is the top-1 agreement, the drop and the winner those of the output comparison', async () => {
    const out = path.join(tmp, 'mobilenet');
    const c = await runCli(['--model', MOBILENET, '--data', IMAGES, '--preset', 'raw01', '--algo', 'entropy2,minmax', '--trt-version', '10.3.0', '--out-dir', out, '--quiet']);
    expect(c.code).toBe(0);
    const cache = (a: string) => path.join(out, `mobilenet_v2_nsfw_224.${a}.cache`);
    const r = await runCli(['compare', '--model', MOBILENET, '--data', IMAGES, '--preset', 'raw01', '--cache', `${cache('entropy2')},${cache('minmax')}`, '--no-layers', '--max-drop', '50', '--out-dir', out, '--json']);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout);
    expect(rep.settings.task).toMatchObject({ kind: 'classify', outputs: ['output'] });
    for (const v of rep.variants) {
      const o = v.outputs.find((x: any) => x.name === rep.primaryOutput);
      expect(v.task).toEqual({ kind: 'classify', metric: 'top-1 agreement', value: o.agreement, classify: { top1Agreement: o.agreement } });
      expect(v.taskDrop).toBe(((o.images - o.agreeCount) * 100) / o.images);
    }
    expect(rep.gate.metric).toBe('top1-agreement');
    // The winner as compare chose it before tasks: agreement, then mean cosine, worst cosine, name.
    const int8 = rep.variants.filter((v: any) => v.precision === 'int8' && v.placement !== 'implicit');
    const old = [...int8].sort((a: any, b: any) => b.agreement - a.agreement || b.cosineMean - a.cosineMean || b.cosineMin - a.cosineMin || (a.name < b.name ? -1 : 1))[0];
    expect(rep.winner.name).toBe(old.name);
  });
});

describe('compare on the PP-OCR text detector: a binary segmentation', () => {
  it('auto says segment (binary map at 0.3); its IoU is the thresholded-map IoU compare reported before tasks', async () => {
    const dir = path.join(tmp, 'ppocr');
    await mkdir(dir, { recursive: true });
    const shape = ['--preset', 'paddleocr-det', '--shapes', 'x:1x3x96x128', '--max-images', '3'];
    const r = await runCli(['compare', '--model', PPOCR, '--data', IMAGES, ...shape, '--precisions', 'fp32,fp16', '--max-drop', '5', '--out-dir', dir, '--json']);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout);
    expect(rep.settings.task.kind).toBe('segment');
    const fp16 = rep.variants.find((v: any) => v.name === 'fp16');
    expect(fp16.task.segmentation).toMatchObject({ mode: 'binary', threshold: 0.3 });
    expect(fp16.task.metric).toBe('IoU');
    expect(fp16.task.value).toBe(fp16.outputs[0].iou ?? 1);
    expect(fp16.task.value).toBe(fp16.agreement);
    expect(rep.gate.metric).toBe('threshold-iou');
    expect(rep.gate.variants[0].drop).toBeCloseTo((1 - fp16.agreement) * 100, 12);
    // report.html gets the worst images with FP32's and FP16's masks painted over them.
    const html = await readFile(path.join(dir, 'ppocr_v4_det.report', 'report.html'), 'utf8');
    expect(html).toContain('with both masks painted over the photo');
  });
});
