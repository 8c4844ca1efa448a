/**
 * Bad inputs from issue 12 on the built CLI: each must end in a clear error (exit 1, no stack trace) or a
 * reported skip, in seconds; never a hang, unbounded memory or exit 3. Every run has a time limit.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOnnxModel, saveOnnxModel } from '../../src/onnx/model.js';
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
function run(args: string[], limitMs = 15_000): Promise<CliResult & { timedOut: boolean }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, timeout: limitMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
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
