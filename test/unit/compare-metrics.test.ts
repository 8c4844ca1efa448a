import { describe, expect, it } from 'vitest';
import {
  argmax,
  cosineSimilarity,
  float16ToNumber,
  floatValues,
  LayerComparison,
  maxAbsError,
  meanAbsError,
  OutputComparison,
  outputKind,
  sameSideFraction,
  thresholdIou,
  snrDb,
  top1Agreement,
  topKAccuracy,
  topKIndices,
  WorstK,
} from '../../src/compare/metrics.js';
import { UserError } from '../../src/errors.js';
import type { Tensor } from '../../src/tensor.js';
import { lcg } from './compare-fixture.js';

const f32 = (dims: number[], values: number[]): Tensor => ({ dtype: 'float32', dims, data: Float32Array.from(values) });

describe('elementwise metrics (hand-computed)', () => {
  it('cosine, SNR, mean and max absolute error of [1,2,3] vs [1,2,4]', () => {
    // dot = 1+4+12 = 17, |r|^2 = 14, |x|^2 = 21; noise = (3-4)^2 = 1
    expect(cosineSimilarity([1, 2, 3], [1, 2, 4])).toBeCloseTo(17 / Math.sqrt(14 * 21), 15);
    expect(cosineSimilarity([1, 2, 3], [1, 2, 4])).toBeCloseTo(0.99146, 5);
    expect(snrDb([1, 2, 3], [1, 2, 4])).toBeCloseTo(11.4613, 4); // 10*log10(14)
    expect(meanAbsError([1, 2, 3], [1, 2, 4])).toBeCloseTo(1 / 3, 15);
    expect(maxAbsError([1, 2, 3], [1, 2, 4])).toBe(1);
  });
  it('identical tensors: cosine 1, SNR +Infinity, no error', () => {
    expect(cosineSimilarity([0.5, -2], [0.5, -2])).toBe(1);
    expect(snrDb([0.5, -2], [0.5, -2])).toBe(Number.POSITIVE_INFINITY);
    expect(meanAbsError([0.5, -2], [0.5, -2])).toBe(0);
  });
  it('zero vectors and opposite vectors', () => {
    expect(cosineSimilarity([0, 0], [0, 0])).toBe(1);
    expect(cosineSimilarity([0, 0], [1, 0])).toBe(0);
    expect(snrDb([0, 0], [1, 0])).toBe(Number.NEGATIVE_INFINITY);
    expect(cosineSimilarity([1, 0], [-1, 0])).toBe(-1);
    expect(snrDb([1, 0], [-1, 0])).toBeCloseTo(-6.0206, 4); // 10*log10(1/4)
  });
  it('NaN and Inf are left out of the sums', () => {
    expect(meanAbsError([1, NaN, 3], [2, 5, 3])).toBe(0.5);
    expect(snrDb([1, 2, Infinity], [1, 2, 0])).toBe(Number.POSITIVE_INFINITY);
  });
  it('refuses tensors of different lengths', () => {
    expect(() => cosineSimilarity([1, 2], [1])).toThrow(/2 and 1 elements/);
  });
});

