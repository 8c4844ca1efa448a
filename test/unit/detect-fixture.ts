/**
 * Test helpers for the detection tests: the SSDLite fixture run on the street frames through the project's dataset
 * and onnxruntime backend, and its outputs re-laid in JS into every other detection layout.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { decodeInputDetections } from '../../src/compare/task/detect/decode.js';
import type { DetectionSpec } from '../../src/compare/task/detect/types.js';
import type { BatchOutputs, ImageGeometry } from '../../src/compare/task/types.js';
import { createDataset, resolvePreprocess } from '../../src/datasets/index.js';
import type { Tensor } from '../../src/tensor.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const SSD = path.resolve(here, '../fixtures/models/ssdlite_mobilenet_v2_coco_300.onnx');
export const STREET = path.resolve(here, '../fixtures/street');
export const COCO_LABELS = path.resolve(here, '../fixtures/models/coco_labels.txt');
export const SSD_SPEC: DetectionSpec = { layout: 'boxes-scores', boxes: 'boxes', format: 'yxyx', normalized: true, scores: 'scores' };
export const ANCHORS = 1917;
export const CLASSES = 90;

export interface SsdRun {
  files: string[];
  /** boxes [N, 1917, 1, 4] and scores [N, 1917, 90] for all frames in one batch. */
  outputs: Record<string, Tensor>;
  images: ImageGeometry[];
  /** Mean wall and CPU time of one session.run (one image, one thread), for the cost of decoding relative to inference. */
  inferenceMs: number;
  inferenceCpuMs: number;
}

/** Runs the SSD on the street frames (RGB, stretch to 300x300, x * 2/255 - 1), one image a run as the model's batch is 1. */
export async function runSsdOnStreet(): Promise<SsdRun> {
  const preprocess = resolvePreprocess({ preset: 'raw01', size: 300, scale: 2 / 255, mean: [1, 1, 1], std: [1, 1, 1] }, { name: 'input', dims: [1, 3, 300, 300] });
  const dataset = await createDataset({ data: STREET, preprocess, inputName: 'input', batchSize: 1, concurrency: 2 });
  const session = await onnxruntimeBackend.open({ path: SSD }, { threads: 1 });
  const boxes: Float32Array[] = [];
  const scores: Float32Array[] = [];
  const files: string[] = [];
  let inferenceMs = 0;
  let inferenceCpuMs = 0;
  try {
    for await (const batch of dataset.batches()) {
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      const out = await session.run({ input: { dtype: 'float32', dims: batch.dims, data: batch.data } }, ['boxes', 'scores']);
      inferenceMs += performance.now() - t0;
      const c = process.cpuUsage(c0);
      inferenceCpuMs += (c.user + c.system) / 1000;
      boxes.push(Float32Array.from(out.boxes!.data as Float32Array));
      scores.push(Float32Array.from(out.scores!.data as Float32Array));
      files.push(...batch.files);
    }
  } finally {
    await session.release();
  }
  const N = files.length;
  const concat = (parts: Float32Array[]): Float32Array => {
    const all = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
    let at = 0;
    for (const p of parts) all.set(p, (at += p.length) - p.length);
    return all;
  };
  const images: ImageGeometry[] = [];
  for (const file of files) {
    const meta = await sharp(file).metadata();
    const width = meta.width!;
    const height = meta.height!;
    images.push({ file, width, height, inputWidth: 300, inputHeight: 300, scaleX: 300 / width, scaleY: 300 / height, offsetX: 0, offsetY: 0 });
  }
  return {
    files,
    images,
    inferenceMs: inferenceMs / N,
    inferenceCpuMs: inferenceCpuMs / N,
    outputs: {
      boxes: { dtype: 'float32', dims: [N, ANCHORS, 1, 4], data: concat(boxes) },
      scores: { dtype: 'float32', dims: [N, ANCHORS, CLASSES], data: concat(scores) },
    },
  };
}

/** The images' rows [from, to) of a batch-first tensor. */
export function sliceImages(t: Tensor, from: number, to: number): Tensor {
  const per = t.dims.slice(1).reduce((a, b) => a * b, 1);
  return { dtype: t.dtype, dims: [to - from, ...t.dims.slice(1)], data: (t.data as Float32Array).slice(from * per, to * per) };
}

export interface Relayout {
  name: string;
  spec: DetectionSpec;
  outputs: BatchOutputs;
}

/**
 * The SSD's outputs in every other layout, built in JS: YOLOv5 [N, A, 5+C] with objectness 1, YOLOv8 [N, 4+C, A]
 * and its transpose, boxes as cxcywh in input pixels; NMS-in-graph [N, 300, 6] and EfficientNMS from the NMS result
 * of the boxes-scores decode (`nmsOptions`), padded with zero rows.
 */
