/**
 * Segmentation IoU on small maps worked out by hand: classes summed over all pixels of all images, a class present
 * only in the prediction, the ignore index, binary threshold ties, argmax ties and NaN.
 */
import { describe, expect, it } from 'vitest';
import { thresholdIou } from '../../src/compare/metrics.js';
import {
  addMaskCounts,
  ClassCounts,
  classMapLayout,
  classMapOf,
  createSegmentationEvaluator,
  NO_CLASS,
  originalToMapIndex,
  recognizeSegmentation,
} from '../../src/compare/task/segment/index.js';
import type { ImageGeometry } from '../../src/compare/task/types.js';
import type { Tensor } from '../../src/tensor.js';

function identity(file: string, width: number, height: number): ImageGeometry {
  return { file, width, height, inputWidth: width, inputHeight: height, scaleX: 1, scaleY: 1, offsetX: 0, offsetY: 0 };
}

/** [N, C, H, W] scores from class maps: 0.7 for the map's class, 0.1 for the others. */
function scores(maps: number[][], classes: number, height: number, width: number): Tensor {
  const pixels = height * width;
  const data = new Float32Array(maps.length * classes * pixels).fill(0.1);
  maps.forEach((m, n) => m.forEach((c, i) => (data[n * classes * pixels + c * pixels + i] = 0.7)));
  return { dtype: 'float32', dims: [maps.length, classes, height, width], data };
}

describe('mIoU over argmax maps, against FP32', () => {
  // Two 2x3 images, 4 classes.
  //   A reference [0 0 1 / 1 2 2], prediction [0 1 1 / 1 2 0]
  //   B reference [0 0 0 / 0 0 0], prediction [0 0 0 / 0 3 3]   (class 3 only in the prediction)
  // Summed over both images:
  //   intersection c0 = 1 + 4 = 5, c1 = 2, c2 = 1, c3 = 0
  //   reference    c0 = 2 + 6 = 8, c1 = 2, c2 = 2, c3 = 0
  //   prediction   c0 = 2 + 4 = 6, c1 = 3, c2 = 1, c3 = 2
  //   union        c0 = 8 + 6 - 5 = 9, c1 = 2 + 3 - 2 = 3, c2 = 2 + 1 - 1 = 2, c3 = 2
  //   IoU          5/9, 2/3, 1/2, 0   -> mIoU = (5/9 + 2/3 + 1/2 + 0) / 4 = (10 + 12 + 9) / 18 / 4 = 31/72
  // (The mean of per-image mIoUs would be (1/2 + 1/3) / 2 = 5/12: the counts are summed, not the ratios.)
  // Pixel agreement: 4 + 4 of 12 pixels = 2/3.
  // Per image: A = (1/3 + 2/3 + 1/2) / 3 = 1/2; B = (c0 4/6, c3 0) / 2 = 1/3 -> B is the worst.
  const refA = [0, 0, 1, 1, 2, 2];
  const varA = [0, 1, 1, 1, 2, 0];
  const refB = [0, 0, 0, 0, 0, 0];
  const varB = [0, 0, 0, 0, 3, 3];
  const images = [identity('a.png', 3, 2), identity('b.png', 3, 2)];

  it('sums intersections and unions over all pixels, and counts a class only the prediction has with IoU 0', () => {
    const ev = createSegmentationEvaluator({ output: 'seg', classNames: new Map([[3, 'cat']]) });
    ev.addReference({ seg: scores([refA, refB], 4, 2, 3) }, images);
    ev.addVariant('fp32', { seg: scores([refA, refB], 4, 2, 3) }, images);
    ev.addVariant('int8', { seg: scores([varA, varB], 4, 2, 3) }, images);
    const r = ev.finish();
    expect([...r.keys()]).toEqual(['fp32', 'int8']);
    const fp32 = r.get('fp32')!;
    expect(fp32).toMatchObject({ kind: 'segment', metric: 'mIoU', value: 1 });
    const int8 = r.get('int8')!;
    expect(int8.metric).toBe('mIoU');
    expect(int8.value).toBeCloseTo(31 / 72, 15);
    const seg = int8.segmentation!;
    expect(seg.mode).toBe('argmax');
    expect(seg.pixelAgreement).toBeCloseTo(2 / 3, 15);
    expect(seg.perClass.map((c) => c.classId)).toEqual([0, 1, 2, 3]);
    expect(seg.perClass.map((c) => c.iou)).toEqual([5 / 9, 2 / 3, 1 / 2, 0]);
    expect(seg.perClass.map((c) => c.pixels)).toEqual([8, 2, 2, 0]);
    expect(seg.perClass[3]!.name).toBe('cat');
    expect(seg.worst.map((w) => [w.file, w.index])).toEqual([['b.png', 1], ['a.png', 0]]);
    expect(seg.worst[0]!.iou).toBeCloseTo(1 / 3, 15);
    expect(seg.worst[1]!.iou).toBeCloseTo(1 / 2, 15);
  });

  it('gives the same result image by image (batch 1) as in one batch', () => {
    const ev = createSegmentationEvaluator({ output: 'seg' });
    for (const [i, [r, v]] of [[refA, varA], [refB, varB]].entries()) {
      const batch = [images[i]!];
      ev.addReference({ seg: scores([r!], 4, 2, 3) }, batch);
      ev.addVariant('int8', { seg: scores([v!], 4, 2, 3) }, batch);
    }
    expect(ev.finish().get('int8')!.value).toBeCloseTo(31 / 72, 15);
  });

  it('leaves out classes absent from both: a 4-class output with class 2 nowhere', () => {
    // reference [0 1], prediction [0 0]: c0 inter 1, union 2 -> 1/2; c1 inter 0, union 1 -> 0; c2, c3 absent.
    const counts = new ClassCounts(4).addMaps(Uint16Array.of(0, 1), Uint16Array.of(0, 0));
    expect(counts.meanIou()).toBe(0.25);
    expect(counts.iou(2)).toBeUndefined();
  });
});

