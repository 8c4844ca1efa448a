/**
 * Mask overlays for report.html: the photo (EXIF orientation applied, fitted inside size x size) with the
 * variant's classes drawn over it against FP32's, as self-contained data: URIs (JPEG), like thumbnails.ts.
 *
 * Colours: binary maps: foreground in both green, FP32's foreground the variant lost red, foreground it gained
 * blue. Class maps: pixels where the variant differs from FP32 red; where they agree, the class in Pascal VOC's
 * colour map (class 0, black in that map, is left uncoloured). Each thumbnail pixel takes the map cell under its
 * centre through ImageGeometry (the same nearest rule as the metric, see class-map.ts).
 */
import path from 'node:path';
import sharp from 'sharp';
import type { Reporter } from '../../../reporter.js';
import { silentReporter } from '../../../reporter.js';
import { NO_CLASS } from './class-counts.js';
import type { WorstMapView } from './evaluator.js';

export interface MaskOverlayOptions {
  /** Longest side in pixels (default 240). */
  size?: number;
  /** JPEG quality (default 80). */
  quality?: number;
  /** Relative file names are resolved against this folder (default: the working directory). */
  baseDir?: string;
  reporter?: Reporter;
}

type Rgb = readonly [number, number, number];

const BOTH: Rgb = [0, 200, 0];
const LOST: Rgb = [230, 0, 0];
const GAINED: Rgb = [0, 90, 255];
const DIFFERENT: Rgb = [230, 0, 0];

/** Pascal VOC's colour map: the class index's bits interleaved into R, G, B from the high bit down. */
export function vocColour(index: number): Rgb {
  let r = 0;
  let g = 0;
  let b = 0;
  let c = index;
  for (let j = 0; j < 8; j++) {
    r |= (c & 1) << (7 - j);
    g |= ((c >> 1) & 1) << (7 - j);
    b |= ((c >> 2) & 1) << (7 - j);
    c >>= 3;
  }
  return [r, g, b];
}

/** The colour and opacity drawn over one pixel, or undefined to leave the photo as it is. */
function overlayColour(mode: WorstMapView['mode'], reference: number, variant: number): [Rgb, number] | undefined {
  if (reference === NO_CLASS || variant === NO_CLASS) return undefined;
  if (mode === 'binary') {
    if (reference === 1 && variant === 1) return [BOTH, 0.45];
    if (reference === 1) return [LOST, 0.75];
    if (variant === 1) return [GAINED, 0.75];
    return undefined;
  }
  if (reference !== variant) return [DIFFERENT, 0.75];
  const colour = vocColour(reference);
  return colour[0] === 0 && colour[1] === 0 && colour[2] === 0 ? undefined : [colour, 0.45];
}

/** For each thumbnail column (row), the view's column (row) under its centre; -1 outside the model's input. */
function viewIndex(thumb: number, original: number, scale: number, offset: number, inputSize: number, viewSize: number): Int32Array {
  const out = new Int32Array(thumb);
  for (let u = 0; u < thumb; u++) {
    const at = (((u + 0.5) * original) / thumb) * scale + offset;
    out[u] = at >= 0 && at < inputSize ? Math.min(viewSize - 1, Math.floor((at * viewSize) / inputSize)) : -1;
  }
  return out;
}

/** One overlay as raw RGB pixels (exported for tests). */
export async function renderMaskOverlay(file: string, view: WorstMapView, size = 240): Promise<{ width: number; height: number; rgb: Uint8Array }> {
  const { data, info } = await sharp(file, { failOn: 'none' })
    .rotate()
    .flatten({ background: '#ffffff' })
    .resize(size, size, { fit: 'inside', withoutEnlargement: true })
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  const { width, height, channels } = info;
  const g = view.geometry;
  const columns = viewIndex(width, g.width, g.scaleX, g.offsetX, g.inputWidth, view.width);
  const rows = viewIndex(height, g.height, g.scaleY, g.offsetY, g.inputHeight, view.height);
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * channels;
      const p = (y * width + x) * 3;
      rgb[p] = data[o]!;
      rgb[p + 1] = data[o + 1]!;
      rgb[p + 2] = data[o + 2]!;
      const row = rows[y]!;
      const column = columns[x]!;
      if (row < 0 || column < 0) continue;
      const at = row * view.width + column;
      const drawn = overlayColour(view.mode, view.reference[at]!, view.variant[at]!);
      if (drawn === undefined) continue;
      const [colour, alpha] = drawn;
      for (let k = 0; k < 3; k++) rgb[p + k] = Math.round(rgb[p + k]! * (1 - alpha) + colour[k]! * alpha);
    }
  }
  return { width, height, rgb };
}

/** file (as in the views) -> data:image/jpeg;base64,... ; an image that cannot be read is left out with a warning. */
export async function maskOverlayDataUris(views: readonly WorstMapView[], options: MaskOverlayOptions = {}): Promise<Map<string, string>> {
  const size = options.size ?? 240;
  const quality = options.quality ?? 80;
  const reporter = options.reporter ?? silentReporter;
  const out = new Map<string, string>();
  // One at a time: a handful of small images, and sharp already uses its own threads.
  for (const view of views) {
    if (out.has(view.file)) continue;
    const full = options.baseDir !== undefined ? path.resolve(options.baseDir, view.file) : view.file;
    try {
      const { width, height, rgb } = await renderMaskOverlay(full, view, size);
      const jpeg = await sharp(rgb, { raw: { width, height, channels: 3 } }).jpeg({ quality, mozjpeg: false }).toBuffer();
      out.set(view.file, `data:image/jpeg;base64,${jpeg.toString('base64')}`);
    } catch (err) {
      reporter.warn(`No mask overlay for ${view.file}: ${(err as Error).message}`);
    }
  }
  return out;
}
