/**
 * src/util/outputs.ts, lock.ts and run-temp.ts in process: what the CLI tests cannot reach (build needs TensorRT
 * before it runs; a lock held by a live process other than a trt-calib run).
 */
import { spawn } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quantize } from '../../src/app/quantize.js';
import { buildEngine } from '../../src/backends/tensorrt.js';
import { makeModel, makeNode, makeValueInfo } from '../../src/onnx/build.js';
import { ELEM, onnx, writeOnnxModel } from '../../src/onnx/model.js';
import { UserError } from '../../src/errors.js';
import { LOCK_FILE, lockFolder } from '../../src/util/lock.js';
import { prepareOutputs } from '../../src/util/outputs.js';
import { ownProcess, processStartTime } from '../../src/util/process-identity.js';
import { sweepAbandonedRunFolders } from '../../src/util/run-temp.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-util-outputs-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const refusal = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UserError);
    return (err as Error).message;
  }
  throw new Error('not refused');
};

describe('prepareOutputs', () => {
  it('resolves paths that do not exist yet through their nearest existing folder, links included', () => {
    const real = path.join(tmp, 'real');
    mkdirSync(real);
    writeFileSync(path.join(real, 'model.onnx'), 'x');
    symlinkSync(real, path.join(tmp, 'alias'));
    // alias/sub/../model.onnx names the model through a link to its folder
    expect(refusal(() => prepareOutputs([{ path: path.join(tmp, 'alias', 'model.onnx'), option: '--out' }], [{ path: path.join(real, 'model.onnx'), what: '--model' }]))).toMatch(/--out .* is --model .*through a link/);
    // two outputs that do not exist yet, one through the link
    expect(refusal(() => prepareOutputs([{ path: path.join(real, 'new', 'a'), option: '--out' }, { path: path.join(tmp, 'alias', 'new', 'a'), option: '--stats-out' }], []))).toMatch(/are the same file/);
    linkSync(path.join(real, 'model.onnx'), path.join(tmp, 'hard'));
    expect(refusal(() => prepareOutputs([{ path: path.join(tmp, 'hard'), option: '--cache-out' }], [{ path: path.join(real, 'model.onnx'), what: '--model' }]))).toMatch(/hard link/);
    expect(refusal(() => prepareOutputs([{ path: '/dev/null', option: '--out' }], []))).toMatch(/not a regular file/);
    expect(existsSync(path.join(real, 'new'))).toBe(false); // nothing made for a refused run
  });

  it('quantize: --out on the model\'s external data file is refused, and the file kept', async () => {
    // y = x + B, B (3 floats) in weights.bin next to the model
    const sub = path.join(tmp, 'external');
    mkdirSync(sub);
    const weights = path.join(sub, 'weights.bin');
    writeFileSync(weights, Buffer.from(new Float32Array([0.5, -1, 2]).buffer));
    const B = onnx.TensorProto.create({
      name: 'B',
      dataType: ELEM.FLOAT,
      dims: [3],
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [{ key: 'location', value: 'weights.bin' }, { key: 'offset', value: '0' }, { key: 'length', value: '12' }],
    });
    const file = path.join(sub, 'model.onnx');
    await writeOnnxModel(file, makeModel({ inputs: [makeValueInfo('x', ELEM.FLOAT, [1, 3])], outputs: [makeValueInfo('y', ELEM.FLOAT, [1, 3])], initializers: [B], nodes: [makeNode('Add', ['x', 'B'], ['y'], { name: 'add' })] }));
    await expect(quantize({ model: file, precision: 'fp16', out: path.join(sub, '.', 'weights.bin') })).rejects.toThrow(/--out .*weights\.bin is the external data of --model .*weights\.bin: writing it would destroy an input/);
    expect(readFileSync(weights)).toHaveLength(12);
  });

  it('build: --out on the model is refused before TensorRT is needed', async () => {
    const model = path.join(tmp, 'real', 'model.onnx');
    await expect(buildEngine({ model, out: model })).rejects.toThrow(/--out .* is --model /);
  });

  it('locks the output folders for the run, re-entrantly, and removes the folders it made if left empty', () => {
    const out = path.join(tmp, 'made', 'deeper');
    const a = prepareOutputs([{ path: path.join(out, 'x.cache'), option: '--out-dir' }], []);
    expect(readdirSync(out)).toEqual([LOCK_FILE]);
    const nested = prepareOutputs([{ path: path.join(out, 'y.cache'), option: '--out-dir' }], []); // quantize -> calibrate
    nested.release();
    expect(readdirSync(out)).toEqual([LOCK_FILE]);
    a.release();
    expect(existsSync(path.join(tmp, 'made'))).toBe(false);
  });
});