describe('class maps', () => {
  it('argmax takes the first class on ties and never a NaN score', () => {
    // 1 image, 3 classes, 3 pixels: pixel 0 ties 0.5/0.5/0 -> 0; pixel 1 NaN/0.2/0.3 -> 2; pixel 2 all NaN -> 0.
    const t: Tensor = { dtype: 'float32', dims: [1, 3, 1, 3], data: Float32Array.of(0.5, NaN, NaN, 0.5, 0.2, NaN, 0, 0.3, NaN) };
    const layout = classMapLayout('seg', t.dims, t.dtype, undefined);
    expect(layout).toEqual({ mode: 'argmax', channelsLast: false, channels: 3, height: 1, width: 3 });
    expect([...classMapOf(t.data as Float32Array, layout, 0, 0.3, 'seg')]).toEqual([0, 2, 0]);
  });

  it('binary maps: v >= threshold is foreground, exactly thresholdIou on ties and NaN', () => {
    // threshold 0.5; reference [0.5 0.25 0.75 NaN 0.25 0.5], variant [0.5 0.5 0.25 0.75 0.25 0.75]
    // pairs: (1,1) (0,1) (1,0) skipped (0,0) (1,1): intersection 2, union 4 -> IoU 1/2; same side 3 of 5.
    const ref = Float32Array.of(0.5, 0.25, 0.75, NaN, 0.25, 0.5);
    const v = Float32Array.of(0.5, 0.5, 0.25, 0.75, 0.25, 0.75);
    const images = [identity('x.png', 6, 1)];
    const ev = createSegmentationEvaluator({ output: 'map', threshold: 0.5 });
    ev.addReference({ map: { dtype: 'float32', dims: [1, 1, 1, 6], data: ref } }, images);
    ev.addVariant('int8', { map: { dtype: 'float32', dims: [1, 1, 1, 6], data: v } }, images);
    const r = ev.finish().get('int8')!;
    expect(r.metric).toBe('IoU');
    expect(r.value).toBe(0.5);
    expect(r.value).toBe(thresholdIou(ref, v, 0.5));
    expect(r.segmentation).toMatchObject({ mode: 'binary', threshold: 0.5, pixelAgreement: 0.6 });
    expect(r.segmentation!.perClass.map((c) => [c.name, c.iou])).toEqual([
      ['background', 1 / 3], // background: intersection 1 (pixel 4), union 3 (pixels 1, 2, 4)
      ['foreground', 0.5],
    ]);
  });

  it('binary maps with no foreground anywhere agree (IoU 1, as the dense metric today)', () => {
    const images = [identity('x.png', 2, 1)];
    const ev = createSegmentationEvaluator({ output: 'map' });
    const zero: Tensor = { dtype: 'float32', dims: [1, 1, 1, 2], data: Float32Array.of(0.1, 0.2) };
    ev.addReference({ map: zero }, images);
    ev.addVariant('fp16', { map: zero }, images);
    expect(ev.finish().get('fp16')!.value).toBe(1);
  });

  it('channels last: [N, H, W, C] gives the same classes as [N, C, H, W]', () => {
    // 2 x 2 pixels, 3 classes; scores per pixel: [0.1 0.7 0.2] [0.5 0.5 0] [0 0 1] [NaN 0.3 0.2] -> 1, 0, 2, 1
    const perPixel = [[0.1, 0.7, 0.2], [0.5, 0.5, 0], [0, 0, 1], [NaN, 0.3, 0.2]];
    const nhwc = Float32Array.from(perPixel.flat());
    const nchw = Float32Array.from([0, 1, 2].flatMap((c) => perPixel.map((p) => p[c]!)));
    const last = classMapLayout('seg', [1, 2, 2, 3], 'float32', undefined, 'NHWC');
    const first = classMapLayout('seg', [1, 3, 2, 2], 'float32', undefined);
    expect(last).toEqual({ mode: 'argmax', channelsLast: true, channels: 3, height: 2, width: 2 });
    expect([...classMapOf(nhwc, last, 0, 0.3, 'seg')]).toEqual([1, 0, 2, 1]);
    expect([...classMapOf(nchw, first, 0, 0.3, 'seg')]).toEqual([1, 0, 2, 1]);
  });

  it('integer outputs are class ids', () => {
    const t: Tensor = { dtype: 'int64', dims: [1, 2, 2], data: BigInt64Array.of(0n, 7n, 3n, 0n) };
    const layout = classMapLayout('ids', t.dims, t.dtype, undefined);
    expect(layout.mode).toBe('ids');
    expect([...classMapOf(t.data as BigInt64Array, layout, 0, 0.3, 'ids')]).toEqual([0, 7, 3, 0]);
  });

  it('refuses shapes that are no map, naming the output', () => {
    expect(() => classMapLayout('logits', [1, 1000], 'float32', undefined)).toThrow(/'logits' has dims \[1, 1000\]/);
    expect(() => classMapLayout('seg', [1, 5, 8, 8], 'float32', 'binary')).toThrow(/5 channels/);
    expect(() => createSegmentationEvaluator({ output: 'seg', threshold: Number.NaN })).toThrow(/threshold/);
  });
});

