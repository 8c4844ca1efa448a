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

/**
 * Indices 0..n-1 drawn one at a time in orderByScore's order (score descending, equal scores by index, NaN scores
 * last by index), from a binary heap: NMS stops at maxDetections, typically long before it has seen every
 * candidate, and a full sort would order them all.
 */
export class ScoreQueue {
  private readonly heap: Uint32Array;
  private size = 0;
  private readonly nan: number[] = [];
  private nanAt = 0;
  constructor(
    private readonly scores: ArrayLike<number>,
    n = scores.length,
  ) {
    this.heap = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      if (Number.isNaN(scores[i]!)) this.nan.push(i);
      else this.heap[this.size++] = i;
    }
    for (let k = (this.size >> 1) - 1; k >= 0; k--) this.siftDown(k);
  }

  /** Whether index a comes before index b (both with a non-NaN score). */
  private before(a: number, b: number): boolean {
    const sa = this.scores[a]!;
    const sb = this.scores[b]!;
    return sa > sb || (!(sa < sb) && a < b);
  }

  private siftDown(k: number): void {
    const heap = this.heap;
    const item = heap[k]!;
    for (;;) {
      let child = 2 * k + 1;
      if (child >= this.size) break;
      if (child + 1 < this.size && this.before(heap[child + 1]!, heap[child]!)) child++;
      if (!this.before(heap[child]!, item)) break;
      heap[k] = heap[child]!;
      k = child;
    }
    heap[k] = item;
  }

  /** The next index, or -1 when all have been drawn. */
  next(): number {
    if (this.size === 0) return this.nanAt < this.nan.length ? this.nan[this.nanAt++]! : -1;
    const top = this.heap[0]!;
    this.heap[0] = this.heap[--this.size]!;
    if (this.size > 0) this.siftDown(0);
    return top;
  }
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

/** The kept boxes of one class, packed for the IoU scan: x1, y1, x2, y2, area per box. */
interface KeptOfClass {
  packed: Float64Array;
  count: number;
}

/**
 * Class-aware NMS on columns: the indices kept, highest score first. Walking the boxes once in global score order
 * and comparing each only with kept boxes of its class gives exactly per-class greedy NMS followed by the top
 * maxDetections by score, and can stop as soon as maxDetections are kept (the SSD fixture: after about 470 of its
 * 1900 candidates, some 40,000 IoUs), so the candidates are drawn from a heap (ScoreQueue) rather than all sorted. Each class's kept boxes lie side by side with their areas, so the IoU scan
 * reads one contiguous array.
 */
export function nonMaxSuppressionIndices(boxes: BoxColumns, count: number, iou: number, maxDetections: number): number[] {
  const { x1, y1, x2, y2, classId } = boxes;
  const queue = new ScoreQueue(boxes.score, count);
  const keptByClass = new Map<number, KeptOfClass>();
  const kept: number[] = [];
  while (kept.length < maxDetections) {
    const i = queue.next();
    if (i < 0) break;
    let same = keptByClass.get(classId[i]!);
    if (!same) keptByClass.set(classId[i]!, (same = { packed: new Float64Array(5 * 16), count: 0 }));
    const ax1 = x1[i]!;
    const ay1 = y1[i]!;
    const ax2 = x2[i]!;
    const ay2 = y2[i]!;
    const area = (ax2 - ax1) * (ay2 - ay1);
    const packed = same.packed;
    let suppressed = false;
    // boxIou inlined, on precomputed areas: this loop is the cost of decoding.
    for (let p = 0, end = 5 * same.count; p < end; p += 5) {
      const iw = Math.min(ax2, packed[p + 2]!) - Math.max(ax1, packed[p]!);
      if (!(iw > 0)) continue;
      const ih = Math.min(ay2, packed[p + 3]!) - Math.max(ay1, packed[p + 1]!);
      if (!(ih > 0)) continue;
      const inter = iw * ih;
      if (inter / (area + packed[p + 4]! - inter) > iou) {
        suppressed = true;
        break;
      }
    }
    if (suppressed) continue;
    let at = 5 * same.count;
    if (at === packed.length) {
      same.packed = new Float64Array(2 * packed.length);
      same.packed.set(packed);
    }
    const into = same.packed;
    into[at++] = ax1;
    into[at++] = ay1;
    into[at++] = ax2;
    into[at++] = ay2;
    into[at] = area;
    same.count++;
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
