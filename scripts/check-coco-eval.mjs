#!/usr/bin/env node
// Cross-checks evaluateCoco (src/compare/task/detect/coco-eval.ts) against pycocotools' own COCOeval, where Python
// has pycocotools: the hand-worked cases of test/unit/detect-coco-eval.test.ts and the SSDLite fixture's
// detections on the street frames (FP32 at 0.25 and above as the truth; perturbed copies, one with crowd boxes, as
// predictions). Prints both values per case and exits 1 when any differs by more than 1e-12.
// Not a test: the tests must not need Python. Run after `npx tsc`: `node scripts/check-coco-eval.mjs [python3]`.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { onnxruntimeBackend } from '../dist/backends/onnxruntime.js';
import { decodeDetections, evaluateCoco } from '../dist/compare/task/detect/index.js';
import { createDataset } from '../dist/datasets/dataset.js';
import { resolvePreprocess } from '../dist/datasets/presets.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const python = process.argv[2] ?? 'python3';
const FIXTURES = path.resolve(here, '..', 'test', 'fixtures');

const gt = (x1, y1, x2, y2, classId = 1, iscrowd = false) => ({ x1, y1, x2, y2, classId, ...(iscrowd ? { iscrowd } : {}) });
const det = (x1, y1, x2, y2, score, classId = 1) => ({ x1, y1, x2, y2, score, classId });
const fps = (n, classId = 1) => Array.from({ length: n }, (_, k) => det(100 + k * 20, 100, 110 + k * 20, 110, 0.99 - k * 1e-4, classId));
const cases = {
  two: [[[gt(0, 0, 10, 10), gt(20, 0, 30, 10)]], [[det(0, 0, 10, 10, 0.9), det(20, 0, 30, 5, 0.8), det(50, 50, 60, 60, 0.7)]]],
  tie: [[[gt(0, 0, 10, 10)]], [[det(0, 0, 10, 5, 0.5), det(0, 0, 10, 10, 0.5)]]],
  tieAcrossImages: [[[], [gt(0, 0, 10, 10)]], [[det(0, 0, 10, 10, 0.5)], [det(0, 0, 10, 10, 0.5)]]],
  crowd: [[[gt(0, 0, 10, 10), gt(20, 0, 40, 20, 1, true)]], [[det(25, 5, 30, 10, 0.9), det(0, 0, 10, 10, 0.8), det(22, 2, 24, 4, 0.7), det(35, 15, 45, 25, 0.65)]]],
  crowdFirst: [[[gt(0, 0, 10, 10, 1, true), gt(0, 0, 10, 10)]], [[det(0, 0, 10, 8, 0.9)]]],
  cap99: [[[gt(0, 0, 10, 10)]], [[...fps(99), det(0, 0, 10, 10, 0.5)]]],
  cap100: [[[gt(0, 0, 10, 10)]], [[...fps(100), det(0, 0, 10, 10, 0.5)]]],
  equalIou: [[[gt(0, 0, 10, 10), gt(5, 0, 15, 10)]], [[det(2.5, 0, 12.5, 10, 0.9), det(5, 0, 15, 10, 0.8)]]],
  predictionOnlyCategory: [[[gt(0, 0, 10, 10), gt(20, 0, 30, 10)]], [[det(0, 0, 10, 10, 0.9), det(20, 0, 30, 5, 0.8), det(0, 0, 10, 10, 0.99, 7)]]],
};

