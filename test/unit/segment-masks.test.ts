/**
 * Segmentation against PNG masks of real photos: masks made here (grayscale with sharp, a VOC-style palette PNG by
 * hand), predictions mapped back through letterbox and stretch geometries, checked against hand-computed counts;
 * a mask of the wrong size, images without masks and masks without images.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSegmentationEvaluator, findMaskLabels, readMask } from '../../src/compare/task/segment/index.js';
import { resolvePreprocess } from '../../src/datasets/presets.js';
import { discoverImages } from '../../src/datasets/discovery.js';
import { UserError } from '../../src/errors.js';
import type { Tensor } from '../../src/tensor.js';
import { taskGeometry } from './segment-geometry.js';

const ROOT = path.resolve(__dirname, '../..');
const IMAGES = path.join(ROOT, 'test/fixtures/images');
const HOME = path.join(IMAGES, 'opencv_doc__home.jpg'); // 512 x 384
const STUFF = path.join(IMAGES, 'opencv_doc__stuff.jpg'); // 640 x 480
const APPLE = path.join(IMAGES, 'opencv_doc__apple.jpg'); // 512 x 512

let tmp: string;
let masks: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-masks-'));
  masks = path.join(tmp, 'masks');
  await mkdir(masks);
  // home: class 1 above row 192, class 2 from it; columns 0-15 are the ignore value 255.
  const home = Buffer.alloc(512 * 384);
  for (let y = 0; y < 384; y++) for (let x = 0; x < 512; x++) home[y * 512 + x] = x < 16 ? 255 : y < 192 ? 1 : 2;
  await sharp(home, { raw: { width: 512, height: 384, channels: 1 } }).png().toFile(path.join(masks, 'opencv_doc__home.png'));
  // stuff: a palette PNG, VOC's colours: class 15 (person, #c08080) for x < 316, 255 (#e0e0c0) for 316 <= x < 324,
  // class 0 (#000000) from 324.
  const stuff = Buffer.alloc(640 * 480);
  for (let y = 0; y < 480; y++) for (let x = 0; x < 640; x++) stuff[y * 640 + x] = x < 316 ? 15 : x < 324 ? 255 : 0;
  await writeFile(path.join(masks, 'opencv_doc__stuff.png'), palettePng(640, 480, stuff, vocPalette()));
  // apple: a mask of the wrong size.
  await sharp(Buffer.alloc(100 * 100), { raw: { width: 100, height: 100, channels: 1 } }).png().toFile(path.join(masks, 'opencv_doc__apple.png'));
  // A mask whose image is not in the data.
  await sharp(Buffer.alloc(4), { raw: { width: 2, height: 2, channels: 1 } }).png().toFile(path.join(masks, 'not_in_the_data.png'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Pascal VOC's colour map (bit-interleaved class index). */
function vocPalette(): number[][] {
  return Array.from({ length: 256 }, (_, i) => {
    let r = 0;
    let g = 0;
    let b = 0;
    let c = i;
    for (let j = 0; j < 8; j++) {
      r |= ((c >> 0) & 1) << (7 - j);
      g |= ((c >> 1) & 1) << (7 - j);
      b |= ((c >> 2) & 1) << (7 - j);
      c >>= 3;
    }
    return [r, g, b];
  });
}

/** An 8-bit palette PNG (colour type 3), written chunk by chunk. */
function palettePng(width: number, height: number, indices: Uint8Array, palette: number[][]): Buffer {
  const rows: Buffer[] = [];
  for (let y = 0; y < height; y++) rows.push(Buffer.from(indices.subarray(y * width, (y + 1) * width)));
  return pngFile(width, height, 8, 3, rows, palette);
}

/** A 16-bit grayscale PNG (colour type 0), big-endian samples. */
function gray16Png(width: number, height: number, values: number[]): Buffer {
  const rows: Buffer[] = [];
  for (let y = 0; y < height; y++) {
    const row = Buffer.alloc(width * 2);
    for (let x = 0; x < width; x++) row.writeUInt16BE(values[y * width + x]!, 2 * x);
    rows.push(row);
  }
  return pngFile(width, height, 16, 0, rows);
}

