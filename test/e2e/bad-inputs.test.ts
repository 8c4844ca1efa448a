/**
 * Bad inputs from issue 12 on the built CLI: each must end in a clear error (exit 1, no stack trace) or a
 * reported skip, in seconds; never a hang, unbounded memory or exit 3. Every run has a time limit.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeModel, makeNode, makeValueInfo } from '../../src/onnx/build.js';
import { loadOnnxModel, makeTensor, onnx, saveOnnxModel, tensorToProto } from '../../src/onnx/model.js';
import { BIN, IMAGES, MOBILENET, ROOT, assertBuilt, type CliResult } from './cli.js';

let tmp: string;
beforeAll(async () => {
  assertBuilt();
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-bad-inputs-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** The CLI, killed after `limitMs` (code 'timeout'), so that a hang or a runaway read fails the test quickly. */
function run(args: string[], limitMs = 15_000, env: NodeJS.ProcessEnv = {}): Promise<CliResult & { timedOut: boolean }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env }, timeout: limitMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const timedOut = error !== null && (error as NodeJS.ErrnoException & { killed?: boolean }).killed === true;
      const code = error ? (typeof error.code === 'number' ? error.code : 99) : 0;
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}

function expectUserError(r: CliResult & { timedOut: boolean }, message: RegExp): void {
  expect(r.timedOut).toBe(false);
  expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  expect(r.code).toBe(1);
}

describe('unbounded reads (issue 12, item 6)', () => {
  it('refuses a pipe as a cache, statistics or model instead of waiting on it forever', async () => {
    const fifo = path.join(tmp, 'pipe.cache');
    execFileSync('mkfifo', [fifo]);
    expectUserError(await run(['cache', 'show', fifo], 10_000), /pipe\.cache is a pipe \(FIFO\), not a regular file/);
    expectUserError(await run(['cache', 'convert', fifo, '--out', path.join(tmp, 'x.json')], 10_000), /is a pipe \(FIFO\), not a regular file/);
    expectUserError(
      await run(['--model', MOBILENET, '--from-stats', fifo, '--trt-version', '10.3.0', '--out-dir', tmp], 10_000),
      /The statistics file .*pipe\.cache is a pipe \(FIFO\), not a regular file/,
    );
  }, 40_000);

  it('refuses a cache larger than any real cache without reading it (a sparse 65 MiB file)', async () => {
    const big = path.join(tmp, 'big.cache');
    await writeFile(big, 'TRT-100300-EntropyCalibration2\n');
    await truncate(big, 65 * 2 ** 20);
    expectUserError(await run(['cache', 'show', big]), /Calibration cache .*big\.cache is 65 MiB, more than the 64 MiB such a file can hold/);
    const table = path.join(tmp, 'big.json');
    await writeFile(table, '{}');
    await truncate(table, 65 * 2 ** 20);
    expectUserError(await run(['cache', 'convert', table, '--out', path.join(tmp, 'big-out.cache'), '--trt-version', '10.3.0']), /Range table .*big\.json is 65 MiB, more than the 64 MiB/);
  }, 40_000);

  it('refuses statistics larger than the model\'s tensors x bins can take', async () => {
    // MobileNetV2 has 112 activations: 112 x (8192 x 8 + 4096) + 1 MiB = 8,799,232 bytes at most.
    const big = path.join(tmp, 'big.stats.msgpack');
    await writeFile(big, '');
    await truncate(big, 9 * 2 ** 20);
    expectUserError(
      await run(['--model', MOBILENET, '--from-stats', big, '--trt-version', '10.3.0', '--out-dir', tmp]),
      /The statistics file .*big\.stats\.msgpack is 9 MiB, more than the 8\.4 MiB such a file can hold/,
    );
  }, 30_000);

  it('/dev/zero as a cache, statistics or model: an error at once, and the process exits', async () => {
    expectUserError(await run(['cache', 'show', '/dev/zero'], 10_000), /Calibration cache \/dev\/zero is a character device, not a regular file/);
    expectUserError(await run(['cache', 'convert', '/dev/zero', '--out', path.join(tmp, 'z.json')], 10_000), /\/dev\/zero is a character device/);
    expectUserError(await run(['--model', MOBILENET, '--from-stats', '/dev/zero', '--trt-version', '10.3.0', '--out-dir', tmp], 10_000), /The statistics file \/dev\/zero is a character device/);
    expectUserError(await run(['--model', '/dev/zero', '--data', path.join(ROOT, 'test/fixtures/images'), '--trt-version', '10.3.0', '--out-dir', tmp], 10_000), /The model file \/dev\/zero is a character device, not a regular file/);
    expectUserError(await run(['compare', '--model', '/dev/zero', '--data', path.join(ROOT, 'test/fixtures/images'), '--precisions', 'fp32,fp16', '--out-dir', tmp], 10_000), /\/dev\/zero is a character device/);
  }, 60_000);
});

