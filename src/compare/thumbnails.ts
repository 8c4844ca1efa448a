/**
 * Thumbnails of the worst images for report.html: each image decoded with sharp (EXIF orientation applied),
 * fitted inside size x size pixels, encoded as JPEG and returned as a data: URI, so that the report needs no
 * other file. An image that cannot be read is left out with a warning (the report still renders).
 *
 * The task sections draw over their pictures, so they need each picture's size and its original's: photoDataUris
 * returns both (boxes in original pixels are scaled by width / originalWidth), and maskOverlayDataUri paints the
 * FP32 and variant masks of one image over its photo.
 */
import path from 'node:path';
import sharp from 'sharp';
import type { Reporter } from '../reporter.js';
import { silentReporter } from '../reporter.js';
import { OVERLAY_COLOURS } from './html-parts.js';
import type { ImageGeometry } from './task/types.js';

export interface ThumbnailOptions {
  /** Longest side in pixels (default 96). */
  size?: number;
  /** JPEG quality (default 70). */
  quality?: number;
  /** Relative file names are resolved against this folder (default: the working directory). */
  baseDir?: string;
  reporter?: Reporter;
}

/** A picture for the report and the size of the image it was made from (after EXIF orientation). */
export interface Photo {
  /** data:image/jpeg;base64,... */
  uri: string;
  width: number;
  height: number;
  originalWidth: number;
  originalHeight: number;
}

/** file (as given) -> data:image/jpeg;base64,... */
export async function thumbnailDataUris(files: readonly string[], options: ThumbnailOptions = {}): Promise<Map<string, string>> {
  const photos = await photoDataUris(files, { ...options, size: options.size ?? 96 });
  return new Map([...photos].map(([file, photo]) => [file, photo.uri]));
}

/** file (as given) -> its picture fitted inside size x size (default 480, large enough to see boxes) and its sizes. */
export async function photoDataUris(files: readonly string[], options: ThumbnailOptions = {}): Promise<Map<string, Photo>> {
  const size = options.size ?? 480;
  const quality = options.quality ?? 70;
  const reporter = options.reporter ?? silentReporter;
  const out = new Map<string, Photo>();
  // One at a time: a handful of small images, and sharp already uses its own threads.
  for (const file of files) {
    if (out.has(file)) continue;
    const full = options.baseDir !== undefined ? path.resolve(options.baseDir, file) : file;
    try {
      const original = orientedSize(await sharp(full, { failOn: 'none' }).metadata(), full);
      const { data, info } = await sharp(full, { failOn: 'none' })
        .rotate()
        .flatten({ background: '#ffffff' })
        .resize(size, size, { fit: 'inside', withoutEnlargement: true })
        .jpeg({ quality, mozjpeg: false })
        .toBuffer({ resolveWithObject: true });
      out.set(file, { uri: `data:image/jpeg;base64,${data.toString('base64')}`, width: info.width, height: info.height, ...original });
    } catch (err) {
      reporter.warn(`No thumbnail for ${file}: ${(err as Error).message}`);
    }
  }
  return out;
}

/** The size the pixels have once EXIF orientation is applied (orientations 5-8 swap the axes). */
function orientedSize(meta: { width?: number; height?: number; orientation?: number }, file: string): { originalWidth: number; originalHeight: number } {
  if (meta.width === undefined || meta.height === undefined) throw new Error(`${file}: the image has no size`);
  const swap = (meta.orientation ?? 1) >= 5;
  return swap ? { originalWidth: meta.height, originalHeight: meta.width } : { originalWidth: meta.width, originalHeight: meta.height };
}

/** One image's per-pixel classes (row-major; binary maps: 0 background, 1 foreground). */
export interface ClassMask {
  width: number;
  height: number;
  data: ArrayLike<number>;
}

export interface MaskOverlayOptions {
  /** Longest side of the picture in pixels (default 480). */
  size?: number;
  /** JPEG quality (default 80). */
  quality?: number;
  /**
   * How preprocessing mapped the photo into the model input (letterbox, crop); the masks cover the model input,
   * at their own resolution. Without it the masks are taken to cover the whole photo (a stretch).
   */
  geometry?: Pick<ImageGeometry, 'inputWidth' | 'inputHeight' | 'scaleX' | 'scaleY' | 'offsetX' | 'offsetY'>;
  /** The class that is background, left unpainted where both agree (default 0). */
  background?: number;
}


