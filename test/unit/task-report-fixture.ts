/**
 * Hand-made task metrics (issue 13) on top of the synthetic comparison (compare-fixture.ts), for the task sections of
 * report.html: detection boxes placed on the people and cars of the street frames (test/fixtures/street, in their
 * original 768x576 pixels), per-class AP, precision-recall curves, segmentation IoU and OCR text pairs. Names hold
 * < > & " ' wherever the report can carry them. Used by render-task-html.test.ts and the browser test.
 */
import type { DetectionBox, DetectionImageRecord, DetectionMetrics, OcrMetrics, PrCurve, SegmentationMetrics, TaskMetrics } from '../../src/compare/task/types.js';
import type { CompareReport } from '../../src/compare/types.js';
import { syntheticReport } from './compare-fixture.js';

export const NASTY_CLASS = `<b>"odd" & 'cls'</b>`;
export const NASTY_FILE = `street/<vtest> & "001's".jpg`;

function box(x1: number, y1: number, x2: number, y2: number, score: number, classId: number): DetectionBox {
  return { x1, y1, x2, y2, score, classId };
}

/** FP32's detections on vtest_001.jpg (original pixels): three people and the white van. */
export const VTEST_001_REFERENCE: DetectionBox[] = [
  box(306, 206, 338, 296, 0.91, 1),
  box(470, 162, 506, 244, 0.88, 1),
  box(550, 238, 606, 326, 0.84, 1),
  box(650, 42, 726, 102, 0.79, 3),
];

/** A variant's detections on vtest_001.jpg: person 1 moved, person 2 lost, person 3 shifted, a false one on the tripod. */
export const VTEST_001_VARIANT: DetectionBox[] = [
  box(322, 222, 354, 312, 0.74, 1),
  box(566, 254, 622, 342, 0.8, 1),
  box(650, 42, 726, 102, 0.77, 3),
  box(456, 338, 528, 482, 0.41, 1),
];

/** COCO's 101 recall points, precision 1 - slope * recall up to maxRecall and 0 beyond (as COCOeval leaves unreached recall). */
export function prCurve(iou: number, slope: number, maxRecall: number): PrCurve {
  const recall = Array.from({ length: 101 }, (_, i) => i / 100);
  return { iou, recall, precision: recall.map((r) => (r <= maxRecall + 1e-12 ? Math.round((1 - slope * r) * 1e6) / 1e6 : 0)) };
}

function detectionMetrics(k: number, worst: DetectionImageRecord[]): DetectionMetrics {
  const ap = (base: number) => Math.round(base * (1 - 0.1 * k) * 1e4) / 1e4;
  return {
    map: ap(0.8),
    map50: ap(0.9),
    perClass: [
      { classId: 3, name: 'car', ap: ap(0.7), ap50: ap(0.85), groundTruth: 4 },
      { classId: 1, name: 'person', ap: ap(0.8), ap50: ap(0.95), groundTruth: 12 },
      { classId: 99, name: NASTY_CLASS, ap: ap(0.5), ap50: ap(0.6), groundTruth: 1 },
      { classId: 2, name: 'bicycle', ap: ap(0.6), ap50: ap(0.75), groundTruth: 6 },
    ],
    prCurves: [prCurve(0.5, 0.1 * (k + 1), 0.95 - 0.1 * k), prCurve(0.75, 0.2 * (k + 1), 0.8 - 0.1 * k)],
    lost: 1 + k,
    gained: k,
    moved: 2 + k,
    meanScoreChange: -0.0125 * (k + 1),
    referenceDetections: 23,
    detections: 22 - k,
    worst,
  };
}

function taskOf(d: DetectionMetrics): TaskMetrics {
  return { kind: 'detect', metric: 'mAP@[.5:.95]', value: d.map, map: d.map, map50: d.map50, detection: d };
}

/** worst images per variant, or the default: vtest_001 (with boxes) then a file with < > & " ' (no photo). */
export function detectionReport(worst?: (variant: string) => DetectionImageRecord[]): CompareReport {
  const report = syntheticReport({ labels: true, dense: true });
  const judged = report.variants.filter((v) => v.precision !== 'fp32');
  report.variants.find((v) => v.name === 'fp32')!.task = taskOf({
    ...detectionMetrics(0, []),
    map: 1,
    map50: 1,
    lost: 0,
    gained: 0,
    moved: 0,
    meanScoreChange: 0,
    detections: 23,
    prCurves: [prCurve(0.5, 0, 1), prCurve(0.75, 0, 1)],
  });
  judged.forEach((v, k) => {
    const records =
      worst?.(v.name) ??
      [
        { file: 'street/vtest_001.jpg', index: 0, lost: 1, gained: 1, moved: 2, reference: VTEST_001_REFERENCE, variant: VTEST_001_VARIANT },
        { file: NASTY_FILE, index: 3, lost: 1, gained: 0, moved: 0, reference: [box(10, 10, 50, 50, 0.5, 99)], variant: [] },
      ];
    v.task = taskOf(detectionMetrics(k, records));
  });
  return report;
}

export function segmentationReport(): CompareReport {
  const report = syntheticReport({ dense: true });
  report.variants.forEach((v, k) => {
    const iou = v.precision === 'fp32' ? 1 : Math.round((0.95 - 0.05 * k) * 1e4) / 1e4;
    const seg: SegmentationMetrics = {
      mode: 'argmax',
      miou: iou,
      perClass: [
        { classId: 0, name: 'background', iou: Math.min(1, iou + 0.03), pixels: 90000 },
        { classId: 7, name: NASTY_CLASS, iou: iou - 0.1, pixels: 1200 },
        { classId: 15, name: 'person', iou: iou - 0.05, pixels: 8000 },
      ],
      pixelAgreement: Math.min(1, iou + 0.04),
      worst: [
        { file: 'street/vtest_003.jpg', index: 1, iou: iou - 0.2 },
        { file: NASTY_FILE, index: 3, iou: iou - 0.1 },
      ],
    };
    v.task = { kind: 'segment', metric: 'mIoU', value: iou, segmentation: seg };
  });
  return report;
}

export function ocrReport(): CompareReport {
  const report = syntheticReport({});
  report.variants.forEach((v) => {
    const ocr: OcrMetrics = {
      exactMatch: v.precision === 'fp32' ? 1 : 0.5,
      cer: v.precision === 'fp32' ? 0 : 0.125,
      samples:
        v.precision === 'fp32'
          ? []
          : [
              { file: 'text/a.png', reference: 'PRICE <5 & "10"', variant: 'PRlCE <5 & "1O"', label: 'PRICE <5 & "10"', distance: 2 },
              { file: NASTY_FILE, reference: "it's", variant: '', distance: 4 },
              { file: 'text/c.png', reference: 'EXIT', variant: 'EXIT', distance: 0 },
            ],
    };
    v.task = { kind: 'ocr', metric: '1 - CER', value: 1 - ocr.cer, ocr };
  });
  return report;
}
