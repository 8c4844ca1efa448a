import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { computeGeometry, decodeImage, preprocessImage, roundHalfEven } from '../../src/datasets/preprocess.js';
import { resolvePreprocess, type PreprocessOptions } from '../../src/datasets/presets.js';
import type { PreprocessConfig } from '../../src/datasets/types.js';

const FIXTURES = path.resolve(__dirname, '../fixtures/images');
const HFS = path.join(FIXTURES, 'opencv_doc__hfs_002.jpg'); // 380x254
const RGBA = path.join(FIXTURES, 'python3_skimage__astronaut_rgba.png'); // 128x128, transparent corners
const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-preprocess-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Interleaved RGB of `file` resized by sharp to w x h (the same kernel the pipeline uses), no crop. */
async function sharpResized(file: string, w: number, h: number, kernel: 'linear' | 'nearest' = 'linear') {
  const { data, info } = await sharp(file).resize(w, h, { fit: 'fill', kernel, fastShrinkOnLoad: false }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  expect([info.width, info.height, info.channels]).toEqual([w, h, 3]);
  return data;
}

/**
 * The expected tensor, built by hand: `pixel(y, x, c)` gives the RGB value (0-255) of output pixel (y, x)
 * or undefined in the padding; normalised as (v/255 - mean)/std in the requested order and layout.
 */
function expectedTensor(
  H: number,
  W: number,
  pixel: (y: number, x: number, c: number) => number | undefined,
  opts: { order: 'RGB' | 'BGR'; layout: 'NCHW' | 'NHWC'; scale: number; mean: number[]; std: number[]; pad: number },
): Float32Array {
  const out = new Float32Array(3 * H * W);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      for (let c = 0; c < 3; c++) {
        const src = opts.order === 'RGB' ? c : 2 - c;
        const v = pixel(y, x, src) ?? opts.pad;
        const value = (v * opts.scale - opts.mean[c]!) / opts.std[c]!;
        const i = opts.layout === 'NCHW' ? c * H * W + y * W + x : (y * W + x) * 3 + c;
        out[i] = value;
      }
    }
  }
  return out;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function config(options: PreprocessOptions): PreprocessConfig {
  return resolvePreprocess(options);
}

describe('roundHalfEven (Python round)', () => {
  it('rounds halves to the even neighbour', () => {
    expect([0.5, 1.5, 2.5, 16.5, 17.5, 58.5, 2.4, 2.6].map(roundHalfEven)).toEqual([0, 2, 2, 16, 18, 58, 2, 3]);
  });
});

describe('center crop on a real photo (imagenet)', () => {
  // hfs_002 is 380x254: shorter side 254 -> 256, longer trunc(256*380/254) = trunc(382.99) = 382.
  // Crop 224: top = (256-224)/2 = 16, left = round((382-224)/2) = 79.
  it('computes torchvision geometry', () => {
    const g = computeGeometry(380, 254, config({ preset: 'imagenet' }));
    expect(g).toMatchObject({ resizeWidth: 382, resizeHeight: 256, crop: { left: 79, top: 16, width: 224, height: 224 } });
  });

  for (const layout of ['NCHW', 'NHWC'] as const) {
    for (const order of ['RGB', 'BGR'] as const) {
      it(`matches values computed by hand to 1e-6 (${layout}, ${order})`, async () => {
        const resized = await sharpResized(HFS, 382, 256);
        const expected = expectedTensor(224, 224, (y, x, c) => resized[((y + 16) * 382 + (x + 79)) * 3 + c], {
          order,
          layout,
          scale: 1 / 255,
          mean: order === 'RGB' ? IMAGENET_MEAN : [...IMAGENET_MEAN].reverse(),
          std: order === 'RGB' ? IMAGENET_STD : [...IMAGENET_STD].reverse(),
          pad: 0,
        });
        const cfg = config({
          preset: 'imagenet',
          layout,
          channelOrder: order,
          mean: order === 'RGB' ? IMAGENET_MEAN : [...IMAGENET_MEAN].reverse(),
          std: order === 'RGB' ? IMAGENET_STD : [...IMAGENET_STD].reverse(),
        });
        const actual = await preprocessImage(HFS, cfg);
        expect(actual.length).toBe(3 * 224 * 224);
        expect(maxAbsDiff(actual, expected)).toBeLessThan(1e-6);
      });
    }
  }

  it('imagenet-caffe: BGR, 0-255 minus the BGR mean', async () => {
    const resized = await sharpResized(HFS, 382, 256);
    const expected = expectedTensor(224, 224, (y, x, c) => resized[((y + 16) * 382 + (x + 79)) * 3 + c], {
      order: 'BGR',
      layout: 'NCHW',
      scale: 1,
      mean: [103.939, 116.779, 123.68],
      std: [1, 1, 1],
      pad: 0,
    });
    const actual = await preprocessImage(HFS, config({ preset: 'imagenet-caffe' }));
    // Values reach +-150: compare relative to float32 precision.
    expect(maxAbsDiff(actual, expected)).toBeLessThan(1e-5);
  });
});

