/**
 * quantize and compare on the bundled fixtures: every variant side by side, the written Q/DQ model reproducing the
 * numbers compare reported, the --max-drop gate both ways, labels, and the detector's dense probability map.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatCalibrationCache, parseCalibrationCache } from '../../src/cache/trt-cache.js';
import { IMAGES, MOBILENET, PPOCR, assertBuilt, labelledPhotos, runCli } from './cli.js';

let tmp: string;
let caches: string;
beforeAll(async () => {
  assertBuilt();
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-compare-e2e-'));
  caches = path.join(tmp, 'calib');
  const r = await runCli(['--model', MOBILENET, '--data', IMAGES, '--preset', 'raw01', '--algo', 'entropy2,minmax', '--trt-version', '10.3.0', '--out-dir', caches, '--quiet']);
  if (r.code !== 0) throw new Error(`calibration failed: ${r.stderr}`);
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const cache = (algo: string) => path.join(caches, `mobilenet_v2_nsfw_224.${algo}.cache`);

describe('compare (MobileNetV2)', () => {
  let report: any;

  it('runs FP32, FP16 and one INT8 variant per cache on the same images and writes report.json and report.html', async () => {
    const dir = path.join(tmp, 'report');
    const r = await runCli(['compare', '--model', MOBILENET, '--data', IMAGES, '--preset', 'raw01', '--cache', `${cache('entropy2')},${cache('minmax')}`, '--placement', 'explicit', '--out-dir', caches, '--report-dir', dir, '--json']);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.code).toBe(0);
    report = JSON.parse(r.stdout);
    expect(report.variants.map((v: any) => v.name)).toEqual(['fp32', 'fp16', 'int8-entropy2', 'int8-minmax']);
    const byName = Object.fromEntries(report.variants.map((v: any) => [v.name, v]));
    expect(byName.fp32.agreement).toBe(1);
    expect(byName.fp32.cosineMin).toBe(1);
    expect(byName.fp16.cosineMean).toBeGreaterThan(0.999);
    for (const name of ['int8-entropy2', 'int8-minmax']) {
      const v = byName[name];
      expect(v.images).toBe(8);
      expect(v.cosineMean).toBeGreaterThan(0.95);
      expect(v.cosineMean).toBeLessThan(1);
      // Per-layer SNR of every quantized tensor, worst first.
      expect(v.layers.length).toBeGreaterThan(40);
      const snr = v.layers.map((l: any) => l.snrDb);
      expect(snr).toEqual([...snr].sort((a: number, b: number) => a - b));
    }
    expect(['int8-entropy2', 'int8-minmax']).toContain(report.winner.variant ?? report.winner.name);
    // Histograms from the stored statistics, with the threshold of every algorithm.
    expect(report.histograms.length).toBe(112);
    expect(report.histograms[0].thresholds.map((t: any) => t.algorithm).sort()).toEqual(['entropy', 'entropy2', 'minmax', 'mse', 'percentile']);
    const html = await readFile(path.join(dir, 'report.html'), 'utf8');
    expect(html).toContain('<svg');
    expect(html).toContain('int8-entropy2');
    expect(JSON.parse(await readFile(path.join(dir, 'report.json'), 'utf8')).variants).toHaveLength(4);
  });

  it('the Q/DQ model written by quantize reloads in onnxruntime and reproduces the numbers compare reported', async () => {
    const model = path.join(tmp, 'm.int8.onnx');
    const q = await runCli(['quantize', '--model', MOBILENET, '--cache', cache('entropy2'), '--out', model, '--json']);
    expect(q.code).toBe(0);
    expect(JSON.parse(q.stdout).int8Layers).toBeGreaterThan(50);
    const r = await runCli(['compare', '--model', MOBILENET, '--data', IMAGES, '--preset', 'raw01', '--precisions', 'fp32', '--variant-model', model, '--out-dir', caches, '--report-dir', path.join(tmp, 'report-file'), '--json']);
    expect(r.code).toBe(0);
    const fromFile = JSON.parse(r.stdout).variants.find((v: any) => v.name === 'm.int8');
    const inMemory = report.variants.find((v: any) => v.name === 'int8-entropy2');
    expect(fromFile.precision).toBe('int8');
    for (const key of ['agreement', 'cosineMean', 'cosineMin']) expect(fromFile[key]).toBe(inMemory[key]);
    expect(fromFile.outputs[0].snrDb).toBe(inMemory.outputs[0].snrDb);
  });

  it('quantize refuses a precision map naming a layer the model does not have, and writes nothing', async () => {
    const map = path.join(tmp, 'typo.precision.json');
    await writeFile(map, JSON.stringify({ bn_Conv1: 'fp16', block_99_typo: 'fp32' }));
    const out = path.join(tmp, 'never.onnx');
    const r = await runCli(['quantize', '--model', MOBILENET, '--cache', cache('minmax'), '--precision-map', map, '--out', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/block_99_typo/);
    expect(existsSync(out)).toBe(false);
  });

  it('--max-drop: exit 0 when the gate passes, 2 when it fails (report written either way)', async () => {
    const pass = await runCli(['compare', '--model', MOBILENET, '--data', IMAGES, '--preset', 'raw01', '--cache', cache('minmax'), '--no-layers', '--max-drop', '100', '--out-dir', caches, '--report-dir', path.join(tmp, 'gate-pass'), '--quiet']);
    expect(pass.code).toBe(0);
    // A cache whose scales are 40x too small clips almost everything: INT8 agreement collapses.
    const good = parseCalibrationCache(await readFile(cache('minmax')));
    const broken = path.join(tmp, 'broken.cache');
    await writeFile(broken, formatCalibrationCache({ ...good, entries: good.entries.map((e) => ({ name: e.name, scale: e.scale / 40 })) }));
    const dir = path.join(tmp, 'gate-fail');
    const fail = await runCli(['compare', '--model', MOBILENET, '--data', IMAGES, '--preset', 'raw01', '--cache', broken, '--precisions', 'fp32,int8', '--no-layers', '--max-drop', '1', '--out-dir', caches, '--report-dir', dir]);
    expect(fail.code).toBe(2);
    expect(fail.stderr).toMatch(/accuracy gate failed/);
    expect(fail.stderr).not.toMatch(/\n\s+at /);
    const gated = JSON.parse(await readFile(path.join(dir, 'report.json'), 'utf8'));
    expect(gated.gate.passed).toBe(false);
  });

  it('reports top-1 accuracy and its drop with labels from folder names', async () => {
    // Two "classes" of real photos; the class index is arbitrary but fixed by the class list.
    const { data, classes } = await labelledPhotos(tmp);
    const r = await runCli(['compare', '--model', MOBILENET, '--data', data, '--preset', 'raw01', '--labels', 'folders', '--classes', classes, '--precisions', 'fp32,int8', '--cache', cache('minmax'), '--no-layers', '--out-dir', caches, '--report-dir', path.join(tmp, 'labels'), '--json']);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout);
    expect(rep.data.labels).toMatchObject({ source: 'folders', labelled: 3, unlabelled: 0 });
    const fp32 = rep.variants.find((v: any) => v.name === 'fp32');
    const int8 = rep.variants.find((v: any) => v.name === 'int8-minmax');
    expect(typeof fp32.top1).toBe('number');
    expect(int8.top1Drop).toBeCloseTo((fp32.top1 - int8.top1) * 100, 9);
  });
});

describe('compare --backend tensorrt where TensorRT is absent', () => {
  it('exits 1 with the bridge message and writes no report', async () => {
    const dir = path.join(tmp, 'trt-report');
    const r = await runCli(['compare', '--model', MOBILENET, '--data', IMAGES, '--preset', 'raw01', '--cache', cache('minmax'), '--backend', 'tensorrt', '--out-dir', caches, '--report-dir', dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/TensorRT/);
    expect(r.stderr).toMatch(/TENSORRT_ROOT/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(dir)).toBe(false);
  });
});

describe('compare on a dense output (PP-OCRv4 detector probability map)', () => {
  it('reports cosine, SNR and the fraction of pixels on the same side of 0.3 for FP16 and INT8', async () => {
    const dir = path.join(tmp, 'ppocr');
    const shape = ['--preset', 'paddleocr-det', '--shapes', 'x:1x3x96x128', '--max-images', '3'];
    const c = await runCli(['--model', PPOCR, '--data', IMAGES, ...shape, '--algo', 'entropy2', '--trt-version', '8.6.1', '--out-dir', dir, '--quiet']);
    expect(c.code).toBe(0);
    const r = await runCli(['compare', '--model', PPOCR, '--data', IMAGES, ...shape, '--cache', path.join(dir, 'ppocr_v4_det.entropy2.cache'), '--no-layers', '--out-dir', dir, '--json']);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout);
    expect(rep.primaryOutput).toBe('sigmoid_0.tmp_0');
    for (const name of ['fp16', 'int8-entropy2']) {
      const out = rep.variants.find((v: any) => v.name === name).outputs[0];
      expect(out.kind).toBe('dense');
      expect(out.dims).toEqual([1, 96, 128]);
      expect(out.sameSideFraction).toBeGreaterThan(0.5);
      expect(out.sameSideFraction).toBeLessThanOrEqual(1);
      expect(typeof out.snrDb === 'number' || out.snrDb === 'Infinity').toBe(true);
    }
    expect(existsSync(path.join(dir, 'ppocr_v4_det.report', 'report.html'))).toBe(true);
  });
});
