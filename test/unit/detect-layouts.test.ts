import { describe, expect, it } from 'vitest';
import { decodeDetections, detectionSpecFromFlags, matchDetections, nonMaxSuppression, parseBoxesFlag, recognizeDetection, tensorValues } from '../../src/compare/task/detect/index.js';
import type { DetectionBox, ImageGeometry } from '../../src/compare/task/types.js';
import { UserError } from '../../src/errors.js';

/** The SSD fixture's outputs as its ONNX graph declares them. */
const SSD_OUTPUTS = [
  { name: 'raw_box_encodings', dims: [1, 1917, 1, 4] },
  { name: 'raw_class_logits', dims: [1, 1917, 91] },
  { name: 'scores', dims: [1, 1917, 90] },
  { name: 'boxes', dims: [1, 1917, 1, 4] },
];

const box = (x1: number, y1: number, x2: number, y2: number, score: number, classId = 0): DetectionBox => ({ x1, y1, x2, y2, score, classId });

function userError(fn: () => unknown): UserError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UserError);
    return err as UserError;
  }
  throw new Error('expected a UserError');
}

describe('detectionSpecFromFlags', () => {
  it('reads --boxes NAME:FORMAT[:norm] and --scores NAME', () => {
    expect(detectionSpecFromFlags({ boxes: 'boxes:yxyx:norm', scores: 'scores' }, SSD_OUTPUTS)).toEqual({
      layout: 'boxes-scores',
      boxes: 'boxes',
      format: 'yxyx',
      normalized: true,
      scores: 'scores',
    });
    // TensorFlow-style names with ':' in them split from the right.
    expect(parseBoxesFlag('StatefulPartitionedCall:0:xyxy')).toEqual({ name: 'StatefulPartitionedCall:0', format: 'xyxy', normalized: false });
    expect(parseBoxesFlag('det:1:cxcywh:norm')).toEqual({ name: 'det:1', format: 'cxcywh', normalized: true });
  });

  it('refuses a missing output, a bad format, and one flag without the other, naming the flag', () => {
    const missing = userError(() => detectionSpecFromFlags({ boxes: 'bboxes:yxyx:norm', scores: 'scores' }, SSD_OUTPUTS));
    expect(missing.message).toContain('--boxes');
    expect(missing.message).toContain("'bboxes'");
    expect(missing.hint).toContain('boxes [1, 1917, 1, 4]');
    expect(userError(() => detectionSpecFromFlags({ boxes: 'boxes:yxyx', scores: 'probs' }, SSD_OUTPUTS)).message).toContain('--scores');
    expect(userError(() => detectionSpecFromFlags({ boxes: 'boxes:ltrb', scores: 'scores' }, SSD_OUTPUTS)).hint).toContain('xyxy, yxyx, xywh, cxcywh');
    expect(userError(() => detectionSpecFromFlags({ boxes: 'boxes:yxyx' }, SSD_OUTPUTS)).message).toContain('--scores NAME');
    expect(userError(() => detectionSpecFromFlags({ boxes: 'scores:xyxy', scores: 'boxes' }, SSD_OUTPUTS)).message).toContain('[N, anchors, 4]');
    expect(userError(() => detectionSpecFromFlags({}, SSD_OUTPUTS)).message).toContain('--boxes NAME:FORMAT[:norm] with --scores NAME');
  });

  it('reads --layout with the single rank-3 output or --output', () => {
    const one = [{ name: 'output0', dims: ['N', 84, 8400] }];
    expect(detectionSpecFromFlags({ layout: 'yolov8' }, one)).toEqual({ layout: 'yolov8', output: 'output0', transposed: false });
    expect(detectionSpecFromFlags({ layout: 'yolov8-transposed' }, one)).toEqual({ layout: 'yolov8', output: 'output0', transposed: true });
    expect(detectionSpecFromFlags({ layout: 'yolov5', output: 'output0' }, one)).toEqual({ layout: 'yolov5', output: 'output0' });
    expect(userError(() => detectionSpecFromFlags({ layout: 'yolov9' }, one)).message).toContain('--det-layout');
    expect(userError(() => detectionSpecFromFlags({ layout: 'nms', output: 'dets' }, one)).message).toContain('--det-output');
    expect(userError(() => detectionSpecFromFlags({ layout: 'nms' }, SSD_OUTPUTS)).message).toContain('--det-output NAME');
  });
});