describe('letterbox and fit-multiple-of on a real photo', () => {
  it('letterbox 224: 380x254 -> 224x150 placed at top 37, pad 114', async () => {
    // r = min(224/254, 224/380) = 224/380; 254*r = 149.73 -> 150; top = floor((224-150)/2) = 37.
    const cfg = config({ preset: 'yolo', size: 224 });
    expect(computeGeometry(380, 254, cfg)).toMatchObject({ resizeWidth: 224, resizeHeight: 150, top: 37, left: 0 });
    const resized = await sharpResized(HFS, 224, 150);
    const expected = expectedTensor(224, 224, (y, x, c) => (y >= 37 && y < 187 ? resized[((y - 37) * 224 + x) * 3 + c] : undefined), {
      order: 'RGB',
      layout: 'NCHW',
      scale: 1 / 255,
      mean: [0, 0, 0],
      std: [1, 1, 1],
      pad: 114,
    });
    const actual = await preprocessImage(HFS, cfg);
    expect(maxAbsDiff(actual, expected)).toBeLessThan(1e-6);
    expect(actual[0]).toBeCloseTo(114 / 255, 6); // top-left corner is padding
    expect(actual[223 * 224 + 223]).toBeCloseTo(114 / 255, 6); // bottom-right corner too
  });

  it('fit-multiple-of 32 within 320: 380x254 -> 320x224 at the top-left, padded to 320x320', async () => {
    // r = min(1, 320/254, 320/380) = 320/380; trunc(380 r) = 320; trunc(254 r) = 213 -> round(6.66)*32 = 224.
    const cfg = config({ preset: 'paddleocr-det', size: 320 });
    expect(computeGeometry(380, 254, cfg)).toMatchObject({ resizeWidth: 320, resizeHeight: 224, top: 0, left: 0 });
    const resized = await sharpResized(HFS, 320, 224);
    const expected = expectedTensor(320, 320, (y, x, c) => (y < 224 ? resized[(y * 320 + x) * 3 + c] : undefined), {
      order: 'BGR',
      layout: 'NCHW',
      scale: 1 / 255,
      mean: IMAGENET_MEAN,
      std: IMAGENET_STD,
      pad: 0,
    });
    expect(maxAbsDiff(await preprocessImage(HFS, cfg), expected)).toBeLessThan(1e-6);
  });

  it('fit-multiple-of does not enlarge small images (PaddleOCR limit_type max)', () => {
    const cfg = config({ preset: 'paddleocr-det', size: 960 });
    expect(computeGeometry(380, 254, cfg)).toMatchObject({ resizeWidth: 384, resizeHeight: 256 });
    expect(computeGeometry(20, 10, cfg)).toMatchObject({ resizeWidth: 32, resizeHeight: 32 });
  });
});

