/** --bias-correction on calibrate (the implicit path's .bc.onnx) and quantize (the Q/DQ model), on MobileNetV2. */
import { readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { graphOf, loadOnnxModel, tensorFromProto } from '../../src/onnx/model.js';
import { IMAGES, MOBILENET, assertBuilt, runCli } from './cli.js';

let tmp: string;
beforeAll(async () => {
  assertBuilt();
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-bias-e2e-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const base = ['--model', MOBILENET, '--preset', 'raw01', '--trt-version', '10.3.0'];

describe('--bias-correction', () => {
  it('calibrate writes <model>.<algo>.bc.onnx: the input model with other biases; the same bytes for another batch size and file order', async () => {
    const dir = path.join(tmp, 'a');
    const r = await runCli([...base, '--data', IMAGES, '--algo', 'minmax', '--max-images', '3', '--bias-correction', '--out-dir', dir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const json = JSON.parse(r.stdout);
    const bcFile = path.join(dir, 'mobilenet_v2_nsfw_224.minmax.bc.onnx');
    expect(json.biasCorrected[0]).toMatchObject({ algorithm: 'minmax', file: bcFile, images: 3 });
    expect(json.biasCorrected[0].layers).toBeGreaterThan(50);

    const [orig, bc] = [graphOf(await loadOnnxModel(MOBILENET)), graphOf(await loadOnnxModel(bcFile))];
    expect(bc.node.map((n) => [n.opType, n.input, n.output])).toEqual(orig.node.map((n) => [n.opType, n.input, n.output]));
    const biases = new Set(orig.node.filter((n) => n.opType === 'Conv' || n.opType === 'Gemm').map((n) => n.input[2]));
    expect(bc.initializer.map((t) => t.name)).toEqual(orig.initializer.map((t) => t.name));
    let changed = 0;
    bc.initializer.forEach((t, i) => {
      const [a, b] = [tensorFromProto(orig.initializer[i]!), tensorFromProto(t)];
      expect(b.dims).toEqual(a.dims);
      const same = Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength).equals(Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength));
      if (!same) {
        expect(biases.has(t.name), `${t.name} is not a bias`).toBe(true);
        changed++;
      }
    });
    expect(changed).toBeGreaterThan(50);

    // Batch 4, one thread, the files listed in reverse: the same model bytes.
    const list = path.join(tmp, 'reversed.txt');
    const names = readdirSync(IMAGES).filter((f) => /\.(jpe?g|png)$/i.test(f)).sort().reverse();
    await writeFile(list, names.map((f) => path.join(IMAGES, f)).join('\n') + '\n');
    const dir2 = path.join(tmp, 'b');
    const r2 = await runCli([...base, '--data', list, '--batch', '4', '--threads', '1', '--algo', 'minmax', '--max-images', '3', '--bias-correction', '--out-dir', dir2, '--quiet']);
    expect(r2.code, r2.stderr).toBe(0);
    expect((await readFile(path.join(dir2, 'mobilenet_v2_nsfw_224.minmax.bc.onnx'))).equals(await readFile(bcFile))).toBe(true);
  }, 240_000);

  it('quantize --bias-correction writes the Q/DQ model with the corrected biases', async () => {
    const dir = path.join(tmp, 'a');
    const out = path.join(tmp, 'q.onnx');
    const r = await runCli(['quantize', '--model', MOBILENET, '--preset', 'raw01', '--cache', path.join(dir, 'mobilenet_v2_nsfw_224.minmax.cache'), '--data', IMAGES, '--max-images', '3', '--bias-correction', '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).biasCorrection.layers).toBeGreaterThan(50);
    // Its float biases are the .bc.onnx's.
    const [q, bc] = [graphOf(await loadOnnxModel(out)), graphOf(await loadOnnxModel(path.join(dir, 'mobilenet_v2_nsfw_224.minmax.bc.onnx')))];
    const conv = q.node.find((n) => n.opType === 'Conv')!;
    const pick = (g: typeof q, name: string) => Array.from(tensorFromProto(g.initializer.find((t) => t.name === name)!).data as Float32Array);
    expect(pick(q, conv.input[2]!)).toEqual(pick(bc, conv.input[2]!));
  }, 240_000);

  it('refuses --bias-correction without images, before any work', async () => {
    const r = await runCli([...base, '--from-stats', path.join(tmp, 'none.msgpack'), '--bias-correction']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--bias-correction .*--data/);
    expect(r.stderr).not.toMatch(/at .*\.js:\d+/);
    const q = await runCli(['quantize', '--model', MOBILENET, '--cache', path.join(tmp, 'none.cache'), '--bias-correction']);
    expect(q.code).toBe(1);
    expect(q.stderr).toMatch(/--bias-correction needs --data/);
  });
});

describe('--algo auto', () => {
  it('writes <model>.auto.cache under the EntropyCalibration2 header; cache show prints the algorithm each tensor took', async () => {
    const dir = path.join(tmp, 'auto');
    const r = await runCli([...base, '--data', IMAGES, '--max-images', '3', '--algo', 'auto', '--out-dir', dir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const file = path.join(dir, 'mobilenet_v2_nsfw_224.auto.cache');
    expect((await readFile(file, 'utf8')).split('\n')[0]).toBe('TRT-100300-EntropyCalibration2');
    const show = await runCli(['cache', 'show', file, '--json']);
    expect(show.code, show.stderr).toBe(0);
    const tensors = JSON.parse(show.stdout).tensors as Array<{ name: string; amax: number; algorithm: string }>;
    expect(tensors.length).toBeGreaterThan(100);
    const algos = new Set(['entropy2', 'entropy', 'minmax', 'percentile', 'mse']);
    for (const t of tensors) expect(t.algorithm.split('~').every((a) => algos.has(a)), `${t.name}: ${t.algorithm}`).toBe(true);
    // Each tensor's amax is the one of the algorithm it names (plain choices): read from that algorithm's cache.
    const minmax = JSON.parse((await runCli(['cache', 'show', path.join(dir, 'mobilenet_v2_nsfw_224.minmax.cache'), '--json'])).stdout).tensors as Array<{ name: string; amax: number }>;
    const byName = new Map(minmax.map((t) => [t.name, t.amax]));
    const fromMinmax = tensors.filter((t) => t.algorithm === 'minmax');
    for (const t of fromMinmax) expect(t.amax).toBe(byName.get(t.name));
    // compare names the variant after the file, not the EntropyCalibration2 header it shares with entropy2.
    const c = await runCli(['compare', '--model', MOBILENET, '--data', IMAGES, '--preset', 'raw01', '--max-images', '3', '--precisions', 'fp32,int8', '--placement', 'explicit', '--cache', `${file},${path.join(dir, 'mobilenet_v2_nsfw_224.entropy2.cache')}`, '--out-dir', dir, '--no-layers', '--json']);
    expect(c.code, c.stderr).toBe(0);
    expect((JSON.parse(c.stdout).variants as Array<{ name: string }>).map((v) => v.name)).toEqual(['fp32', 'int8-auto', 'int8-entropy2']);
  }, 120_000);
});
