import { describe, expect, it } from 'vitest';
import { labelSourceOf, selectTask } from '../../src/compare/task/select.js';
import { UserError } from '../../src/errors.js';
import type { Tensor } from '../../src/tensor.js';

// The fixtures' declared outputs.
const SSD = [
  { name: 'raw_box_encodings', dims: [1, 1917, 4] },
  { name: 'raw_class_logits', dims: [1, 1917, 91] },
  { name: 'scores', dims: [1, 1917, 90] },
  { name: 'boxes', dims: [1, 1917, 1, 4] },
];
const MOBILENET = [{ name: 'output', dims: ['N', 5] }];
const PPOCR = [{ name: 'sigmoid_0.tmp_0', dims: ['N', 1, 'H', 'W'] }];

function userError(f: () => unknown): UserError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(UserError);
    return err as UserError;
  }
  throw new Error('expected a UserError');
}

const map = (values: number[], dims: number[]): Tensor => ({ dtype: 'float32', dims, data: Float32Array.from(values) });

describe('--task auto', () => {
  it('recognises the SSD as a detector with class offset 1, and says why', () => {
    const s = selectTask({}, SSD);
    expect(s.kind).toBe('detect');
    expect(s.settings).toMatchObject({ spec: { layout: 'boxes-scores', boxes: 'boxes', scores: 'scores', format: 'yxyx' }, classOffset: 1 });
    expect(s.reason).toMatch(/^auto: .*boxes.*scores/);
  });
  it('takes a [N, C] output as a classifier and a [N, 1, H, W] probability map as a binary segmentation', () => {
    expect(selectTask({}, MOBILENET)).toMatchObject({ kind: 'classify', output: 'output' });
    const seg = selectTask({}, PPOCR, { 'sigmoid_0.tmp_0': map([0, 0.2, 0.9, 1, 0.5, 0.1, 0, 0, 0.3, 0.7, 0.2, 0.1, 0, 0, 0, 0.4], [1, 1, 4, 4]) });
    expect(seg.kind).toBe('segment');
    expect(seg.settings).toMatchObject({ output: 'sigmoid_0.tmp_0', mode: 'binary' });
  });
  it('falls back to raw (numbers only) and says so', () => {
    const s = selectTask({}, [{ name: 'embedding', dims: [1, 7, 3] }]);
    expect(s.kind).toBe('raw');
    expect(s.reason).toMatch(/cosine/);
  });
  it('refuses an ambiguous detector (two [N, A, 4] outputs beside the scores), naming --boxes and --scores', () => {
    const outputs = [
      { name: 'a', dims: [1, 100, 4] },
      { name: 'b', dims: [1, 100, 4] },
      { name: 'c', dims: [1, 100, 80] },
    ];
    const e = userError(() => selectTask({}, outputs));
    expect(e.message).toMatch(/detector/);
    expect(`${e.message} ${e.hint}`).toMatch(/--boxes NAME:FORMAT/);
    expect(`${e.message} ${e.hint}`).toMatch(/--scores NAME/);
    // Named, it is a detector.
    expect(selectTask({ boxes: 'a:xyxy', scores: 'c' }, outputs)).toMatchObject({ kind: 'detect', settings: { spec: { boxes: 'a', format: 'xyxy', normalized: false, scores: 'c' }, classOffset: 0 } });
  });
});

describe('explicit --task and the flags of each task', () => {
  it('--boxes naming an output the model does not have is an error naming it', () => {
    const e = userError(() => selectTask({ task: 'detect', boxes: 'bbox:yxyx:norm', scores: 'scores' }, SSD));
    expect(e.message).toMatch(/--boxes/);
    expect(e.message).toMatch(/bbox/);
  });
  it('a flag of another task is an error naming the flag', () => {
    expect(userError(() => selectTask({ keys: 'keys.txt' }, MOBILENET)).message).toMatch(/--keys applies to --task ocr/);
    expect(userError(() => selectTask({ task: 'classify', gtScore: 0.5 }, MOBILENET)).message).toMatch(/--gt-score applies to --task detect/);
    expect(userError(() => selectTask({ task: 'raw', classes: 'c.txt' }, MOBILENET)).message).toMatch(/--classes/);
    // --boxes itself says "detect": on a classifier it cannot be read.
    expect(userError(() => selectTask({ boxes: 'output:xyxy', scores: 'output' }, MOBILENET)).message).toMatch(/--boxes/);
  });
  it('an explicit task that does not fit the outputs is refused with what the outputs are', () => {
    const e = userError(() => selectTask({ task: 'classify' }, PPOCR));
    expect(e.message).toMatch(/--task classify does not fit/);
    expect(e.hint).toMatch(/sigmoid_0\.tmp_0/);
  });
  it('--labels forms belong to tasks', () => {
    expect(labelSourceOf('folders', 'classify')).toEqual({ kind: 'folders' });
    expect(labelSourceOf('val.csv', 'classify')).toEqual({ kind: 'csv', file: 'val.csv' });
    expect(labelSourceOf('instances_val.json', 'detect')).toEqual({ kind: 'coco', file: 'instances_val.json' });
    expect(labelSourceOf('yolo:labels', 'detect')).toEqual({ kind: 'yolo', dir: 'labels' });
    expect(labelSourceOf('masks:gt', 'segment')).toEqual({ kind: 'masks', dir: 'gt' });
    expect(labelSourceOf('rec_gt.txt', 'ocr')).toEqual({ kind: 'text', file: 'rec_gt.txt' });
    const e = userError(() => labelSourceOf('instances_val.json', 'classify'));
    expect(e.message).toMatch(/--labels instances_val\.json is COCO annotations/);
    expect(e.hint).toMatch(/folders/);
    expect(userError(() => labelSourceOf('masks:gt', 'detect')).message).toMatch(/--task segment/);
  });
});