/** A synthetic image whose pixels encode their coordinates: R = x & 255, G = y & 255, B = (x >> 8) * 16 + (y >> 8). */
async function coordinateImage(w: number, h: number): Promise<string> {
  const raw = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      raw[i] = x & 255;
      raw[i + 1] = y & 255;
      raw[i + 2] = (x >> 8) * 16 + (y >> 8);
    }
  }
  const file = path.join(tmp, `coords-${w}x${h}.png`);
  await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toFile(file);
  return file;
}

/** Reads back (x, y) of the source pixel at output (oy, ox) of a raw01-normalised NCHW tensor. */
function sourceAt(t: Float32Array, H: number, W: number, oy: number, ox: number): { x: number; y: number } {
  const v = (c: number) => Math.round(t[c * H * W + oy * W + ox]! * 255);
  return { x: v(0) + (v(2) >> 4) * 256, y: v(1) + (v(2) & 15) * 256 };
}

describe('exact pixel offsets on synthetic coordinate images', () => {
  const raw01 = (o: PreprocessOptions) => config({ preset: 'raw01', ...o });

  it('center-crop without resize: offsets 25 and 75 on 300x200 -> 150x150', async () => {
    const file = await coordinateImage(300, 200);
    const cfg = raw01({ resize: 'center-crop', size: 150, shorterSide: 200 });
    const t = await preprocessImage(file, cfg);
    expect(sourceAt(t, 150, 150, 0, 0)).toEqual({ x: 75, y: 25 });
    expect(sourceAt(t, 150, 150, 149, 149)).toEqual({ x: 224, y: 174 });
  });

  it('center-crop offset .5 rounds half to even (75.5 -> 76, 76.5 -> 76)', async () => {
    const a = await preprocessImage(await coordinateImage(301, 200), raw01({ resize: 'center-crop', size: 150, shorterSide: 200 }));
    expect(sourceAt(a, 150, 150, 0, 0)).toEqual({ x: 76, y: 25 });
    const b = await preprocessImage(await coordinateImage(303, 200), raw01({ resize: 'center-crop', size: 150, shorterSide: 200 }));
    expect(sourceAt(b, 150, 150, 0, 0)).toEqual({ x: 76, y: 25 });
    // Portrait: the vertical offset follows the same rule, (281-150)/2 = 65.5 -> 66.
    const c = await preprocessImage(await coordinateImage(200, 281), raw01({ resize: 'center-crop', size: 150, shorterSide: 200 }));
    expect(sourceAt(c, 150, 150, 0, 0)).toEqual({ x: 25, y: 66 });
  });

  it('non-square crop 100x160 (HxW) from 300x200', async () => {
    const t = await preprocessImage(await coordinateImage(300, 200), raw01({ resize: 'center-crop', size: '100x160', shorterSide: 200 }));
    // left = round((300-160)/2) = 70, top = round((200-100)/2) = 50
    expect(sourceAt(t, 100, 160, 0, 0)).toEqual({ x: 70, y: 50 });
    expect(sourceAt(t, 100, 160, 99, 159)).toEqual({ x: 229, y: 149 });
  });

  it('letterbox without resize: 160x81 in 160x160 puts the image at top 39 (79 pad rows: 39 above, 40 below)', async () => {
    const file = await coordinateImage(160, 81);
    const cfg = raw01({ resize: 'letterbox', size: 160, padValue: 114 });
    const t = await preprocessImage(file, cfg);
    const pad = 114 / 255;
    for (let c = 0; c < 3; c++) {
      for (const y of [0, 38, 120, 159]) for (const x of [0, 80, 159]) expect(t[c * 160 * 160 + y * 160 + x]).toBeCloseTo(pad, 6);
    }
    expect(sourceAt(t, 160, 160, 39, 0)).toEqual({ x: 0, y: 0 });
    expect(sourceAt(t, 160, 160, 119, 159)).toEqual({ x: 159, y: 80 });
    // Count the pad rows exactly: rows whose every pixel equals the pad value.
    let padRows = 0;
    for (let y = 0; y < 160; y++) {
      let all = true;
      for (let x = 0; x < 160 && all; x++) all = Math.abs(t[y * 160 + x]! - pad) < 1e-6 && Math.abs(t[160 * 160 + y * 160 + x]! - pad) < 1e-6;
      if (all) padRows++;
    }
    expect(padRows).toBe(79);
  });

  it('letterbox pads columns for a portrait image: 81x160 -> left 39', async () => {
    const t = await preprocessImage(await coordinateImage(81, 160), raw01({ resize: 'letterbox', size: 160, padValue: 0 }));
    expect(t[0]).toBe(0);
    expect(t[38]).toBe(0);
    expect(sourceAt(t, 160, 160, 0, 39)).toEqual({ x: 0, y: 0 });
    expect(sourceAt(t, 160, 160, 159, 119)).toEqual({ x: 80, y: 159 });
    expect(t[120]).toBe(0);
  });

  it('letterbox with nearest 2x reduction lands source pixels on even coordinates', async () => {
    const t = await preprocessImage(await coordinateImage(320, 160), raw01({ resize: 'letterbox', size: 160, interpolation: 'nearest' }));
    // r = 0.5: 160x80 at top 40.
    const p = sourceAt(t, 160, 160, 40, 0);
    const q = sourceAt(t, 160, 160, 119, 159);
    expect(q.x - p.x).toBe(318);
    expect(q.y - p.y).toBe(158);
    expect(t[39 * 160]).toBe(0);
    expect(t[120 * 160]).toBe(0);
  });
});

