/**
 * `--task auto` for segmentation: decides from the outputs' shapes (and, when given, one batch of FP32 outputs)
 * whether the model is a segmenter, and how to read it. It only answers where the shape says so unambiguously.
 */
import type { Tensor } from '../../../tensor.js';
import { DEFAULT_DENSE_THRESHOLD, floatValues } from '../../metrics.js';
import type { SegmentationOptions } from './evaluator.js';

type OutputInfo = { name: string; dims: readonly (number | string)[] };

/** Smallest map side taken for a per-pixel map (smaller ones are pooled features or detection grids). */
const MIN_MAP_SIDE = 8;

function describeDims(dims: readonly (number | string)[]): string {
  return `[${dims.join(', ')}]`;
}

function isMapSide(d: number | string | undefined): boolean {
  return typeof d === 'string' || (typeof d === 'number' && (d < 0 || d >= MIN_MAP_SIDE));
}

const INTEGER = new Set(['int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64']);

export function recognizeSegmentation(outputs: readonly OutputInfo[], sample?: Readonly<Record<string, Tensor>>): { options?: SegmentationOptions; reason: string } {
  const candidates = outputs.filter((o) => {
    // [N, C, H, W], or [N, H, W, C] (channels last).
    if (o.dims.length === 4) return (isMapSide(o.dims[2]) && isMapSide(o.dims[3])) || (isMapSide(o.dims[1]) && isMapSide(o.dims[2]));
    // [N, H, W] class ids (a model exported with its own argmax): only recognised from a sample's integer dtype.
    if (o.dims.length === 3) return sample?.[o.name] !== undefined && INTEGER.has(sample[o.name]!.dtype) && isMapSide(o.dims[1]) && isMapSide(o.dims[2]);
    return false;
  });
  if (candidates.length === 0) {
    return { reason: `no output is a per-pixel map ([N, C, H, W] with H, W >= ${MIN_MAP_SIDE}): ${outputs.map((o) => `${o.name} ${describeDims(o.dims)}`).join(', ')}` };
  }
  if (candidates.length > 1) {
    return { reason: `several outputs are per-pixel maps (${candidates.map((o) => `${o.name} ${describeDims(o.dims)}`).join(', ')}); name the one to judge` };
  }
  const o = candidates[0]!;
  const shown = `${o.name} ${describeDims(o.dims)}`;
  const t = sample?.[o.name];
  if (t !== undefined && INTEGER.has(t.dtype)) {
    if (o.dims.length === 4 && o.dims[1] !== 1 && o.dims[3] !== 1) return { reason: `${shown} holds integers over ${o.dims[1]} channels: not a class-id map` };
    return { options: { output: o.name }, reason: `${shown} holds integer class ids per pixel (${t.dtype})` };
  }
  // Channels last only when dims[3] is smaller than both other axes (symbolic ones count as map sides, larger than
  // any class count): [1, 512, 512, 21] is NHWC; [1, 19, 128, 256] and a detection head's [1, 255, 80, 80] are NCHW.
  const first = o.dims[1];
  const last = o.dims[3];
  const smallerThan = (d: number | string | undefined): boolean => typeof d !== 'number' || d < 0 || (last as number) < d;
  const channelsLast = o.dims.length === 4 && typeof last === 'number' && last > 0 && smallerThan(first) && smallerThan(o.dims[2]);
  const channels = o.dims.length === 3 ? 1 : channelsLast ? last : first;
  const layout = channelsLast ? { layout: 'NHWC' as const } : {};
  const order = channelsLast ? ' [N, H, W, C]' : '';
  if (typeof channels !== 'number' || channels < 1) return { reason: `${shown}: the channel count is not fixed, so it cannot say whether this is a class map or a binary map` };
  if (channels > 1) return { options: { output: o.name, mode: 'argmax', ...layout }, reason: `${shown}: ${channels} class scores per pixel${order}, judged by argmax (mIoU)` };
  if (t === undefined) {
    return { options: { output: o.name, mode: 'binary', threshold: DEFAULT_DENSE_THRESHOLD, ...layout }, reason: `${shown}: one channel per pixel, a binary map thresholded at ${DEFAULT_DENSE_THRESHOLD} (IoU of the foreground)` };
  }
  const values = floatValues(t, `output ${o.name}`);
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo < 0 || hi > 1) {
    return { reason: `${shown}: one channel per pixel, but its values span ${lo.toPrecision(4)} to ${hi.toPrecision(4)}, not probabilities in [0, 1]; give the binary threshold explicitly` };
  }
  return {
    options: { output: o.name, mode: 'binary', threshold: DEFAULT_DENSE_THRESHOLD, ...layout },
    reason: `${shown}: one channel of probabilities (0 to 1) per pixel, a binary map thresholded at ${DEFAULT_DENSE_THRESHOLD} (IoU of the foreground)`,
  };
}
