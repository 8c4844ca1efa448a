/**
 * Model outputs to detections in the original image's pixels, for every layout of DetectionSpec.
 *
 * Per image: every anchor (a row of the outputs) gives one candidate, its best class (ultralytics'
 * non_max_suppression with multi_label=False, for every layout; YOLOv5: the best of objectness x class
 * probability, YOLOv8 and separate scores: the best score; equal scores: the lower column); candidates below the
 * score floor are dropped before anything is sorted; class-aware NMS (nms.ts) keeps at most maxDetections, highest
 * first. Layouts with NMS in the graph are taken as they are: rows at or above the floor, sorted by score (stable),
 * at most maxDetections. NMS runs in model-input pixels, as in ultralytics, before the boxes are clipped.
 *
 * Then each box is mapped back through the preprocessing geometry (x_orig = (x_in - offsetX) / scaleX, same for y),
 * clipped to the image ([0, width] x [0, height]); a box left without area is dropped (it covers no pixel of the
 * photo, and COCO's IoU of a box without area is 0 with anything).
 */
import { UserError } from '../../../errors.js';
import type { Tensor } from '../../../tensor.js';
import type { BatchOutputs, DetectionBox, ImageGeometry } from '../types.js';
import { nonMaxSuppressionIndices, orderByScore } from './nms.js';
import { DETECTION_DEFAULTS, type BoxFormat, type DetectionOptions, type DetectionSpec } from './types.js';

/** The output names a spec reads. */
export function specOutputs(spec: DetectionSpec): string[] {
  switch (spec.layout) {
    case 'yolov5':
    case 'yolov8':
    case 'nms':
      return [spec.output];
    case 'boxes-scores':
      return spec.boxes === spec.scores ? [spec.boxes] : [spec.boxes, spec.scores];
    case 'efficient-nms':
      return [spec.numDets, spec.boxes, spec.scores, spec.classes];
  }
}

/** float16 bit pattern to number. */
function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** A tensor's values as numbers, copying only where the element type is not already a number array. */
export function tensorValues(t: Tensor): ArrayLike<number> {
  switch (t.dtype) {
    case 'float16':
      return Float64Array.from(t.data as Uint16Array, halfToNumber);
    case 'int64':
    case 'uint64':
      return Float64Array.from(t.data as BigInt64Array, (v) => Number(v));
    default:
      return t.data as ArrayLike<number>;
  }
}

function shapeError(spec: DetectionSpec, name: string, t: Tensor, expected: string): UserError {
  return new UserError(`Detection output '${name}' has shape [${t.dims.join(', ')}]; the ${spec.layout} layout expects ${expected}.`, {
    hint:
      spec.layout === 'boxes-scores'
        ? 'Check --boxes NAME:FORMAT[:norm] and --scores NAME against the model outputs.'
        : 'Check --det-layout (and --det-output) against the model outputs, or name them with --boxes NAME:FORMAT[:norm] --scores NAME.',
  });
}

function output(outputs: BatchOutputs, spec: DetectionSpec, name: string, batch: number): Tensor {
  const t = outputs[name];
  if (!t) throw new Error(`decodeDetections: output '${name}' was not fetched (outputs: ${Object.keys(outputs).join(', ')})`);
  if (t.dims[0] !== batch) throw shapeError(spec, name, t, `the batch (${batch}) first`);
  return t;
}

/**
 * Candidates of one image: parallel columns, in anchor order, the first `count` entries used. Allocated once for
 * every row of the image (typed arrays, no growth): pushing onto plain arrays was a visible part of decoding.
 */
class Candidates {
  count = 0;
  readonly x1: Float64Array;
  readonly y1: Float64Array;
  readonly x2: Float64Array;
  readonly y2: Float64Array;
  readonly score: Float64Array;
  readonly column: Float64Array;
  constructor(capacity: number) {
    this.x1 = new Float64Array(capacity);
    this.y1 = new Float64Array(capacity);
    this.x2 = new Float64Array(capacity);
    this.y2 = new Float64Array(capacity);
    this.score = new Float64Array(capacity);
    this.column = new Float64Array(capacity);
  }
  push(a: number, b: number, c: number, d: number, format: BoxFormat, sx: number, sy: number, score: number, column: number): void {
    // Plain assignments, no array destructuring: this runs once per anchor.
    let x1 = a;
    let y1 = b;
    let x2 = c;
    let y2 = d;
    if (format === 'yxyx') {
      x1 = b;
      y1 = a;
      x2 = d;
      y2 = c;
    } else if (format === 'xywh') {
      x2 = a + c;
      y2 = b + d;
    } else if (format === 'cxcywh') {
      x1 = a - c / 2;
      y1 = b - d / 2;
      x2 = a + c / 2;
      y2 = b + d / 2;
    }
    if (!(Number.isFinite(x1) && Number.isFinite(y1) && Number.isFinite(x2) && Number.isFinite(y2))) return;
    const i = this.count++;
    this.x1[i] = x1 * sx;
    this.y1[i] = y1 * sy;
    this.x2[i] = x2 * sx;
    this.y2[i] = y2 * sy;
    this.score[i] = score;
    this.column[i] = column;
  }
}

