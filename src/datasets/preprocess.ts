/**
 * Decoding and preprocessing of one image with sharp, then normalisation into a float32 tensor in JS.
 *
 * Order of the steps (sharp applies them in this order within one pipeline):
 *   1. EXIF auto-orientation (input option autoOrient);
 *   2. conversion to sRGB (embedded ICC profiles and CMYK are converted; 16-bit is reduced to 8-bit);
 *   3. alpha flattened onto `background`;
 *   4. resize (kernel from `interpolation`), then for center-crop the centred extract;
 *   5. in JS: grayscale (1 channel) or RGB/BGR, scale, mean/std through a 256-entry table per channel,
 *      layout NCHW/NHWC, padding (letterbox, fit-multiple-of) filled with the normalised pad value.
 * Grayscale sources come out of sharp's sRGB conversion with 3 equal channels, which is the "expand to 3"
 * step; for a 1-channel model, colour is reduced to luma with PIL's fixed-point ITU-R 601-2 formula
 * (L = (19595 R + 38470 G + 7471 B + 32768) >> 16), the conversion PIL's convert('L') and OpenCV's
 * BGR2GRAY use, so gray models get what they were trained on.
 *
 * Geometry (exact integer rules, in the oriented image's coordinates):
 * - stretch: resize to W x H.
 * - center-crop (torchvision Resize(S) + CenterCrop): the shorter side becomes S, the longer
 *   trunc(S * long / short) (torchvision's int()); the crop offsets are round-half-to-even((S' - H) / 2) and
 *   round-half-to-even((L' - W) / 2), Python's round() as in torchvision's CenterCrop.
 * - letterbox (ultralytics LetterBox): r = min(H/h, W/w); new size round-half-to-even(w r) x
 *   round-half-to-even(h r); top = floor((H - h')/2), left = floor((W - w')/2) (ultralytics' round(d - 0.1));
 *   the rest is padValue.
 * - fit-multiple-of K (PaddleOCR DetResizeForTest, limit_type "max"): r = min(1, H/h, W/w); each side
 *   trunc(side r) rounded half-to-even to a multiple of K, at least K. The size then varies per image, so
 *   the image is placed at the top-left of an H x W canvas padded with padValue: every tensor has one shape
 *   whatever the batch size, and detector coordinates need no offset.
 *
 * JPEG shrink-on-load is used with sharp's `fastShrinkOnLoad: false`, which leaves at least a factor of 2
 * to the resize kernel: results close to a full decode, at a fraction of the cost.
 */
import { constants as fsConstants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import sharp, { type KernelEnum, type OutputInfo } from 'sharp';
import { UserError } from '../errors.js';
import { loadNative } from '../native.js';
import { decodeBudget, decodesWhole } from './decode-budget.js';
import type { Interpolation, PreprocessConfig } from './types.js';

const KERNELS: Record<Interpolation, keyof KernelEnum> = {
  bilinear: 'linear',
  bicubic: 'cubic',
  lanczos3: 'lanczos3',
  nearest: 'nearest',
};

/** A file that could not be decoded: `reason` says why, in words, without a stack trace. */
export class ImageDecodeError extends UserError {
  override name = 'ImageDecodeError';
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`Cannot use the image ${JSON.stringify(file)}: ${reason}.`, {
      hint: 'Remove or fix the file, or run without --strict to skip unreadable images.',
    });
  }
}

/** Where the resized image goes and which part of it is kept. */
export interface ImageGeometry {
  /** Size the (oriented) source is resized to. */
  resizeWidth: number;
  resizeHeight: number;
  /** center-crop: the region of the resized image that is kept. */
  crop?: { left: number; top: number; width: number; height: number };
  /** Size of the content placed in the output (the crop, or the resized image). */
  contentWidth: number;
  contentHeight: number;
  /** Offset of the content in the H x W output; the rest is padding. */
  top: number;
  left: number;
}

