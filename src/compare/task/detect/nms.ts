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

/** Indices 0..n-1 ordered by score, highest first; equal scores keep index order (a stable sort). */
export function orderByScore(scores: ArrayLike<number>, n = scores.length): Uint32Array {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  // Array.prototype.sort is stable (ES2019); the index tiebreak makes that explicit.
  return order.sort((a, b) => scores[b]! - scores[a]! || a - b);
}

/**
 * Class-aware NMS: returns at most maxDetections boxes, highest score first. Walking the boxes once in global
 * score order and comparing each only with kept boxes of its class gives exactly per-class greedy NMS followed by
 * the top maxDetections by score, and can stop as soon as maxDetections are kept.
 */
export function nonMaxSuppression(boxes: DetectionBox[], iou: number, maxDetections: number): DetectionBox[] {
  const order = orderByScore(boxes.map((b) => b.score));
  const keptByClass = new Map<number, DetectionBox[]>();
  const kept: DetectionBox[] = [];
  for (let k = 0; k < order.length && kept.length < maxDetections; k++) {
    const box = boxes[order[k]!]!;
    let same = keptByClass.get(box.classId);
    if (!same) keptByClass.set(box.classId, (same = []));
    let suppressed = false;
    for (const other of same) {
      if (boxIou(box, other) > iou) {
        suppressed = true;
        break;
      }
    }
    if (suppressed) continue;
    same.push(box);
    kept.push(box);
  }
  return kept;
}