/** MobileNetV2 with one activation renamed (every node that writes or reads it), written to `file`. */
async function withRenamedTensor(file: string, from: string, to: string): Promise<void> {
  const model = await loadOnnxModel(MOBILENET);
  let uses = 0;
  for (const node of model.graph!.node!) {
    for (const list of [node.input!, node.output!]) {
      for (let i = 0; i < list.length; i++) if (list[i] === from) (list[i] = to), uses++;
    }
  }
  if (uses < 2) throw new Error(`${from} is not an activation of the fixture`);
  await writeFile(file, saveOnnxModel(model));
}

describe('tensor names a cache cannot hold (issue 12, item 7)', () => {
  it('a model with a newline in a tensor name: exit 1 naming it, before the calibration pass', async () => {
    const model = path.join(tmp, 'newline.onnx');
    await withRenamedTensor(model, 'Conv1_pad', 'Conv1\npad');
    const r = await run(['--model', model, '--data', IMAGES, '--trt-version', '10.3.0', '--out-dir', path.join(tmp, 'newline-out')]);
    expectUserError(r, /newline\.onnx: the tensor name "Conv1\\npad" cannot be written to a TensorRT calibration cache: it contains a line break/);
    expect(r.stderr).toMatch(/trt-calib quantize/);
    // Found up front: no image was decoded, nothing was written.
    expect(r.stderr).not.toMatch(/calibrating/);
    expect(existsSync(path.join(tmp, 'newline-out'))).toBe(false);
  }, 30_000);

  it('a JSON range table with a newline, a carriage return or an empty name: exit 1 naming it', async () => {
    const table = path.join(tmp, 'names.json');
    await writeFile(table, JSON.stringify({ input: 2.5, 'a\nb': 1, 'c\rd': 1, '': 3 }));
    const r = await run(['cache', 'convert', table, '--out', path.join(tmp, 'names.cache'), '--trt-version', '10.3.0']);
    expectUserError(r, /names\.json: the tensor name "a\\nb" cannot be written to a TensorRT calibration cache: it contains a line break .*\(2 more such name\(s\): "c\\rd", ""\)/);
    expect(existsSync(path.join(tmp, 'names.cache'))).toBe(false);
  }, 20_000);
});