describe('against masks', () => {
  it('skips the ignore index', () => {
    // mask [1 255 1 / 1 2 255] against the prediction [0 1 1 / 1 2 0] (same size, identity geometry):
    // pixels 1 and 5 ignored; pairs (1,0) (1,1) (1,1) (2,2):
    //   c0: intersection 0, union 0 + 1 = 1 -> 0;  c1: 2 / (3 + 2 - 2) = 2/3;  c2: 1 / 1 = 1   -> mIoU 5/9
    const counts = new ClassCounts(3);
    const g = identity('a.jpg', 3, 2);
    const sampling = { columns: originalToMapIndex(3, 1, 0, 3, 3), rows: originalToMapIndex(2, 1, 0, 2, 2) };
    const r = addMaskCounts(counts, { file: 'a.png', width: 3, height: 2, data: Uint16Array.of(1, 255, 1, 1, 2, 255) }, Uint16Array.of(0, 1, 1, 1, 2, 0), g.width, sampling, 255, 3);
    expect(r).toEqual({ ignored: 2, outside: 0 });
    expect(counts.meanIou()).toBeCloseTo(5 / 9, 15);
    expect(counts.agreement()).toBe(3 / 4);
  });

  it('a prediction with no class (NaN in a binary map) counts against the mask', () => {
    const counts = new ClassCounts(2);
    const sampling = { columns: Int32Array.of(0, 1), rows: Int32Array.of(0) };
    addMaskCounts(counts, { file: 'm.png', width: 2, height: 1, data: Uint16Array.of(1, 1) }, Uint16Array.of(1, NO_CLASS), 2, sampling, 255, 2);
    expect(counts.iou(1)).toBe(0.5);
  });

  it('maps original pixels to a smaller map by their centres (stride 4), and marks what a crop cut away', () => {
    // 8 original columns, scale 2 (input 16 wide), map of 4 columns (stride 4): centre of x at (x + 0.5) * 2,
    // cell floor(that / 4): x = 0..7 -> 1, 3, 5, ..., 15 -> 0, 0, 1, 1, 2, 2, 3, 3.
    expect([...originalToMapIndex(8, 2, 0, 16, 4)]).toEqual([0, 0, 1, 1, 2, 2, 3, 3]);
    // center-crop: scale 1, offset -4, input 8 wide: centre x + 0.5 - 4 is below 0 for x = 0..3 (x = 3: -0.5),
    // x = 4 -> 0.5 -> column 0, ..., x = 11 -> 7.5 -> column 7, x = 12 -> 8.5, past the input.
    expect([...originalToMapIndex(13, 1, -4, 8, 8)]).toEqual([-1, -1, -1, -1, 0, 1, 2, 3, 4, 5, 6, 7, -1]);
  });

  it('needs its masks read before each batch', () => {
    const ev = createSegmentationEvaluator({ output: 'seg', labels: new Map([['/x/a.jpg', '/x/a.png']]) });
    expect(() => ev.addReference({ seg: scores([[0, 1]], 2, 1, 2) }, [identity('/x/a.jpg', 2, 1)])).toThrow(/prepareBatch/);
  });
});