/** Python's round(): halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The exact geometry for a source of srcWidth x srcHeight (after orientation). See the file comment. */
export function computeGeometry(srcWidth: number, srcHeight: number, config: PreprocessConfig): ImageGeometry {
  const H = config.height;
  const W = config.width;
  switch (config.resize) {
    case 'stretch':
      return { resizeWidth: W, resizeHeight: H, contentWidth: W, contentHeight: H, top: 0, left: 0 };
    case 'center-crop': {
      const S = config.shorterSide ?? Math.max(H, W);
      let rw: number;
      let rh: number;
      if (srcWidth <= srcHeight) {
        rw = S;
        rh = Math.trunc((S * srcHeight) / srcWidth);
      } else {
        rh = S;
        rw = Math.trunc((S * srcWidth) / srcHeight);
      }
      const top = roundHalfEven((rh - H) / 2);
      const left = roundHalfEven((rw - W) / 2);
      return { resizeWidth: rw, resizeHeight: rh, crop: { left, top, width: W, height: H }, contentWidth: W, contentHeight: H, top: 0, left: 0 };
    }
    case 'letterbox': {
      const r = Math.min(H / srcHeight, W / srcWidth);
      const rw = clamp(roundHalfEven(srcWidth * r), 1, W);
      const rh = clamp(roundHalfEven(srcHeight * r), 1, H);
      return { resizeWidth: rw, resizeHeight: rh, contentWidth: rw, contentHeight: rh, top: Math.floor((H - rh) / 2), left: Math.floor((W - rw) / 2) };
    }
    case 'fit-multiple-of': {
      const K = config.multipleOf ?? 32;
      const r = Math.min(1, H / srcHeight, W / srcWidth);
      const rw = clamp(Math.max(roundHalfEven(Math.trunc(srcWidth * r) / K) * K, K), K, W);
      const rh = clamp(Math.max(roundHalfEven(Math.trunc(srcHeight * r) / K) * K, K), K, H);
      return { resizeWidth: rw, resizeHeight: rh, contentWidth: rw, contentHeight: rh, top: 0, left: 0 };
    }
  }
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

/** 8-bit sRGB pixels of one image after geometry, before normalisation. */
export interface DecodedImage {
  file: string;
  /** Interleaved RGB, contentHeight x contentWidth x 3. */
  pixels: Uint8Array;
  geometry: ImageGeometry;
  /** Size of the source after orientation. */
  sourceWidth: number;
  sourceHeight: number;
}

let sharpConfigured = false;
/**
 * Process-wide settings for decoding, applied once:
 * - sharp's operation cache keeps recent results in case the same input is processed again; a dataset reads each
 *   file once per pass, so the cache only holds memory. It is switched off.
 * - glibc's malloc, after freeing one large block, raises the size it serves from its arenas instead of fresh
 *   mappings (up to 32 MB) and keeps freed arena memory up to twice that. The full-size strips and JPEG coefficient
 *   buffers of big photos then stayed resident after each decode, on the decoding threads' arenas, and the floor
 *   rose with every big photo (172 images: 367-442 MiB). Allocations of 1 MiB and more now always get their own
 *   mapping, which goes back to the system when freed (172 images: 358-368 MiB; with the decode budget of
 *   decode-budget.ts, 325-339). The price is page faults on those fresh mappings: about 70 ms more system time per
 *   calibration of 43 images (of about 1.6 s of CPU); 4 and 8 MiB thresholds kept more memory for little less time.
 *   Skipped where the user tunes malloc through its environment variables.
 * sharp's thread count (sharp.concurrency()) is left alone: images are decoded in parallel instead.
 */
export function configureSharp(): void {
  if (sharpConfigured) return;
  sharp.cache(false);
  if (!Object.keys(process.env).some((k) => k.startsWith('MALLOC_') || k.startsWith('GLIBC_TUNABLES'))) {
    loadNative().keepLargeAllocationsMapped(LARGE_ALLOCATION_BYTES);
  }
  sharpConfigured = true;
}
const LARGE_ALLOCATION_BYTES = 1 << 20;

/** Reads, decodes and resizes one image; throws ImageDecodeError with a plain reason on any failure. */
export async function decodeImage(file: string, config: PreprocessConfig): Promise<DecodedImage> {
  configureSharp();
  let size: number;
  try {
    const st = await stat(file);
    if (st.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    await access(file, fsConstants.R_OK);
    size = st.size;
  } catch (err) {
    throw new ImageDecodeError(file, readReason(err));
  }
  if (size === 0) throw new ImageDecodeError(file, 'empty file (0 bytes)');
  try {
    // libvips reads the file itself: its bytes never become a JS Buffer that only the garbage collector frees
    // (on long passes those buffers made resident memory grow with the number of images).
    // failOn 'truncated': a cut-off file is an error, but the harmless warnings many real JPEGs raise
    // ("extraneous bytes before marker") are not, as in PIL and OpenCV.
    const image = sharp(file, { failOn: 'truncated', autoOrient: config.autoOrient });
    const meta = await image.metadata();
    const sourceWidth = config.autoOrient ? (meta.autoOrient?.width ?? meta.width) : meta.width;
    const sourceHeight = config.autoOrient ? (meta.autoOrient?.height ?? meta.height) : meta.height;
    if (!sourceWidth || !sourceHeight) throw new Error('the image has no size');
    const geometry = computeGeometry(sourceWidth, sourceHeight, config);
    if (meta.hasAlpha) {
      const [r, g, b] = config.background;
      image.flatten({ background: { r, g, b } });
    }
    image.toColourspace('srgb').resize(geometry.resizeWidth, geometry.resizeHeight, {
      fit: 'fill',
      kernel: KERNELS[config.interpolation],
      fastShrinkOnLoad: false,
    });
    if (geometry.crop) image.extract(geometry.crop);
    // Only the header has been read so far; a whole-image decode first waits for room in the pixel budget.
    const release = decodesWhole(meta) ? await decodeBudget.acquire(sourceWidth * sourceHeight) : undefined;
    let decoded: { data: Buffer; info: OutputInfo };
    try {
      decoded = await image.removeAlpha().raw().toBuffer({ resolveWithObject: true });
    } finally {
      release?.();
    }
    const { data, info } = decoded;
    if (info.width !== geometry.contentWidth || info.height !== geometry.contentHeight || info.channels !== 3) {
      throw new Error(`sharp returned ${info.width}x${info.height}x${info.channels}, expected ${geometry.contentWidth}x${geometry.contentHeight}x3`);
    }
    return { file, pixels: data, geometry, sourceWidth, sourceHeight };
  } catch (err) {
    throw new ImageDecodeError(file, decodeReason(err));
  }
}

function readReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT':
      return 'file not found';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a folder, not a file';
    default:
      return `cannot read the file (${firstLine(err)})`;
  }
}