describe('a cache that quantizes nothing (issue 12, item 3)', () => {
  let full: string;
  beforeAll(async () => {
    full = path.join(tmp, 'full.minmax.cache');
    const r = await run(['--model', MOBILENET, '--data', IMAGES, '--max-images', '2', '--algo', 'minmax', '--trt-version', '10.3.0', '--out', full, '--stats-out', path.join(tmp, 'full.stats.msgpack'), '--quiet']);
    expect(r.code).toBe(0);
  }, 30_000);

  it('a cache covering only the network input: compare and quantize exit 1 naming it and what it covers', async () => {
    const lines = (await readFile(full, 'utf8')).split('\n');
    expect(lines[1]).toMatch(/^input: [0-9a-f]{8}$/);
    const inputOnly = path.join(tmp, 'input-only.cache');
    await writeFile(inputOnly, `${lines[0]}\n${lines[1]}\n`);
    const message = /input-only\.cache covers 1 tensor\(s\) \("input"\), none of the 55 activations that the INT8 layers of .*mobilenet_v2_nsfw_224\.onnx read: nothing would run in INT8/;
    const outDir = path.join(tmp, 'cover-out');
    // Before: int8 "won" with 100% agreement and --max-drop 0 passed; quantize wrote a model with 0 INT8 layers.
    expectUserError(await run(['compare', '--model', MOBILENET, '--data', IMAGES, '--max-images', '2', '--cache', inputOnly, '--precisions', 'fp32,int8', '--max-drop', '0', '--out-dir', outDir]), message);
    expectUserError(await run(['quantize', '--model', MOBILENET, '--cache', inputOnly, '--out', path.join(outDir, 'q.onnx')]), message);
    expect(existsSync(outDir)).toBe(false);
  }, 30_000);

  it('a cache cut in the middle of a value: exit 1 with the line number', async () => {
    const text = await readFile(full, 'utf8');
    const cut = path.join(tmp, 'cut.cache');
    await writeFile(cut, text.slice(0, text.indexOf('\n', text.indexOf('\n') + 1) + 'Conv1_pad: 3c'.length + 1));
    expectUserError(await run(['cache', 'show', cut]), /cut\.cache:3: the scale of "Conv1_pad" has 2 hex digit\(s\), "3c": the line is cut in the middle of its value/);
  }, 20_000);

  it('partial coverage: a warning in compare, a note and cacheCoverage in report.json', async () => {
    const lines = (await readFile(full, 'utf8')).split('\n');
    const partial = path.join(tmp, 'partial.minmax.cache');
    await writeFile(partial, lines.filter((l) => !/^(Conv1_pad|block_1_pad): /.test(l)).join('\n'));
    const reportDir = path.join(tmp, 'partial-report');
    const r = await run(['compare', '--model', MOBILENET, '--data', IMAGES, '--max-images', '2', '--cache', partial, '--precisions', 'fp32,int8', '--report-dir', reportDir, '--out-dir', tmp]);
    expect(r.code).toBe(0);
    const warning = /partial\.minmax\.cache has no scale for 2 of the 55 activations that the INT8 layers of .*mobilenet_v2_nsfw_224\.onnx read \(e\.g\. Conv1_pad, block_1_pad\): their consumers stay in float/;
    expect(r.stderr).toMatch(warning);
    const report = JSON.parse(await readFile(path.join(reportDir, 'report.json'), 'utf8'));
    const int8 = report.variants.find((v: { name: string }) => v.name === 'int8-minmax');
    // The full cache has the input and the 111 activations less the 2 protected output tensors (softmax); 2 cut here.
    expect(int8.cacheCoverage).toEqual({ cache: partial, tensors: 108, quantizable: 55, covered: 53, missing: ['Conv1_pad', 'block_1_pad'] });
    expect(report.notes.some((n: string) => n.startsWith('int8-minmax: ') && warning.test(n))).toBe(true);
  }, 30_000);
});