describe('recognizeSegmentation', () => {
  it('takes [N, C, H, W] as argmax, [N, 1, H, W] probabilities as binary, and refuses what it cannot tell', () => {
    expect(recognizeSegmentation([{ name: 'out', dims: ['N', 21, 512, 512] }]).options).toEqual({ output: 'out', mode: 'argmax' });
    const det = recognizeSegmentation([{ name: 'sigmoid_0.tmp_0', dims: ['N', 1, 'H', 'W'] }], {
      'sigmoid_0.tmp_0': { dtype: 'float32', dims: [1, 1, 2, 2], data: Float32Array.of(0, 0.2, 0.9, 1) },
    });
    expect(det.options).toEqual({ output: 'sigmoid_0.tmp_0', mode: 'binary', threshold: 0.3 });
    expect(det.reason).toMatch(/binary map thresholded at 0.3/);
    const logits = recognizeSegmentation([{ name: 'm', dims: [1, 1, 16, 16] }], { m: { dtype: 'float32', dims: [1, 1, 1, 2], data: Float32Array.of(-3, 4) } });
    expect(logits.options).toBeUndefined();
    expect(logits.reason).toMatch(/not probabilities/);
    expect(recognizeSegmentation([{ name: 'logits', dims: ['N', 1000] }]).options).toBeUndefined();
    expect(recognizeSegmentation([{ name: 'a', dims: [1, 2, 64, 64] }, { name: 'b', dims: [1, 3, 64, 64] }]).reason).toMatch(/several outputs/);
    expect(recognizeSegmentation([{ name: 'pooled', dims: [1, 256, 1, 1] }]).options).toBeUndefined();
    // Channels last (TensorFlow/Keras) when dims[3] is smaller than both other axes; a tie is channels first.
    expect(recognizeSegmentation([{ name: 'softmax', dims: [1, 512, 512, 21] }]).options).toEqual({ output: 'softmax', mode: 'argmax', layout: 'NHWC' });
    expect(recognizeSegmentation([{ name: 'softmax', dims: ['N', 'H', 'W', 19] }]).options).toEqual({ output: 'softmax', mode: 'argmax', layout: 'NHWC' });
    expect(recognizeSegmentation([{ name: 'out', dims: [1, 19, 128, 256] }]).options).toEqual({ output: 'out', mode: 'argmax' });
    expect(recognizeSegmentation([{ name: 'head', dims: [1, 255, 80, 80] }]).options).toEqual({ output: 'head', mode: 'argmax' });
    expect(recognizeSegmentation([{ name: 'p', dims: [1, 640, 640, 1] }]).options).toEqual({ output: 'p', mode: 'binary', threshold: 0.3, layout: 'NHWC' });
  });
});