function decodeReason(err: unknown): string {
  const message = firstLine(err);
  if (/unsupported image format/i.test(message)) return 'not an image, or a format this build of sharp cannot decode';
  if (/premature end|truncated|corrupt|invalid|bad |not a |error/i.test(message)) return `corrupt or truncated image (${message})`;
  if (/pixel limit/i.test(message)) return `image too large (${message})`;
  return `cannot decode (${message})`;
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0]!.trim();
}

/**
 * The normalisation as 256-entry tables, one per output channel:
 * table[c][v] = float32((v * scale - mean[c]) / std[c]). Every pixel then costs one lookup, and the
 * value is exactly the formula's, rounded once to float32.
 */
export function normalisationTables(config: PreprocessConfig): Float32Array[] {
  const tables: Float32Array[] = [];
  for (let c = 0; c < config.channels; c++) {
    const t = new Float32Array(256);
    for (let v = 0; v < 256; v++) t[v] = (v * config.scale - config.mean[c]!) / config.std[c]!;
    tables.push(t);
  }
  return tables;
}

/** Number of float32 values of one image: C x H x W. */
export function imageElementCount(config: PreprocessConfig): number {
  return config.channels * config.height * config.width;
}

/**
 * Writes one decoded image into `target` at `offset` (C*H*W values), normalised, in the configured
 * channel order and layout; the area outside the content gets the normalised pad value.
 */
