/**
 * Where each original image lands in the model input, as the task evaluators need it to map predictions made in
 * input pixels back to the photo (src/compare/task/types.ts, ImageGeometry: input = original * scale + offset).
 *
 * Read from each file's header only (sharp metadata: no pixel is decoded) and computed with the very function the
 * preprocessing uses (computeGeometry in ./preprocess.ts), so the two cannot disagree:
 * - stretch: the oriented source w x h is resized to W x H: scale W/w, H/h, no offset;
 * - letterbox: resized to w' x h' (rounded sizes, so the two scales differ slightly from r) and placed at
 *   (left, top): offsets are that padding;
 * - center-crop: resized to w' x h', then the crop at (left, top) is kept: offsets are minus the crop's corner;
 * - fit-multiple-of: resized to w' x h' at the top-left of the canvas: no offset.
 * Coordinates are continuous (pixel edges, not centres): sharp's resize maps the edge x of the source to x * scale,
 * so a box edge at x in the photo is at x * scale + offset in the input.
 * (libvips' bilinear upsampling draws content half an input pixel later than this ideal mapping; downscaling
 * matches it to a thousandth of a pixel: test/unit/datasets-geometry.test.ts measures both.)
 * With autoOrient the size is the oriented one (EXIF orientations 5-8 swap width and height), as preprocessing
 * sees it.
 */
import sharp, { type Metadata } from 'sharp';
import type { ImageGeometry } from '../compare/task/types.js';
import { computeGeometry, ImageDecodeError } from './preprocess.js';
import type { PreprocessConfig } from './types.js';

/** The geometry of one image of `width` x `height` (oriented) under `preprocess`. */
export function geometryFor(file: string, width: number, height: number, preprocess: PreprocessConfig): ImageGeometry {
  const g = computeGeometry(width, height, preprocess);
  const offsetX = g.crop ? -g.crop.left : g.left;
  const offsetY = g.crop ? -g.crop.top : g.top;
  return {
    file,
    width,
    height,
    inputWidth: preprocess.width,
    inputHeight: preprocess.height,
    scaleX: g.resizeWidth / width,
    scaleY: g.resizeHeight / height,
    offsetX,
    offsetY,
  };
}

/** Reads one file's size from its header (oriented when preprocessing orients). */
export async function imageSize(file: string, autoOrient: boolean): Promise<{ width: number; height: number }> {
  let meta: Metadata;
  try {
    meta = await sharp(file, { autoOrient }).metadata();
  } catch (err) {
    throw new ImageDecodeError(file, `cannot read the image header (${(err as Error).message.split('\n')[0]})`);
  }
  const width = autoOrient ? (meta.autoOrient?.width ?? meta.width) : meta.width;
  const height = autoOrient ? (meta.autoOrient?.height ?? meta.height) : meta.height;
  if (!width || !height) throw new ImageDecodeError(file, 'the image has no size');
  return { width, height };
}

const HEADERS_AT_ONCE = 8;

/** The geometries of `files`, in order (headers read a few at a time). */
export async function imageGeometries(files: readonly string[], preprocess: PreprocessConfig): Promise<ImageGeometry[]> {
  const out: ImageGeometry[] = [];
  for (let i = 0; i < files.length; i += HEADERS_AT_ONCE) {
    const chunk = files.slice(i, i + HEADERS_AT_ONCE);
    const sizes = await Promise.all(chunk.map((f) => imageSize(f, preprocess.autoOrient)));
    sizes.forEach((s, k) => out.push(geometryFor(chunk[k]!, s.width, s.height, preprocess)));
  }
  return out;
}