describe('smaller things (issue 12, item 10)', () => {
  it('--trt-version: 11 and later refused with the pointer to quantize; before 8.6 a warning', async () => {
    const out = path.join(tmp, 'v11');
    const r = await run(['--model', MOBILENET, '--data', IMAGES, '--max-images', '1', '--trt-version', '11.0.0', '--out-dir', out]);
    expectUserError(r, /TensorRT 11\.0\.0 \(--trt-version\) reads no calibration cache: TensorRT 11 removed implicit quantization/);
    expect(r.stderr).toMatch(/trt-calib quantize --model/);
    expect(existsSync(out)).toBe(false);
    const table = path.join(tmp, 'ranges.json');
    await writeFile(table, JSON.stringify({ input: 2.5 }));
    expectUserError(await run(['cache', 'convert', table, '--out', path.join(tmp, 'v11.cache'), '--trt-version', '11.0.0']), /reads no calibration cache/);
    const old = await run(['cache', 'convert', table, '--out', path.join(tmp, 'v7.cache'), '--trt-version', '7.2.3']);
    expect(old.code).toBe(0);
    expect(old.stderr).toMatch(/warning: TensorRT 7\.2\.3 is older than 8\.6, the oldest this tool writes caches for/);
    expect(await readFile(path.join(tmp, 'v7.cache'), 'utf8')).toMatch(/^TRT-7203-EntropyCalibration2\n/);
  }, 30_000);

  it('--from-stats prints the TensorRT version once (and each cache header)', async () => {
    const stats = path.join(tmp, 'once.stats.msgpack');
    expect((await run(['--model', MOBILENET, '--data', IMAGES, '--max-images', '1', '--algo', 'minmax', '--trt-version', '10.3.0', '--out-dir', tmp, '--stats-out', stats, '--out', path.join(tmp, 'once-a.cache')])).code).toBe(0);
    const r = await run(['--model', MOBILENET, '--from-stats', stats, '--algo', 'minmax', '--trt-version', '10.3.0', '--out', path.join(tmp, 'once-b.cache')]);
    expect(r.code).toBe(0);
    const all = r.stdout + r.stderr;
    expect(all.match(/10\.3\.0/g)).toHaveLength(1);
    expect(all).toMatch(/TensorRT cache version: 10\.3\.0 \(100300, --trt-version\)/);
    expect(all).toMatch(/\[TRT-100300-MinMaxCalibration\]/);
  }, 30_000);

  it('the NaN/Inf summary counts each tensor once', async () => {
    // y = sqrt(-|x| - 1): NaN everywhere, so y has NaN values and no finite one (two problems, one tensor).
    const model = path.join(tmp, 'nan.onnx');
    const m = makeModel({
      inputs: [makeValueInfo('x', onnx.TensorProto.DataType.FLOAT, [1, 3, 8, 8])],
      outputs: [makeValueInfo('y', onnx.TensorProto.DataType.FLOAT, [1, 3, 8, 8])],
      initializers: [tensorToProto('one', makeTensor('float32', [1], [1]))],
      nodes: [makeNode('Abs', ['x'], ['a'], { name: 'abs' }), makeNode('Neg', ['a'], ['b'], { name: 'neg' }), makeNode('Sub', ['b', 'one'], ['c'], { name: 'sub' }), makeNode('Sqrt', ['c'], ['y'], { name: 'sqrt' })],
    });
    await writeFile(model, saveOnnxModel(m));
    const r = await run(['--model', model, '--data', IMAGES, '--max-images', '2', '--preset', 'raw01', '--algo', 'minmax', '--trt-version', '10.3.0', '--out-dir', path.join(tmp, 'nan-out')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^1 tensor\(s\) to look at:\n  y: 384 NaN, 0 \+Inf, 0 -Inf \(ignored for the scale\); no finite values: scale set for the range \[-1, 1\]$/m);
    expect(r.stdout.match(/^  y: /gm)).toHaveLength(1);
  }, 30_000);

  it('a run leaves nothing in the temporary folder: not onnxruntime\'s empty mat-debug-<pid>.log either', async () => {
    const scratch = await mkdtemp(path.join(tmp, 'tmpdir-'));
    const env = { TMPDIR: scratch };
    const out = path.join(tmp, 'scratch-out');
    expect((await run(['--model', MOBILENET, '--data', IMAGES, '--max-images', '1', '--algo', 'minmax', '--trt-version', '10.3.0', '--out-dir', out, '--quiet'], 30_000, env)).code).toBe(0);
    expect((await run(['compare', '--model', MOBILENET, '--data', IMAGES, '--max-images', '1', '--precisions', 'fp32,fp16', '--out-dir', out, '--quiet'], 30_000, env)).code).toBe(0);
    // onnxruntime's telemetry keeps one ".ses" file (first-use time and a session id) per temporary folder, reused
    // by every later run: not a per-run leftover. Everything else would be.
    expect(readdirSync(scratch).filter((name) => name !== '.ses')).toEqual([]);
  }, 60_000);

  it('two models with the same file name in different folders: a warning naming the other before its outputs are replaced', async () => {
    const out = path.join(tmp, 'namesakes');
    const other = path.join(tmp, 'elsewhere');
    await mkdir(other);
    // The same network exported again with another doc string: another file, another sha256, the same name.
    const m = await loadOnnxModel(MOBILENET);
    m.docString = 'another export';
    await writeFile(path.join(other, path.basename(MOBILENET)), saveOnnxModel(m));
    const args = ['--data', IMAGES, '--max-images', '1', '--algo', 'minmax', '--trt-version', '10.3.0', '--out-dir', out];
    const first = await run(['--model', MOBILENET, ...args]);
    expect(first.code).toBe(0);
    expect(first.stderr).not.toMatch(/another model/);
    expect((await run(['--model', MOBILENET, ...args])).stderr).not.toMatch(/another model/); // the same model again
    const second = await run(['--model', path.join(other, path.basename(MOBILENET)), ...args]);
    expect(second.code).toBe(0);
    expect(second.stderr).toMatch(
      /warning: .*namesakes\/mobilenet_v2_nsfw_224\.stats\.msgpack and the caches beside it are of another model named mobilenet_v2_nsfw_224\.onnx \(sha256 [0-9a-f]{12}\.\.\., 1 images\), not of .*elsewhere\/mobilenet_v2_nsfw_224\.onnx \(sha256 [0-9a-f]{12}\.\.\.\): they are replaced\. .*keep both with --out-dir/,
    );
  }, 40_000);

  it('compare --help gives the batch default compare uses (8), calibrate\'s stays 1', async () => {
    expect((await run(['compare', '--help'])).stdout).toMatch(/--batch <n>\s+images per batch \(default: the model's, else 8\)/);
    expect((await run(['sensitivity', '--help'])).stdout).toMatch(/--batch <n>\s+images per batch \(default: the model's, else 8\)/);
    expect((await run(['calibrate', '--help'])).stdout).toMatch(/--batch <n>\s+images per batch \(default: the model's, else 1\)/);
  }, 30_000);
});