/**
 * The best column of a row: values[start + k * stride] for k in [0, count); the first on ties. Its value is left in
 * rowMax. A small function of its own, so that V8 optimises this loop (the cost of decoding) on its own.
 */
let rowMax = -Infinity;
function bestColumn(values: ArrayLike<number>, start: number, stride: number, count: number): number {
  let best = -1;
  let max = -Infinity;
  for (let k = 0, at = start; k < count; k++, at += stride) {
    const v = values[at]!;
    if (v > max) {
      max = v;
      best = k;
    }
  }
  rowMax = max;
  return best;
}

/** YOLOv5's best objectness x class probability of a row (classes from start + 5). */
function bestYolov5Column(values: ArrayLike<number>, start: number, classes: number): number {
  const obj = values[start + 4]!;
  let best = -1;
  let max = -Infinity;
  for (let k = 0; k < classes; k++) {
    const v = obj * values[start + 5 + k]!;
    if (v > max) {
      max = v;
      best = k;
    }
  }
  rowMax = max;
  return best;
}

function candidatesOf(outputs: BatchOutputs, images: readonly ImageGeometry[], options: DetectionOptions): Candidates[] {
  const spec = options.spec;
  const N = images.length;
  const floor = options.scoreFloor ?? DETECTION_DEFAULTS.scoreFloor;
  // Created by each layout once it knows the rows per image.
  let perImage: Candidates[] = [];
  const allocate = (rows: number): void => {
    perImage = images.map(() => new Candidates(rows));
  };
  const unit = (i: number, normalized: boolean | undefined): [number, number] => (normalized ? [images[i]!.inputWidth, images[i]!.inputHeight] : [1, 1]);
  switch (spec.layout) {
    case 'yolov5': {
      const t = output(outputs, spec, spec.output, N);
      if (t.dims.length !== 3 || t.dims[2]! < 6) throw shapeError(spec, spec.output, t, '[N, anchors, 5 + classes]');
      const [, A, K] = t.dims as [number, number, number];
      const v = tensorValues(t);
      allocate(A);
      for (let n = 0; n < N; n++) {
        for (let a = 0; a < A; a++) {
          const row = (n * A + a) * K;
          const best = bestYolov5Column(v, row, K - 5);
          if (rowMax >= floor) perImage[n]!.push(v[row]!, v[row + 1]!, v[row + 2]!, v[row + 3]!, 'cxcywh', 1, 1, rowMax, best);
        }
      }
      break;
    }
    case 'yolov8': {
      const t = output(outputs, spec, spec.output, N);
      if (t.dims.length !== 3 || t.dims[spec.transposed ? 2 : 1]! < 5) {
        throw shapeError(spec, spec.output, t, spec.transposed ? '[N, anchors, 4 + classes] (transposed)' : '[N, 4 + classes, anchors]');
      }
      const v = tensorValues(t);
      const A = spec.transposed ? t.dims[1]! : t.dims[2]!;
      const K = spec.transposed ? t.dims[2]! : t.dims[1]!;
      allocate(A);
      // Element (anchor a, channel k) of image n is at n * A * K + a * anchorStride + k * channelStride.
      const anchorStride = spec.transposed ? K : 1;
      const channelStride = spec.transposed ? 1 : A;
      for (let n = 0; n < N; n++) {
        const base = n * A * K;
        for (let a = 0; a < A; a++) {
          const at = base + a * anchorStride;
          const best = bestColumn(v, at + 4 * channelStride, channelStride, K - 4);
          if (rowMax >= floor) {
            perImage[n]!.push(v[at]!, v[at + channelStride]!, v[at + 2 * channelStride]!, v[at + 3 * channelStride]!, 'cxcywh', 1, 1, rowMax, best);
          }
        }
      }
      break;
    }
    case 'boxes-scores': {
      const bt = output(outputs, spec, spec.boxes, N);
      const st = output(outputs, spec, spec.scores, N);
      const boxesOk = (bt.dims.length === 3 && bt.dims[2] === 4) || (bt.dims.length === 4 && bt.dims[2] === 1 && bt.dims[3] === 4);
      if (!boxesOk) throw shapeError(spec, spec.boxes, bt, '[N, anchors, 4] or [N, anchors, 1, 4] boxes');
      const A = bt.dims[1]!;
      if (st.dims.length !== 3 || st.dims[1] !== A) throw shapeError(spec, spec.scores, st, `[N, ${A}, classes] scores (one row per box of '${spec.boxes}')`);
      const C = st.dims[2]!;
      const b = tensorValues(bt);
      const s = tensorValues(st);
      allocate(A);
      for (let n = 0; n < N; n++) {
        const [sx, sy] = unit(n, spec.normalized);
        for (let a = 0; a < A; a++) {
          const best = bestColumn(s, (n * A + a) * C, 1, C);
          if (rowMax < floor) continue;
          const k = (n * A + a) * 4;
          perImage[n]!.push(b[k]!, b[k + 1]!, b[k + 2]!, b[k + 3]!, spec.format, sx, sy, rowMax, best);
        }
      }
      break;
    }
    case 'nms': {
      const t = output(outputs, spec, spec.output, N);
      if (t.dims.length !== 3 || t.dims[2] !== 6) throw shapeError(spec, spec.output, t, '[N, detections, 6] rows of x1, y1, x2, y2, score, class');
      const K = t.dims[1]!;
      const v = tensorValues(t);
      allocate(K);
      for (let n = 0; n < N; n++) {
        const [sx, sy] = unit(n, spec.normalized);
        for (let k = 0; k < K; k++) {
          const row = (n * K + k) * 6;
          const score = v[row + 4]!;
          if (score >= floor) perImage[n]!.push(v[row]!, v[row + 1]!, v[row + 2]!, v[row + 3]!, 'xyxy', sx, sy, score, Math.round(v[row + 5]!));
        }
      }
      break;
    }
    case 'efficient-nms': {
      const nt = output(outputs, spec, spec.numDets, N);
      const bt = output(outputs, spec, spec.boxes, N);
      const st = output(outputs, spec, spec.scores, N);
      const ct = output(outputs, spec, spec.classes, N);
      if (elementsPerImage(nt) !== 1) throw shapeError(spec, spec.numDets, nt, '[N, 1] detection counts');
      if (bt.dims.length !== 3 || bt.dims[2] !== 4) throw shapeError(spec, spec.boxes, bt, '[N, K, 4] boxes');
      const K = bt.dims[1]!;
      if (elementsPerImage(st) !== K) throw shapeError(spec, spec.scores, st, `[N, ${K}] scores`);
      if (elementsPerImage(ct) !== K) throw shapeError(spec, spec.classes, ct, `[N, ${K}] classes`);
      const format = spec.format ?? 'xyxy';
      const count = tensorValues(nt);
      const b = tensorValues(bt);
      const s = tensorValues(st);
      const c = tensorValues(ct);
      allocate(K);
      for (let n = 0; n < N; n++) {
        const [sx, sy] = unit(n, spec.normalized);
        const valid = Math.max(0, Math.min(K, Math.round(count[n]!)));
        for (let k = 0; k < valid; k++) {
          const score = s[n * K + k]!;
          const at = (n * K + k) * 4;
          if (score >= floor) perImage[n]!.push(b[at]!, b[at + 1]!, b[at + 2]!, b[at + 3]!, format, sx, sy, score, Math.round(c[n * K + k]!));
        }
      }
      break;
    }
  }
  return perImage;
}