/**
 * The photo (a file path or its bytes) with FP32's and a variant's masks of that image painted over it: a tint where
 * they agree on a class, and strong colours where they disagree (OVERLAY_COLOURS). Each picture pixel takes the mask
 * pixel under its centre (nearest neighbour), mapped through the preprocessing geometry when given.
 */
export async function maskOverlayDataUri(
  photo: string | Buffer,
  referenceMask: ClassMask,
  variantMask: ClassMask,
  options: MaskOverlayOptions = {},
): Promise<Photo> {
  for (const [which, m] of [
    ['reference', referenceMask],
    ['variant', variantMask],
  ] as const) {
    if (!Number.isInteger(m.width) || !Number.isInteger(m.height) || m.width <= 0 || m.height <= 0 || m.data.length !== m.width * m.height) {
      throw new Error(`maskOverlayDataUri: the ${which} mask is ${m.width}x${m.height} but holds ${m.data.length} values`);
    }
  }
  if (referenceMask.width !== variantMask.width || referenceMask.height !== variantMask.height) {
    throw new Error(
      `maskOverlayDataUri: the masks differ in size (${referenceMask.width}x${referenceMask.height} and ${variantMask.width}x${variantMask.height})`,
    );
  }
  const size = options.size ?? 480;
  const background = options.background ?? 0;
  const original = orientedSize(await sharp(photo, { failOn: 'none' }).metadata(), typeof photo === 'string' ? photo : 'the photo');
  const { data, info } = await sharp(photo, { failOn: 'none' })
    .rotate()
    .flatten({ background: '#ffffff' })
    .resize(size, size, { fit: 'inside', withoutEnlargement: true })
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  const { width, height } = info;
  const g = options.geometry ?? {
    inputWidth: referenceMask.width,
    inputHeight: referenceMask.height,
    scaleX: referenceMask.width / original.originalWidth,
    scaleY: referenceMask.height / original.originalHeight,
    offsetX: 0,
    offsetY: 0,
  };
  // picture pixel centre -> original pixels -> model input pixels -> mask pixels
  const maskX = new Int32Array(width);
  for (let x = 0; x < width; x++) {
    const input = (((x + 0.5) * original.originalWidth) / width) * g.scaleX + g.offsetX;
    maskX[x] = Math.floor((input * referenceMask.width) / g.inputWidth);
  }
  const maskY = new Int32Array(height);
  for (let y = 0; y < height; y++) {
    const input = (((y + 0.5) * original.originalHeight) / height) * g.scaleY + g.offsetY;
    maskY[y] = Math.floor((input * referenceMask.height) / g.inputHeight);
  }
  for (let y = 0; y < height; y++) {
    const my = maskY[y]!;
    if (my < 0 || my >= referenceMask.height) continue; // outside the input (cropped away): the photo as it is
    for (let x = 0; x < width; x++) {
      const mx = maskX[x]!;
      if (mx < 0 || mx >= referenceMask.width) continue;
      const r = referenceMask.data[my * referenceMask.width + mx]!;
      const v = variantMask.data[my * variantMask.width + mx]!;
      const paint =
        r === v ? (r === background ? undefined : OVERLAY_COLOURS.agree) : v === background ? OVERLAY_COLOURS.lost : r === background ? OVERLAY_COLOURS.gained : OVERLAY_COLOURS.changed;
      if (paint === undefined) continue;
      const o = (y * width + x) * 3;
      for (let k = 0; k < 3; k++) data[o + k] = Math.round(data[o + k]! * (1 - paint.alpha) + paint.rgb[k]! * paint.alpha);
    }
  }
  const jpeg = await sharp(data, { raw: { width, height, channels: 3 } })
    .jpeg({ quality: options.quality ?? 80, mozjpeg: false })
    .toBuffer();
  return { uri: `data:image/jpeg;base64,${jpeg.toString('base64')}`, width, height, ...original };
}
