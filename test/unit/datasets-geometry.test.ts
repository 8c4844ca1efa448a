import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { geometryFor, imageGeometries } from '../../src/datasets/geometry.js';
import { preprocessImage } from '../../src/datasets/preprocess.js';
import type { PreprocessConfig, ResizeMode } from '../../src/datasets/types.js';

/** Pixel values as they are (scale 1, no mean/std), black padding: the tensor is the 0-255 image. */
function config(resize: ResizeMode, size: number, extra: Partial<PreprocessConfig> = {}): PreprocessConfig {
  return {
    height: size,
    width: size,
    channels: 3,
    resize,
    interpolation: 'bilinear',
    padValue: 0,
    channelOrder: 'RGB',
    scale: 1,
    mean: [0, 0, 0],
    std: [1, 1, 1],
    layout: 'NCHW',
    autoOrient: true,
    background: [0, 0, 0],
    ...extra,
  };
}

// A 240 x 160 black photo with a white rectangle from (60, 40) to (180, 120) (pixel edges).
const W0 = 240;
const H0 = 160;
const RECT = { x1: 60, y1: 40, x2: 180, y2: 120 };

let tmp: string;
let photo: string;
let rotated: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-geometry-'));
  const px = Buffer.alloc(W0 * H0 * 3);
  for (let y = RECT.y1; y < RECT.y2; y++) for (let x = RECT.x1; x < RECT.x2; x++) px.fill(255, (y * W0 + x) * 3, (y * W0 + x) * 3 + 3);
  photo = path.join(tmp, 'rect.png');
  await sharp(px, { raw: { width: W0, height: H0, channels: 3 } }).png().toFile(photo);
  // The same pixels stored with EXIF orientation 6 (rotate 90 degrees clockwise to display): 160 x 240 oriented.
  rotated = path.join(tmp, 'rotated.jpg');
  await sharp(px, { raw: { width: W0, height: H0, channels: 3 } }).jpeg().withMetadata({ orientation: 6 }).toFile(rotated);
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('geometryFor: hand values for a 240 x 160 photo', () => {
  it('stretch to 300 x 300: scales 300/240 and 300/160, no offset', () => {
    expect(geometryFor('a', W0, H0, config('stretch', 300))).toEqual({ file: 'a', width: 240, height: 160, inputWidth: 300, inputHeight: 300, scaleX: 1.25, scaleY: 1.875, offsetX: 0, offsetY: 0 });
  });
  it('letterbox to 128: r = min(128/160, 128/240); 128 x round(85.33) = 85 placed at top floor((128-85)/2) = 21', () => {
    const g = geometryFor('a', W0, H0, config('letterbox', 128));
    expect(g).toMatchObject({ scaleX: 128 / 240, scaleY: 85 / 160, offsetX: 0, offsetY: 21 });
  });
  it('center-crop 224 from shorter side 256: 384 x 256, crop at (80, 16)', () => {
    // rw = trunc(256 * 240 / 160) = 384; left = round((384 - 224) / 2) = 80; top = round((256 - 224) / 2) = 16.
    const g = geometryFor('a', W0, H0, config('center-crop', 224, { shorterSide: 256 }));
    expect(g).toMatchObject({ scaleX: 1.6, scaleY: 1.6, offsetX: -80, offsetY: -16 });
  });
  it('fit-multiple-of 32 within 128: 128 x 96 at the top-left', () => {
    // r = 128/240; w = round(128/32)*32 = 128; h = round(trunc(85.33)/32 = 2.66)*32 = 96.
    const g = geometryFor('a', W0, H0, config('fit-multiple-of', 128, { multipleOf: 32 }));
    expect(g).toMatchObject({ scaleX: 128 / 240, scaleY: 96 / 160, offsetX: 0, offsetY: 0 });
  });
});

describe('imageGeometries from file headers', () => {
  it('reads sizes, and swaps them for EXIF orientation 6 only when preprocessing orients', async () => {
    const [a, b] = await imageGeometries([photo, rotated], config('stretch', 100));
    expect([a!.width, a!.height]).toEqual([240, 160]);
    expect([b!.width, b!.height]).toEqual([160, 240]);
    const [c] = await imageGeometries([rotated], config('stretch', 100, { autoOrient: false }));
    expect([c!.width, c!.height]).toEqual([240, 160]);
  });
  it('names an unreadable file', async () => {
    await expect(imageGeometries([path.join(tmp, 'missing.png')], config('stretch', 100))).rejects.toThrow(/missing\.png/);
  });
});

/**
 * The rectangle's edges in the preprocessed tensor, to sub-pixel precision: along the middle row (column), the dark
 * mass before the rectangle's centre is the left (top) edge and the bright mass after it the rest of its width. The
 * background and the padding are black, so this holds for any interpolation that preserves an edge's position.
 */
function measuredEdges(t: Float32Array, size: number, centre: { x: number; y: number }) {
  const cx = Math.floor(centre.x);
  const cy = Math.floor(centre.y);
  const at = (x: number, y: number) => t[y * size + x]! / 255; // channel 0 (R)
  let x1 = 0;
  let x2 = cx;
  for (let x = 0; x < cx; x++) x1 += 1 - at(x, cy);
  for (let x = cx; x < size; x++) x2 += at(x, cy);
  let y1 = 0;
  let y2 = cy;
  for (let y = 0; y < cy; y++) y1 += 1 - at(cx, y);
  for (let y = cy; y < size; y++) y2 += at(cx, y);
  return { x1, y1, x2, y2 };
}

/**
 * Half an input pixel, plus one 8-bit step of the partial edge pixel. Measured: downscaling (letterbox,
 * fit-multiple-of) lands within 0.001 px; libvips' bilinear upsampling (stretch 1.25x, center-crop 1.6x) draws both
 * edges of the rectangle 0.5 px late (its width is exact), which is the interpolation's half pixel.
 */
const EDGE_TOLERANCE = 0.5 + 1 / 255;

describe('the geometry matches the real preprocessing', () => {
  const cases: Array<[string, PreprocessConfig]> = [
    ['stretch', config('stretch', 300)],
    ['letterbox', config('letterbox', 128)],
    ['center-crop', config('center-crop', 224, { shorterSide: 256 })],
    ['fit-multiple-of', config('fit-multiple-of', 128, { multipleOf: 32 })],
  ];
  for (const [mode, cfg] of cases) {
    it(`${mode}: the rectangle's edges land where the geometry maps them (within half a pixel)`, async () => {
      const [g] = await imageGeometries([photo], cfg);
      const expected = {
        x1: RECT.x1 * g!.scaleX + g!.offsetX,
        y1: RECT.y1 * g!.scaleY + g!.offsetY,
        x2: RECT.x2 * g!.scaleX + g!.offsetX,
        y2: RECT.y2 * g!.scaleY + g!.offsetY,
      };
      const t = await preprocessImage(photo, cfg);
      const got = measuredEdges(t, cfg.width, { x: (expected.x1 + expected.x2) / 2, y: (expected.y1 + expected.y2) / 2 });
      for (const k of ['x1', 'y1', 'x2', 'y2'] as const) expect(Math.abs(got[k] - expected[k]), `${mode} ${k}: ${got[k]} vs ${expected[k]}`).toBeLessThanOrEqual(EDGE_TOLERANCE);
    });
  }
});
