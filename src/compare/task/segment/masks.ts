/**
 * Label masks (`--labels masks:DIR`): one PNG per image, the original image's size, whose pixel value is the class
 * index (Pascal VOC's SegmentationClass palette PNGs, Cityscapes' *_labelIds grayscale PNGs, ADE20K-style grayscale
 * PNGs). The ignore value (255 by default, as VOC's object borders and Cityscapes' trainId "ignore") is skipped.
 *
 * sharp expands palette PNGs to RGB, so for those the palette (the PLTE chunk, read here from the file's bytes) maps
 * each colour back to its index. Grayscale PNGs give the value directly (8 bits, or 16 bits read as grey16); a grayscale saved as RGB
 * (R = G = B) is read as its gray value.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import fg from 'fast-glob';
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { UserError } from '../../../errors.js';
import { READ_LIMITS, readUserFile } from '../../../util/fs.js';
import { ClassCounts, NO_CLASS } from './class-counts.js';
import type { OriginalSampling } from './class-map.js';

export interface LabelMask {
  file: string;
  width: number;
  height: number;
  /** Class index per pixel, row-major. */
  data: Uint16Array;
}

const PNG_SIGNATURE = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);

/** The PLTE entries of a PNG as 0xRRGGBB numbers, or undefined when it has none. Chunks are read up to the first IDAT. */
export function pngPalette(bytes: Uint8Array, file: string): number[] | undefined {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 8 || !buf.subarray(0, 8).equals(PNG_SIGNATURE)) throw new UserError(`The mask ${file} is not a PNG file.`, { hint: 'Masks are PNG images whose pixel values are class indices.' });
  let at = 8;
  while (at + 8 <= buf.length) {
    const length = buf.readUInt32BE(at);
    const type = buf.toString('latin1', at + 4, at + 8);
    const start = at + 8;
    if (start + length > buf.length) break;
    if (type === 'PLTE') {
      const colours: number[] = [];
      for (let i = start; i + 3 <= start + length; i += 3) colours.push((buf[i]! << 16) | (buf[i + 1]! << 8) | buf[i + 2]!);
      return colours;
    }
    if (type === 'IDAT' || type === 'IEND') return undefined;
    at = start + length + 4;
  }
  return undefined;
}

/** Reads one mask; a UserError names the file for anything that is not a class-index PNG. */
export async function readMask(file: string): Promise<LabelMask> {
  const bytes = await readUserFile(file, 'The mask', READ_LIMITS.mask);
  const palette = pngPalette(bytes, file);
  let decoded: { data: Buffer; info: OutputInfo };
  let meta: Metadata;
  let sixteen: boolean;
  try {
    const image = sharp(bytes, { failOn: 'error' });
    meta = await image.metadata();
    // 16-bit grayscale (class ids above 255): sharp would reduce it to 8-bit sRGB unless asked to keep grey16.
    sixteen = meta.depth === 'ushort' && !meta.isPalette;
    if (sixteen && (meta.channels ?? 1) > 2) {
      throw new UserError(`The mask ${file} is a 16-bit colour image; expected a palette or grayscale PNG whose values are class indices.`);
    }
    decoded = await (sixteen ? image.toColourspace('grey16').raw({ depth: 'ushort' }) : image.raw()).toBuffer({ resolveWithObject: true });
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`Cannot read the mask ${file}: ${(err as Error).message}.`, { cause: err });
  }
  const { width, height, channels } = decoded.info;
  const pixels = width * height;
  const data = new Uint16Array(pixels);
  const raw = sixteen ? new Uint16Array(decoded.data.buffer, decoded.data.byteOffset, decoded.data.byteLength / 2) : decoded.data;
  if (meta.isPalette && palette !== undefined) {
    if (channels < 3) throw new UserError(`Cannot read the mask ${file}: its palette decoded to ${channels} channel(s).`);
    // Colour -> index; a colour listed twice cannot be told apart (-1), and is an error only where a pixel uses it.
    const index = new Map<number, number>();
    palette.forEach((colour, i) => index.set(colour, index.has(colour) ? -1 : i));
    for (let i = 0; i < pixels; i++) {
      const o = i * channels;
      const colour = (raw[o]! << 16) | (raw[o + 1]! << 8) | raw[o + 2]!;
      const k = index.get(colour);
      if (k === undefined || k < 0) {
        const hex = colour.toString(16).padStart(6, '0');
        throw new UserError(
          k === undefined
            ? `The mask ${file} has the colour #${hex} at pixel ${i % width},${Math.floor(i / width)}, which is not in its palette.`
            : `The mask ${file} uses the colour #${hex}, which its palette lists more than once: the class index is ambiguous.`,
          { hint: 'Save masks as palette PNGs with distinct colours, or as grayscale PNGs whose values are the class indices.' },
        );
      }
      data[i] = k;
    }
  } else if (channels <= 2) {
    for (let i = 0; i < pixels; i++) data[i] = raw[i * channels]!;
  } else {
    for (let i = 0; i < pixels; i++) {
      const o = i * channels;
      const v = raw[o]!;
      if (raw[o + 1] !== v || raw[o + 2] !== v) {
        throw new UserError(`The mask ${file} is a colour image (pixel ${i % width},${Math.floor(i / width)} is not gray); expected a palette or grayscale PNG whose values are class indices.`, {
          hint: 'Convert colour-coded masks to class indices (e.g. Cityscapes *_labelIds.png or *_labelTrainIds.png, not *_color.png).',
        });
      }
      data[i] = v;
    }
  }
  return { file, width, height, data };
}