describe('colour, alpha, grayscale and orientation', () => {
  it('flattens alpha onto the background colour', async () => {
    const red = await preprocessImage(RGBA, config({ preset: 'raw01', size: 128, background: [255, 0, 0] }));
    const white = await preprocessImage(RGBA, config({ preset: 'raw01', size: 128 }));
    const HW = 128 * 128;
    // Corner pixel is fully transparent: it becomes the background.
    expect([red[0], red[HW], red[2 * HW]]).toEqual([1, 0, 0]);
    expect([white[0], white[HW], white[2 * HW]]).toEqual([1, 1, 1]);
    // Centre pixel is opaque: the background does not show.
    const centre = 64 * 128 + 64;
    const { data } = await sharp(RGBA).raw().toBuffer({ resolveWithObject: true });
    for (let c = 0; c < 3; c++) {
      expect(red[c * HW + centre]).toBeCloseTo(data[centre * 4 + c]! / 255, 6);
      expect(white[c * HW + centre]).toBeCloseTo(data[centre * 4 + c]! / 255, 6);
    }
  });

  it('expands a 1-channel grayscale JPEG to 3 equal channels, and keeps 1 channel for a 1-channel model', async () => {
    const gray = path.join(tmp, 'gray.jpg');
    await sharp(path.join(FIXTURES, 'opencv_doc__pca_test1.jpg')).toColourspace('b-w').jpeg().toFile(gray);
    expect((await sharp(gray).metadata()).channels).toBe(1);
    const cfg3 = config({ preset: 'raw01', size: '60x80' });
    const t3 = await preprocessImage(gray, cfg3);
    const HW = 60 * 80;
    for (let i = 0; i < HW; i++) {
      expect(t3[i]).toBe(t3[HW + i]);
      expect(t3[i]).toBe(t3[2 * HW + i]);
    }
    const cfg1 = config({ preset: 'raw01', size: '60x80', channels: 1 });
    const t1 = await preprocessImage(gray, cfg1);
    expect(t1.length).toBe(HW);
    expect(maxAbsDiff(t1, t3.subarray(0, HW))).toBe(0);
  });

  it('reduces colour to PIL luma for a 1-channel model', async () => {
    const cfg = config({ preset: 'raw01', size: '254x380', channels: 1 });
    const t = await preprocessImage(HFS, cfg);
    const { data } = await sharp(HFS).raw().toBuffer({ resolveWithObject: true });
    for (const i of [0, 1000, 50000, 254 * 380 - 1]) {
      const luma = Math.floor((data[i * 3]! * 19595 + data[i * 3 + 1]! * 38470 + data[i * 3 + 2]! * 7471 + 32768) / 65536);
      expect(t[i]).toBeCloseTo(luma / 255, 6);
    }
  });

  it('applies the EXIF orientation (6: rotate 90 degrees clockwise) unless told not to', async () => {
    // 64x32, left half red, right half blue, stored with orientation 6: displayed 32x64, red on top.
    const raw = Buffer.alloc(64 * 32 * 3);
    for (let y = 0; y < 32; y++) for (let x = 0; x < 64; x++) raw[(y * 64 + x) * 3 + (x < 32 ? 0 : 2)] = 255;
    const file = path.join(tmp, 'oriented.jpg');
    await sharp(raw, { raw: { width: 64, height: 32, channels: 3 } }).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toFile(file);
    expect((await sharp(file).metadata()).orientation).toBe(6);

    const oriented = await decodeImage(file, config({ preset: 'raw01', size: '64x32' }));
    expect([oriented.sourceWidth, oriented.sourceHeight]).toEqual([32, 64]);
    const t = await preprocessImage(file, config({ preset: 'raw01', size: '64x32' })); // H=64, W=32
    const HW = 64 * 32;
    expect(t[8 * 32 + 16]).toBeGreaterThan(0.9); // top: red
    expect(t[2 * HW + 8 * 32 + 16]).toBeLessThan(0.1);
    expect(t[56 * 32 + 16]).toBeLessThan(0.1); // bottom: blue
    expect(t[2 * HW + 56 * 32 + 16]).toBeGreaterThan(0.9);

    const asStored = await preprocessImage(file, config({ preset: 'raw01', size: '32x64', autoOrient: false }));
    const HW2 = 32 * 64;
    expect(asStored[16 * 64 + 8]).toBeGreaterThan(0.9); // left: red
    expect(asStored[2 * HW2 + 16 * 64 + 56]).toBeGreaterThan(0.9); // right: blue
  });

  it('reduces 16-bit PNGs to 8-bit sRGB', async () => {
    const file = path.join(tmp, 'deep.png');
    await sharp(HFS).toColourspace('rgb16').png().toFile(file);
    expect((await sharp(file).metadata()).depth).toBe('ushort');
    const cfg = config({ preset: 'raw01', size: '254x380' });
    expect(maxAbsDiff(await preprocessImage(file, cfg), await preprocessImage(HFS, cfg))).toBeLessThan(1e-6);
  });
});

describe('decode errors', () => {
  it('names the reason without a stack trace', async () => {
    const cfg = config({ preset: 'raw01' });
    const empty = path.join(tmp, 'empty.jpg');
    await writeFile(empty, '');
    await expect(decodeImage(empty, cfg)).rejects.toMatchObject({ name: 'ImageDecodeError', reason: 'empty file (0 bytes)' });
    await expect(decodeImage(path.join(tmp, 'missing.jpg'), cfg)).rejects.toMatchObject({ reason: 'file not found' });
    await expect(decodeImage(tmp, cfg)).rejects.toMatchObject({ reason: 'is a folder, not a file' });
    const text = path.join(tmp, 'text.png');
    await writeFile(text, 'hello');
    await expect(decodeImage(text, cfg)).rejects.toMatchObject({ reason: expect.stringMatching(/not an image/) });
    const truncated = path.join(tmp, 'cut.jpg');
    const bytes = await sharp(HFS).jpeg().toBuffer();
    await writeFile(truncated, bytes.subarray(0, bytes.length >> 1));
    await expect(decodeImage(truncated, cfg)).rejects.toMatchObject({ reason: expect.stringMatching(/corrupt or truncated/) });
  });
});