function pngFile(width: number, height: number, bitDepth: number, colourType: number, rows: Buffer[], palette?: number[][]): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = bitDepth;
  ihdr[9] = colourType;
  // Each row starts with its filter type (0: none).
  const filtered = rows.flatMap((r) => [Buffer.from([0]), r]);
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', ihdr),
    ...(palette ? [chunk('PLTE', Buffer.from(palette.flat()))] : []),
    chunk('IDAT', zlib.deflateSync(Buffer.concat(filtered))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** [1, C, H, W] scores whose argmax is classOf(row, column). */
function scoreMap(classes: number, height: number, width: number, classOf: (row: number, column: number) => number): Tensor {
  const data = new Float32Array(classes * height * width);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[classOf(y, x) * height * width + y * width + x] = 1;
  return { dtype: 'float32', dims: [1, classes, height, width], data };
}

describe('findMaskLabels', () => {
  it('matches masks to images by path, counts images without a mask and masks without an image', async () => {
    const files = await discoverImages(IMAGES);
    const r = await findMaskLabels(masks, files, IMAGES);
    expect([...r.labels.keys()].sort()).toEqual([APPLE, HOME, STUFF]);
    expect(r.labels.get(HOME)).toBe(path.join(masks, 'opencv_doc__home.png'));
    expect(r.unmatchedImages).toHaveLength(files.length - 3);
    expect(r.missing).toEqual([path.join(masks, 'not_in_the_data.png')]);
  });

  it('follows Cityscapes-style names with image and mask suffixes (mmseg img_suffix / seg_map_suffix)', async () => {
    const gt = path.join(tmp, 'gtFine', 'val');
    await mkdir(path.join(gt, 'frankfurt'), { recursive: true });
    const mask = path.join(gt, 'frankfurt', 'frankfurt_000000_000294_gtFine_labelTrainIds.png');
    await sharp(Buffer.alloc(4), { raw: { width: 2, height: 2, channels: 1 } }).png().toFile(mask);
    await sharp(Buffer.alloc(4), { raw: { width: 2, height: 2, channels: 1 } }).png().toFile(path.join(gt, 'frankfurt', 'frankfurt_000000_000294_gtFine_color.png'));
    const data = path.join(tmp, 'leftImg8bit', 'val');
    const image = path.join(data, 'frankfurt', 'frankfurt_000000_000294_leftImg8bit.png');
    const other = path.join(data, 'frankfurt', 'frankfurt_000000_000576_leftImg8bit.png');
    const r = await findMaskLabels(gt, [image, other], data, { imageSuffix: '_leftImg8bit.png', maskSuffix: '_gtFine_labelTrainIds.png' });
    expect([...r.labels]).toEqual([[image, mask]]);
    expect(r.unmatchedImages).toEqual([other]);
    expect(r.missing).toEqual([]);
    // Without the suffixes nothing matches, and the error says what was looked for.
    await expect(findMaskLabels(gt, [image], data)).rejects.toThrow(/None of the 2 masks/);
  });

  it('refuses a flat mask that two images could own', async () => {
    const flat = path.join(tmp, 'flat');
    await mkdir(flat, { recursive: true });
    await sharp(Buffer.alloc(4), { raw: { width: 2, height: 2, channels: 1 } }).png().toFile(path.join(flat, 'img.png'));
    const data = path.join(tmp, 'twins');
    await expect(findMaskLabels(flat, [path.join(data, 'a', 'img.jpg'), path.join(data, 'b', 'img.jpg')], data)).rejects.toThrow(/could belong to 2 images named img/);
  });

  it('says what is wrong with a folder of no PNG or of masks for other images', async () => {
    await expect(findMaskLabels(path.join(tmp, 'nowhere'), [HOME], IMAGES)).rejects.toThrow(/nowhere does not exist/);
    const empty = path.join(tmp, 'empty');
    await mkdir(empty, { recursive: true });
    await expect(findMaskLabels(empty, [HOME], IMAGES)).rejects.toThrow(/empty has no PNG files/);
    await expect(findMaskLabels(masks, [path.join(IMAGES, 'opencv_doc__aero1.jpg')], IMAGES)).rejects.toThrow(/None of the 4 masks/);
  });
});

describe('masks', () => {
  it('reads a palette PNG as its indices and a grayscale PNG as its values', async () => {
    const stuff = await readMask(path.join(masks, 'opencv_doc__stuff.png'));
    expect([stuff.width, stuff.height]).toEqual([640, 480]);
    expect([stuff.data[0], stuff.data[316], stuff.data[323], stuff.data[324], stuff.data[480 * 640 - 1]]).toEqual([15, 255, 255, 0, 0]);
    const home = await readMask(path.join(masks, 'opencv_doc__home.png'));
    expect([home.data[0], home.data[16], home.data[192 * 512 + 16]]).toEqual([255, 1, 2]);
  });

  it('reads a 16-bit grayscale PNG at full depth (class ids above 255)', async () => {
    const file = path.join(tmp, 'gray16.png');
    await writeFile(file, gray16Png(3, 2, [0, 1, 300, 255, 65534, 7]));
    expect([...(await readMask(file)).data]).toEqual([0, 1, 300, 255, 65534, 7]);
  });

  it('refuses colour masks', async () => {
    const file = path.join(tmp, 'colour.png');
    await sharp(Buffer.from([255, 0, 0, 0, 255, 0]), { raw: { width: 2, height: 1, channels: 3 } }).png().toFile(file);
    await expect(readMask(file)).rejects.toThrow(/colour\.png is a colour image/);
  });

  it('letterbox: the prediction at each original pixel, hand-counted (stride 4 map)', async () => {
    const config = resolvePreprocess({ preset: 'raw01', resize: 'letterbox' }, { name: 'x', dims: [1, 3, 64, 64] });
    const g = await taskGeometry(HOME, config);
    // r = min(64 / 384, 64 / 512) = 1/8: the photo becomes 64 x 48, placed 8 rows down.
    expect(g).toMatchObject({ width: 512, height: 384, scaleX: 0.125, scaleY: 0.125, offsetX: 0, offsetY: 8 });
    // A 16 x 16 map (stride 4): class 1 in map rows 0-6, class 2 in rows 7-15 (class 0 never).
    // Original row y samples map row floor(((y + 0.5) / 8 + 8) / 4): row 7 covers input rows 28-31, i.e.
    // y + 0.5 in [160, 192): y = 160..191 is predicted 2 where the mask says 1.
    // Columns 0-15 are ignored: 496 columns count.
    //   class 1: mask rows 0-191 (192), predicted rows 0-159 (160), intersection 160 -> IoU 160/192 = 5/6
    //   class 2: mask rows 192-383 (192), predicted rows 160-383 (224), intersection 192 -> IoU 192/224 = 6/7
    //   mIoU = (5/6 + 6/7) / 2 = 71/84; pixel accuracy (160 + 192) / 384 = 11/12; ignored 16 x 384 = 6144
    const labels = new Map([[HOME, path.join(masks, 'opencv_doc__home.png')]]);
    const ev = createSegmentationEvaluator({ output: 'seg', labels });
    const ref = scoreMap(3, 16, 16, (row) => (row < 8 ? 1 : 2));
    const pred = scoreMap(3, 16, 16, (row) => (row < 7 ? 1 : 2));
    await ev.prepareBatch([g]);
    ev.addReference({ seg: ref }, [g]);
    ev.addVariant('fp32', { seg: ref }, [g]);
    ev.addVariant('int8', { seg: pred }, [g]);
    const r = ev.finish();
    // FP32's map (boundary at map row 8, input row 32, original row 192) is exactly the mask.
    expect(r.get('fp32')!.valueLabels).toBe(1);
    const v = r.get('int8')!;
    expect(v.valueLabels).toBeCloseTo(71 / 84, 15);
    expect(v.segmentation!.perClassLabels!.map((c) => [c.classId, c.iou, c.pixels])).toEqual([
      [1, 5 / 6, 192 * 496],
      [2, 6 / 7, 192 * 496],
    ]);
    expect(v.segmentation).toMatchObject({ pixelAccuracyLabels: 11 / 12, ignoredPixels: 6144, labelledImages: 1, unlabelledImages: 0 });
    // Against FP32 at the map's resolution: row 7 (16 cells) differs.
    //   class 1: 7 x 16 / (8 x 16) = 7/8; class 2: 8 x 16 / (9 x 16) = 8/9.
    expect(v.value).toBeCloseTo((7 / 8 + 8 / 9) / 2, 15);
  });

  it('stretch, a palette mask, and images without masks counted', async () => {
    const config = resolvePreprocess({ preset: 'raw01', resize: 'stretch' }, { name: 'x', dims: [1, 3, 32, 32] });
    const g = await taskGeometry(STUFF, config);
    const other = await taskGeometry(path.join(IMAGES, 'opencv_doc__aero1.jpg'), config);
    expect(g).toMatchObject({ width: 640, height: 480, scaleX: 0.05, offsetX: 0 });
    // 21 classes; class 15 in map columns 0-14, class 0 from 15. Original column x samples floor((x + 0.5) / 20):
    // class 15 for x = 0..299. Mask: 15 for x < 316, ignored 316-323, 0 from 324 (every row alike).
    //   class 15: mask 316 columns, predicted 300, intersection 300 -> 300/316 = 75/79
    //   class 0: mask 316 columns (324-639), predicted 300-315 and 324-639 = 332, intersection 316 -> 79/83
    const labels = new Map([[STUFF, path.join(masks, 'opencv_doc__stuff.png')]]);
    const ev = createSegmentationEvaluator({ output: 'seg', labels, classNames: new Map([[15, 'person']]) });
    const one = scoreMap(21, 32, 32, (_, column) => (column < 15 ? 15 : 0));
    const batch: Tensor = { dtype: 'float32', dims: [2, 21, 32, 32], data: new Float32Array(2 * one.data.length) };
    (batch.data as Float32Array).set(one.data as Float32Array, 0);
    (batch.data as Float32Array).set(one.data as Float32Array, one.data.length);
    await ev.prepareBatch([g, other]);
    ev.addReference({ seg: batch }, [g, other]);
    ev.addVariant('int8', { seg: batch }, [g, other]);
    const s = ev.finish().get('int8')!;
    expect(s.valueLabels).toBeCloseTo((75 / 79 + 79 / 83) / 2, 15);
    expect(s.segmentation!.perClassLabels!.map((c) => [c.classId, c.name, c.pixels])).toEqual([
      [0, undefined, 316 * 480],
      [15, 'person', 316 * 480],
    ]);
    expect(s.segmentation).toMatchObject({ labelledImages: 1, unlabelledImages: 1, ignoredPixels: 8 * 480 });
  });

  it('a mask of another size than its image is an error naming both files', async () => {
    const config = resolvePreprocess({ preset: 'raw01', resize: 'stretch' }, { name: 'x', dims: [1, 3, 32, 32] });
    const g = await taskGeometry(APPLE, config);
    const maskFile = path.join(masks, 'opencv_doc__apple.png');
    const ev = createSegmentationEvaluator({ output: 'seg', labels: new Map([[APPLE, maskFile]]) });
    const err = await ev.prepareBatch([g]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toBe(`The mask ${maskFile} is 100x100 pixels but its image ${APPLE} is 512x512.`);
  });

  it('a mask class the model does not have is an error naming the mask', async () => {
    const config = resolvePreprocess({ preset: 'raw01', resize: 'stretch' }, { name: 'x', dims: [1, 3, 32, 32] });
    const g = await taskGeometry(STUFF, config);
    const ev = createSegmentationEvaluator({ output: 'seg', labels: new Map([[STUFF, path.join(masks, 'opencv_doc__stuff.png')]]) });
    const map = scoreMap(3, 32, 32, () => 0);
    await ev.prepareBatch([g]);
    ev.addReference({ seg: map }, [g]);
    expect(() => ev.addVariant('int8', { seg: map }, [g])).toThrow(/opencv_doc__stuff.png has the class 15 at pixel 0,0, but the model predicts 3 classes/);
  });
});