describe('lockFolder', () => {
  it('refuses a folder locked by a live process, naming it, and takes over one of a process that is gone', async () => {
    const dir = path.join(tmp, 'locked');
    mkdirSync(dir);
    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 20000)']);
    try {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const start = processStartTime(sleeper.pid!);
      writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify({ pid: sleeper.pid, start, token: 'a1', since: 'then', command: 'trt-calib --algo all' }));
      expect(refusal(() => lockFolder(dir, '--out-dir'))).toMatch(new RegExp(`pid ${sleeper.pid}, since then: trt-calib --algo all\\) is writing into ${dir}`));
      // the same pid with another start time is another process: the lock is stale
      writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify({ pid: sleeper.pid, start: start === '0' ? '0' : '1', token: 'a2', since: 'then', command: 'x' }));
      if (start !== '0') lockFolder(dir, '--out-dir').release();
    } finally {
      sleeper.kill();
    }
    await new Promise((resolve) => sleeper.on('exit', resolve));
    const lock = lockFolder(dir, '--out-dir'); // the sleeper is gone
    lock.release();
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('sweepAbandonedRunFolders', () => {
  it('removes the run folders of processes that are gone, and keeps this one\'s and live ones\'', async () => {
    const root = path.join(tmp, 'tmp-root');
    const child = spawn(process.execPath, ['-e', '0']);
    await new Promise((resolve) => child.on('exit', resolve));
    const own = ownProcess();
    const names = [`trt-calib-run.${child.pid}.5`, `trt-calib-run.${child.pid}.5.0a0b.removing`, `trt-calib-run.${own.pid}.${own.start}`, `trt-calib-run.${process.ppid}.0`, 'trt-calib-other'];
    for (const n of names) mkdirSync(path.join(root, n, 'nchwc-x'), { recursive: true });
    expect(sweepAbandonedRunFolders(root).sort()).toEqual(names.slice(0, 2).sort());
    expect(readdirSync(root).sort()).toEqual(names.slice(2).sort());
  });

  it("removes onnxruntime's empty mat-debug-<pid>.log of a process that is gone, and nothing else", async () => {
    const root = path.join(tmp, 'tmp-root-debug-log');
    mkdirSync(root);
    const child = spawn(process.execPath, ['-e', '0']);
    await new Promise((resolve) => child.on('exit', resolve));
    const gone = `mat-debug-${child.pid}.log`;
    writeFileSync(path.join(root, gone), '');
    // kept: this process's own, a live process's, and one that holds data
    const kept = [`mat-debug-${process.pid}.log`, `mat-debug-${process.ppid}.log`, 'mat-debug-1x.log'];
    for (const k of kept) writeFileSync(path.join(root, k), '');
    const child2 = spawn(process.execPath, ['-e', '0']);
    await new Promise((resolve) => child2.on('exit', resolve));
    const withData = `mat-debug-${child2.pid}.log`;
    writeFileSync(path.join(root, withData), 'something');
    expect(sweepAbandonedRunFolders(root)).toEqual([gone]);
    expect(readdirSync(root).sort()).toEqual([...kept, withData].sort());
  });
});