export function writeImageTensor(
  image: DecodedImage,
  config: PreprocessConfig,
  target: Float32Array,
  offset = 0,
  tables: Float32Array[] = normalisationTables(config),
): void {
  const H = config.height;
  const W = config.width;
  const C = config.channels;
  const HW = H * W;
  const { contentWidth: cw, contentHeight: ch, top, left } = image.geometry;
  const px = image.pixels;
  if (offset < 0 || offset + C * HW > target.length) throw new RangeError('writeImageTensor: target too small');
  const nchw = config.layout === 'NCHW';

  if (cw !== W || ch !== H) {
    // Padding: fill the whole slot with the pad value, the content overwrites its part below.
    for (let c = 0; c < C; c++) {
      const v = tables[c]![config.padValue]!;
      if (nchw) target.fill(v, offset + c * HW, offset + (c + 1) * HW);
      else for (let i = offset + c, end = offset + C * HW; i < end; i += C) target[i] = v;
    }
  }

  if (C === 1) {
    const t0 = tables[0]!;
    for (let y = 0; y < ch; y++) {
      let s = y * cw * 3;
      let d = offset + (top + y) * W + left; // same index in both layouts when C = 1
      for (let x = 0; x < cw; x++, s += 3, d++) {
        const luma = (px[s]! * 19595 + px[s + 1]! * 38470 + px[s + 2]! * 7471 + 32768) >> 16;
        target[d] = t0[luma]!;
      }
    }
    return;
  }

  // Output channel c reads source channel src[c]: identity for RGB, reversed for BGR.
  const bgr = config.channelOrder === 'BGR';
  const s0 = bgr ? 2 : 0;
  const s2 = bgr ? 0 : 2;
  const t0 = tables[0]!;
  const t1 = tables[1]!;
  const t2 = tables[2]!;
  if (nchw) {
    for (let y = 0; y < ch; y++) {
      let s = y * cw * 3;
      let d = offset + (top + y) * W + left;
      for (let x = 0; x < cw; x++, s += 3, d++) {
        target[d] = t0[px[s + s0]!]!;
        target[d + HW] = t1[px[s + 1]!]!;
        target[d + 2 * HW] = t2[px[s + s2]!]!;
      }
    }
  } else {
    for (let y = 0; y < ch; y++) {
      let s = y * cw * 3;
      let d = offset + ((top + y) * W + left) * 3;
      for (let x = 0; x < cw; x++, s += 3, d += 3) {
        target[d] = t0[px[s + s0]!]!;
        target[d + 1] = t1[px[s + 1]!]!;
        target[d + 2] = t2[px[s + s2]!]!;
      }
    }
  }
}

/**
 * Decodes and preprocesses one image into a new Float32Array of C*H*W values (or into `target` at
 * `offset`, which is then returned).
 */
export async function preprocessImage(file: string, config: PreprocessConfig, target?: Float32Array, offset = 0): Promise<Float32Array> {
  const image = await decodeImage(file, config);
  const out = target ?? new Float32Array(imageElementCount(config));
  writeImageTensor(image, config, out, target ? offset : 0);
  return out;
}

/** Shape of one image tensor: [C,H,W] or [H,W,C]. */
export function imageDims(config: PreprocessConfig): number[] {
  return config.layout === 'NCHW' ? [config.channels, config.height, config.width] : [config.height, config.width, config.channels];
}