export interface MaskMatch {
  /** Dataset file (path.resolve'd) -> mask file. */
  labels: Map<string, string>;
  /** Dataset images without a mask (sorted). */
  unmatchedImages: string[];
  /** Masks under the folder that belong to no dataset image (sorted): labels of images missing from --data. */
  missing: string[];
}

export interface MaskNaming {
  /**
   * The end of an image's name replaced by maskSuffix, extension included (mmsegmentation's img_suffix, e.g.
   * Cityscapes' "_leftImg8bit.png"); default: the image's extension, whatever it is. Images whose name does not end
   * with it have no mask.
   */
  imageSuffix?: string;
  /** The end of a mask's name (mmseg's seg_map_suffix, e.g. "_gtFine_labelTrainIds.png"); default ".png". */
  maskSuffix?: string;
}

function endsWithIgnoreCase(s: string, suffix: string): boolean {
  return s.length >= suffix.length && s.slice(s.length - suffix.length).toLowerCase() === suffix.toLowerCase();
}

/** An image's key: its path relative to the data folder (native separators) without the image suffix. */
function imageKey(rel: string, imageSuffix: string | undefined): string | undefined {
  if (imageSuffix === undefined) {
    const base = path.basename(rel);
    const dot = base.lastIndexOf('.');
    return dot > 0 ? rel.slice(0, rel.length - (base.length - dot)) : rel;
  }
  return endsWithIgnoreCase(rel, imageSuffix) ? rel.slice(0, rel.length - imageSuffix.length) : undefined;
}

/**
 * Matches masks to dataset images. The mask of `<dataRoot>/<sub>/<name><imageSuffix>` is
 * `<dir>/<sub>/<name><maskSuffix>` (the folder tree mirrored, as VOC's and Cityscapes' trees are), or else
 * `<dir>/<name><maskSuffix>` (one flat folder) when no other dataset image has that name. Defaults: any image
 * extension, and ".png".
 */
