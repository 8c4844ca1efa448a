/**
 * The package as a library, imported by its name the way a user imports it (package.json "exports" -> dist/api.js).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { IMAGES, MOBILENET, ROOT, assertBuilt } from './cli.js';

let tmp: string;
beforeAll(async () => {
  assertBuilt();
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-api-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('library API', () => {
  it('calibrates through the package entry point without writing to the console', async () => {
    const api = await import(pathToFileURL(path.join(ROOT, 'dist', 'api.js')).href);
    for (const name of ['calibrate', 'quantize', 'compare', 'buildEngine', 'parseCalibrationCache', 'createDataset', 'UserError']) expect(typeof api[name]).toBe('function');
    const log = vi.spyOn(console, 'log');
    const err = vi.spyOn(process.stderr, 'write');
    const out = vi.spyOn(process.stdout, 'write');
    const r = await api.calibrate({ model: MOBILENET, data: { data: IMAGES, preprocess: { preset: 'raw01' }, maxImages: 2 }, algorithms: ['minmax'], trtVersion: '10.3.0', outDir: tmp });
    expect(r.caches).toHaveLength(1);
    expect(r.images.used).toBe(2);
    expect(log).not.toHaveBeenCalled();
    expect(err).not.toHaveBeenCalled();
    expect(out).not.toHaveBeenCalled();
    vi.restoreAllMocks();
    // A user error is a typed UserError, not a process exit.
    await expect(api.calibrate({ model: path.join(tmp, 'missing.onnx'), data: { data: IMAGES }, algorithms: ['minmax'], trtVersion: '10.3.0', outDir: tmp })).rejects.toBeInstanceOf(api.UserError);
  });
});
