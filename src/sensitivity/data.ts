/**
 * The evaluation data that sensitivity analysis and the mixed-precision search run every variant on: the
 * images decoded and preprocessed ONCE and kept in memory as Float32 batches, and the FP32 model's outputs on
 * them, computed ONCE. Every variant (one per layer and measure, one per search step) then costs one
 * onnxruntime session and one inference pass, never a decode.
 *
 * Memory bound: images x (one image's elements, e.g. C x H x W) x 4 bytes for the inputs, plus the FP32
 * outputs (images x output elements x 4 bytes; 20 bytes per image for a 5-class classifier). The 43 calibration
 * images of the MobileNetV2 fixture take 43 x 3 x 224 x 224 x 4 = 25.9 MB. Above `maxBytes` the work is refused
 * before any image is decoded, with the number of images that would fit.
 *
 * The INT8 and FP16 rounding noise of the tensors the caller names (the quantized inputs of the layers) is
 * measured by measureTensorNoise, as running sums (no activation is kept): by counting nodes in the FP32 model
 * through onnxruntime's C API (src/backends/onnxruntime-noise.ts) over the kept batches, or, where that library
 * cannot be loaded, in this FP32 pass (`measure`) from onnxruntime-node's outputs. The same sums, bit for bit.
 */
import path from 'node:path';
import { onnxruntimeBackend } from '../backends/onnxruntime.js';
import { NativeNoisePass, nativeNoiseUnsupported } from '../backends/onnxruntime-noise.js';
import type { Session } from '../backends/types.js';
import { saveOnnxModel, type OnnxModel } from '../onnx/model.js';
import type { PreparedTask } from '../compare/task/index.js';
import type { ImageGeometry } from '../compare/task/types.js';
import type { Dataset, SkippedFile } from '../datasets/types.js';
import { UserError } from '../errors.js';
import { silentReporter, type Reporter } from '../reporter.js';
import { elementCount, formatDims, type Tensor } from '../tensor.js';
import { floatValues } from '../compare/metrics.js';
import { TensorNoise } from './noise.js';

export const DEFAULT_MAX_MEMORY_BYTES = 2 * 1024 ** 3;

export interface CachedBatch {
  /** Float32 data of `dims`, batch first, exactly as the dataset produced it. */
  data: Float32Array;
  dims: number[];
  files: string[];
}

export interface EvaluationData {
  /** The model input the batches feed. */
  inputName: string;
  batches: CachedBatch[];
  /** FP32 outputs per batch (copies, so that they outlive the session), by output name. */
  fp32Outputs: Array<Record<string, Tensor>>;
  /** The outputs compared, in the model's order. */
  outputs: string[];
  /** Images kept (skipped files excluded), in order. */
  files: string[];
  skipped: SkippedFile[];
  /** Class per image when the caller gave labels (undefined: unlabelled). */
  labels?: Array<number | undefined>;
  /** Bytes held by the batches and the FP32 outputs. */
  bytes: number;
  /** Set by the caller for detection, segmentation and OCR: the task that scores variants, and each batch's image geometries. */
  task?: PreparedTask;
  geometries?: ImageGeometry[][];
  /** Noise sums of the tensors measured during the FP32 pass. */
  noise: Map<string, TensorNoise>;
  seconds: { decodeAndFp32: number; noise?: number };
}

export interface PrepareOptions {
  dataset: Dataset;
  /** The FP32 model's session; it must expose every tensor of `measure` that is not a graph input. */
  session: Session;
  /** Outputs to compare (default: the session's outputs). */
  outputs?: readonly string[];
  /** Tensors whose INT8 noise (with this scale) and FP16 noise are measured; undefined scale: FP16 and range only. */
  measure?: ReadonlyMap<string, number | undefined>;
  /** Refuse above this many bytes of kept data (default 2 GiB). */
  maxBytes?: number;
  /** Class index per file (path as the dataset names it, resolved). */
  labels?: ReadonlyMap<string, number>;
  reporter?: Reporter;
  signal?: AbortSignal;
}

function mib(bytes: number): string {
  return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
}

/** Checks the memory bound before anything is decoded (see the file comment). */
export function checkMemoryBound(dataset: Dataset, maxBytes: number): number {
  const perImage = elementCount(dataset.imageDims) * 4;
  const need = dataset.size * perImage;
  if (need > maxBytes) {
    const fit = Math.max(1, Math.floor(maxBytes / perImage));
    throw new UserError(
      `Keeping ${dataset.size} preprocessed images in memory takes ${dataset.size} x ${formatDims(dataset.imageDims)} x 4 bytes = ${mib(need)}, above the limit of ${mib(maxBytes)}.`,
      { hint: `Use --max-images ${fit} (a reproducible subset), or raise --max-memory if the machine has the memory.` },
    );
  }
  return need;
}

