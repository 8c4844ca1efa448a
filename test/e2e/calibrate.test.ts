/**
 * The main command on the bundled real fixtures: MobileNetV2 on 8 photos, and the PP-OCR detector (weights in
 * Constant nodes, dynamic input) at a small fixed shape.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, watch } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCalibrationCache } from '../../src/cache/trt-cache.js';
import { listActivations } from '../../src/onnx/graph.js';
import { loadOnnxModel } from '../../src/onnx/model.js';
import { BIN, IMAGES, MOBILENET, PPOCR, assertBuilt, runCli } from './cli.js';

const ALGOS = ['entropy2', 'entropy', 'minmax', 'percentile', 'mse'];
let tmp: string;

beforeAll(async () => {
  assertBuilt();
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-calibrate-e2e-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const md5 = async (file: string) => createHash('md5').update(await readFile(file)).digest('hex');

async function filesOf(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of (await readdir(dir)).sort()) out[f] = await md5(path.join(dir, f));
  return out;
}

const base = ['--model', MOBILENET, '--preset', 'raw01', '--algo', 'all', '--trt-version', '10.3.0'];

describe('trt-calib --model --data --algo all (MobileNetV2)', () => {
  let dir1: string;
  let json: any;

  it('writes one cache per algorithm and the statistics, each read back by the reader', async () => {
    dir1 = path.join(tmp, 'b1');
    const r = await runCli([...base, '--data', IMAGES, '--batch', '1', '--out-dir', dir1, '--json']);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.code).toBe(0);
    json = JSON.parse(r.stdout);
    expect(json.images.used).toBe(8);
    expect(json.trtVersion).toMatchObject({ version: '10.3.0', encoded: 100300, source: '--trt-version' });
    const files = readdirSync(dir1).sort();
    expect(files).toEqual(
      [...ALGOS.map((a) => `mobilenet_v2_nsfw_224.${a}.cache`), 'mobilenet_v2_nsfw_224.protected.precision.json', 'mobilenet_v2_nsfw_224.stats.msgpack'].sort(),
    );

    // The final Softmax and the output it reaches are protected (a score branch): not in the caches.
    expect(json.protected.map((p: any) => p.tensor)).toEqual(['dense_3_softmax', 'output']);
    const activations = listActivations(await loadOnnxModel(MOBILENET))
      .map((a) => a.name)
      .filter((a) => a !== 'dense_3_softmax' && a !== 'output');
    const headers: Record<string, string> = {
      entropy2: 'EntropyCalibration2',
      entropy: 'EntropyCalibration',
      minmax: 'MinMaxCalibration',
      percentile: 'EntropyCalibration2',
      mse: 'EntropyCalibration2',
    };
    for (const algo of ALGOS) {
      const cache = parseCalibrationCache(await readFile(path.join(dir1, `mobilenet_v2_nsfw_224.${algo}.cache`)), algo);
      expect(cache.trtVersion).toBe(100300);
      expect(cache.algorithm).toBe(headers[algo]);
      // Every activation but the protected ones, plus the network input, in topological order, input first.
      expect(cache.entries.map((e) => e.name)).toEqual(activations);
      expect(cache.entries[0]!.name).toBe('input');
      for (const e of cache.entries) expect(e.scale).toBeGreaterThan(0);
    }
    // raw01 feeds x/255: the input's max |x| is at most 1, and MinMax keeps it (a photo reaches 255 somewhere).
    const minmax = parseCalibrationCache(await readFile(path.join(dir1, 'mobilenet_v2_nsfw_224.minmax.cache')));
    expect(minmax.entries[0]!.amax).toBeCloseTo(1, 5);
    // Entropy clips the long tails of the wide activations below their max; minmax never does.
    const e2 = parseCalibrationCache(await readFile(path.join(dir1, 'mobilenet_v2_nsfw_224.entropy2.cache')));
    const minmaxByName = new Map(minmax.entries.map((e) => [e.name, e.amax]));
    const clipped = e2.entries.filter((e) => e.amax < minmaxByName.get(e.name)! * 0.99).length;
    expect(clipped).toBeGreaterThan(activations.length / 4);
  });

  it('cache show lists every cached activation tensor plus the input', async () => {
    const r = await runCli(['cache', 'show', path.join(dir1, 'mobilenet_v2_nsfw_224.entropy2.cache'), '--json']);
    expect(r.code).toBe(0);
    const shown = JSON.parse(r.stdout);
    expect(shown.tensors).toHaveLength(110); // 112 activations, 2 protected
    expect(shown.tensors[0]).toMatchObject({ name: 'input' });
    expect(shown.tensors[0].amax).toBeCloseTo(shown.tensors[0].scale * 127, 6);
  });

  it('gives byte-identical caches and statistics for batch 1, batch 3 and the file list reversed', async () => {
    const dir3 = path.join(tmp, 'b3');
    expect((await runCli([...base, '--data', IMAGES, '--batch', '3', '--threads', '1', '--out-dir', dir3, '--quiet'])).code).toBe(0);
    const list = path.join(tmp, 'reversed.txt');
    const images = readdirSync(IMAGES).filter((f) => /\.(jpg|png)$/.test(f)).sort().reverse();
    await writeFile(list, images.map((f) => path.join(IMAGES, f)).join('\n') + '\n');
    const dirR = path.join(tmp, 'rev');
    expect((await runCli([...base, '--data', list, '--batch', '8', '--out-dir', dirR, '--quiet'])).code).toBe(0);
    const a = await filesOf(dir1);
    expect(await filesOf(dir3)).toEqual(a);
    expect(await filesOf(dirR)).toEqual(a);
  });

  it('derives a cache from the stored statistics without images, identical to the one computed with them', async () => {
    const out = path.join(tmp, 'from-stats.cache');
    const r = await runCli(['--model', MOBILENET, '--from-stats', path.join(dir1, 'mobilenet_v2_nsfw_224.stats.msgpack'), '--algo', 'mse', '--trt-version', '10.3.0', '--out', out, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).statsSource).toBe('file');
    expect(await md5(out)).toBe(await md5(path.join(dir1, 'mobilenet_v2_nsfw_224.mse.cache')));
  });

  it('refuses statistics collected on another model', async () => {
    const out = path.join(tmp, 'never.cache');
    const r = await runCli(['--model', PPOCR, '--from-stats', path.join(dir1, 'mobilenet_v2_nsfw_224.stats.msgpack'), '--trt-version', '10.3.0', '--out', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/mobilenet_v2_nsfw_224\.stats\.msgpack/);
    expect(r.stderr).toMatch(/another model|not on/i);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(out)).toBe(false);
  });
});

describe('bad input: a clear one-line error, exit 1, nothing written', () => {
  const expectUserError = (r: { code: number; stderr: string }, pattern: RegExp) => {
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^trt-calib: error: /);
    expect(r.stderr).toMatch(pattern);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  };

  it('a corrupt statistics file', async () => {
    const bad = path.join(tmp, 'corrupt.stats.msgpack');
    await writeFile(bad, Buffer.from('this is not msgpack at all'));
    const out = path.join(tmp, 'out-corrupt');
    const r = await runCli(['--model', MOBILENET, '--from-stats', bad, '--trt-version', '10.3.0', '--out-dir', out]);
    expectUserError(r, /corrupt\.stats\.msgpack/);
    expect(existsSync(out)).toBe(false);
  });

  it('a cache with a bad line', async () => {
    const bad = path.join(tmp, 'bad.cache');
    await writeFile(bad, 'TRT-100300-EntropyCalibration2\ninput: 3c010204\nconv: not-hex\n');
    expectUserError(await runCli(['cache', 'show', bad]), /bad\.cache:3: the scale of "conv"/);
  });

  it('a model that is not ONNX', async () => {
    const notOnnx = path.join(tmp, 'model.onnx');
    await writeFile(notOnnx, 'definitely not protobuf\n');
    const out = path.join(tmp, 'out-notonnx');
    expectUserError(await runCli(['--model', notOnnx, '--data', IMAGES, '--trt-version', '10.3.0', '--out-dir', out]), /model\.onnx is not an ONNX model/);
    expect(existsSync(out)).toBe(false);
  });

  it('a model whose input shape does not match the data', async () => {
    const out = path.join(tmp, 'out-shape');
    const r = await runCli(['--model', MOBILENET, '--data', IMAGES, '--size', '256', '--trt-version', '10.3.0', '--out-dir', out]);
    expectUserError(r, /224/);
    expect(existsSync(out)).toBe(false);
  });

  it('a shape onnxruntime rejects mid-run (in the statistics worker): its message, exit 1, nothing written', async () => {
    const out = path.join(tmp, 'out-ortfail');
    const r = await runCli(['--model', PPOCR, '--data', IMAGES, '--preset', 'paddleocr-det', '--shapes', 'x:1x3x50x70', '--resize', 'stretch', '--trt-version', '8.6.1', '--out-dir', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/trt-calib: error: onnxruntime failed to run .*ppocr_v4_det\.onnx on input 'x' 1x3x50x70/);
    expect(r.stderr).toMatch(/--shapes/);
    expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
    expect(existsSync(out)).toBe(false);
  });

  it('no TensorRT version given and none installed', async () => {
    const out = path.join(tmp, 'out-nover');
    const r = await runCli(['--model', MOBILENET, '--data', IMAGES, '--out-dir', out], { env: { TENSORRT_ROOT: '/nonexistent' } });
    expectUserError(r, /--trt-version/);
    expect(existsSync(out)).toBe(false);
  });

  it('an unknown option is an error, not ignored', async () => {
    const r = await runCli(['--model', MOBILENET, '--data', IMAGES, '--trt-version', '10.3.0', '--algoo', 'minmax']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unknown option '--algoo'/);
  });
});

describe('unreadable images among real ones', () => {
  const BAD = path.join(path.dirname(IMAGES), 'images-bad');
  it('are reported by name and skipped (exit 0); --strict makes the first one fatal with nothing written', async () => {
    const dir = path.join(tmp, 'bad');
    const r = await runCli(['--model', MOBILENET, '--data', BAD, '--preset', 'raw01', '--algo', 'minmax', '--trt-version', '10.3.0', '--out-dir', dir, '--json']);
    expect(r.code).toBe(0);
    for (const f of ['corrupt-truncated.jpg', 'empty.jpg', 'not-an-image.png']) expect(r.stderr).toContain(f);
    const json = JSON.parse(r.stdout);
    expect(json.images.used).toBe(3);
    expect(json.images.skipped.map((s: any) => path.basename(s.file)).sort()).toEqual(['corrupt-truncated.jpg', 'empty.jpg', 'not-an-image.png']);
    expect(existsSync(path.join(dir, 'mobilenet_v2_nsfw_224.minmax.cache'))).toBe(true);

    const strictDir = path.join(tmp, 'bad-strict');
    const s = await runCli(['--model', MOBILENET, '--data', BAD, '--preset', 'raw01', '--algo', 'minmax', '--trt-version', '10.3.0', '--out-dir', strictDir, '--strict']);
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/corrupt-truncated\.jpg|empty\.jpg|not-an-image\.png/);
    expect(s.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(strictDir)).toBe(false);
  });
});

describe('a model with a fixed batch', () => {
  it('runs full batches and leaves out a short last one with a warning (padding would count images twice)', async () => {
    const { loadOnnxModel, writeOnnxModel } = await import('../../src/onnx/model.js');
    const model = await loadOnnxModel(MOBILENET);
    for (const io of [...model.graph!.input!, ...model.graph!.output!]) {
      const dim = io.type!.tensorType!.shape!.dim![0]!;
      dim.dimParam = '';
      dim.dimValue = 4 as never;
    }
    const fixed = path.join(tmp, 'mobilenet_b4.onnx');
    await writeOnnxModel(fixed, model);
    const r = await runCli(['--model', fixed, '--data', IMAGES, '--max-images', '7', '--preset', 'raw01', '--algo', 'minmax', '--trt-version', '10.3.0', '--out-dir', path.join(tmp, 'b4'), '--json']);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.code).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json.batchSize).toBe(4);
    expect(json.images).toMatchObject({ used: 4, dropped: 3 });
    expect(r.stderr).toMatch(/last 3 image\(s\) were not used: .* fixed batch of 4/);
  });
});

describe('PP-OCRv4 detector: Constant-node weights, dynamic input fixed by --shapes', () => {
  it('calibrates every activation but the protected output, and no weight', async () => {
    const dir = path.join(tmp, 'ppocr');
    const r = await runCli(['--model', PPOCR, '--data', IMAGES, '--max-images', '3', '--preset', 'paddleocr-det', '--shapes', 'x:1x3x96x128', '--algo', 'entropy2,minmax', '--trt-version', '8.6.1', '--out-dir', dir, '--json']);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.code).toBe(0);
    const cache = parseCalibrationCache(await readFile(path.join(dir, 'ppocr_v4_det.entropy2.cache')));
    expect(cache.trtVersion).toBe(8601);
    const model = await loadOnnxModel(PPOCR);
    const constants = new Set(model.graph!.node!.filter((n) => n.opType === 'Constant').flatMap((n) => n.output ?? []));
    expect(constants.size).toBeGreaterThan(300);
    const names = cache.entries.map((e) => e.name);
    expect(names[0]).toBe('x');
    // 331 activations; the output probability map (the final Sigmoid, a score branch) is protected: not cached.
    expect(names).toHaveLength(330);
    expect(names.filter((n) => constants.has(n))).toEqual([]);
    expect(JSON.parse(r.stdout).protected.map((p: any) => p.tensor)).toEqual(['sigmoid_0.tmp_0']);
    expect(names).not.toContain('sigmoid_0.tmp_0');
  });
});

describe('an interrupted run (Ctrl-C)', () => {
  it('exits 130 and leaves no temporary file or folder behind, and no output', async () => {
    // A temporary folder of its own, watched: SIGINT goes the moment the run's temporary folder appears
    // (src/util/run-temp.ts; src/backends/onnxruntime-collect.ts writes the blocked-layout model's weights in it while
    // onnxruntime prepares the session).
    const scratch = await mkdtemp(path.join(tmp, 'tmpdir-'));
    const out = path.join(tmp, 'interrupted');
    const child = spawn(process.execPath, [BIN, ...base, '--data', IMAGES, '--out-dir', out], { env: { ...process.env, TMPDIR: scratch }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += String(d)));
    const sent = new Promise<string>((resolve) => {
      const watcher = watch(scratch, (_event, name) => {
        if (!name?.startsWith('trt-calib-run.')) return;
        child.kill('SIGINT');
        watcher.close();
        resolve(name);
      });
      child.on('exit', () => {
        watcher.close();
        resolve('');
      });
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    const folder = await sent;
    if (process.arch === 'x64') expect(folder).toMatch(/^trt-calib-run\./); // the signal was sent mid-run
    expect(code).toBe(130);
    expect(stderr).toMatch(/interrupted \(SIGINT\)/);
    expect(readdirSync(scratch).filter((f) => f.startsWith('trt-calib'))).toEqual([]);
    expect(existsSync(out) ? readdirSync(out) : []).toEqual([]);
  });
});