describe('recognizeDetection', () => {
  it('recognises the SSD fixture (TF Object Detection API signature) and its class offset', () => {
    const r = recognizeDetection(SSD_OUTPUTS);
    expect(r.spec).toEqual({ layout: 'boxes-scores', boxes: 'boxes', format: 'yxyx', normalized: true, scores: 'scores' });
    expect(r.classOffset).toBe(1);
    expect(r.reason).toContain('ymin, xmin, ymax, xmax');
  });

  it('tells normalised boxes from pixel boxes with a sample', () => {
    const sample = (v: number) => ({ boxes: { dtype: 'float32' as const, dims: [1, 2, 1, 4], data: new Float32Array([0, 0, v, v, 0.1, 0.1, 0.2, 0.2]) } });
    expect(recognizeDetection(SSD_OUTPUTS, sample(1.02)).spec).toMatchObject({ normalized: true });
    expect(recognizeDetection(SSD_OUTPUTS, sample(280)).spec).toMatchObject({ normalized: false });
  });

  it('recognises YOLOv8, NMS in the graph and EfficientNMS from names and shapes', () => {
    expect(recognizeDetection([{ name: 'output0', dims: [1, 94, 1917] }]).spec).toEqual({ layout: 'yolov8', output: 'output0', transposed: false });
    expect(recognizeDetection([{ name: 'output0', dims: [1, 300, 6] }]).spec).toEqual({ layout: 'nms', output: 'output0' });
    // ultralytics' dynamic export: the anchor count depends on the input size.
    expect(recognizeDetection([{ name: 'output0', dims: ['batch', 84, 'anchors'] }]).spec).toEqual({ layout: 'yolov8', output: 'output0', transposed: false });
    // NMS rows with a dynamic batch and row count: the sample's shape decides.
    const nmsSample = { output0: { dtype: 'float32' as const, dims: [1, 100, 6], data: new Float32Array(600) } };
    expect(recognizeDetection([{ name: 'output0', dims: ['N', 'K', 6] }]).reason).toContain('--det-layout nms');
    expect(recognizeDetection([{ name: 'output0', dims: ['N', 'K', 6] }], nmsSample).spec).toEqual({ layout: 'nms', output: 'output0' });
    expect(
      recognizeDetection([
        { name: 'num_dets', dims: [1, 1] },
        { name: 'det_boxes', dims: [1, 100, 4] },
        { name: 'det_scores', dims: [1, 100] },
        { name: 'det_classes', dims: [1, 100] },
      ]).spec,
    ).toEqual({ layout: 'efficient-nms', numDets: 'num_dets', boxes: 'det_boxes', scores: 'det_scores', classes: 'det_classes' });
    // The TF Object Detection API's postprocessed outputs have the same form, with normalised yxyx boxes.
    expect(
      recognizeDetection([
        { name: 'detection_boxes', dims: [1, 100, 4] },
        { name: 'detection_scores', dims: [1, 100] },
        { name: 'detection_classes', dims: [1, 100] },
        { name: 'num_detections', dims: [1] },
      ]).spec,
    ).toEqual({ layout: 'efficient-nms', numDets: 'num_detections', boxes: 'detection_boxes', scores: 'detection_scores', classes: 'detection_classes', format: 'yxyx', normalized: true });
  });

  it('refuses what the shapes cannot tell, saying what to pass', () => {
    // YOLOv5 [N, A, 5+C] and transposed YOLOv8 [N, A, 4+C] look alike.
    const v5 = recognizeDetection([{ name: 'output0', dims: [1, 1917, 95] }]);
    expect(v5.spec).toBeUndefined();
    expect(v5.reason).toContain('--det-layout yolov5');
    expect(v5.reason).toContain('--det-layout yolov8-transposed');
    // Boxes [N, A, 4] in an unknown format.
    const plain = recognizeDetection([
      { name: 'bboxes', dims: [1, 1000, 4] },
      { name: 'confidences', dims: [1, 1000, 20] },
    ]);
    expect(plain.spec).toBeUndefined();
    expect(plain.reason).toContain('--boxes NAME:FORMAT[:norm] --scores NAME');
    // Two equally plausible pairs.
    const two = recognizeDetection([
      { name: 'a', dims: [1, 10, 1, 4] },
      { name: 'b', dims: [1, 10, 1, 4] },
      { name: 'c', dims: [1, 10, 3] },
    ]);
    expect(two.spec).toBeUndefined();
    expect(two.reason).toContain('--boxes');
    expect(two.reason).toContain('--scores');
    // A classifier is not a detector.
    expect(recognizeDetection([{ name: 'output', dims: ['N', 5] }]).spec).toBeUndefined();
    // NMS rows whose class column is not integer.
    const rows = { output0: { dtype: 'float32' as const, dims: [1, 1, 6], data: new Float32Array([0, 0, 1, 1, 0.9, 0.5]) } };
    expect(recognizeDetection([{ name: 'output0', dims: [1, 300, 6] }], rows).spec).toBeUndefined();
  });
});

