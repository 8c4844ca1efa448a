/**
 * The built CLI (`npm test` runs tsc first, so dist/ exists) on the bundled test photos.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDataset } from '../../src/datasets/dataset.js';
import { resolvePreprocess } from '../../src/datasets/presets.js';

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'bin/trt-calib.js');
const IMAGES = path.join(ROOT, 'test/fixtures/images');
const BAD = path.join(ROOT, 'test/fixtures/images-bad');

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 99) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

let tmp: string;
beforeAll(async () => {
  if (!existsSync(path.join(ROOT, 'dist/cli/main.js'))) throw new Error('dist/ is missing: run `npx tsc -p tsconfig.json` (npm test does)');
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-preview-e2e-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('trt-calib preview', () => {
  it('writes the contact sheet and prints the tensor statistics per channel', async () => {
    const out = path.join(tmp, 'sub', 'grid.png');
    const r = await run(['preview', '--data', IMAGES, '--preset', 'imagenet', '--out', out, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const json = JSON.parse(r.stdout);

    // 8 photos: 3 columns x 3 rows of 224x224 tiles, 6 px gaps, 18 px label strips.
    const meta = await sharp(out).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 3 * 224 + 4 * 6, 3 * (224 + 18) + 4 * 6]);
    expect([json.width, json.height, json.columns, json.rows]).toEqual([meta.width, meta.height, 3, 3]);
    expect(json.images).toHaveLength(8);
    expect(json.skipped).toEqual([]);
    expect(json.preprocess).toMatchObject({ preset: 'imagenet', height: 224, width: 224, shorterSide: 256, channelOrder: 'RGB', layout: 'NCHW' });

    // The printed statistics are those of the pipeline's tensors, computed here through the library.
    const ds = await createDataset({ data: IMAGES, preprocess: resolvePreprocess({ preset: 'imagenet' }), batchSize: 8 });
    const HW = 224 * 224;
    const expected = ['R', 'G', 'B'].map((name, c) => {
      let min = Infinity;
      let max = -Infinity;
      let sum = 0;
      return { name, min, max, sum, c };
    });
    for await (const b of ds.batches()) {
      for (let n = 0; n < b.files.length; n++) {
        for (const e of expected) {
          const base = n * 3 * HW + e.c * HW;
          for (let i = 0; i < HW; i++) {
            const v = b.data[base + i]!;
            e.min = Math.min(e.min, v);
            e.max = Math.max(e.max, v);
            e.sum += v;
          }
        }
      }
    }
    expect(json.channels.map((c: { name: string }) => c.name)).toEqual(['R', 'G', 'B']);
    json.channels.forEach((c: { min: number; max: number; mean: number }, i: number) => {
      const e = expected[i]!;
      expect(c.min).toBeCloseTo(e.min, 6);
      expect(c.max).toBeCloseTo(e.max, 6);
      expect(c.mean).toBeCloseTo(e.sum / (8 * HW), 6);
      // ImageNet normalisation bounds: (0 - mean)/std .. (1 - mean)/std.
      expect(c.min).toBeGreaterThanOrEqual([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225][i]! - 1e-6);
      expect(c.max).toBeLessThanOrEqual([0.515 / 0.229, 0.544 / 0.224, 0.594 / 0.225][i]! + 1e-6);
    });

    // A tile shows the image itself: the top-left tile's pixels match the un-normalised tensor.
    const tile = await sharp(out).extract({ left: 6, top: 6, width: 224, height: 224 }).raw().toBuffer();
    const first = (await ds.batches()[Symbol.asyncIterator]().next()).value!;
    const pixel = (y: number, x: number, c: number) => Math.round((first.data[c * HW + y * 224 + x]! * [0.229, 0.224, 0.225][c]! + [0.485, 0.456, 0.406][c]!) * 255);
    for (const [y, x] of [[0, 0], [100, 50], [223, 223]] as const) {
      for (let c = 0; c < 3; c++) expect(tile[(y * 224 + x) * 3 + c]).toBe(pixel(y, x, c));
    }
  });

  it('prints a human summary without --json', async () => {
    const out = path.join(tmp, 'yolo.png');
    const r = await run(['preview', '--data', IMAGES, '--preset', 'yolo', '--size', '160', '--count', '4', '--out', out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`wrote ${out}: 4 image(s), 2x2 tiles of 160x160`);
    expect(r.stdout).toMatch(/preprocess: yolo: RGB, letterbox 160x160 \(pad 114\)/);
    expect(r.stdout).toMatch(/^ {2}R +[-\d.]+ +[-\d.]+ +[-\d.]+$/m);
    const meta = await sharp(out).metadata();
    expect([meta.width, meta.height]).toEqual([2 * 160 + 3 * 6, 2 * (160 + 18) + 3 * 6]);
  });

  it('reports the three bad files by name, uses the rest and exits 0; exits 1 with --strict', async () => {
    const out = path.join(tmp, 'bad.png');
    const r = await run(['preview', '--data', BAD, '--out', out, '--json']);
    expect(r.code).toBe(0);
    for (const name of ['corrupt-truncated.jpg', 'not-an-image.png', 'empty.jpg']) expect(r.stderr).toContain(name);
    const json = JSON.parse(r.stdout);
    expect(json.images.map((f: string) => path.basename(f))).toEqual(['opencv_doc__hfs_002.jpg', 'opencv_doc__home.jpg', 'python3_skimage__astronaut_rgba.png']);
    expect(json.skipped).toHaveLength(3);

    const strict = await run(['preview', '--data', BAD, '--out', path.join(tmp, 'strict.png'), '--strict']);
    expect(strict.code).toBe(1);
    expect(strict.stderr).toMatch(/error: Cannot use the image ".*corrupt-truncated\.jpg": corrupt or truncated image/);
    expect(strict.stderr).not.toMatch(/^\s+at /m); // no stack trace
    expect(existsSync(path.join(tmp, 'strict.png'))).toBe(false);
  });

  it('rejects bad options and an empty selection with exit 1', async () => {
    const empty = await run(['preview', '--data', path.join(ROOT, 'test/fixtures/images/*.bmp'), '--out', path.join(tmp, 'x.png')]);
    expect(empty.code).toBe(1);
    expect(empty.stderr).toMatch(/No images found in ".*\*\.bmp"/);
    const badMean = await run(['preview', '--data', IMAGES, '--mean', '1,2', '--out', path.join(tmp, 'x.png')]);
    expect(badMean.code).toBe(1);
    expect(badMean.stderr).toMatch(/--mean/);
    const unknown = await run(['preview', '--data', IMAGES, '--out', path.join(tmp, 'x.png'), '--no-such-flag']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/unknown option '--no-such-flag'/);
    const help = await run(['preview', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('trt-calib preview --data ./calib --preset imagenet --out /tmp/grid.png');
  });
});
