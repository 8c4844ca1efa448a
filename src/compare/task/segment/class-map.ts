/**
 * Per-pixel class maps from a segmentation output, and their mapping onto the original image.
 *
 * - argmax: [N, C, H, W] scores ([N, H, W, C] with layout NHWC; probabilities or logits: the argmax is the same), C > 1: the class with the highest
 *   score, the first on ties, NaN never winning unless every score is NaN (then class 0), as `argmax` in
 *   src/compare/metrics.ts does for classifiers.
 * - binary: [N, 1, H, W] or [N, H, W] maps (a DB text detector's probability map): foreground where v >= threshold,
 *   background below, exactly the rule of `thresholdIou` in src/compare/metrics.ts; a non-finite value gives
 *   NO_CLASS (left out of the counts, as thresholdIou leaves it out).
 * - class ids: integer [N, H, W] or [N, 1, H, W] outputs (models exported with their own argmax) are the classes.
 */
import { UserError } from '../../../errors.js';
import type { Tensor } from '../../../tensor.js';
import { argmax, floatValues } from '../../metrics.js';
import type { ImageGeometry } from '../types.js';
import { MAX_CLASS, NO_CLASS } from './class-counts.js';

export type ClassMapMode = 'argmax' | 'binary' | 'ids';

export interface ClassMapLayout {
  mode: ClassMapMode;
  /** [N, H, W, C] (TensorFlow/Keras exports) instead of [N, C, H, W]. */
  channelsLast: boolean;
  /** Channels of the output (1 for binary and ids). */
  channels: number;
  height: number;
  width: number;
}

const INTEGER_DTYPES = new Set(['int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64']);

/** How to read an output of these dims and dtype, batch first; throws a UserError naming the output otherwise. */
export function classMapLayout(
  output: string,
  dims: readonly number[],
  dtype: Tensor['dtype'],
  mode: 'argmax' | 'binary' | undefined,
  order: 'NCHW' | 'NHWC' = 'NCHW',
): ClassMapLayout {
  const channelsLast = order === 'NHWC';
  const shown = `[${dims.join(', ')}]`;
  const integer = INTEGER_DTYPES.has(dtype);
  if (dtype === 'bool') throw new UserError(`The segmentation output '${output}' is a bool tensor ${shown}; expected scores [N, C, H, W], a map [N, 1, H, W] or class ids [N, H, W].`);
  let channels: number;
  let height: number;
  let width: number;
  if (dims.length === 4) {
    if (channelsLast) [, height, width, channels] = dims as [number, number, number, number];
    else [, channels, height, width] = dims as [number, number, number, number];
  }
  else if (dims.length === 3) {
    channels = 1;
    [, height, width] = dims as [number, number, number];
  } else {
    throw new UserError(`The segmentation output '${output}' has dims ${shown}; expected [N, C, H, W] scores, a [N, 1, H, W] map or [N, H, W] class ids.`, {
      hint: 'Pass the output that holds the per-pixel map, or another --task.',
    });
  }
  if (integer) {
    if (channels !== 1) throw new UserError(`The segmentation output '${output}' holds integers with ${channels} channels ${shown}; class ids must be [N, H, W] or [N, 1, H, W].`);
    if (mode === 'binary') throw new UserError(`The segmentation output '${output}' holds class ids (${dtype}); a binary threshold applies to a float map.`, { hint: 'Leave the mode out for class-id outputs.' });
    return { mode: 'ids', channelsLast, channels: 1, height, width };
  }
  const chosen = mode ?? (channels > 1 ? 'argmax' : 'binary');
  if (chosen === 'binary' && channels !== 1) {
    throw new UserError(`The segmentation output '${output}' has ${channels} channels ${shown}; a binary map has one.`, { hint: 'Use argmax mode for per-class scores.' });
  }
  if (chosen === 'argmax' && channels < 2) {
    throw new UserError(`The segmentation output '${output}' has one channel ${shown}; argmax needs at least two classes.`, { hint: 'Use binary mode (a threshold) for a one-channel map.' });
  }
  if (channels > MAX_CLASS + 1) throw new UserError(`The segmentation output '${output}' has ${channels} classes; at most ${MAX_CLASS + 1} are supported.`);
  return { mode: chosen, channelsLast, channels, height, width };
}