/** Decodes every image once, runs FP32 once, keeps both (see the file comment). */
export async function prepareEvaluationData(options: PrepareOptions): Promise<EvaluationData> {
  const { dataset, session } = options;
  const reporter = options.reporter ?? silentReporter;
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_MEMORY_BYTES;
  checkMemoryBound(dataset, maxBytes);
  const outputs = [...(options.outputs ?? session.outputs.map((o) => o.name))];
  if (outputs.length === 0) throw new UserError('The model has no outputs to compare.');
  const measure = options.measure ?? new Map<string, number | undefined>();
  const noise = new Map<string, TensorNoise>([...measure].map(([name, scale]) => [name, new TensorNoise(scale)]));
  const fetch = [...new Set([...outputs, ...measure.keys()])];
  const labelsByFile = options.labels === undefined ? undefined : new Map([...options.labels].map(([f, l]) => [path.resolve(f), l]));

  const batches: CachedBatch[] = [];
  const fp32Outputs: Array<Record<string, Tensor>> = [];
  const files: string[] = [];
  const skipped: SkippedFile[] = [];
  let bytes = 0;
  const started = performance.now();
  reporter.start('decoding and running FP32', dataset.size, 'images');
  try {
    for await (const batch of dataset.batches({
      onSkip: (s) => {
        skipped.push(s);
        reporter.warn(`skipped ${s.file}: ${s.reason}`);
      },
      ...(options.signal ? { signal: options.signal } : {}),
    })) {
      const kept: Record<string, Tensor> = {};
      await session.runEach({ [dataset.inputName]: { dtype: 'float32', dims: batch.dims, data: batch.data } }, fetch, (name, tensor) => {
        const n = noise.get(name);
        if (n) n.addImages(floatValues(tensor, `tensor ${JSON.stringify(name)}`), batch.files.length);
        // Copy: onnxruntime's buffers are released (or reused) after the callback.
        if (outputs.includes(name)) kept[name] = { dtype: tensor.dtype, dims: [...tensor.dims], data: tensor.data.slice() as Tensor['data'] };
        // Output buffers are reused from batch to batch (what is kept is copied above): exposing every layer's
        // input allocates tens of megabytes per batch otherwise.
      }, { reuseOutputs: true });
      for (const name of outputs) bytes += kept[name]!.data.byteLength;
      bytes += batch.data.byteLength;
      if (bytes > maxBytes) {
        throw new UserError(`The kept images and FP32 outputs passed the memory limit of ${mib(maxBytes)} after ${files.length + batch.files.length} images.`, {
          hint: 'Use --max-images to evaluate on fewer images, or raise --max-memory.',
        });
      }
      batches.push({ data: batch.data, dims: batch.dims, files: batch.files });
      fp32Outputs.push(kept);
      files.push(...batch.files);
      reporter.update({ done: files.length + skipped.length, detail: path.basename(batch.files[batch.files.length - 1]!) });
    }
  } finally {
    reporter.stop();
  }
  if (files.length === 0) throw new UserError('No image could be decoded: nothing to evaluate.');
  const data: EvaluationData = {
    inputName: dataset.inputName,
    batches,
    fp32Outputs,
    outputs,
    files,
    skipped,
    bytes,
    noise,
    seconds: { decodeAndFp32: (performance.now() - started) / 1000 },
  };
  if (labelsByFile) data.labels = files.map((f) => labelsByFile.get(path.resolve(f)));
  return data;
}

export interface NoiseOptions {
  /** The model's file, or its name in messages when `fromFile` is false. */
  modelFile: string;
  model: OnnxModel;
  /** False when `model` is not the file's (an edited model): the onnxruntime-node path then opens its bytes. */
  fromFile?: boolean;
  /** Tensors and their INT8 scale (undefined: FP16 and the range only). */
  measure: ReadonlyMap<string, number | undefined>;
  threads?: number;
  reporter?: Reporter;
  signal?: AbortSignal;
}

/**
 * The noise sums of `measure`'s tensors over the kept batches, in image order (see the file comment): through the
 * collector's counting nodes where onnxruntime's library loads, else through onnxruntime-node's outputs and
 * TensorNoise's loop. Both give the same bytes (test/unit/noise-native.test.ts).
 */