export async function findMaskLabels(dir: string, datasetFiles: readonly string[], dataRoot: string, naming: MaskNaming = {}): Promise<MaskMatch> {
  const maskSuffix = naming.maskSuffix ?? '.png';
  const { imageSuffix } = naming;
  if (maskSuffix === '' || imageSuffix === '') throw new UserError('The image and mask name suffixes cannot be empty.');
  const root = path.resolve(dir);
  const info = await stat(root).catch(() => undefined);
  if (info === undefined || !info.isDirectory()) {
    throw new UserError(`The mask folder ${dir} ${info === undefined ? 'does not exist' : 'is not a folder'}.`, { hint: 'Pass --labels masks:DIR with a folder of PNG masks, one per image.' });
  }
  let found: string[];
  try {
    found = await fg(`**/*${fg.escapePath(maskSuffix)}`, { cwd: root, caseSensitiveMatch: false, onlyFiles: true, dot: false, suppressErrors: false });
  } catch (err) {
    throw new UserError(`Cannot list the mask folder ${dir}: ${(err as Error).message}.`, { hint: 'Pass --labels masks:DIR with an existing folder of PNG masks.', cause: err });
  }
  if (found.length === 0) {
    throw new UserError(`The mask folder ${dir} has no ${maskSuffix === '.png' ? 'PNG files' : `files ending in ${maskSuffix}`}.`, {
      hint: 'Pass --labels masks:DIR with one PNG mask per image (class index per pixel).',
    });
  }
  // Mask key (relative path without the suffix, native separators) -> file; and flat masks by name.
  const masksByKey = new Map<string, string>();
  for (const rel of found.sort()) {
    const native = rel.split('/').join(path.sep);
    masksByKey.set(native.slice(0, native.length - maskSuffix.length), path.join(root, native));
  }
  const keyed = datasetFiles.map((f) => {
    const image = path.resolve(f);
    const rel = path.relative(path.resolve(dataRoot), image);
    const key = rel.startsWith('..') || path.isAbsolute(rel) ? imageKey(path.basename(image), imageSuffix) : imageKey(rel, imageSuffix);
    return { image, key, name: key === undefined ? undefined : path.basename(key) };
  });
  const imagesByName = new Map<string, string[]>();
  for (const k of keyed) if (k.name !== undefined) imagesByName.set(k.name, [...(imagesByName.get(k.name) ?? []), k.image]);

  const labels = new Map<string, string>();
  const used = new Set<string>();
  const unmatchedImages: string[] = [];
  for (const { image, key, name } of keyed) {
    let mask = key === undefined ? undefined : masksByKey.get(key);
    if (mask === undefined && name !== undefined) {
      const flat = masksByKey.get(name);
      if (flat !== undefined) {
        const twins = imagesByName.get(name)!;
        if (twins.length > 1) {
          throw new UserError(`The mask ${flat} could belong to ${twins.length} images named ${name} (${twins.slice(0, 3).join(', ')}).`, {
            hint: `Mirror the image folders under ${dir} so that each mask's path names its image.`,
          });
        }
        mask = flat;
      }
    }
    if (mask === undefined) unmatchedImages.push(image);
    else {
      labels.set(image, mask);
      used.add(mask);
    }
  }
  if (labels.size === 0) {
    const first = keyed.find((k) => k.key !== undefined);
    const example = first !== undefined ? ` (for ${first.image}: ${path.join(dir, first.key!)}${maskSuffix})` : '';
    throw new UserError(`None of the ${found.length} masks in ${dir} matches an image of the data.`, {
      hint: `A mask has its image's path relative to the data folder, with its suffix replaced by ${maskSuffix}${example}; other names need the image and mask suffixes (as mmsegmentation's img_suffix and seg_map_suffix).`,
    });
  }
  const missing = [...masksByKey.values()].filter((m) => !used.has(m)).sort();
  return { labels, unmatchedImages: unmatchedImages.sort(), missing };
}

export interface MaskCountResult {
  /** Mask pixels equal to the ignore index. */
  ignored: number;
  /** Mask pixels outside the model's input (cut away by a center-crop). */
  outside: number;
}

/**
 * Counts a prediction (class map of mapWidth columns, sampled onto the original image by `sampling`) against a mask.
 * A prediction of NO_CLASS counts against the mask's class (a pixel of its union, none of its intersection).
 * Mask values other than the ignore index must be below `classes` (undefined: any), else a UserError names the mask.
 */
export function addMaskCounts(
  counts: ClassCounts,
  mask: LabelMask,
  prediction: Uint16Array,
  mapWidth: number,
  sampling: OriginalSampling,
  ignoreIndex: number,
  classes: number | undefined,
): MaskCountResult {
  const { columns, rows } = sampling;
  let ignored = 0;
  let outside = 0;
  let total = 0;
  let same = 0;
  const { width, height, data } = mask;
  for (let y = 0; y < height; y++) {
    const row = rows[y]!;
    for (let x = 0; x < width; x++) {
      const label = data[y * width + x]!;
      if (label === ignoreIndex) {
        ignored++;
        continue;
      }
      const column = columns[x]!;
      if (row < 0 || column < 0) {
        outside++;
        continue;
      }
      if (classes !== undefined && label >= classes) {
        throw new UserError(`The mask ${mask.file} has the class ${label} at pixel ${x},${y}, but the model predicts ${classes} classes (0 to ${classes - 1}).`, {
          hint: `Check that the masks are class indices for this model, and the ignore index (now ${ignoreIndex}).`,
        });
      }
      counts.ensure(label + 1);
      const p = prediction[row * mapWidth + column]!;
      total++;
      counts.reference[label]!++;
      if (p === NO_CLASS) continue;
      counts.ensure(p + 1);
      counts.prediction[p]!++;
      if (p === label) {
        counts.intersection[label]!++;
        same++;
      }
    }
  }
  counts.total += total;
  counts.same += same;
  return { ignored, outside };
}
