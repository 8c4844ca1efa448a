/**
 * The built CLI (`npm test` runs tsc first, so dist/ exists): `trt-calib doctor` and `trt-calib build`.
 * CI has no TensorRT and no GPU, so there `build` must exit 1 saying what is missing and how to enable it, and
 * `doctor` must list each missing piece with its consequence. On a machine with the bridge built, the same tests
 * check that doctor reports it.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tensorrtBridge } from '../../src/native.js';

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'bin/trt-calib.js');
const MODEL = path.join(ROOT, 'test/fixtures/models/mobilenet_v2_nsfw_224.onnx');
const IMAGES = path.join(ROOT, 'test/fixtures/images');
const require = createRequire(import.meta.url);
const bridgeBuilt = tensorrtBridge().state === 'loaded';

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 99) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

let tmp: string;
beforeAll(async () => {
  if (!existsSync(path.join(ROOT, 'dist/cli/main.js'))) throw new Error('dist/ is missing: run `npx tsc -p tsconfig.json` (npm test does)');
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-doctor-e2e-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

interface Check {
  id: string;
  title: string;
  status: 'ok' | 'missing' | 'warning';
  found?: string;
  consequence?: string;
  hint?: string;
}

describe('trt-calib doctor', () => {
  it('--json reports every part with the versions found, and a consequence for each missing one', { timeout: 60_000 }, async () => {
    const r = await run(['doctor', '--json']);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as { checks: Check[]; versions: Record<string, string | undefined> };
    const byId = new Map(report.checks.map((c) => [c.id, c]));
    expect([...byId.keys()]).toEqual(['node', 'sharp', 'onnxruntime', 'native-addon', 'collector', 'tensorrt', 'tensorrt-bridge', 'cuda', 'gpu']);

    expect(report.versions.node).toBe(process.version);
    expect(byId.get('node')!.found).toContain(process.version);
    const sharpVersion = (sharp as unknown as { versions: { sharp: string } }).versions.sharp;
    expect(byId.get('sharp')).toMatchObject({ status: 'ok' });
    expect(byId.get('sharp')!.found).toContain(`sharp ${sharpVersion}`);
    expect(report.versions.libvips).toMatch(/^\d+\.\d+\.\d+/);
    expect(byId.get('onnxruntime')!.found).toContain((require('onnxruntime-node/package.json') as { version: string }).version);
    expect(byId.get('native-addon')).toMatchObject({ status: 'ok' });
    expect(byId.get('native-addon')!.found).toContain('feederSelfTest');
    // calibration counts next to onnxruntime's C API here (onnxruntime-node ships its library for linux-x64)
    expect(byId.get('collector')).toMatchObject({ status: 'ok' });
    expect(byId.get('collector')!.found).toMatch(/^onnxruntime 1\.\d+\.\d+ C API \(.*onnxruntime/);

    for (const c of report.checks) {
      if (c.status !== 'ok') {
        expect(c.consequence, `${c.id} is ${c.status} but says nothing of its consequence`).toBeTruthy();
        expect(c.hint, `${c.id} is ${c.status} but says nothing of what to do`).toBeTruthy();
      }
    }
    const bridge = byId.get('tensorrt-bridge')!;
    if (bridgeBuilt) {
      expect(bridge.status).not.toBe('missing');
      expect(bridge.found).toMatch(/compiled against TensorRT \d+\.\d+\.\d+/);
    } else {
      expect(bridge.status).toBe('missing');
      expect(bridge.consequence).toMatch(/trt-calib build/);
      expect(bridge.hint).toMatch(/TENSORRT_ROOT.*CUDA_HOME/);
      expect(byId.get('tensorrt')!.status).toBe('missing');
    }
  });

  it('prints one line per part, marking what is missing', { timeout: 60_000 }, async () => {
    const r = await run(['doctor']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ok +Node\.js +v\d+/m);
    expect(r.stdout).toMatch(/^ok +sharp \/ libvips +sharp \d/m);
    expect(r.stdout).toMatch(/^(ok|missing|warning) +TensorRT bridge /m);
    if (!bridgeBuilt) expect(r.stdout).toMatch(/^missing +TensorRT bridge +not built/m);
  });
});

describe('trt-calib build', () => {
  it.skipIf(bridgeBuilt)('exits 1 without the TensorRT bridge, saying why and how to enable it, and writes nothing', { timeout: 60_000 }, async () => {
    const out = path.join(tmp, 'm.engine');
    const cases = [
      ['build', '--model', MODEL, '--int8', '--cache', path.join(tmp, 'm.cache'), '--out', out],
      ['build', '--model', MODEL, '--int8', '--data', IMAGES, '--preset', 'raw01', '--algo', 'minmax', '--out', out],
    ];
    for (const args of cases) {
      const r = await run(args);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^trt-calib: error: The TensorRT bridge is not built/);
      expect(r.stderr).toMatch(/TENSORRT_ROOT/);
      expect(r.stderr).toMatch(/CUDA_HOME/);
      expect(r.stderr).toMatch(/npm run build:native/);
      expect(r.stderr).not.toMatch(/\n\s+at /); // a user error: no stack trace
      expect(existsSync(out)).toBe(false);
    }
  });

  it('--help shows the build options', { timeout: 60_000 }, async () => {
    const r = await run(['build', '--help']);
    expect(r.code).toBe(0);
    for (const flag of ['--int8', '--fp16', '--cache <file>', '--data <path>', '--algo <name>', '--precision-map <file>', '--workspace <MiB>', '--timing-cache <file>', '--min-shapes <spec>', '--opt-shapes <spec>', '--max-shapes <spec>', '--out <file>']) {
      expect(r.stdout).toContain(flag);
    }
    expect(r.stdout.replace(/\s+/g, ' ')).toMatch(/entropy2 \(EntropyCalibration2\)/);
  });
});