describe('ranking metrics', () => {
  it('argmax takes the first maximum and ignores NaN', () => {
    expect(argmax([3, 5, 5, 1])).toBe(1);
    expect(argmax([NaN, 1, 2])).toBe(2);
    expect(argmax([9, 1, 7, 8], 1, 3)).toBe(2);
  });
  it('top-k orders by value, ties to the lower index', () => {
    expect(topKIndices([0.1, 0.5, 0.5, 0.2, 0.9], 3)).toEqual([4, 1, 2]);
    expect(topKIndices([1, 1, 1], 2)).toEqual([0, 1]);
    expect(topKIndices([NaN, 2, 1], 2)).toEqual([1, 2]);
    expect(topKIndices([1, 2], 5)).toEqual([1, 0]);
  });
  it('top-1 agreement and top-k accuracy of 3 rows x 3 classes', () => {
    const ref = [1, 7, 2, 5, 3, 2, 2, 2, 6];
    const x = [2, 6, 2, 3, 5, 2, 1, 1, 8];
    expect(top1Agreement(ref, x, 3)).toEqual({ agree: 2, total: 3, fraction: 2 / 3 });
    // x argmax: 1, 1, 2; labels 1, 0, unlabelled -> 1 of 2
    expect(topKAccuracy(x, 3, [1, 0, undefined], 1)).toEqual({ correct: 1, labelled: 2, accuracy: 0.5 });
    // top-2 of row 1 is {1, 0}: label 0 is in it
    expect(topKAccuracy(x, 3, [1, 0, undefined], 2)).toEqual({ correct: 2, labelled: 2, accuracy: 1 });
  });
  it('same-side fraction at 0.3: value >= threshold is above', () => {
    // (0.1,0.2) same; (0.5,0.2) differ; (0.3,0.31) same; (0.29,0.3) differ
    expect(sameSideFraction([0.1, 0.5, 0.3, 0.29], [0.2, 0.2, 0.31, 0.3], 0.3)).toBe(0.5);
  });
  it('IoU of the thresholded maps: intersection over union of the elements >= 0.3', () => {
    // above in ref: 0.5, 0.3 (indices 1, 2); above in x: 0.31, 0.3 (indices 2, 3); both: index 2; either: 1, 2, 3
    expect(thresholdIou([0.1, 0.5, 0.3, 0.29], [0.2, 0.2, 0.31, 0.3], 0.3)).toBe(1 / 3);
    // Nothing reaches the threshold in either map: no IoU to speak of.
    expect(thresholdIou([0.1, 0.2], [0.2, 0.1], 0.3)).toBeUndefined();
    expect(thresholdIou([0.9, 0.1], [0.8, 0.1], 0.3)).toBe(1);
  });
});

describe('tensors', () => {
  it('decodes float16 bit patterns', () => {
    expect(float16ToNumber(0x3c00)).toBe(1);
    expect(float16ToNumber(0xc000)).toBe(-2);
    expect(float16ToNumber(0x7c00)).toBe(Infinity);
    expect(float16ToNumber(0x0001)).toBe(2 ** -24);
    expect(float16ToNumber(0x3555)).toBeCloseTo(0.33325, 5);
    expect(Number.isNaN(float16ToNumber(0x7e00))).toBe(true);
    expect(Array.from(floatValues({ dtype: 'float16', dims: [2], data: Uint16Array.from([0x3c00, 0x4000]) }, 'x'))).toEqual([1, 2]);
    expect(() => floatValues({ dtype: 'int8', dims: [1], data: Int8Array.from([1]) }, 'the tensor')).toThrow(/the tensor is a int8 tensor/);
  });
  it('detects classifiers and dense maps from dims', () => {
    expect(outputKind([8, 1000])).toBe('classifier');
    expect(outputKind([8, 1])).toBe('other');
    expect(outputKind([8, 1, 640, 480])).toBe('dense');
    expect(outputKind([8])).toBe('other');
  });
});

describe('WorstK', () => {
  it('keeps the K smallest whatever the insertion order', () => {
    const values = Array.from({ length: 200 }, (_, i) => (i * 37) % 101);
    const expected = values.slice().sort((a, b) => a - b).slice(0, 7);
    const rand = lcg(5);
    for (let trial = 0; trial < 5; trial++) {
      const shuffled = values.slice().sort(() => rand() - 0.5);
      const heap = new WorstK<number>(7, (a, b) => a < b);
      for (const v of shuffled) heap.push(v);
      expect(heap.sorted()).toEqual(expected);
    }
  });
});