/**
 * The class map of image `index` of a batch tensor (Uint16, NO_CLASS where there is none). `values` are the tensor's
 * numbers (floatValues for floats); for ids, values outside 0..MAX_CLASS are a UserError naming the output.
 */
export function classMapOf(values: ArrayLike<number> | BigInt64Array | BigUint64Array, layout: ClassMapLayout, index: number, threshold: number, output: string): Uint16Array {
  const pixels = layout.height * layout.width;
  const map = new Uint16Array(pixels);
  const base = index * layout.channels * pixels;
  if (layout.mode === 'binary') {
    const v = values as ArrayLike<number>;
    for (let i = 0; i < pixels; i++) {
      const x = v[base + i]!;
      map[i] = Number.isFinite(x) ? (x >= threshold ? 1 : 0) : NO_CLASS;
    }
  } else if (layout.mode === 'argmax' && layout.channelsLast) {
    const v = values as ArrayLike<number>;
    for (let i = 0; i < pixels; i++) map[i] = argmax(v, base + i * layout.channels, layout.channels);
  } else if (layout.mode === 'argmax') {
    const v = values as ArrayLike<number>;
    const best = new Float64Array(pixels);
    for (let i = 0; i < pixels; i++) best[i] = v[base + i]!;
    for (let c = 1; c < layout.channels; c++) {
      const o = base + c * pixels;
      for (let i = 0; i < pixels; i++) {
        const x = v[o + i]!;
        const b = best[i]!;
        // `b !== b`: the best so far is NaN and x is not: a number beats NaN.
        if (x > b || (b !== b && x === x)) {
          best[i] = x;
          map[i] = c;
        }
      }
    }
  } else {
    for (let i = 0; i < pixels; i++) {
      const x = Number(values[base + i]!);
      if (!Number.isInteger(x) || x < 0 || x > MAX_CLASS) {
        throw new UserError(`The segmentation output '${output}' holds the class id ${x} at pixel ${i % layout.width},${Math.floor(i / layout.width)} of image ${index + 1} of the batch; class ids are 0 to ${MAX_CLASS}.`);
      }
      map[i] = x;
    }
  }
  return map;
}

/** The numbers of a tensor as an indexable array (floats decoded from float16; integers as they are). */
export function tensorValues(t: Tensor, what: string): ArrayLike<number> | BigInt64Array | BigUint64Array {
  if (INTEGER_DTYPES.has(t.dtype)) return t.data as ArrayLike<number> | BigInt64Array | BigUint64Array;
  return floatValues(t, what);
}

/**
 * For each column x (row y) of the original image, the column (row) of the output map that predicts it; -1 where the
 * original pixel is outside the model's input (the parts a center-crop cut away).
 *
 * Nearest sampling: the centre of original pixel x is at input coordinate (x + 0.5) * scale + offset (input =
 * original * scale + offset, ImageGeometry's convention, in continuous pixel coordinates), and the map cell whose area
 * contains it predicts it. A map smaller than the input (stride 4, 8) covers inputSize / mapSize input pixels a cell.
 */
export function originalToMapIndex(originalSize: number, scale: number, offset: number, inputSize: number, mapSize: number): Int32Array {
  const out = new Int32Array(originalSize);
  const perCell = mapSize / inputSize;
  for (let x = 0; x < originalSize; x++) {
    const at = (x + 0.5) * scale + offset;
    if (!(at >= 0 && at < inputSize)) {
      out[x] = -1;
      continue;
    }
    out[x] = Math.min(mapSize - 1, Math.floor(at * perCell));
  }
  return out;
}

export interface OriginalSampling {
  columns: Int32Array;
  rows: Int32Array;
}

export function originalSampling(g: ImageGeometry, mapWidth: number, mapHeight: number): OriginalSampling {
  return {
    columns: originalToMapIndex(g.width, g.scaleX, g.offsetX, g.inputWidth, mapWidth),
    rows: originalToMapIndex(g.height, g.scaleY, g.offsetY, g.inputHeight, mapHeight),
  };
}