describe('nonMaxSuppression', () => {
  it('suppresses overlaps above the IoU within a class only, keeps ties in input order, and caps the count', () => {
    // a [0,0,10,10] .9; b [1,0,11,10] .8: IoU 90/110 = .818 > .7, suppressed; c = b's box in class 1: kept;
    // d [5,0,15,10] .7: IoU(a) = 50/150 = 1/3, kept. e, f: identical boxes, same score .5, class 2: e (first) kept.
    const a = box(0, 0, 10, 10, 0.9);
    const b = box(1, 0, 11, 10, 0.8);
    const c = box(1, 0, 11, 10, 0.8, 1);
    const d = box(5, 0, 15, 10, 0.7);
    const e = box(20, 20, 30, 30, 0.5, 2);
    const f = box(20, 20, 30, 30, 0.5, 2);
    const kept = nonMaxSuppression([f, d, b, a, c, e].reverse(), 0.7, 300);
    expect(kept).toEqual([a, c, d, e]);
    expect(kept[3]).toBe(e);
    expect(nonMaxSuppression([a, b, c, d, e, f], 0.7, 2)).toEqual([a, c]);
    // IoU exactly at the threshold is kept (suppression is strictly above): [0,0,10,10] vs [0,0,10,5] is .5.
    expect(nonMaxSuppression([a, box(0, 0, 10, 5, 0.1)], 0.5, 300).length).toBe(2);
  });
});

