import { describe, expect, it } from 'vitest';
import { COCO_IOU_THRESHOLDS, COCO_RECALL_POINTS, evaluateCoco } from '../../src/compare/task/detect/coco-eval.js';
import type { GroundTruthBox } from '../../src/compare/task/detect/types.js';
import type { DetectionBox } from '../../src/compare/task/types.js';
import { REF_IOU_THRESHOLDS, REF_RECALL_POINTS, referenceCocoMap } from './coco-reference.js';

const gt = (x1: number, y1: number, x2: number, y2: number, classId = 1, iscrowd = false): GroundTruthBox => ({ x1, y1, x2, y2, classId, ...(iscrowd ? { iscrowd } : {}) });
const det = (x1: number, y1: number, x2: number, y2: number, score: number, classId = 1): DetectionBox => ({ x1, y1, x2, y2, score, classId });

/** Both implementations, checked against the hand values and each other. */
function expectBoth(g: GroundTruthBox[][], d: DetectionBox[][], hand: { map: number; map50: number; map75: number }): void {
  const ours = evaluateCoco(g, d);
  const ref = referenceCocoMap(g, d);
  for (const key of ['map', 'map50', 'map75'] as const) {
    expect(Math.abs(ours[key] - hand[key]), `${key}: ours ${ours[key]} vs hand ${hand[key]}`).toBeLessThan(1e-12);
    expect(Math.abs(ref[key] - hand[key]), `${key}: reference ${ref[key]} vs hand ${hand[key]}`).toBeLessThan(1e-12);
    expect(Math.abs(ours[key] - ref[key])).toBeLessThan(1e-12);
  }
  expect(ours.perClass.map((c) => c.classId)).toEqual([...ref.perClass.keys()]);
  for (const c of ours.perClass) {
    expect(Math.abs(c.ap - ref.perClass.get(c.classId)!.ap)).toBeLessThan(1e-12);
    expect(Math.abs(c.ap50 - ref.perClass.get(c.classId)!.ap50)).toBeLessThan(1e-12);
  }
}

describe('COCO thresholds', () => {
  it('are numpy.linspace values, as COCOeval compares against them', () => {
    expect(COCO_IOU_THRESHOLDS).toEqual(REF_IOU_THRESHOLDS);
    expect(COCO_RECALL_POINTS).toEqual(REF_RECALL_POINTS);
    expect(COCO_RECALL_POINTS.length).toBe(101);
  });
});

