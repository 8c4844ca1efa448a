/**
 * A test-only, independent formulation of COCO bbox mAP (pycocotools COCOeval, area 'all', maxDets 100), written
 * from the published definition rather than from src/compare/task/detect/coco-eval.ts:
 *
 *   for each category with at least one non-crowd ground-truth box, for each IoU threshold t:
 *     per image, the category's detections in score order (ties: input order), the first 100;
 *     each detection takes the unmatched non-crowd box with the highest IoU >= t (equal IoU: the later box),
 *     else it is ignored if some crowd box covers it with intersection / detection area >= t, else it is a FP;
 *     all images' non-ignored detections ranked by (score desc, image asc, rank in image asc);
 *     interpolated precision p(r) = max precision over ranks whose recall >= r (0 if none), r in 0:.01:1;
 *     AP_t = mean of p(r);  AP = mean over t;  mAP = mean of AP over categories.
 *
 * Boxes go through COCO's [x, y, w, h] form as maskApi.c does. Plain arrays and nested loops, slow on purpose.
 */
export interface RefBox {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  classId: number;
  score?: number;
  iscrowd?: boolean;
}

/** numpy.linspace(.5, .95, 10) as numpy prints it (repr of each float64). */
export const REF_IOU_THRESHOLDS = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.8999999999999999, 0.95];
/** numpy.linspace(0, 1, 101): i * 0.01 (not i / 100, which differs at 10 of the points). */
export const REF_RECALL_POINTS = Array.from({ length: 101 }, (_, i) => i * 0.01);

function xywh(b: RefBox): [number, number, number, number] {
  return [b.x1, b.y1, b.x2 - b.x1, b.y2 - b.y1];
}

function overlap(det: RefBox, gt: RefBox, crowd: boolean): number {
  const [dx, dy, dw, dh] = xywh(det);
  const [gx, gy, gw, gh] = xywh(gt);
  const iw = Math.min(dx + dw, gx + gw) - Math.max(dx, gx);
  const ih = Math.min(dy + dh, gy + gh) - Math.max(dy, gy);
  if (iw <= 0 || ih <= 0) return 0;
  const union = crowd ? dw * dh : dw * dh + gw * gh - iw * ih;
  return (iw * ih) / union;
}

export interface RefResult {
  map: number;
  map50: number;
  map75: number;
  perClass: Map<number, { ap: number; ap50: number; ap75: number }>;
}

export function referenceCocoMap(groundTruth: RefBox[][], detections: RefBox[][]): RefResult {
  const categories: number[] = [];
  for (const image of groundTruth) {
    for (const g of image) if (!g.iscrowd && !categories.includes(g.classId)) categories.push(g.classId);
  }
  categories.sort((a, b) => a - b);
  const perClass = new Map<number, { ap: number; ap50: number; ap75: number }>();
  for (const c of categories) {
    const apAt: number[] = [];
    for (const t of REF_IOU_THRESHOLDS) {
      let positives = 0;
      const ranked: Array<{ score: number; image: number; rank: number; tp: boolean }> = [];
      for (let i = 0; i < groundTruth.length; i++) {
        const gts = groundTruth[i]!.filter((g) => g.classId === c);
        const regular = gts.filter((g) => !g.iscrowd);
        const crowd = gts.filter((g) => g.iscrowd);
        positives += regular.length;
        const dets = detections[i]!
          .map((d, k) => ({ d, k }))
          .filter((e) => e.d.classId === c)
          .sort((a, b) => (b.d.score! - a.d.score!) || (a.k - b.k))
          .slice(0, 100)
          .map((e) => e.d);
        const taken = regular.map(() => false);
        dets.forEach((d, rank) => {
          let best = -1;
          let bestIou = -Infinity;
          for (let g = 0; g < regular.length; g++) {
            if (taken[g]) continue;
            const v = overlap(d, regular[g]!, false);
            if (v >= Math.min(t, 1 - 1e-10) && v >= bestIou) {
              bestIou = v;
              best = g;
            }
          }
          if (best >= 0) {
            taken[best] = true;
            ranked.push({ score: d.score!, image: i, rank, tp: true });
          } else if (!crowd.some((g) => overlap(d, g, true) >= Math.min(t, 1 - 1e-10))) {
            ranked.push({ score: d.score!, image: i, rank, tp: false });
          }
        });
      }
      ranked.sort((a, b) => (b.score - a.score) || (a.image - b.image) || (a.rank - b.rank));
      const recall: number[] = [];
      const precision: number[] = [];
      let tp = 0;
      ranked.forEach((e, n) => {
        if (e.tp) tp++;
        recall.push(tp / positives);
        precision.push(tp / (n + 1));
      });
      let sum = 0;
      for (const r of REF_RECALL_POINTS) {
        let p = 0;
        for (let n = 0; n < ranked.length; n++) if (recall[n]! >= r && precision[n]! > p) p = precision[n]!;
        sum += p;
      }
      apAt.push(sum / REF_RECALL_POINTS.length);
    }
    perClass.set(c, { ap: apAt.reduce((a, b) => a + b, 0) / apAt.length, ap50: apAt[0]!, ap75: apAt[5]! });
  }
  const aps = [...perClass.values()];
  if (aps.length === 0) return { map: -1, map50: -1, map75: -1, perClass };
  const mean = (f: (v: { ap: number; ap50: number; ap75: number }) => number): number => aps.reduce((s, v) => s + f(v), 0) / aps.length;
  return { map: mean((v) => v.ap), map50: mean((v) => v.ap50), map75: mean((v) => v.ap75), perClass };
}
