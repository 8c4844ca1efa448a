/**
 * The OCR evaluator on a real onnxruntime run. No recogniser fixture exists, so the test builds a tiny CTC
 * "recogniser": the input [N, 3, 8, 40] is averaged over channels and rows into 40 columns, read as 8 time steps of
 * 5 classes (blank, a, b, c, space), scaled and soft-maxed. Its text is then a known function of the photo, computed
 * here independently from the batch's pixels; a second model adds a bias to the space class (a "variant" whose
 * texts differ in a known way).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { datasetForModel } from '../../src/app/data.js';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { createOcrEvaluator, editDistance, readKeys, readTextLabels, recognizeOcr } from '../../src/compare/task/ocr/index.js';
import { makeConstantNode, makeModel, makeNode, makeValueInfo } from '../../src/onnx/build.js';
import { ELEM, makeTensor, saveOnnxModel, type OnnxModel } from '../../src/onnx/model.js';
import type { Tensor } from '../../src/tensor.js';
import { taskGeometry } from './segment-geometry.js';

const ROOT = path.resolve(__dirname, '../..');
const IMAGES = path.join(ROOT, 'test/fixtures/images');
const STEPS = 8;
const CLASSES = 5;
const GAIN = 20;
const SPACE_BIAS = 0.5;

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-ocr-rec-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function recognizer(spaceBias: number): OnnxModel {
  return makeModel({
    opset: 13,
    nodes: [
      makeNode('ReduceMean', ['x'], ['columns'], { attributes: { axes: { ints: [1, 2] }, keepdims: { int: 0 } } }),
      makeConstantNode('shape', makeTensor('int64', [3], [0n, BigInt(STEPS), BigInt(CLASSES)])),
      makeNode('Reshape', ['columns', 'shape'], ['steps']),
      makeConstantNode('gain', makeTensor('float32', [], [GAIN])),
      makeNode('Mul', ['steps', 'gain'], ['scaled']),
      makeConstantNode('bias', makeTensor('float32', [CLASSES], [0, 0, 0, 0, spaceBias])),
      makeNode('Add', ['scaled', 'bias'], ['logits']),
      makeNode('Softmax', ['logits'], ['probs'], { attributes: { axis: { int: -1 } } }),
    ],
    inputs: [makeValueInfo('x', ELEM.FLOAT, ['N', 3, 8, STEPS * CLASSES])],
    outputs: [makeValueInfo('probs', ELEM.FLOAT, ['N', STEPS, CLASSES])],
  });
}

/** The recogniser's text, computed from the input pixels without onnxruntime (means in float64). */
function expectedText(input: Float32Array, image: number, spaceBias: number, chars: string[]): string {
  const [c, h, w] = [3, 8, STEPS * CLASSES];
  const base = image * c * h * w;
  let text = '';
  let previous = -1;
  for (let t = 0; t < STEPS; t++) {
    let best = 0;
    let bestValue = -Infinity;
    for (let k = 0; k < CLASSES; k++) {
      let sum = 0;
      for (let ch = 0; ch < c; ch++) for (let y = 0; y < h; y++) sum += input[base + ch * h * w + y * w + t * CLASSES + k]!;
      const logit = (GAIN * sum) / (c * h) + (k === 4 ? spaceBias : 0);
      if (logit > bestValue) {
        best = k;
        bestValue = logit;
      }
    }
    if (best !== previous && best !== 0) text += chars[best]!;
    previous = best;
  }
  return text;
}