describe('decodeDetections geometry', () => {
  it('maps letterboxed input pixels back to the original, clips, and drops boxes without area', () => {
    // 640x480 photo letterboxed into 320x320: scale .5, padding 40 rows at the top.
    const g: ImageGeometry = { file: 'a.jpg', width: 640, height: 480, inputWidth: 320, inputHeight: 320, scaleX: 0.5, scaleY: 0.5, offsetX: 0, offsetY: 40 };
    const rows = new Float32Array([
      10, 50, 110, 150, 0.9, 2, // -> (20, 20, 220, 220)
      -10, 30, 20, 60, 0.8, 0, // -> (-20 -> 0, -20 -> 0, 40, 40), clipped
      0, 0, 320, 30, 0.7, 1, // entirely in the top padding: y in [-80, -20] -> clipped to nothing, dropped
      0, 0, 0, 0, 0, 0, // padding row, score 0 < floor
    ]);
    const out = decodeDetections({ dets: { dtype: 'float32', dims: [1, 4, 6], data: rows } }, [g], { spec: { layout: 'nms', output: 'dets' }, classOffset: 1 });
    expect(out).toEqual([
      [
        { x1: 20, y1: 20, x2: 220, y2: 220, score: expect.closeTo(0.9, 6), classId: 3 },
        { x1: 0, y1: 0, x2: 40, y2: 40, score: expect.closeTo(0.8, 6), classId: 1 },
      ],
    ]);
  });

  it('YOLOv5 confidence is objectness x class probability, the best class per anchor', () => {
    const g: ImageGeometry = { file: 'a.jpg', width: 100, height: 100, inputWidth: 100, inputHeight: 100, scaleX: 1, scaleY: 1, offsetX: 0, offsetY: 0 };
    // Anchor 0: obj .5, classes .4 .8 -> class 1 at .4. Anchor 1: obj .001, class .9 -> .0009 < floor .001: dropped.
    const data = new Float32Array([50, 50, 20, 20, 0.5, 0.4, 0.8, 10, 10, 4, 4, 0.001, 0.9, 0.1]);
    const [dets] = decodeDetections({ o: { dtype: 'float32', dims: [1, 2, 7], data } }, [g], { spec: { layout: 'yolov5', output: 'o' } });
    expect(dets!.length).toBe(1);
    expect(dets![0]).toMatchObject({ x1: 40, y1: 40, x2: 60, y2: 60, classId: 1 });
    expect(dets![0]!.score).toBeCloseTo(0.4, 6);
  });

  it('refuses outputs whose shape does not fit the layout, naming the flags', () => {
    const g: ImageGeometry = { file: 'a.jpg', width: 10, height: 10, inputWidth: 10, inputHeight: 10, scaleX: 1, scaleY: 1, offsetX: 0, offsetY: 0 };
    const err = userError(() => decodeDetections({ b: { dtype: 'float32', dims: [1, 5, 3], data: new Float32Array(15) }, s: { dtype: 'float32', dims: [1, 5, 2], data: new Float32Array(10) } }, [g], { spec: { layout: 'boxes-scores', boxes: 'b', format: 'xyxy', normalized: false, scores: 's' } }));
    expect(err.message).toContain("'b'");
    expect(err.hint).toContain('--boxes');
  });
});

describe('tensorValues', () => {
  it('reads float16 bit patterns and int64 as numbers', () => {
    // 0x3800 = 0.5, 0x3c00 = 1, 0xc000 = -2, 0x7bff = 65504 (largest half), 0x0001 = 2^-24 (smallest subnormal).
    const half = tensorValues({ dtype: 'float16', dims: [5], data: new Uint16Array([0x3800, 0x3c00, 0xc000, 0x7bff, 0x0001]) });
    expect(Array.from(half)).toEqual([0.5, 1, -2, 65504, 2 ** -24]);
    expect(Array.from(tensorValues({ dtype: 'int64', dims: [2], data: new BigInt64Array([3n, -1n]) }))).toEqual([3, -1]);
  });
});

describe('matchDetections', () => {
  it('counts lost, gained and moved boxes per class, and the score changes of matched pairs', () => {
    const ref = [box(0, 0, 10, 10, 0.9), box(20, 0, 30, 10, 0.8), box(40, 0, 50, 10, 0.7), box(0, 20, 10, 30, 0.6, 1)];
    const variant = [
      box(0, 0, 10, 10, 0.85), // ref 0, IoU 1: not moved, score -0.05
      box(21, 0, 31, 10, 0.9), // ref 1: IoU 90/110 = .818 < .9: moved, +0.1
      // ref 2 lost
      box(0, 20, 10, 30, 0.6, 2), // same box as ref 3 but another class: ref 3 lost, this one gained
      box(60, 0, 70, 10, 0.5), // gained
    ];
    const m = matchDetections(ref, variant);
    expect([m.lost, m.gained, m.moved]).toEqual([2, 2, 1]);
    expect(m.scoreChanges.map((c) => Number(c.toFixed(12)))).toEqual([-0.05, 0.1]);
    expect(matchDetections(ref, ref)).toEqual({ lost: 0, gained: 0, moved: 0, scoreChanges: [0, 0, 0, 0] });
  });
});
