/**
 * Bounding-box mAP exactly as pycocotools' COCOeval computes it (iouType 'bbox', area 'all', maxDets 100), on
 * boxes already in memory. Source: cocodataset/cocoapi PythonAPI/pycocotools/cocoeval.py (evaluate, computeIoU,
 * evaluateImg, accumulate, summarize) and common/maskApi.c (bbIou). docs/detection.md lists the rules one by one.
 *
 * In short, per category and image: detections sorted by score (stable), the first 100 kept; ground truth with
 * crowd boxes last; at each IoU threshold .50:.05:.95 every detection in turn takes the unmatched non-crowd box of
 * highest IoU at or above the threshold (equal IoU: the later box), else a crowd box (IoU = intersection over the
 * detection's area), which makes it ignored. Per category over all images: detections sorted by score (stable, in
 * image order), cumulative true/false positives, precision made non-increasing from the right, sampled at the 101
 * recall points 0:.01:1 at the first rank reaching each (searchsorted 'left'); 0 past the last recall reached.
 * AP is the mean over thresholds and recall points; a category without non-crowd ground truth is left out.
 *
 * One deliberate difference: COCOeval divides tp / (tp + fp + np.spacing(1)) to avoid 0/0; here it is
 * tp / (tp + fp), and 0 where both are 0 (what COCOeval gets there too). The values differ by at most 2.2e-16
 * relative, and a perfect detector scores exactly 1 (COCOeval: 1 - 2.2e-16 for a category with one box).
 */
import type { ClassAp, DetectionBox, PrCurve } from '../types.js';
import { orderByScore } from './nms.js';
import type { GroundTruthBox } from './types.js';

/** numpy.linspace(start, stop, num): start + i * step, the last value exactly stop (so thresholds compare as in COCOeval). */
function linspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  const step = (stop - start) / (num - 1);
  for (let i = 0; i < num; i++) out[i] = i * step + start;
  out[num - 1] = stop;
  return out;
}

/** COCOeval's Params.setDetParams. */
export const COCO_IOU_THRESHOLDS: readonly number[] = Array.from(linspace(0.5, 0.95, 10));
export const COCO_RECALL_POINTS: readonly number[] = Array.from(linspace(0, 1, 101));
export const COCO_MAX_DETECTIONS = 100;

export interface CocoEvaluation {
  /** AP@[.5:.95], AP@.5, AP@.75 averaged over categories with ground truth; -1 when no category has any (COCOeval's value). */
  map: number;
  map50: number;
  map75: number;
  /** Categories with non-crowd ground truth, by id. */
  perClass: ClassAp[];
  /** Precision at each recall point averaged over those categories, at IoU 0.5 and 0.75. */
  prCurves: PrCurve[];
}

const STATUS_FP = 0;
const STATUS_TP = 1;
const STATUS_IGNORED = 2;

/** COCO's bbox IoU (maskApi.c bbIou): crowd ground truth divides the intersection by the detection's area only. */
function cocoIou(d: DetectionBox, g: GroundTruthBox, crowd: boolean): number {
  const iw = Math.min(d.x2, g.x2) - Math.max(d.x1, g.x1);
  if (!(iw > 0)) return 0;
  const ih = Math.min(d.y2, g.y2) - Math.max(d.y1, g.y1);
  if (!(ih > 0)) return 0;
  const inter = iw * ih;
  const da = (d.x2 - d.x1) * (d.y2 - d.y1);
  const union = crowd ? da : da + (g.x2 - g.x1) * (g.y2 - g.y1) - inter;
  return inter / union;
}