describe('OCR on an onnxruntime CTC recogniser', () => {
  it('decodes each image as the model computes it, and scores a variant and labels', async () => {
    const keysFile = path.join(tmp, 'keys.txt');
    await writeFile(keysFile, 'a\nb\nc\n \n'); // the last key is the space character
    const keys = await readKeys(keysFile);
    expect(keys).toEqual(['a', 'b', 'c', ' ']);
    const chars = ['', ...keys];

    const model = recognizer(0);
    const fp32 = await onnxruntimeBackend.open({ path: 'rec.onnx', bytes: saveOnnxModel(model) });
    const biased = await onnxruntimeBackend.open({ path: 'rec-biased.onnx', bytes: saveOnnxModel(recognizer(SPACE_BIAS)) });
    try {
      const { dataset, preprocess } = await datasetForModel('rec.onnx', model, { data: IMAGES, preprocess: { preset: 'raw01' }, batch: 3 }, 'the test');
      // First pass: what the texts should be, from the pixels.
      const want = new Map<string, { ref: string; biased: string }>();
      for await (const b of dataset.batches()) {
        b.files.forEach((f, i) => want.set(f, { ref: expectedText(b.data, i, 0, chars), biased: expectedText(b.data, i, SPACE_BIAS, chars) }));
      }
      const files = [...want.keys()];
      expect(files.length).toBe(8);
      // The photos give varied texts, and the bias changes some of them (otherwise the test would show nothing).
      expect(new Set(files.map((f) => want.get(f)!.ref)).size).toBeGreaterThan(3);
      const changed = files.filter((f) => want.get(f)!.ref !== want.get(f)!.biased);
      expect(changed.length).toBeGreaterThan(0);
      expect(changed.length).toBeLessThan(files.length);

      // Labels: FP32's texts, except one image labelled with an extra character, and a line for an image not in the data.
      const labelsFile = path.join(tmp, 'rec_gt.txt');
      const wrong = files[0]!;
      await writeFile(
        labelsFile,
        files.map((f) => `${path.relative(IMAGES, f)}\t${want.get(f)!.ref}${f === wrong ? 'a' : ''}\n`).join('') + 'missing.png\tabc\n',
      );
      const { labels, unmatched } = await readTextLabels(labelsFile, dataset.files, IMAGES);
      expect(unmatched).toEqual(['missing.png']);
      expect(labels.size).toBe(8);

      let evaluator: ReturnType<typeof createOcrEvaluator> | undefined;
      for await (const b of dataset.batches()) {
        const feed: Record<string, Tensor> = { x: { dtype: 'float32', dims: b.dims, data: b.data } };
        const ref = await fp32.run(feed);
        const other = await biased.run(feed);
        if (evaluator === undefined) {
          const auto = recognizeOcr(fp32.outputs, { sample: ref });
          expect(auto.options).toEqual({ output: 'probs', blank: 0 });
          evaluator = createOcrEvaluator({ ...auto.options!, keys, keysFile, labels });
        }
        const images = await Promise.all(b.files.map((f) => taskGeometry(f, preprocess)));
        evaluator.addReference(ref, images);
        evaluator.addVariant('fp32', ref, images);
        evaluator.addVariant('biased', other, images);
      }
      const r = evaluator!.finish();

      const refLength = files.reduce((n, f) => n + Array.from(want.get(f)!.ref).length, 0);
      const labelLength = refLength + 1;
      const fp32Metrics = r.get('fp32')!;
      expect(fp32Metrics.value).toBe(1);
      expect(fp32Metrics.ocr).toMatchObject({ exactMatch: 1, cer: 0, exactMatchLabels: 7 / 8, labelledImages: 8, unlabelledImages: 0 });
      expect(fp32Metrics.ocr!.cerLabels).toBeCloseTo(1 / labelLength, 15);
      expect(fp32Metrics.ocr!.samples).toEqual([{ file: wrong, reference: want.get(wrong)!.ref, variant: want.get(wrong)!.ref, label: `${want.get(wrong)!.ref}a`, labelDistance: 1, distance: 0 }]);

      const distance = files.reduce((n, f) => n + editDistance(want.get(f)!.ref, want.get(f)!.biased), 0);
      const v = r.get('biased')!;
      expect(v.ocr!.cer).toBeCloseTo(distance / refLength, 15);
      expect(v.value).toBeCloseTo(1 - distance / refLength, 15);
      expect(v.ocr!.exactMatch).toBe((files.length - changed.length) / files.length);
      expect(v.ocr!.samples.map((s) => s.variant).filter((_, i) => i < changed.length).sort()).toEqual(changed.map((f) => want.get(f)!.biased).sort());
      for (const s of v.ocr!.samples) {
        expect(s.reference).toBe(want.get(s.file)!.ref);
        expect(s.variant).toBe(want.get(s.file)!.biased);
      }
    } finally {
      await fp32.release();
      await biased.release();
    }
  });
});