// The SSD on the street frames.
const preprocess = resolvePreprocess({ preset: 'raw01', size: 300, scale: 2 / 255, mean: [1, 1, 1], std: [1, 1, 1] }, { name: 'input', dims: [1, 3, 300, 300] });
const dataset = await createDataset({ data: path.join(FIXTURES, 'street'), preprocess, inputName: 'input', batchSize: 1 });
const session = await onnxruntimeBackend.open({ path: path.join(FIXTURES, 'models', 'ssdlite_mobilenet_v2_coco_300.onnx') });
const frames = [];
for await (const batch of dataset.batches()) {
  const out = await session.run({ input: { dtype: 'float32', dims: batch.dims, data: Float32Array.from(batch.data) } }, ['boxes', 'scores']);
  const meta = await sharp(batch.files[0]).metadata();
  frames.push({ out, g: { file: batch.files[0], width: meta.width, height: meta.height, inputWidth: 300, inputHeight: 300, scaleX: 300 / meta.width, scaleY: 300 / meta.height, offsetX: 0, offsetY: 0 } });
}
await session.release();
const spec = { layout: 'boxes-scores', boxes: 'boxes', format: 'yxyx', normalized: true, scores: 'scores' };
const decode = (boxesOf, scoresOf) =>
  frames.map(({ out, g }) => decodeDetections({ boxes: { ...out.boxes, data: boxesOf(out.boxes.data) }, scores: { ...out.scores, data: scoresOf(out.scores.data) } }, [g], { spec, classOffset: 1 })[0]);
const fp32 = decode((b) => b, (s) => s);
const truth = fp32.map((d) => d.filter((x) => x.score >= 0.25).map(({ x1, y1, x2, y2, classId }) => ({ x1, y1, x2, y2, classId })));
const shifted = decode((b) => b.map((v, i) => (i % 2 === 1 ? v + 0.01 : v)), (s) => s.map((v) => v * v));
const jittered = decode((b) => b.map((v, i) => v + 0.004 * Math.sin(i * 12.9898)), (s) => s.map((v, i) => Math.min(1, v * (1 + 0.3 * Math.cos(i * 78.233)))));
cases.ssdSelf = [truth, fp32];
cases.ssdShifted = [truth, shifted];
cases.ssdJittered = [truth, jittered];
cases.ssdCrowd = [truth.map((im) => im.map((g, k) => (k % 4 === 3 ? { ...g, iscrowd: true } : g))), jittered];

const dir = mkdtempSync(path.join(os.tmpdir(), 'trt-calib-coco-check-'));
try {
  for (const [name, [g, d]] of Object.entries(cases)) {
    const categories = [...new Set([...g.flat(), ...d.flat()].map((x) => x.classId))].sort((a, b) => a - b);
    let id = 1;
    const xywh = (x) => [x.x1, x.y1, x.x2 - x.x1, x.y2 - x.y1];
    const gtJson = {
      images: g.map((_, i) => ({ id: i + 1 })),
      categories: categories.map((c) => ({ id: c })),
      annotations: g.flatMap((im, i) => im.map((x) => ({ id: id++, image_id: i + 1, category_id: x.classId, bbox: xywh(x), area: (x.x2 - x.x1) * (x.y2 - x.y1), iscrowd: x.iscrowd ? 1 : 0 }))),
    };
    const results = d.flatMap((im, i) => im.map((x) => ({ image_id: i + 1, category_id: x.classId, bbox: xywh(x), score: x.score })));
    const ours = evaluateCoco(g, d);
    writeFileSync(path.join(dir, `${name}.json`), JSON.stringify({ gt: gtJson, dt: results, ours: { map: ours.map, map50: ours.map50, map75: ours.map75 } }));
  }
  const script = `
import contextlib, glob, io, json, os, sys
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
worst = 0
for f in sorted(glob.glob(os.path.join(sys.argv[1], '*.json'))):
    d = json.load(open(f))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(); gt.dataset = d['gt']; gt.createIndex()
        e = COCOeval(gt, gt.loadRes(d['dt']), 'bbox'); e.evaluate(); e.accumulate(); e.summarize()
    o = d['ours']
    diff = max(abs(e.stats[0] - o['map']), abs(e.stats[1] - o['map50']), abs(e.stats[2] - o['map75']))
    worst = max(worst, diff)
    print('%-24s COCOeval %.12f %.12f %.12f  ours %.12f %.12f %.12f  |diff| %.1e' % (os.path.basename(f)[:-5], *e.stats[:3], o['map'], o['map50'], o['map75'], diff))
sys.exit(1 if worst > 1e-12 else 0)
`;
  execFileSync(python, ['-c', script, dir], { stdio: 'inherit' });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
