/**
 * Box overlap and class-aware non-maximum suppression.
 *
 * IoU is computed on the boxes as they are, without COCO's old "+1" pixel convention (pycocotools' maskApi.c
 * bbIou and torchvision.ops.box_iou both use x2 - x1). NMS follows torchvision.ops.nms as ultralytics calls it
 * (boxes offset per class, so classes never suppress each other): a box is suppressed when its IoU with a kept,
 * higher-scored box of the same class is strictly greater than the threshold. Unlike torchvision's unstable sort,
 * ties in score keep their input order, so the result never depends on the sort implementation.
 */
import type { DetectionBox } from '../types.js';

export interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

/** Intersection over union of two boxes; 0 when they do not overlap or either has no area. */
export function boxIou(a: Box, b: Box): number {
  const iw = Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1);
  if (!(iw > 0)) return 0;
  const ih = Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1);
  if (!(ih > 0)) return 0;
  const inter = iw * ih;
  return inter / ((a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter);
}

/**
 * Indices 0..n-1 ordered by score, highest first; equal scores keep index order (a stable sort: -0 equals 0, and a
 * NaN score, which decoding never produces, goes last). A bottom-up merge sort with the comparison inlined: sorting
 * with a comparator callback was most of the cost of NMS and of COCO mAP.
 */
export function orderByScore(scores: ArrayLike<number>, n = scores.length): Uint32Array {
  let from = new Uint32Array(n);
  let to = new Uint32Array(n);
  // NaN scores last, in index order: the rest is sorted on numbers that all compare.
  let m = 0;
  let tail = n;
  for (let i = n - 1; i >= 0; i--) if (Number.isNaN(scores[i]!)) from[--tail] = i;
  for (let i = 0; i < n; i++) if (!Number.isNaN(scores[i]!)) from[m++] = i;
  to.set(from.subarray(tail), tail); // the passes swap buffers: both hold the tail
  for (let width = 1; width < m; width *= 2) {
    for (let lo = 0; lo < m; lo += 2 * width) {
      const mid = Math.min(lo + width, m);
      const hi = Math.min(lo + 2 * width, m);
      let a = lo;
      let b = mid;
      let k = lo;
      while (a < mid && b < hi) {
        // The right run's head goes first only when strictly higher: equal scores keep index order.
        if (scores[from[b]!]! > scores[from[a]!]!) to[k++] = from[b++]!;
        else to[k++] = from[a++]!;
      }
      while (a < mid) to[k++] = from[a++]!;
      while (b < hi) to[k++] = from[b++]!;
    }
    const swap = from;
    from = to;
    to = swap;
  }
  return from;
}

/** Boxes as parallel arrays (corners, score, class), the form decoding produces them in. */
export interface BoxColumns {
  x1: ArrayLike<number>;
  y1: ArrayLike<number>;
  x2: ArrayLike<number>;
  y2: ArrayLike<number>;
  score: ArrayLike<number>;
  classId: ArrayLike<number>;
}

/**
 * Class-aware NMS on columns: the indices kept, highest score first. Walking the boxes once in global score order
 * and comparing each only with kept boxes of its class gives exactly per-class greedy NMS followed by the top
 * maxDetections by score, and can stop as soon as maxDetections are kept.
 */
export function nonMaxSuppressionIndices(boxes: BoxColumns, count: number, iou: number, maxDetections: number): number[] {
  const { x1, y1, x2, y2, classId } = boxes;
  const order = orderByScore(boxes.score, count);
  const area = new Float64Array(count);
  for (let i = 0; i < count; i++) area[i] = (x2[i]! - x1[i]!) * (y2[i]! - y1[i]!);
  const keptByClass = new Map<number, number[]>();
  const kept: number[] = [];
  for (let k = 0; k < count && kept.length < maxDetections; k++) {
    const i = order[k]!;
    let same = keptByClass.get(classId[i]!);
    if (!same) keptByClass.set(classId[i]!, (same = []));
    let suppressed = false;
    for (let s = 0; s < same.length; s++) {
      // boxIou inlined, on precomputed areas: this loop is the cost of decoding.
      const j = same[s]!;
      const iw = Math.min(x2[i]!, x2[j]!) - Math.max(x1[i]!, x1[j]!);
      if (!(iw > 0)) continue;
      const ih = Math.min(y2[i]!, y2[j]!) - Math.max(y1[i]!, y1[j]!);
      if (!(ih > 0)) continue;
      const inter = iw * ih;
      if (inter / (area[i]! + area[j]! - inter) > iou) {
        suppressed = true;
        break;
      }
    }
    if (suppressed) continue;
    same.push(i);
    kept.push(i);
  }
  return kept;
}

/** Class-aware NMS (see nonMaxSuppressionIndices): at most maxDetections boxes, highest score first. */
export function nonMaxSuppression(boxes: DetectionBox[], iou: number, maxDetections: number): DetectionBox[] {
  const column = (key: keyof DetectionBox): Float64Array => Float64Array.from(boxes, (b) => b[key]);
  const columns: BoxColumns = { x1: column('x1'), y1: column('y1'), x2: column('x2'), y2: column('y2'), score: column('score'), classId: column('classId') };
  return nonMaxSuppressionIndices(columns, boxes.length, iou, maxDetections).map((i) => boxes[i]!);
}
