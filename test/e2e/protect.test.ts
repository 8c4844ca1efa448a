/**
 * Protection from INT8 (src/precision/protect.ts) and the implicit-placement bound, through the built CLI on the
 * real SSD re-exported in YOLOv8's layout (test/unit/ssd-layouts.ts), on MobileNetV2, PP-OCR det and the SSD as it
 * is: what is protected and why, what the caches, Q/DQ models and precision maps hold, and what it does to scores.
 */
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildInt8Variant } from '../../src/app/variants.js';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { parseCalibrationCache } from '../../src/cache/trt-cache.js';
import { createDetectionEvaluator } from '../../src/compare/task/detect/index.js';
import type { ImageGeometry } from '../../src/compare/task/types.js';
import type { Tensor } from '../../src/tensor.js';
import type { QdqPlacement } from '../../src/onnx/qdq.js';
import { graphOf, loadOnnxModel, saveOnnxModel, type OnnxModel } from '../../src/onnx/model.js';
import { findProtectedTensors } from '../../src/precision/protect.js';
import { loadStatistics } from '../../src/stats/store.js';
import { SSD_ANCHORS, SSD_MODEL, ssdInput, ssdLayoutModel, STREET, writeSsdLayout } from '../unit/ssd-layouts.js';
import { assertBuilt, IMAGES, MOBILENET, PPOCR, runCli } from './cli.js';

/** The SSD's preprocessing: RGB stretched to 300x300, x * 2 / 255 - 1. */
const SSD_PREPROCESS = ['--preset', 'raw01', '--scale', String(2 / 255), '--mean', '1,1,1', '--std', '1,1,1', '--resize', 'stretch'];
const TRT = ['--trt-version', '10.3.0'];
const SCORE_BRANCH = ['Postprocessor_convert_scores', 'Postprocessor_Slice', 'scores'];

interface Protected {
  tensor: string;
  kind: string;
  reason: string;
}

let tmp: string;
beforeAll(async () => {
  assertBuilt();
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-protect-e2e-'));
});
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function cacheNames(file: string): Promise<string[]> {
  return parseCalibrationCache(await readFile(file), file).entries.map((e) => e.name);
}

