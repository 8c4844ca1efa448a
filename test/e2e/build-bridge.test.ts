/**
 * `trt-calib build-bridge` (the built CLI): without a TensorRT to compile against it must stop at once, before
 * node-gyp, with exit 1, the reason and the way to point it at TensorRT, and touch nothing in native/build. Forced
 * deterministically, even on a machine with TensorRT, by a TENSORRT_ROOT that is not a folder, or by
 * TRT_CALIB_SKIP_TENSORRT.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'bin/trt-calib.js');
const BUILD = path.join(ROOT, 'native', 'build');

function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string; seconds: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, timeout: 60_000, env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 99) : 0;
      resolve({ code, stdout, stderr, seconds: (Date.now() - started) / 1000 });
    });
  });
}

/** What native/build holds, with modification times: must be the same after a refused build. */
function buildState(): string {
  if (!existsSync(BUILD)) return 'none';
  const release = path.join(BUILD, 'Release');
  const files = existsSync(release) ? readdirSync(release).map((f) => `${f}:${statSync(path.join(release, f)).mtimeMs}`) : [];
  return `${statSync(BUILD).mtimeMs} ${files.sort().join(' ')}`;
}

describe('trt-calib build-bridge', () => {
  it('stops before compiling when TENSORRT_ROOT is not a folder, naming it', { timeout: 60_000 }, async () => {
    const before = buildState();
    const missing = path.join(ROOT, 'no-such-TensorRT-folder');
    const r = await run(['build-bridge'], { TENSORRT_ROOT: missing, TRT_CALIB_SKIP_TENSORRT: '' });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^trt-calib: error: Cannot build the TensorRT bridge: TENSORRT_ROOT/);
    expect(r.stderr).toContain(missing);
    expect(r.stderr).toMatch(/CUDA_HOME/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stderr).not.toMatch(/gyp/);
    expect(buildState()).toBe(before);
  });

  it('says that TRT_CALIB_SKIP_TENSORRT is set, and how to build the bridge anyway', { timeout: 60_000 }, async () => {
    const r = await run(['build-bridge', '--json'], { TRT_CALIB_SKIP_TENSORRT: '1' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/TRT_CALIB_SKIP_TENSORRT is set/);
    expect(r.stderr).toMatch(/Unset TRT_CALIB_SKIP_TENSORRT/);
  });

  it('is listed in --help', { timeout: 60_000 }, async () => {
    const r = await run(['--help'], {});
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/build-bridge \[options\]\s+compile the TensorRT bridge on this machine/);
  });
});
