/**
 * Shared helpers for the ONNX rewriter tests: the fixture photos as model inputs, FP32 references with every
 * activation's max |x| (MinMax calibration), comparison metrics, and small in-memory datasets.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { listActivations } from '../../src/onnx/graph.js';
import type { Batch, Dataset } from '../../src/datasets/types.js';
import type { OnnxModel } from '../../src/onnx/model.js';
import type { Tensor } from '../../src/tensor.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const FIXTURES = path.resolve(here, '../fixtures');
export const MOBILENET = path.join(FIXTURES, 'models/mobilenet_v2_nsfw_224.onnx');
export const PPOCR = path.join(FIXTURES, 'models/ppocr_v4_det.onnx');
export const IMAGES = path.join(FIXTURES, 'images');

export function imageFiles(): string[] {
  return readdirSync(IMAGES)
    .filter((f) => /\.(jpe?g|png)$/i.test(f))
    .sort();
}

/** RGB (or BGR) NCHW float32, stretched to h x w, x/255 then (x - mean) / std per channel. */
export async function loadImage(file: string, h: number, w: number, opts: { bgr?: boolean; mean?: number[]; std?: number[] } = {}): Promise<Tensor> {
  const { data } = await sharp(path.join(IMAGES, file)).removeAlpha().resize(w, h, { fit: 'fill' }).raw().toBuffer({ resolveWithObject: true });
  const mean = opts.mean ?? [0, 0, 0];
  const std = opts.std ?? [1, 1, 1];
  const out = new Float32Array(3 * h * w);
  for (let i = 0; i < h * w; i++) {
    for (let c = 0; c < 3; c++) {
      const src = opts.bgr ? 2 - c : c;
      out[c * h * w + i] = (data[i * 3 + src]! / 255 - mean[c]!) / std[c]!;
    }
  }
  return { dtype: 'float32', dims: [1, 3, h, w], data: out };
}

/** Runs the FP32 model with every activation exposed: max |x| per activation and the outputs per image. */
export async function fp32Reference(file: string, model: OnnxModel, inputName: string, images: Tensor[], outputName: string): Promise<{ amax: Map<string, number>; outputs: Float32Array[] }> {
  const names = listActivations(model).map((a) => a.name);
  const session = await onnxruntimeBackend.open({ path: file }, { threads: 2, expose: names });
  const amax = new Map<string, number>();
  const outputs: Float32Array[] = [];
  for (const x of images) {
    await session.runEach({ [inputName]: x }, names, (name, t) => {
      const d = t.data as Float32Array;
      let m = amax.get(name) ?? 0;
      for (let i = 0; i < d.length; i++) {
        const v = Math.abs(d[i]!);
        if (v > m) m = v;
      }
      amax.set(name, m);
      if (name === outputName) outputs.push(Float32Array.from(d));
    });
  }
  await session.release();
  return { amax, outputs };
}

export function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
}

export function argmax(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}

/** Runs a model (bytes) on each image and returns its first output. */
export async function runAll(label: string, bytes: Uint8Array, inputName: string, images: Tensor[], outputName: string): Promise<Float32Array[]> {
  const session = await onnxruntimeBackend.open({ path: label, bytes }, { threads: 2 });
  const out: Float32Array[] = [];
  for (const x of images) out.push((await session.run({ [inputName]: x }))[outputName]!.data as Float32Array);
  await session.release();
  return out;
}

/** A Dataset over images given as arrays (one image per batch unless batchSize says otherwise). */
export function arrayDataset(images: number[][] | Float32Array[], imageDims: number[], batchSize = 1, names?: string[]): Dataset {
  const files = names ?? images.map((_, i) => `image${i}.png`);
  return {
    inputName: 'x',
    preprocess: {} as Dataset['preprocess'],
    files,
    size: images.length,
    batchSize,
    imageDims,
    async *batches(): AsyncIterable<Batch> {
      for (let i = 0; i < images.length; i += batchSize) {
        const chunk = images.slice(i, i + batchSize).map((a) => Array.from(a));
        yield { index: i / batchSize, data: Float32Array.from(chunk.flat()), dims: [chunk.length, ...imageDims], files: files.slice(i, i + batchSize), partial: chunk.length < batchSize };
      }
    },
  };
}
