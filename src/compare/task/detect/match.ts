/**
 * One image's detections of a variant against FP32's, box by box: which FP32 detections the variant lost, which it
 * gained, which moved. FP32's detections are taken in score order (stable); each takes the unmatched variant
 * detection of the same class with the highest IoU at or above `iou` (default 0.5; equal IoU: the earlier one).
 * A matched pair whose IoU is below `movedIou` (default 0.9) counts as moved. Callers pass both sides already cut at
 * the ground-truth score (DetectionOptions.gtScore).
 */
import type { DetectionBox } from '../types.js';
import { boxIou, orderByScore } from './nms.js';

export interface DetectionMatch {
  /** Reference detections without a match. */
  lost: number;
  /** Variant detections without a match. */
  gained: number;
  /** Matched with IoU < movedIou. */
  moved: number;
  /** variant score - reference score, per matched pair, in the reference's score order. */
  scoreChanges: number[];
}

export function matchDetections(
  reference: readonly DetectionBox[],
  variant: readonly DetectionBox[],
  options: { iou?: number; movedIou?: number } = {},
): DetectionMatch {
  const iouThreshold = options.iou ?? 0.5;
  const movedIou = options.movedIou ?? 0.9;
  const taken = new Uint8Array(variant.length);
  let lost = 0;
  let moved = 0;
  let matched = 0;
  const scoreChanges: number[] = [];
  for (const r of orderByScore(reference.map((b) => b.score))) {
    const ref = reference[r]!;
    let best = -1;
    let bestIou = iouThreshold;
    for (let v = 0; v < variant.length; v++) {
      const cand = variant[v]!;
      if (taken[v] || cand.classId !== ref.classId) continue;
      const iou = boxIou(ref, cand);
      if (iou > bestIou || (best === -1 && iou >= bestIou)) {
        best = v;
        bestIou = iou;
      }
    }
    if (best === -1) {
      lost++;
      continue;
    }
    taken[best] = 1;
    matched++;
    if (bestIou < movedIou) moved++;
    scoreChanges.push(variant[best]!.score - ref.score);
  }
  return { lost, gained: variant.length - matched, moved, scoreChanges };
}