export function relayouts(ssd: { outputs: BatchOutputs; images: readonly ImageGeometry[] }, nmsOptions: { classOffset: number }): Relayout[] {
  const boxes = ssd.outputs.boxes!.data as Float32Array;
  const scores = ssd.outputs.scores!.data as Float32Array;
  const N = ssd.images.length;
  const A = ANCHORS;
  const C = CLASSES;
  const cxcywh = (n: number, a: number): [number, number, number, number] => {
    const k = (n * A + a) * 4;
    const W = ssd.images[n]!.inputWidth;
    const H = ssd.images[n]!.inputHeight;
    const [y1, x1, y2, x2] = [boxes[k]! * H, boxes[k + 1]! * W, boxes[k + 2]! * H, boxes[k + 3]! * W];
    return [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1];
  };
  const v5 = new Float32Array(N * A * (5 + C));
  const v8 = new Float32Array(N * (4 + C) * A);
  const v8t = new Float32Array(N * A * (4 + C));
  for (let n = 0; n < N; n++) {
    for (let a = 0; a < A; a++) {
      const box = cxcywh(n, a);
      const r5 = (n * A + a) * (5 + C);
      const r8t = (n * A + a) * (4 + C);
      for (let k = 0; k < 4; k++) {
        v5[r5 + k] = box[k]!;
        v8t[r8t + k] = box[k]!;
        v8[n * (4 + C) * A + k * A + a] = box[k]!;
      }
      v5[r5 + 4] = 1;
      for (let c = 0; c < C; c++) {
        const s = scores[(n * A + a) * C + c]!;
        v5[r5 + 5 + c] = s;
        v8t[r8t + 4 + c] = s;
        v8[n * (4 + C) * A + (4 + c) * A + a] = s;
      }
    }
  }
  // NMS in the graph: this library's own NMS result, in input pixels, class as the 0-based score column.
  const K = 300;
  const kept = decodeInputDetections(ssd.outputs, ssd.images, { spec: SSD_SPEC, classOffset: nmsOptions.classOffset });
  const rows = new Float32Array(N * K * 6);
  const numDets = new Int32Array(N);
  const enBoxes = new Float32Array(N * K * 4);
  const enScores = new Float32Array(N * K);
  const enClasses = new Int32Array(N * K);
  kept.forEach((dets, n) => {
    numDets[n] = dets.length;
    dets.forEach((d, k) => {
      const column = d.classId - nmsOptions.classOffset;
      rows.set([d.x1, d.y1, d.x2, d.y2, d.score, column], (n * K + k) * 6);
      enBoxes.set([d.x1, d.y1, d.x2, d.y2], (n * K + k) * 4);
      enScores[n * K + k] = d.score;
      enClasses[n * K + k] = column;
    });
  });
  return [
    { name: 'yolov5', spec: { layout: 'yolov5', output: 'output0' }, outputs: { output0: { dtype: 'float32', dims: [N, A, 5 + C], data: v5 } } },
    { name: 'yolov8', spec: { layout: 'yolov8', output: 'output0', transposed: false }, outputs: { output0: { dtype: 'float32', dims: [N, 4 + C, A], data: v8 } } },
    { name: 'yolov8-transposed', spec: { layout: 'yolov8', output: 'output0', transposed: true }, outputs: { output0: { dtype: 'float32', dims: [N, A, 4 + C], data: v8t } } },
    { name: 'nms', spec: { layout: 'nms', output: 'output0' }, outputs: { output0: { dtype: 'float32', dims: [N, K, 6], data: rows } } },
    {
      name: 'efficient-nms',
      spec: { layout: 'efficient-nms', numDets: 'num_dets', boxes: 'det_boxes', scores: 'det_scores', classes: 'det_classes' },
      outputs: {
        num_dets: { dtype: 'int32', dims: [N, 1], data: numDets },
        det_boxes: { dtype: 'float32', dims: [N, K, 4], data: enBoxes },
        det_scores: { dtype: 'float32', dims: [N, K], data: enScores },
        det_classes: { dtype: 'int32', dims: [N, K], data: enClasses },
      },
    },
  ];
}

/** A deterministic "quantised" variant of the SSD outputs: boxes shifted right by 1% of the width, scores squared. */
export function perturbSsd(outputs: BatchOutputs): Record<string, Tensor> {
  const boxes = Float32Array.from(outputs.boxes!.data as Float32Array);
  for (let i = 0; i < boxes.length; i += 4) {
    boxes[i + 1] = boxes[i + 1]! + 0.01;
    boxes[i + 3] = boxes[i + 3]! + 0.01;
  }
  const scores = Float32Array.from(outputs.scores!.data as Float32Array, (s) => s * s);
  return { boxes: { ...outputs.boxes!, data: boxes }, scores: { ...outputs.scores!, data: scores } };
}
