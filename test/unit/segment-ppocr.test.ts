/**
 * The segmentation evaluator on the real PP-OCRv4 text detector (a DB probability map [N, 1, H, W]): binary mode,
 * FP32 against itself scores 1, and FP16's IoU is exactly the dense-map IoU compare reports today (thresholdIou
 * at 0.3, and OutputComparison's, summed over the same images).
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildFp16Variant } from '../../src/app/variants.js';
import { datasetForModel } from '../../src/app/data.js';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { DEFAULT_DENSE_THRESHOLD, floatValues, OutputComparison, thresholdIou } from '../../src/compare/metrics.js';
import { recognizeOcr } from '../../src/compare/task/ocr/index.js';
import { createSegmentationEvaluator, recognizeSegmentation } from '../../src/compare/task/segment/index.js';
import { loadOnnxModel, saveOnnxModel } from '../../src/onnx/model.js';
import type { Tensor } from '../../src/tensor.js';
import { taskGeometry } from './segment-geometry.js';

const ROOT = path.resolve(__dirname, '../..');
const PPOCR = path.join(ROOT, 'test/fixtures/models/ppocr_v4_det.onnx');
const IMAGES = path.join(ROOT, 'test/fixtures/images');
const MOBILENET = path.join(ROOT, 'test/fixtures/models/mobilenet_v2_nsfw_224.onnx');
const SSD = path.join(ROOT, 'test/fixtures/models/ssdlite_mobilenet_v2_coco_300.onnx');

describe('segmentation on PP-OCRv4 det', () => {
  it('binary IoU: FP32 = 1, FP16 = thresholdIou over the same images, whatever the batch size', async () => {
    const model = await loadOnnxModel(PPOCR);
    const fp16 = buildFp16Variant(model, { file: PPOCR });
    const fp32Session = await onnxruntimeBackend.open({ path: PPOCR });
    const fp16Session = await onnxruntimeBackend.open({ path: 'ppocr_v4_det.fp16.onnx', bytes: saveOnnxModel(fp16.model) });
    try {
      const output = fp32Session.outputs[0]!.name;
      const results: number[] = [];
      for (const batch of [1, 3]) {
        const { dataset, preprocess } = await datasetForModel(PPOCR, model, { data: IMAGES, preprocess: { preset: 'paddleocr-det', size: 160 }, maxImages: 5, batch }, 'the test');
        let evaluator: ReturnType<typeof createSegmentationEvaluator> | undefined;
        const today = new OutputComparison(output, { kind: 'dense' });
        const refAll: number[] = [];
        const varAll: number[] = [];
        for await (const b of dataset.batches()) {
          const feed: Record<string, Tensor> = { [dataset.inputName]: { dtype: 'float32', dims: b.dims, data: b.data } };
          const ref = await fp32Session.run(feed);
          const half = await fp16Session.run(feed);
          if (evaluator === undefined) {
            const recognized = recognizeSegmentation(fp32Session.outputs, ref);
            expect(recognized.options).toEqual({ output, mode: 'binary', threshold: 0.3 });
            evaluator = createSegmentationEvaluator(recognized.options!);
          }
          const images = await Promise.all(b.files.map((f) => taskGeometry(f, preprocess)));
          evaluator.addReference(ref, images);
          evaluator.addVariant('fp32', ref, images);
          evaluator.addVariant('fp16', half, images);
          today.add(ref[output]!, half[output]!, b.files);
          refAll.push(...floatValues(ref[output]!, 'ref'));
          varAll.push(...floatValues(half[output]!, 'fp16'));
        }
        const r = evaluator!.finish();
        expect(r.get('fp32')).toMatchObject({ kind: 'segment', metric: 'IoU', value: 1 });
        const v = r.get('fp16')!;
        const expected = thresholdIou(refAll, varAll, DEFAULT_DENSE_THRESHOLD)!;
        // Text pixels are found in these photos, and FP16 moves some of them: a real, non-trivial IoU.
        expect(expected).toBeGreaterThan(0.5);
        expect(expected).toBeLessThan(1);
        expect(v.value).toBe(expected);
        expect(v.value).toBe(today.result().metrics.iou);
        expect(v.segmentation!.pixelAgreement).toBe(today.result().metrics.sameSideFraction);
        expect(v.segmentation!.worst.length).toBe(5);
        results.push(v.value);
      }
      expect(results[0]).toBe(results[1]);
    } finally {
      await fp32Session.release();
      await fp16Session.release();
    }
  });
});

describe('auto recognition on the fixture models', () => {
  it('takes PP-OCR det as a binary segmentation, and neither task for the classifier or the detector', async () => {
    for (const [file, preprocess, segment, ocr] of [
      [PPOCR, { preset: 'paddleocr-det', size: 96 }, /sigmoid_0.tmp_0 \[.*\]: one channel of probabilities/, /no output is a CTC sequence/],
      [MOBILENET, { preset: 'raw01' }, /no output is a per-pixel map/, /no output is a CTC sequence/],
      [SSD, { preset: 'raw01' }, /no output is a per-pixel map/, /several outputs are \[N, T, C\] sequences/],
    ] as const) {
      const model = await loadOnnxModel(file);
      const session = await onnxruntimeBackend.open({ path: file });
      try {
        const { dataset } = await datasetForModel(file, model, { data: IMAGES, preprocess, maxImages: 1, batch: 1 }, 'the test');
        for await (const b of dataset.batches()) {
          const sample = await session.run({ [dataset.inputName]: { dtype: 'float32', dims: b.dims, data: b.data } });
          const s = recognizeSegmentation(session.outputs, sample);
          expect(s.reason, file).toMatch(segment);
          expect(s.options !== undefined, file).toBe(file === PPOCR);
          const o = recognizeOcr(session.outputs, { sample, input: session.inputs[0]! });
          expect(o.reason, file).toMatch(ocr);
          expect(o.options, file).toBeUndefined();
        }
      } finally {
        await session.release();
      }
    }
  });
});