export async function measureTensorNoise(data: EvaluationData, options: NoiseOptions): Promise<{ noise: Map<string, TensorNoise>; path: 'native' | 'onnxruntime-node'; seconds: number }> {
  const started = performance.now();
  const reporter = options.reporter ?? silentReporter;
  const tensors = [...options.measure].map(([name, scale]) => ({ name, ...(scale !== undefined ? { scale } : {}) }));
  const why = tensors.length === 0 ? 'nothing to measure' : nativeNoiseUnsupported({ model: options.model, inputName: data.inputName, tensors });
  if (why === undefined) {
    let pass: NativeNoisePass | undefined;
    try {
      pass = await NativeNoisePass.open({ modelFile: options.modelFile, model: options.model, inputName: data.inputName, tensors, ...(options.threads ? { threads: options.threads } : {}) });
      for (const b of data.batches) {
        options.signal?.throwIfAborted();
        await pass.add(b.dims, b.data);
      }
      const sums = await pass.finish();
      const noise = new Map(tensors.map((t, i) => [t.name, TensorNoise.fromSums(t.scale, sums[i]!)]));
      return { noise, path: 'native', seconds: (performance.now() - started) / 1000 };
    } catch (err) {
      if (options.signal?.aborted || process.env.TRT_CALIB_COLLECTOR === 'native') throw err;
      reporter.info(`noise sums through onnxruntime-node (${(err as Error).message.split('\n')[0]})`);
    } finally {
      pass?.close();
    }
  }
  const noise = new Map<string, TensorNoise>(tensors.map((t) => [t.name, new TensorNoise(t.scale)]));
  if (tensors.length > 0) {
    const exposed = tensors.map((t) => t.name).filter((n) => n !== data.inputName);
    const source = options.fromFile === false ? { path: options.modelFile, bytes: saveOnnxModel(options.model) } : { path: options.modelFile };
    const session = await onnxruntimeBackend.open(source, { ...(options.threads ? { threads: options.threads } : {}), expose: exposed });
    try {
      for (const b of data.batches) {
        options.signal?.throwIfAborted();
        const input = noise.get(data.inputName);
        if (input) input.addImages(b.data, b.files.length);
        if (exposed.length === 0) continue;
        await session.runEach({ [data.inputName]: { dtype: 'float32', dims: b.dims, data: b.data } }, exposed, (name, tensor) => {
          noise.get(name)?.addImages(floatValues(tensor, `tensor ${JSON.stringify(name)}`), b.files.length);
        }, { reuseOutputs: true });
      }
    } finally {
      await session.release();
    }
  }
  return { noise, path: 'onnxruntime-node', seconds: (performance.now() - started) / 1000 };
}

/**
 * The kept data restricted to the images at `indices` (positions in `data.files`), in their original order and
 * regrouped in batches of `batchSize`: images, FP32 outputs (batch first), labels and image geometries. The
 * noise sums stay those of every image. For --hardest: variants are run on this subset.
 */
export function subsetEvaluationData(data: EvaluationData, indices: readonly number[], batchSize: number): EvaluationData {
  const wanted = [...new Set(indices)].sort((a, b) => a - b);
  // Per image: (batch, position in it).
  const where: Array<[number, number]> = [];
  data.batches.forEach((b, k) => b.files.forEach((_, j) => where.push([k, j])));
  const slice = (t: Tensor, images: number, j: number, name: string): Tensor => {
    if (t.dims[0] !== images) {
      throw new UserError(`--hardest needs batch-first outputs: output ${JSON.stringify(name)} has dims ${formatDims(t.dims)} for a batch of ${images}.`, { hint: 'Run without --hardest.' });
    }
    const per = t.data.length / images;
    return { dtype: t.dtype, dims: [1, ...t.dims.slice(1)], data: t.data.slice(j * per, (j + 1) * per) as Tensor['data'] };
  };
  const concat = (parts: Tensor[]): Tensor => {
    const first = parts[0]!;
    const per = first.data.length;
    const out = new (first.data.constructor as new (n: number) => Tensor['data'])(per * parts.length);
    parts.forEach((p, i) => (out as Float32Array).set(p.data as Float32Array, i * per));
    return { dtype: first.dtype, dims: [parts.length, ...first.dims.slice(1)], data: out };
  };
  const batches: CachedBatch[] = [];
  const fp32Outputs: Array<Record<string, Tensor>> = [];
  const geometries: ImageGeometry[][] | undefined = data.geometries ? [] : undefined;
  let bytes = 0;
  for (let s = 0; s < wanted.length; s += batchSize) {
    const group = wanted.slice(s, s + batchSize);
    const images = group.map((i) => {
      const [k, j] = where[i]!;
      const b = data.batches[k]!;
      const n = b.files.length;
      return { k, j, n, b };
    });
    const inputs = images.map(({ b, n, j }) => slice({ dtype: 'float32', dims: b.dims, data: b.data }, n, j, data.inputName));
    const input = concat(inputs);
    batches.push({ data: input.data as Float32Array, dims: input.dims, files: images.map(({ b, j }) => b.files[j]!) });
    bytes += input.data.byteLength;
    const outputs: Record<string, Tensor> = {};
    for (const name of data.outputs) {
      outputs[name] = concat(images.map(({ k, n, j }) => slice(data.fp32Outputs[k]![name]!, n, j, name)));
      bytes += outputs[name]!.data.byteLength;
    }
    fp32Outputs.push(outputs);
    if (geometries) geometries.push(images.map(({ k, j }) => data.geometries![k]![j]!));
  }
  const subset: EvaluationData = {
    ...data,
    batches,
    fp32Outputs,
    files: wanted.map((i) => data.files[i]!),
    bytes,
    ...(data.labels ? { labels: wanted.map((i) => data.labels![i]) } : {}),
  };
  if (geometries) subset.geometries = geometries;
  return subset;
}