describe('evaluateCoco on hand-worked cases', () => {
  it('two boxes, one loose match and one false positive', () => {
    // GT g1 [0,0,10,10], g2 [20,0,30,10] (class 1).
    // d1 [0,0,10,10] 0.9: IoU(g1) = 100/100 = 1.
    // d2 [20,0,30,5] 0.8: IoU(g2) = 50 / (100 + 50 - 50) = 0.5, a match only at t = 0.50 (0.5 < 0.55).
    // d3 [50,50,60,60] 0.7: no overlap, FP.
    // t = .50: TP TP FP -> recall .5 1 1, precision 1 1 2/3; every recall point reached at precision 1: AP = 1.
    // t >= .55 (9 thresholds): TP FP FP -> recall .5 .5 .5, precision 1 .5 1/3 (non-increasing already);
    //   recall points 0, .01, ..., .50 (51 of them) get 1, the 50 above .5 get 0: AP = 51/101.
    // AP@[.5:.95] = (1 + 9 * 51/101) / 10 = (101 + 459) / 1010 = 56/101; AP@.75 = 51/101.
    expectBoth(
      [[gt(0, 0, 10, 10), gt(20, 0, 30, 10)]],
      [[det(0, 0, 10, 10, 0.9), det(20, 0, 30, 5, 0.8), det(50, 50, 60, 60, 0.7)]],
      { map: 56 / 101, map50: 1, map75: 51 / 101 },
    );
  });

  it('ties in score keep the input order (stable sort), so the first listed detection matches first', () => {
    // GT g [0,0,10,10]. dA [0,0,10,5] (IoU .5) listed before dB [0,0,10,10] (IoU 1), both 0.5.
    // t = .50: dA takes g (TP), dB finds g taken (FP): recall 1 1, precision 1 .5 -> AP = 1.
    // t >= .55: dA FP (.5 < t), dB TP: recall 0 1, precision 0 .5 -> made non-increasing: .5 .5 -> AP = .5.
    // AP@[.5:.95] = (1 + 9 * .5) / 10 = .55; AP@.75 = .5.
    expectBoth([[gt(0, 0, 10, 10)]], [[det(0, 0, 10, 5, 0.5), det(0, 0, 10, 10, 0.5)]], { map: 0.55, map50: 1, map75: 0.5 });
    // The other order: dB matches at every threshold, dA is a FP ranked after it: AP = 1.
    expectBoth([[gt(0, 0, 10, 10)]], [[det(0, 0, 10, 10, 0.5), det(0, 0, 10, 5, 0.5)]], { map: 1, map50: 1, map75: 1 });
  });

  it('ties across images rank the earlier image first', () => {
    // Image 0: no GT, a class-1 detection 0.5 (FP). Image 1: GT [0,0,10,10] and an exact detection 0.5 (TP).
    // Ranked FP, TP: recall 0 1, precision 0 .5 -> .5 .5: AP = .5 at every threshold.
    expectBoth([[], [gt(0, 0, 10, 10)]], [[det(0, 0, 10, 10, 0.5)], [det(0, 0, 10, 10, 0.5)]], { map: 0.5, map50: 0.5, map75: 0.5 });
    // Swapped images: TP, FP: recall 1 1, precision 1 .5: AP = 1.
    expectBoth([[gt(0, 0, 10, 10)], []], [[det(0, 0, 10, 10, 0.5)], [det(0, 0, 10, 10, 0.5)]], { map: 1, map50: 1, map75: 1 });
  });

  it('an image without ground truth contributes false positives only', () => {
    // Image 0: GT [0,0,10,10], detection exact, 0.6. Image 1: no GT, detection 0.9.
    // Ranked FP (0.9), TP (0.6): recall 0 1, precision 0 .5 -> .5 .5; AP = .5 at every threshold.
    expectBoth([[gt(0, 0, 10, 10)], []], [[det(0, 0, 10, 10, 0.6)], [det(0, 0, 10, 10, 0.9)]], { map: 0.5, map50: 0.5, map75: 0.5 });
  });

  it('a category only in the predictions is left out of the mean, and does not make false positives elsewhere', () => {
    // Class 1 as in the first case (56/101, 1, 51/101); class 7 has no GT anywhere: COCOeval's -1, not in the mean.
    const g = [[gt(0, 0, 10, 10), gt(20, 0, 30, 10)]];
    const d = [[det(0, 0, 10, 10, 0.9), det(20, 0, 30, 5, 0.8), det(50, 50, 60, 60, 0.7), det(0, 0, 10, 10, 0.99, 7), det(1, 1, 9, 9, 0.95, 7)]];
    expectBoth(g, d, { map: 56 / 101, map50: 1, map75: 51 / 101 });
    expect(evaluateCoco(g, d).perClass.map((c) => c.classId)).toEqual([1]);
  });

  it('two categories: mAP is the mean of their APs', () => {
    // Class 1 as in the first case: AP 56/101, AP50 1, AP75 51/101.
    // Class 2: GT [0,0,10,10] in image 1, detection [0,0,10,10] 0.3 in image 1 and a FP 0.4 in image 0:
    //   ranked FP, TP -> AP = .5 at every threshold.
    // mAP = (56/101 + .5) / 2; mAP50 = (1 + .5) / 2 = .75; mAP75 = (51/101 + .5) / 2.
    expectBoth(
      [[gt(0, 0, 10, 10), gt(20, 0, 30, 10)], [gt(0, 0, 10, 10, 2)]],
      [[det(0, 0, 10, 10, 0.9), det(20, 0, 30, 5, 0.8), det(50, 50, 60, 60, 0.7), det(40, 40, 50, 50, 0.4, 2)], [det(0, 0, 10, 10, 0.3, 2)]],
      { map: (56 / 101 + 0.5) / 2, map50: 0.75, map75: (51 / 101 + 0.5) / 2 },
    );
  });

  it('crowd boxes: detections inside are ignored (intersection over the detection area), never false positives', () => {
    // GT: g [0,0,10,10]; crowd c [20,0,40,20].
    // d1 [25,5,30,10] 0.9: inside c, 25/25 = 1 -> ignored at every threshold (else it would be a FP ranked first).
    // d2 [0,0,10,10] 0.8: TP.
    // d3 [22,2,24,4] 0.7: inside c -> ignored (a crowd box can absorb any number of detections).
    // d4 [35,15,45,25] 0.65: intersection with c [35,40]x[15,20] = 25, over its own area 100 = .25 < .5 -> FP.
    // Non-ignored ranking: TP, FP: recall 1 1, precision 1 .5 -> AP = 1. (With c as a normal box: AP would be
    // far lower; with d1 counted as a FP: .5.) The crowd box is not a positive: npig = 1.
    const g = [[gt(0, 0, 10, 10), gt(20, 0, 40, 20, 1, true)]];
    const d = [[det(25, 5, 30, 10, 0.9), det(0, 0, 10, 10, 0.8), det(22, 2, 24, 4, 0.7), det(35, 15, 45, 25, 0.65)]];
    expectBoth(g, d, { map: 1, map50: 1, map75: 1 });
    expect(evaluateCoco(g, d).perClass[0]!.groundTruth).toBe(1);
  });

  it('a regular box is preferred to a crowd box even when the crowd overlaps more', () => {
    // GT: g [0,0,10,10]; crowd c [0,0,10,10] listed first (COCOeval moves crowd boxes last).
    // d [0,0,10,8] 0.9: IoU(g) = 80/100 = .8; crowd overlap 80/80 = 1. Takes g at t <= .8 (7 thresholds: .5 ... .8),
    // at t >= .85 g is below t, c covers it (1 >= t): ignored, so no detection counts and AP_t = 0.
    // AP = 7/10; AP50 = AP75 = 1.
    expectBoth([[gt(0, 0, 10, 10, 1, true), gt(0, 0, 10, 10)]], [[det(0, 0, 10, 8, 0.9)]], { map: 0.7, map50: 1, map75: 1 });
  });

  it('at most 100 detections per image and category are scored', () => {
    // One GT; 99 FPs scored above the exact detection: it is rank 100, recall 1 at precision 1/100; the precision
    // before it is 0, made non-increasing from the right: .01 at every recall point: AP = .01.
    const fps = (n: number, classId = 1): DetectionBox[] => Array.from({ length: n }, (_, k) => det(100 + k * 20, 100, 110 + k * 20, 110, 0.99 - k * 1e-4, classId));
    expectBoth([[gt(0, 0, 10, 10)]], [[...fps(99), det(0, 0, 10, 10, 0.5)]], { map: 0.01, map50: 0.01, map75: 0.01 });
    // 100 FPs above it: it is the 101st, dropped: AP = 0.
    expectBoth([[gt(0, 0, 10, 10)]], [[...fps(100), det(0, 0, 10, 10, 0.5)]], { map: 0, map50: 0, map75: 0 });
    // The cap is per category: 100 FPs of class 2 do not push the class-1 detection out (AP 1 for class 1;
    // class 2 has no GT and is left out).
    expectBoth([[gt(0, 0, 10, 10)]], [[...fps(100, 2), det(0, 0, 10, 10, 0.5)]], { map: 1, map50: 1, map75: 1 });
  });

  it('equal IoU with two boxes: the later box is taken (COCOeval keeps replacing on >=)', () => {
    // GT a [0,0,10,10], b [5,0,15,10]; d1 [2.5,0,12.5,10] 0.9 has IoU 75/125 = .6 with both: takes b (the later).
    // d2 [5,0,15,10] 0.8: IoU(b) = 1 but b is taken; IoU(a) = 50/150 = 1/3 < .5: FP.
    // t <= .6 (.5, .55, .6): TP, FP: recall .5 .5, precision 1 .5: 51 recall points at 1: 51/101.
    // t >= .65 (7 thresholds): d1 FP, so b stays free and d2 takes it: recall 0 .5, precision 0 .5 -> .5 .5:
    //   51 recall points at .5: 25.5/101. (Had d1 taken a at t <= .6, d2 would have matched b there too.)
    // AP = (3 * 51 + 7 * 25.5) / 1010 = 331.5/1010; AP50 = 51/101; AP75 = 25.5/101.
    expectBoth([[gt(0, 0, 10, 10), gt(5, 0, 15, 10)]], [[det(2.5, 0, 12.5, 10, 0.9), det(5, 0, 15, 10, 0.8)]], { map: 331.5 / 1010, map50: 51 / 101, map75: 25.5 / 101 });
    // GT listed the other way round: at t <= .6 d1 takes a (now the later box) and d2 takes b: AP_t = 1;
    // t >= .65 as before: 25.5/101. AP = (3 * 101 + 7 * 25.5) / 1010 = 481.5/1010; AP50 = 1; AP75 = 25.5/101.
    expectBoth([[gt(5, 0, 15, 10), gt(0, 0, 10, 10)]], [[det(2.5, 0, 12.5, 10, 0.9), det(5, 0, 15, 10, 0.8)]], { map: 481.5 / 1010, map50: 1, map75: 25.5 / 101 });
  });

  it('no ground truth at all gives COCOeval\'s -1', () => {
    expectBoth([[], []], [[det(0, 0, 1, 1, 0.5)], []], { map: -1, map50: -1, map75: -1 });
  });

  it('precision-recall curves average the categories at IoU .5 and .75', () => {
    const r = evaluateCoco([[gt(0, 0, 10, 10), gt(20, 0, 30, 10)]], [[det(0, 0, 10, 10, 0.9), det(20, 0, 30, 5, 0.8), det(50, 50, 60, 60, 0.7)]]);
    expect(r.prCurves.map((c) => c.iou)).toEqual([0.5, 0.75]);
    expect(r.prCurves[0]!.precision.every((p) => p === 1)).toBe(true);
    expect(r.prCurves[1]!.precision.slice(0, 51).every((p) => p === 1)).toBe(true);
    expect(r.prCurves[1]!.precision.slice(51).every((p) => p === 0)).toBe(true);
  });
});