function elementsPerImage(t: Tensor): number {
  return t.dims.slice(1).reduce((a, b) => a * b, 1);
}

/** Detections per image in model-input pixels, after NMS (or the graph's), highest score first; not clipped. */
export function decodeInputDetections(outputs: BatchOutputs, images: readonly ImageGeometry[], options: DetectionOptions): DetectionBox[][] {
  const classOffset = options.classOffset ?? DETECTION_DEFAULTS.classOffset;
  const maxDetections = options.maxDetections ?? DETECTION_DEFAULTS.maxDetections;
  const nmsIou = options.nmsIou ?? DETECTION_DEFAULTS.nmsIou;
  const graphNms = options.spec.layout === 'nms' || options.spec.layout === 'efficient-nms';
  return candidatesOf(outputs, images, options).map((c) => {
    const n = c.count;
    const kept = graphNms
      ? Array.from(orderByScore(c.score, n).subarray(0, Math.min(n, maxDetections)))
      : nonMaxSuppressionIndices({ x1: c.x1, y1: c.y1, x2: c.x2, y2: c.y2, score: c.score, classId: c.column }, n, nmsIou, maxDetections);
    return kept.map((i) => ({ x1: c.x1[i]!, y1: c.y1[i]!, x2: c.x2[i]!, y2: c.y2[i]!, score: c.score[i]!, classId: c.column[i]! + classOffset }));
  });
}

/** Maps boxes from model-input pixels to the original image's, clipped to it; boxes left without area are dropped. */
export function toOriginalPixels(boxes: readonly DetectionBox[], g: ImageGeometry): DetectionBox[] {
  const out: DetectionBox[] = [];
  const clip = (v: number, hi: number): number => (v < 0 ? 0 : v > hi ? hi : v);
  for (const b of boxes) {
    const x1 = clip((b.x1 - g.offsetX) / g.scaleX, g.width);
    const x2 = clip((b.x2 - g.offsetX) / g.scaleX, g.width);
    const y1 = clip((b.y1 - g.offsetY) / g.scaleY, g.height);
    const y2 = clip((b.y2 - g.offsetY) / g.scaleY, g.height);
    if (x2 > x1 && y2 > y1) out.push({ x1, y1, x2, y2, score: b.score, classId: b.classId });
  }
  return out;
}

/** One batch's detections per image in original pixels, highest score first. */
export function decodeDetections(outputs: BatchOutputs, images: readonly ImageGeometry[], options: DetectionOptions): DetectionBox[][] {
  return decodeInputDetections(outputs, images, options).map((boxes, i) => toOriginalPixels(boxes, images[i]!));
}