describe('OutputComparison', () => {
  // 3 images x 3 classes. Per image: cos0 = 48/sqrt(54*44), cos1 = 34/38, cos2 = 52/sqrt(44*66).
  const ref = [1, 7, 2, 5, 3, 2, 2, 2, 6];
  const x = [2, 6, 2, 3, 5, 2, 1, 1, 8];
  const files = ['a.jpg', 'b.jpg', 'c.jpg'];
  const labels = [1, 0, 2];

  function run(batches: number[][]): OutputComparison {
    const cmp = new OutputComparison('output', { worstCount: 2, topK: 2 });
    for (const idx of batches) {
      cmp.add(
        f32([idx.length, 3], idx.flatMap((i) => ref.slice(i * 3, i * 3 + 3))),
        f32([idx.length, 3], idx.flatMap((i) => x.slice(i * 3, i * 3 + 3))),
        idx.map((i) => files[i]!),
        idx.map((i) => labels[i]),
      );
    }
    return cmp;
  }

  it('classifier: per-image cosine, SNR over everything, agreement, accuracy, worst images', () => {
    const { metrics, worst } = run([[0, 1, 2]]).result();
    const cos = [48 / Math.sqrt(54 * 44), 34 / 38, 52 / Math.sqrt(44 * 66)];
    expect(metrics.kind).toBe('classifier');
    expect(metrics.dims).toEqual([3]);
    expect(metrics.images).toBe(3);
    expect(metrics.cosineMean).toBeCloseTo((cos[0]! + cos[1]! + cos[2]!) / 3, 14);
    expect(metrics.cosineMin).toBeCloseTo(34 / 38, 14);
    expect(metrics.snrDb).toBeCloseTo(10 * Math.log10(136 / 16), 12); // ref^2 = 54+38+44, noise = 2+8+6
    expect(metrics.meanAbsErr).toBeCloseTo(10 / 9, 14);
    expect(metrics.maxAbsErr).toBe(2);
    expect(metrics.agreement).toBeCloseTo(2 / 3, 15);
    expect(metrics.agreeCount).toBe(2);
    // FP32 gets all 3 right; the variant says class 1 for b.jpg (label 0); top-2 of b is {1, 0}.
    expect(metrics.accuracy).toEqual({
      labelled: 3,
      top1: 2 / 3,
      referenceTop1: 1,
      top1Correct: 2,
      referenceTop1Correct: 3,
      k: 2,
      topK: 1,
      referenceTopK: 1,
      topKCorrect: 3,
      referenceTopKCorrect: 3,
    });
    expect(worst.map((w) => w.file)).toEqual(['b.jpg', 'c.jpg']);
    expect(worst[0]).toMatchObject({ index: 1, referenceTop1: 0, variantTop1: 1, label: 0 });
    expect(worst[0]!.cosine).toBeCloseTo(34 / 38, 14);
  });

  it('gives the same bytes whatever the batch size', () => {
    const one = JSON.stringify(run([[0, 1, 2]]).result());
    expect(JSON.stringify(run([[0], [1], [2]]).result())).toBe(one);
    expect(JSON.stringify(run([[0, 1], [2]]).result())).toBe(one);
  });

  it('dense map: per-image cosine over the map and the same-side fraction', () => {
    const cmp = new OutputComparison('sigmoid_0.tmp_0');
    // two images of 1x2x2; image 0 identical; image 1: 0.5 -> 0.25 crosses 0.3, 0.2 -> 0.25 does not
    cmp.add(f32([2, 1, 2, 2], [0.1, 0.9, 0.4, 0.0, 0.5, 0.2, 0.0, 0.0]), f32([2, 1, 2, 2], [0.1, 0.9, 0.4, 0.0, 0.25, 0.25, 0.0, 0.0]), ['s1.jpg', 's2.jpg']);
    const { metrics, worst } = cmp.result();
    expect(metrics.kind).toBe('dense');
    expect(metrics.dims).toEqual([1, 2, 2]);
    expect(metrics.threshold).toBe(0.3);
    expect(metrics.sameSideFraction).toBe(7 / 8);
    const f = Math.fround;
    const dot = f(0.5) * f(0.25) + f(0.2) * f(0.25);
    const cos1 = dot / Math.sqrt((f(0.5) ** 2 + f(0.2) ** 2) * (2 * f(0.25) ** 2));
    expect(worst[0]!.file).toBe('s2.jpg');
    expect(worst[0]!.cosine).toBeCloseTo(cos1, 12);
    expect(worst[0]!.sameSideFraction).toBe(3 / 4); // 1 of its 4 pixels crossed
    // image 1: FP32 above at 0.5 only, the variant nowhere -> IoU 0/1; image 0: 0.9 and 0.4 in both -> 2/2.
    expect(worst[0]!.iou).toBe(0);
    expect(worst[1]!.iou).toBe(1);
    // over both images: intersection 2, union 3
    expect(metrics.iou).toBe(2 / 3);
    expect(metrics.aboveUnion).toBe(3);
    expect(worst[1]!.cosine).toBe(1);
    expect(metrics.cosineMean).toBeCloseTo((1 + cos1) / 2, 12);
    expect(metrics.agreement).toBeUndefined();
  });

  it('dense maps of different sizes per batch are allowed and marked -1', () => {
    const cmp = new OutputComparison('map');
    cmp.add(f32([1, 1, 1, 2], [1, 0]), f32([1, 1, 1, 2], [1, 0]), ['a']);
    cmp.add(f32([1, 1, 2, 2], [1, 0, 0, 1]), f32([1, 1, 2, 2], [1, 0, 0, 1]), ['b']);
    expect(cmp.result().metrics.dims).toEqual([1, -1, 2]);
  });

  it('rows of a data-dependent count (NMS in the graph) are compared zero-padded to the larger shape', () => {
    const cmp = new OutputComparison('output0');
    // FP32 kept one row [3, 4], the variant two: [3, 4], [1, 0]. Padded: [3, 4, 0, 0] . [3, 4, 1, 0] = 25,
    // |[3, 4, 0, 0]| = 5, |[3, 4, 1, 0]| = sqrt(26).
    cmp.add(f32([1, 1, 2], [3, 4]), f32([1, 2, 2], [3, 4, 1, 0]), ['a']);
    expect(cmp.result().metrics.cosineMean).toBeCloseTo(25 / (5 * Math.sqrt(26)), 12);
    expect(cmp.result().metrics.maxAbsErr).toBe(1);
  });

  it('rejects mismatched shapes, batches and labels outside the classes', () => {
    const cmp = new OutputComparison('output');
    expect(() => cmp.add(f32([1, 3], [1, 2, 3]), f32([1, 2], [1, 2]), ['a'])).toThrow(/dims \[1, 2\].*\[1, 3\]/);
    expect(() => cmp.add(f32([2, 3], [1, 2, 3, 4, 5, 6]), f32([2, 3], [1, 2, 3, 4, 5, 6]), ['a'])).toThrow(/batch of 1 images first/);
    expect(() => cmp.add(f32([1, 3], [1, 2, 3]), f32([1, 3], [1, 2, 3]), ['a'], [3])).toThrow(UserError);
    expect(() => new OutputComparison('o').add(f32([1, 3], [1, 2, 3]), f32([1, 3], [1, 2, 3]), ['a'], [3])).toThrow(/class 3.*3 classes \(0 to 2\)/);
  });

  it('counts NaN outputs instead of poisoning the metrics', () => {
    const cmp = new OutputComparison('output');
    cmp.add(f32([1, 3], [1, 2, 3]), f32([1, 3], [1, NaN, 3]), ['a']);
    const { metrics } = cmp.result();
    expect(metrics.nonFinite).toBe(1);
    expect(metrics.snrDb).toBe(Infinity);
    expect(metrics.elements).toBe(2);
  });
});

describe('LayerComparison', () => {
  it('accumulates SNR per tensor over batches and sorts worst first', () => {
    const layers = new LayerComparison();
    // "a": ref [3,4] then [0,0]; noise [1,0] then [0,0] -> 10*log10(25/1)
    layers.add('a', f32([1, 2], [3, 4]), f32([1, 2], [2, 4]));
    layers.add('a', f32([1, 2], [0, 0]), f32([1, 2], [0, 0]));
    // "b": exact -> +Infinity; "c": 10*log10(1/1) = 0 dB
    layers.add('b', f32([1, 2], [1, 1]), f32([1, 2], [1, 1]));
    layers.add('c', f32([1, 1], [1]), f32([1, 1], [2]));
    const rows = layers.result();
    expect(rows.map((r) => r.name)).toEqual(['c', 'a', 'b']);
    expect(rows[0]!.snrDb).toBe(0);
    expect(rows[1]!.snrDb).toBeCloseTo(10 * Math.log10(25), 12);
    expect(rows[1]!.elements).toBe(4);
    expect(rows[2]!.snrDb).toBe(Infinity);
    expect(() => layers.add('a', f32([1, 2], [1, 2]), f32([2, 1], [1, 2]))).toThrow(/dims/);
  });
});