describe('a YOLOv8-layout detector: boxes in pixels and scores in one Concat', () => {
  let yolo: string;
  let fullCache: string;
  let protectedCache: string;
  let protectedTensors: Protected[];

  beforeAll(async () => {
    yolo = await writeSsdLayout('yolov8', path.join(tmp, 'ssd_yolov8.onnx'));
    // Once without protection: the statistics and a cache with every tensor.
    const r = await runCli(['calibrate', '--model', yolo, '--data', IMAGES, ...SSD_PREPROCESS, ...TRT, '--out-dir', path.join(tmp, 'full'), '--no-protect', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json.protected).toEqual([]);
    fullCache = json.caches[0].file;
  }, 120_000);

  it('calibrate names the Concat and the score branch with their reasons, leaves them out of the cache and marks their layers fp16', async () => {
    const stats = path.join(tmp, 'full', 'ssd_yolov8.stats.msgpack');
    const r = await runCli(['calibrate', '--model', yolo, '--from-stats', stats, ...TRT, '--out-dir', path.join(tmp, 'protected'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const json = JSON.parse(r.stdout);
    protectedTensors = json.protected;
    expect(protectedTensors.map((p) => [p.tensor, p.kind])).toEqual([
      ...SCORE_BRANCH.map((t) => [t, 'score-branch']),
      ['layout_scores_t', 'score-branch'],
      ['output0', 'mixed-range-concat'],
    ]);
    const concat = protectedTensors.find((p) => p.tensor === 'output0')!;
    const m = /joins 'layout_xywh_t' \(max \|x\| (\d+)\) with 'layout_scores_t' \(max \|x\| ([\d.]+)\), (\d+)x apart/.exec(concat.reason);
    expect(m, concat.reason).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(250); // pixel boxes in a 300x300 input
    expect(Number(m![2])).toBeLessThanOrEqual(1); // sigmoid scores
    expect(Number(m![3])).toBeGreaterThan(100);
    expect(concat.reason).toContain('keeps 0 of 127 steps');
    expect(concat.reason).toContain("score branch: the Sigmoid 'Postprocessor_convert_scores' reaches the graph output 'output0'");

    // The statistics keep every tensor; the cache lacks exactly the protected ones.
    protectedCache = json.caches[0].file;
    const full = await cacheNames(fullCache);
    const kept = await cacheNames(protectedCache);
    const names = protectedTensors.map((p) => p.tensor);
    for (const n of names) expect(full).toContain(n);
    expect(kept).toEqual(full.filter((n) => !names.includes(n)));
    expect(json.caches[0].tensors).toBe(kept.length);
    expect(kept).toContain('layout_xywh_t'); // the boxes stay in INT8

    // The precision map for `build`: the producing layers in fp16.
    expect(json.protectedPrecisionMap).toBe(path.join(tmp, 'protected', 'ssd_yolov8.protected.precision.json'));
    expect(JSON.parse(await readFile(json.protectedPrecisionMap, 'utf8'))).toEqual({
      Postprocessor_convert_scores: 'fp16',
      Postprocessor_Slice: 'fp16',
      layout_scores_t: 'fp16',
      layout_output0: 'fp16',
    });

    // The text summary says it too.
    const text = await runCli(['calibrate', '--model', yolo, '--from-stats', stats, ...TRT, '--out-dir', path.join(tmp, 'protected-text')]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain('5 tensor(s) kept out of INT8 (not in the caches; --no-protect keeps them in):');
    expect(text.stdout).toMatch(/ {2}output0 \[mixed-range-concat\]: Concat 'layout_output0' joins/);
  }, 60_000);

  it('quantize puts no Q/DQ on them, even from a cache that has their scales', async () => {
    expect(protectedTensors).toBeDefined();
    const out = path.join(tmp, 'yolo.int8.onnx');
    const stats = path.join(tmp, 'full', 'ssd_yolov8.stats.msgpack');
    const r = await runCli(['quantize', '--model', yolo, '--cache', fullCache, '--stats', stats, '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json.protected.map((p: Protected) => p.tensor)).toEqual(protectedTensors.map((p) => p.tensor));
    expect(json.missingScales).toEqual([]);
    const quantizedInputs = graphOf(await loadOnnxModel(out))
      .node.filter((n) => n.opType === 'QuantizeLinear')
      .map((n) => n.input[0]);
    expect(quantizedInputs.length).toBeGreaterThan(50);
    for (const p of protectedTensors) expect(quantizedInputs).not.toContain(p.tensor);
  }, 60_000);

  it('the other YOLO layouts are protected the same way (decided on the same statistics: the trunk and head tensors share names)', async () => {
    const stored = await loadStatistics(path.join(tmp, 'full', 'ssd_yolov8.stats.msgpack'));
    const v8t = findProtectedTensors(await ssdLayoutModel('yolov8t'), stored.tensors);
    expect(v8t.map((p) => [p.tensor, p.kind])).toEqual([
      ...SCORE_BRANCH.map((t) => [t, 'score-branch']),
      ['layout_scores_t', 'score-branch'],
      ['layout_head', 'mixed-range-concat'],
      ['output0', 'mixed-range-concat'], // the transpose of the Concat carries the same mixture
    ]);
    expect(v8t.at(-1)!.reason).toContain("(re-laid out from 'layout_head')");
    const v5 = findProtectedTensors(await ssdLayoutModel('yolov5'), stored.tensors);
    expect(v5.map((p) => [p.tensor, p.kind])).toEqual([...SCORE_BRANCH.map((t) => [t, 'score-branch']), ['output0', 'mixed-range-concat']]);
    expect(v5.at(-1)!.reason).toContain("joins 'layout_xywh'");
  }, 60_000);

  it('bad input: a --stats file that does not exist, an unknown --placement: exit 1, one clear line, nothing written', async () => {
    const out = path.join(tmp, 'never.onnx');
    const missing = path.join(tmp, 'no-such.stats.msgpack');
    const r = await runCli(['quantize', '--model', yolo, '--cache', fullCache, '--stats', missing, '--out', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(missing);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(existsSync(out)).toBe(false);
    const p = await runCli(['compare', '--model', yolo, '--data', STREET, '--cache', fullCache, '--placement', 'everywhere', '--report-dir', path.join(tmp, 'never-report')]);
    expect(p.code).toBe(1);
    expect(p.stderr).toContain("option '--placement <where>' argument 'everywhere' is invalid. Allowed choices are explicit, implicit, both.");
    expect(existsSync(path.join(tmp, 'never-report'))).toBe(false);
  }, 60_000);

  it('the implicit bound: unprotected, INT8 zeroes every score (mAP 0); protected, scores and mAP survive', async () => {
    expect(protectedCache).toBeDefined();
    const model = await loadOnnxModel(yolo);
    const frames = readdirSync(STREET).filter((f) => f.endsWith('.jpg')).sort();
    const inputs = await Promise.all(frames.map((f) => ssdInput(path.join(STREET, f))));
    const images: ImageGeometry[] = [];
    for (const f of frames) {
      const { width, height } = await sharp(path.join(STREET, f)).metadata();
      images.push({ file: f, width: width!, height: height!, inputWidth: 300, inputHeight: 300, scaleX: 300 / width!, scaleY: 300 / height!, offsetX: 0, offsetY: 0 });
    }
    const run = async (m: OnnxModel): Promise<Tensor[]> => {
      const session = await onnxruntimeBackend.open({ path: 'yolo-variant.onnx', bytes: saveOnnxModel(m) }, { threads: 1, qdq: 'emulate' });
      try {
        const out: Tensor[] = [];
        for (const input of inputs) out.push((await session.run({ input }))['output0']!);
        return out;
      } finally {
        await session.release();
      }
    };
    const maxScores = (outs: Tensor[]) =>
      outs.map((t) => {
        const d = t.data as Float32Array;
        let best = 0;
        for (let i = 4 * SSD_ANCHORS; i < d.length; i++) best = Math.max(best, d[i]!); // rows 4.. are the class scores
        return best;
      });
    const variant = async (cache: string, placement: QdqPlacement) => {
      const scales = new Map(parseCalibrationCache(await readFile(cache), cache).entries.map((e) => [e.name, e.scale]));
      return run(buildInt8Variant(model, scales, { placement }).model);
    };
    const fp32 = await run(model);
    const variants: Record<string, Tensor[]> = {
      'unprotected-implicit': await variant(fullCache, 'implicit'),
      'unprotected-explicit': await variant(fullCache, 'explicit'),
      'protected-implicit': await variant(protectedCache, 'implicit'),
      'protected-explicit': await variant(protectedCache, 'explicit'),
    };

    const best = maxScores(fp32);
    for (const s of best) expect(s).toBeGreaterThan(0.5); // a person or a car in every frame
    for (const s of maxScores(variants['unprotected-implicit']!)) expect(s).toBeLessThan(0.01); // one step of ~2.4 rounds 0..1 to 0
    for (const name of ['protected-implicit', 'protected-explicit']) {
      maxScores(variants[name]!).forEach((s, i) => expect(Math.abs(s - best[i]!), `${name}, ${frames[i]}`).toBeLessThan(0.1));
    }

    // mAP@[.5:.95] against FP32's detections (score >= 0.25), COCO's way (the det library).
    const evaluator = createDetectionEvaluator({ spec: { layout: 'yolov8', output: 'output0', transposed: false }, classOffset: 1 });
    frames.forEach((_, i) => {
      evaluator.addReference({ output0: fp32[i]! }, [images[i]!]);
      for (const [name, outs] of Object.entries(variants)) evaluator.addVariant(name, { output0: outs[i]! }, [images[i]!]);
    });
    const metrics = evaluator.finish();
    const map = Object.fromEntries([...metrics].map(([name, m]) => [name, m.map!]));
    const map50 = Object.fromEntries([...metrics].map(([name, m]) => [name, m.map50!]));
    console.log(`YOLOv8-layout SSD against FP32 on ${frames.length} street frames: mAP@[.5:.95] ${JSON.stringify(map)} mAP@.5 ${JSON.stringify(map50)}`);
    expect(map['unprotected-implicit']).toBeLessThan(0.01); // no detection survives
    expect(map50['unprotected-implicit']).toBeLessThan(0.01);
    expect(map['protected-explicit']).toBeGreaterThan(0.7);
    expect(map50['protected-explicit']).toBeGreaterThan(0.95);
    // Protected, the implicit bound keeps the detections (mAP@.5 close to the explicit placement's); its boxes are
    // less exact (mAP@[.5:.95] lower): the SSD's own box decoding (Exp, Mul, Add of the encodings) is rounded to
    // INT8 there, which no rule protects (docs/quantization.md).
    expect(Math.abs(map50['protected-implicit']! - map50['protected-explicit']!)).toBeLessThan(0.1);
    expect(map['protected-implicit']).toBeGreaterThan(0.4);
  }, 120_000);

  it('compare reports both placements per cache, the winner among the explicit ones', async () => {
    expect(protectedCache).toBeDefined();
    const r = await runCli([
      'compare', '--model', yolo, '--data', STREET, ...SSD_PREPROCESS, '--cache', fullCache, '--precisions', 'fp32,int8',
      '--stats', path.join(tmp, 'full', 'ssd_yolov8.stats.msgpack'), '--no-layers', '--report-dir', path.join(tmp, 'report-yolo'), '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    const byName = new Map(report.variants.map((v: { name: string }) => [v.name, v]));
    expect([...byName.keys()]).toEqual(['fp32', 'int8-entropy2', 'int8-entropy2-implicit']);
    expect((byName.get('int8-entropy2') as { placement: string }).placement).toBe('explicit');
    expect((byName.get('int8-entropy2-implicit') as { placement: string; protected: string[] }).protected).toEqual(protectedTensors.map((p) => p.tensor));
    expect(report.winner.name).toBe('int8-entropy2');
    expect(report.notes.join('\n')).toContain('bound the range a user of implicit INT8 lands in');
    expect(report.notes.join('\n')).toContain('5 tensor(s) kept out of INT8');

    // --no-protect --placement implicit: the one variant, unprotected.
    const np = await runCli([
      'compare', '--model', yolo, '--data', STREET, ...SSD_PREPROCESS, '--cache', fullCache, '--precisions', 'fp32,int8',
      // With the layerwise comparison: every rounded tensor exposed (onnxruntime once crashed on a DQ feeding a Reshape).
      '--max-images', '2', '--placement', 'implicit', '--no-protect', '--report-dir', path.join(tmp, 'report-yolo-np'), '--json',
    ]);
    expect(np.code, np.stderr).toBe(0);
    const npReport = JSON.parse(np.stdout);
    expect(npReport.variants.map((v: { name: string }) => v.name)).toEqual(['fp32', 'int8-entropy2-implicit']);
    expect(npReport.variants[1].protected).toBeUndefined();
    expect(npReport.winner.name).toBe('int8-entropy2-implicit'); // asked for: the only INT8 variant
    expect(npReport.variants[1].layers.length).toBeGreaterThan(100);
    expect(npReport.variants[1].layers.map((l: { name: string }) => l.name)).toContain('output0');
  }, 180_000);
});

describe('no false alarms on ordinary models', () => {
  const protectedOf = async (args: string[]) => {
    const r = await runCli(['calibrate', ...args, '--max-images', '2', ...TRT, '--out-dir', path.join(tmp, 'plain'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout).protected as Protected[]).map((p) => [p.tensor, p.kind]);
  };

  it('MobileNetV2, PP-OCR det and the SSD as it is: only their final probability layer (a score branch)', async () => {
    expect(await protectedOf(['--model', MOBILENET, '--data', IMAGES, '--preset', 'raw01'])).toEqual([
      ['dense_3_softmax', 'score-branch'],
      ['output', 'score-branch'],
    ]);
    expect(await protectedOf(['--model', PPOCR, '--data', IMAGES, '--preset', 'paddleocr-det', '--shapes', 'x:1x3x256x256'])).toEqual([['sigmoid_0.tmp_0', 'score-branch']]);
    expect(await protectedOf(['--model', SSD_MODEL, '--data', IMAGES, ...SSD_PREPROCESS])).toEqual(SCORE_BRANCH.map((t) => [t, 'score-branch']));
  }, 180_000);

  it('MobileNetV2: the implicit variant of a cache has its own numbers, at most as good as the explicit placement', async () => {
    const cache = path.join(tmp, 'plain', 'mobilenet_v2_nsfw_224.entropy2.cache');
    const r = await runCli([
      'compare', '--model', MOBILENET, '--data', IMAGES, '--preset', 'raw01', '--cache', cache, '--precisions', 'fp32,int8',
      '--stats', path.join(tmp, 'plain', 'mobilenet_v2_nsfw_224.stats.msgpack'), '--no-layers', '--report-dir', path.join(tmp, 'report-mobilenet'), '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    const explicit = report.variants.find((v: { name: string }) => v.name === 'int8-entropy2');
    const implicit = report.variants.find((v: { name: string }) => v.name === 'int8-entropy2-implicit');
    expect(implicit.placement).toBe('implicit');
    expect(implicit.cosineMean).not.toBe(explicit.cosineMean); // measured, not copied
    expect(implicit.cosineMean).toBeLessThan(explicit.cosineMean + 1e-3);
    expect(implicit.agreement).toBeLessThanOrEqual(explicit.agreement + 1 / 8); // at most one of the 8 images apart
    expect(report.winner.name).toBe('int8-entropy2');
    console.log(`MobileNetV2 entropy2 on ${report.data.images} images: explicit agreement ${explicit.agreement} cosine ${explicit.cosineMean.toFixed(5)}; implicit agreement ${implicit.agreement} cosine ${implicit.cosineMean.toFixed(5)}`);
  }, 120_000);
});
