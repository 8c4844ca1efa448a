import { describe, expect, it } from 'vitest';
import { createDetectionEvaluator } from '../../src/compare/task/detect/index.js';
import type { ImageGeometry } from '../../src/compare/task/types.js';

const geometry = (file: string): ImageGeometry => ({ file, width: 100, height: 100, inputWidth: 100, inputHeight: 100, scaleX: 1, scaleY: 1, offsetX: 0, offsetY: 0 });
const IMAGES = [geometry('/data/a.jpg'), geometry('/data/b.jpg')];

/** NMS-in-graph rows [N, 3, 6] (x1, y1, x2, y2, score, class), zero rows as padding. */
function rows(perImage: number[][][]): { dets: { dtype: 'float64'; dims: number[]; data: Float64Array } } {
  const data = new Float64Array(perImage.length * 3 * 6);
  perImage.forEach((image, n) => image.forEach((row, k) => data.set(row, (n * 3 + k) * 6)));
  return { dets: { dtype: 'float64', dims: [perImage.length, 3, 6], data } };
}

const FP32 = rows([
  [
    [0, 0, 10, 10, 0.9, 0], // A
    [20, 20, 40, 40, 0.8, 0], // B
    [50, 50, 60, 60, 0.1, 1], // C: below gtScore, a prediction but not ground truth
  ],
  [[0, 0, 20, 20, 0.6, 2]], // D
]);
const VARIANT = rows([
  [
    [0, 0, 10, 10, 0.85, 0], // A': IoU 1 with A, score -0.05
    [22, 20, 42, 40, 0.7, 0], // B': IoU(B) = 18*20 / (400 + 400 - 360) = 360/440 = .818: moved, score -0.1
    [70, 70, 80, 80, 0.5, 0], // E: gained
  ],
  [[0, 0, 20, 20, 0.2, 2]], // D': below gtScore, so D is lost box by box; still a prediction for mAP
]);

describe('createDetectionEvaluator on hand-worked detections', () => {
  it('scores against FP32 and against labels, box by box, with the worst images first', () => {
    const evaluator = createDetectionEvaluator({
      spec: { layout: 'nms', output: 'dets' },
      classNames: new Map([[0, 'person']]),
      // Labels for a.jpg only: b.jpg is not scored against labels.
      labels: new Map([['/data/a.jpg', [{ x1: 0, y1: 0, x2: 10, y2: 10, classId: 0 }, { x1: 70, y1: 70, x2: 80, y2: 80, classId: 0 }]]]),
    });
    expect(evaluator.outputs).toEqual(['dets']);
    // Two batches of one image, as the comparison pass feeds them.
    for (const n of [0, 1]) {
      const slice = (t: ReturnType<typeof rows>) => ({ dets: { ...t.dets, dims: [1, 3, 6], data: t.dets.data.slice(n * 18, (n + 1) * 18) } });
      evaluator.addReference(slice(FP32), [IMAGES[n]!]);
      evaluator.addVariant('fp32', slice(FP32), [IMAGES[n]!]);
      evaluator.addVariant('int8', slice(VARIANT), [IMAGES[n]!]);
    }
    const result = evaluator.finish();
    expect([...result.keys()]).toEqual(['fp32', 'int8']);

    // FP32 against itself: exactly 1. Against labels: A TP, B FP, E missed: recall .5 at precision 1: 51/101.
    const self = result.get('fp32')!;
    expect(self).toMatchObject({ kind: 'detect', metric: 'mAP@[.5:.95]', value: 1, map: 1, map50: 1 });
    expect(Math.abs(self.mapLabels! - 51 / 101)).toBeLessThan(1e-12);

    // Against FP32 (A, B, D are the ground truth):
    // class 0: A' TP, B' TP while t <= .8 (7 thresholds; IoU .818), E FP: AP_t = 1; t >= .85: TP FP FP: 51/101.
    //   AP = (7 + 3 * 51/101) / 10 = 860/1010. Class 2: D' matches D (IoU 1): AP = 1. Class 1 has no ground truth.
    // mAP = (860/1010 + 1) / 2; mAP@.5 = 1.
    const int8 = result.get('int8')!;
    expect(Math.abs(int8.value - (860 / 1010 + 1) / 2)).toBeLessThan(1e-12);
    expect(int8.map).toBe(int8.value);
    expect(int8.map50).toBe(1);
    const d = int8.detection!;
    expect(d.perClass.map((c) => [c.classId, c.name, c.groundTruth])).toEqual([
      [0, 'person', 2],
      [2, undefined, 1],
    ]);
    expect(Math.abs(d.perClass[0]!.ap - 860 / 1010)).toBeLessThan(1e-12);
    // Against labels (a.jpg): A' TP, B' FP, E TP: precision 1, .5, 2/3 -> 1, 2/3, 2/3 at recall .5, .5, 1:
    //   51 recall points at 1 and 50 at 2/3: (51 + 100/3) / 101 = 253/303 at every threshold.
    expect(Math.abs(int8.mapLabels! - 253 / 303)).toBeLessThan(1e-12);
    expect(int8.valueLabels).toBe(int8.mapLabels);
    expect(int8.map50Labels).toBeCloseTo(253 / 303, 12);

    // Box by box at gtScore .25: a.jpg: A-A' kept, B-B' moved, E gained; b.jpg: D lost (D' is .2).
    expect([d.lost, d.gained, d.moved, d.referenceDetections, d.detections]).toEqual([1, 1, 1, 3, 3]);
    expect(d.meanScoreChange).toBeCloseTo(-0.075, 12);
    // Both images have lost + moved = 1; a.jpg also gained one: it comes first.
    expect(d.worst.map((w) => [w.file, w.lost, w.gained, w.moved])).toEqual([
      ['/data/a.jpg', 0, 1, 1],
      ['/data/b.jpg', 1, 0, 0],
    ]);
    expect(d.worst[0]!.reference.map((b) => b.score)).toEqual([0.9, 0.8]);
    expect(d.worst[0]!.variant.map((b) => b.score)).toEqual([0.85, 0.7, 0.5]);
    // Detections are not kept unless asked for.
    expect(evaluator.detections('int8')).toBeUndefined();
    expect(evaluator.files()).toEqual(['/data/a.jpg', '/data/b.jpg']);
  });

  it('refuses a variant whose images are not FP32\'s, in order', () => {
    const evaluator = createDetectionEvaluator({ spec: { layout: 'nms', output: 'dets' } });
    evaluator.addReference(FP32, IMAGES);
    expect(() => evaluator.addVariant('int8', VARIANT, [IMAGES[1]!, IMAGES[0]!])).toThrow(/b\.jpg where FP32 had \/data\/a\.jpg/);
  });
});