export function evaluateCoco(
  groundTruth: ReadonlyArray<readonly GroundTruthBox[]>,
  detections: ReadonlyArray<readonly DetectionBox[]>,
  options: { classNames?: ReadonlyMap<number, string> } = {},
): CocoEvaluation {
  if (groundTruth.length !== detections.length) {
    throw new Error(`evaluateCoco: ${groundTruth.length} images of ground truth but ${detections.length} of detections`);
  }
  const T = COCO_IOU_THRESHOLDS.length;
  const R = COCO_RECALL_POINTS.length;
  const images = groundTruth.length;

  // Per image, per category: the boxes (COCOeval's _gts[img, cat] / _dts[img, cat]), in input order.
  const gtBy = new Map<number, GroundTruthBox[][]>();
  const dtBy = new Map<number, DetectionBox[][]>();
  const group = <B extends { classId: number }>(into: Map<number, B[][]>, image: number, box: B): void => {
    let perImage = into.get(box.classId);
    if (!perImage) into.set(box.classId, (perImage = Array.from({ length: images }, () => [])));
    perImage[image]!.push(box);
  };
  for (let i = 0; i < images; i++) {
    for (const g of groundTruth[i]!) group(gtBy, i, g);
    for (const d of detections[i]!) group(dtBy, i, d);
  }

  const perClass: ClassAp[] = [];
  const curveSums = [new Float64Array(R), new Float64Array(R)];
  const curveThresholds = [0, 5]; // IoU .50 and .75
  let sumAp = 0;
  let sumAp50 = 0;
  let sumAp75 = 0;
  // Only categories with ground truth can have AP (COCOeval: precision -1 otherwise, left out of the mean).
  const categories = [...gtBy.keys()].sort((a, b) => a - b);
  for (const classId of categories) {
    const gtImages = gtBy.get(classId)!;
    const dtImages = dtBy.get(classId);
    let npig = 0;
    // Every kept detection of the category (at most 100 per image), in image order then score order: its score,
    // and per threshold t its status at status[t * total + position] (FP unless matched).
    let total = 0;
    if (dtImages) for (let i = 0; i < images; i++) total += Math.min(dtImages[i]!.length, COCO_MAX_DETECTIONS);
    const scores = new Float64Array(total);
    const status = new Uint8Array(T * total); // STATUS_FP is 0
    let base = 0;
    for (let i = 0; i < images; i++) {
      const gtsIn = gtImages[i]!;
      const dtsIn = dtImages?.[i] ?? [];
      if (gtsIn.length === 0 && dtsIn.length === 0) continue;
      // Ground truth: regular boxes first, crowd (ignored) last, each group in input order.
      const gts: GroundTruthBox[] = [];
      for (const g of gtsIn) if (!g.iscrowd) gts.push(g);
      const regular = gts.length;
      for (const g of gtsIn) if (g.iscrowd) gts.push(g);
      npig += regular;
      const order = orderByScore(dtsIn.map((d) => d.score));
      const D = Math.min(order.length, COCO_MAX_DETECTIONS);
      const G = gts.length;
      const ious = new Float64Array(D * G);
      // A detection's best IoU with any box: below a threshold it cannot match there (most low-scored ones), and
      // below the lowest it stays a false positive at every threshold, so the matching visits only the others.
      const bestIou = new Float64Array(D);
      const matchable: number[] = [];
      for (let d = 0; d < D; d++) {
        const det = dtsIn[order[d]!]!;
        scores[base + d] = det.score;
        for (let g = 0; g < G; g++) {
          const v = cocoIou(det, gts[g]!, g >= regular);
          ious[d * G + g] = v;
          if (v > bestIou[d]!) bestIou[d] = v;
        }
        if (bestIou[d]! >= Math.min(COCO_IOU_THRESHOLDS[0]!, 1 - 1e-10)) matchable.push(d);
      }
      const gtMatched = new Uint8Array(G);
      for (let t = 0; t < T && matchable.length > 0; t++) {
        gtMatched.fill(0);
        const threshold = Math.min(COCO_IOU_THRESHOLDS[t]!, 1 - 1e-10);
        for (const d of matchable) {
          if (bestIou[d]! < threshold) continue;
          let best = threshold;
          let m = -1;
          for (let g = 0; g < G; g++) {
            const crowd = g >= regular;
            if (gtMatched[g] && !crowd) continue;
            if (m > -1 && m < regular && crowd) break;
            const v = ious[d * G + g]!;
            if (v < best) continue;
            best = v;
            m = g;
          }
          if (m !== -1) {
            gtMatched[m] = 1;
            status[t * total + base + d] = m >= regular ? STATUS_IGNORED : STATUS_TP;
          }
        }
      }
      base += D;
    }
    if (npig === 0) continue;

    const ranked = orderByScore(scores);
    const nd = ranked.length;
    const precisionAt = new Float64Array(T * R);
    for (let t = 0; t < T; t++) {
      const st = status.subarray(t * total, (t + 1) * total);
      const rc = new Float64Array(nd);
      const pr = new Float64Array(nd);
      let tp = 0;
      let fp = 0;
      for (let j = 0; j < nd; j++) {
        const s = st[ranked[j]!]!;
        if (s === STATUS_TP) tp++;
        else if (s === STATUS_FP) fp++;
        rc[j] = tp / npig;
        pr[j] = tp + fp > 0 ? tp / (tp + fp) : 0;
      }
      for (let j = nd - 1; j > 0; j--) if (pr[j]! > pr[j - 1]!) pr[j - 1] = pr[j]!;
      let j = 0;
      for (let r = 0; r < R; r++) {
        while (j < nd && rc[j]! < COCO_RECALL_POINTS[r]!) j++;
        precisionAt[t * R + r] = j < nd ? pr[j]! : 0;
      }
    }
    const meanOver = (t0: number, t1: number): number => {
      let s = 0;
      for (let k = t0 * R; k < t1 * R; k++) s += precisionAt[k]!;
      return s / ((t1 - t0) * R);
    };
    const ap = meanOver(0, T);
    const ap50 = meanOver(0, 1);
    const ap75 = meanOver(5, 6);
    sumAp += ap;
    sumAp50 += ap50;
    sumAp75 += ap75;
    curveThresholds.forEach((t, c) => {
      for (let r = 0; r < R; r++) curveSums[c]![r]! += precisionAt[t * R + r]!;
    });
    const name = options.classNames?.get(classId);
    perClass.push({ classId, ...(name !== undefined ? { name } : {}), ap, ap50, groundTruth: npig });
  }

  const K = perClass.length;
  const prCurves: PrCurve[] = curveThresholds.map((t, c) => ({
    iou: COCO_IOU_THRESHOLDS[t]!,
    recall: [...COCO_RECALL_POINTS],
    precision: Array.from(curveSums[c]!, (s) => (K > 0 ? s / K : 0)),
  }));
  if (K === 0) return { map: -1, map50: -1, map75: -1, perClass, prCurves };
  return { map: sumAp / K, map50: sumAp50 / K, map75: sumAp75 / K, perClass, prCurves };
}
