/**
 * --weight-search (quantize, compare) and compare --bias-correction, on MobileNetV2 with 3 images: the written
 * model's scales, determinism over batch size and file order, the variants compare adds, and the refusals.
 */
import { readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { graphOf, loadOnnxModel, tensorFromProto } from '../../src/onnx/model.js';
import { IMAGES, MOBILENET, assertBuilt, runCli } from './cli.js';

let tmp: string;
let cache: string;
beforeAll(async () => {
  assertBuilt();
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-ws-e2e-'));
  const r = await runCli(['--model', MOBILENET, '--preset', 'raw01', '--trt-version', '10.3.0', '--data', IMAGES, '--algo', 'minmax', '--max-images', '3', '--out-dir', tmp, '--quiet']);
  expect(r.code, r.stderr).toBe(0);
  cache = path.join(tmp, 'mobilenet_v2_nsfw_224.minmax.cache');
}, 120_000);
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('--weight-search', () => {
  it('quantize: weight scales at or below max|W|/127, some below; the same bytes for another batch size, thread count and file order', async () => {
    const names = readdirSync(IMAGES).filter((f) => /\.(jpe?g|png)$/i.test(f)).sort().slice(0, 3);
    const sorted = path.join(tmp, 'sorted.txt');
    await writeFile(sorted, names.map((f) => path.join(IMAGES, f)).join('\n') + '\n');
    const out = path.join(tmp, 'ws.onnx');
    const r = await runCli(['quantize', '--model', MOBILENET, '--preset', 'raw01', '--cache', cache, '--data', sorted, '--weight-search', '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json.weightSearch.layers).toBeGreaterThan(50);
    expect(json.weightSearch.images).toBe(3);
    expect(json.weightSearch.shrunk).toBeGreaterThan(0);
    expect(json.weightSearch.errorAfter).toBeLessThan(json.weightSearch.errorBefore);

    const plain = path.join(tmp, 'plain.onnx');
    expect((await runCli(['quantize', '--model', MOBILENET, '--cache', cache, '--out', plain, '--quiet'])).code).toBe(0);
    const scalesOf = async (file: string) => new Map(graphOf(await loadOnnxModel(file)).initializer.filter((t) => t.name.endsWith('_scale') && t.dims.length === 1).map((t) => [t.name, tensorFromProto(t).data as Float32Array]));
    const [a, b] = [await scalesOf(plain), await scalesOf(out)];
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    let below = 0;
    for (const [name, s] of b) {
      const m = a.get(name)!;
      for (let c = 0; c < s.length; c++) {
        expect(s[c]!).toBeLessThanOrEqual(m[c]! * (1 + 1e-6));
        expect(s[c]!).toBeGreaterThanOrEqual(m[c]! * 0.5 * (1 - 1e-6));
        if (s[c]! < m[c]! * (1 - 1e-6)) below++;
      }
    }
    expect(below).toBe(json.weightSearch.shrunk);

    const list = path.join(tmp, 'reversed.txt');
    await writeFile(list, [...names].reverse().map((f) => path.join(IMAGES, f)).join('\n') + '\n');
    const out2 = path.join(tmp, 'ws2.onnx');
    const r2 = await runCli(['quantize', '--model', MOBILENET, '--preset', 'raw01', '--cache', cache, '--data', list, '--batch', '3', '--threads', '1', '--weight-search', '--out', out2, '--quiet']);
    expect(r2.code, r2.stderr).toBe(0);
    expect((await readFile(out2)).equals(await readFile(out))).toBe(true);
  }, 240_000);

  it('calibrate --weight-search is refused: TensorRT picks the weight scales of an implicit INT8 network itself', async () => {
    const r = await runCli(['--model', MOBILENET, '--preset', 'raw01', '--data', IMAGES, '--weight-search', '--out-dir', path.join(tmp, 'c')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/TensorRT.*weight scales itself/);
    expect(r.stderr).toMatch(/quantize .*--weight-search/);
    expect(readdirSync(tmp)).not.toContain('c');
  });
});

describe('compare --weight-search / --bias-correction', () => {
  it('adds int8-<algo>+ws+bc beside int8-<algo>, measured on --calib-data', async () => {
    const r = await runCli(['compare', '--model', MOBILENET, '--preset', 'raw01', '--data', IMAGES, '--max-images', '3', '--calib-data', IMAGES, '--cache', cache, '--precisions', 'fp32,int8', '--placement', 'explicit', '--weight-search', '--bias-correction', '--no-layers', '--report-dir', path.join(tmp, 'r1'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const json = JSON.parse(r.stdout);
    const names = json.variants.map((v: { name: string }) => v.name);
    expect(names).toEqual(['fp32', 'int8-minmax', 'int8-minmax+ws+bc']);
    const [plain, both] = [json.variants[1], json.variants[2]];
    expect(both.images).toBe(3);
    // Other weights and biases: other outputs.
    expect(both.cosineMean).not.toBe(plain.cosineMean);
  }, 240_000);

  it('compare --bias-correction alone: int8-<algo>+bc; without --calib-data it is refused before any work', async () => {
    const r0 = await runCli(['compare', '--model', MOBILENET, '--preset', 'raw01', '--data', IMAGES, '--cache', cache, '--precisions', 'fp32,int8', '--bias-correction', '--report-dir', path.join(tmp, 'r0')]);
    expect(r0.code).not.toBe(0);
    expect(r0.stderr).toMatch(/--calib-data/);
    const r = await runCli(['compare', '--model', MOBILENET, '--preset', 'raw01', '--data', IMAGES, '--max-images', '2', '--calib-data', IMAGES, '--cache', cache, '--precisions', 'int8', '--placement', 'explicit', '--bias-correction', '--no-layers', '--report-dir', path.join(tmp, 'r2'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).variants.map((v: { name: string }) => v.name)).toEqual(['int8-minmax', 'int8-minmax+bc']);
  }, 240_000);
});

describe('sensitivity --bias-correction', () => {
  it('measures on the corrected INT8 model (another full-INT8 result), the shifts from --calib-data; refused without it', async () => {
    const args = ['sensitivity', '--model', MOBILENET, '--preset', 'raw01', '--data', IMAGES, '--max-images', '2', '--cache', cache, '--layers', 'block_16_project_BN'];
    const r0 = await runCli([...args, '--bias-correction']);
    expect(r0.code).not.toBe(0);
    expect(r0.stderr).toMatch(/--calib-data/);
    const plain = path.join(tmp, 's0.json');
    const corrected = path.join(tmp, 's1.json');
    expect((await runCli([...args, '-o', plain, '--quiet'])).code).toBe(0);
    const r = await runCli([...args, '--calib-data', IMAGES, '--bias-correction', '-o', corrected]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/bias correction \(weights\) on 8 calibration images/);
    const [a, b] = [JSON.parse(await readFile(plain, 'utf8')).sensitivity, JSON.parse(await readFile(corrected, 'utf8')).sensitivity];
    expect(b.fullInt8.images).toBe(2);
    expect(b.fullInt8.cosineMean).not.toBe(a.fullInt8.cosineMean);
  }, 240_000);
});
