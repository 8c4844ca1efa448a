/**
 * Bias correction (empirical): quantizing a layer's weights (and its input) shifts the mean of each of its output
 * channels; adding the opposite shift to the bias removes it. Method of Nagel et al., "Data-Free Quantization
 * Through Weight Equalization and Bias Correction" (ICCV 2019, section 4.2, empirical variant), layer by layer in
 * graph order as NNCF's BiasCorrection does it (nncf/quantization/algorithms/bias_correction/algorithm.py): each
 * layer's shift is measured on the calibration images with the layers before it already corrected, and folded into
 * its bias. What is measured depends on the mode: `weights` (default), the shift the weights' rounding causes on
 * the layer's quantized input, E[W x_q] - E[W_q x_q] (NNCF too corrects the weights' error only: it removes
 * the activation quantizers before comparing with the FP32 outputs); `full`, E[y_k, FP32 model] - E[y_k, quantized model].
 *
 * The quantized model is the one TensorRT runs: activations per tensor (the cache's scales), weights per output
 * channel at max|W_c|/127 (src/onnx/qdq.ts, the scheme TensorRT applies to the weights of an implicitly quantized
 * network too), emulated in float by onnxruntime, biases in float.
 *
 * Passes: one FP32 pass for the reference means, and one quantized pass cut into segments (segmentsOf): segment d
 * holds the nodes whose nearest upstream corrected layers are all in earlier segments, so its layers ("wave" d) see
 * every correction before them. The activations at each cut are kept per image, and a corrected layer's output is
 * fed on as y + shift, which is what the corrected bias gives (up to one float rounding).
 *
 * Memory: each segment holds one image's activations of its part of the graph; the (layers x channels) float64
 * sums; the preprocessed images while they fit in `imageCacheBytes` (default 256 MiB, else decoded again for each
 * pass); the activations at the current cut, in memory up to `frontierBytes` (default 1 GiB) and beyond that in
 * files of a temporary folder, each dropped after its last reader and all removed at the end.
 *
 * Determinism: images go one at a time (batch 1) in file order; each image's channel means are summed in float64
 * and the per-image means are summed in file order, so the result depends neither on the batch size nor on the
 * order the files were listed in. onnxruntime's CPU kernels give the same values for any thread count.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { onnxruntimeBackend } from '../backends/onnxruntime.js';
import type { Dataset } from '../datasets/types.js';
import { UserError } from '../errors.js';
import { applyBiasShifts, outputChannelAxis } from '../onnx/bias.js';
import { pruneToOutputs } from '../onnx/expose.js';
import { analyzeGraph } from '../onnx/graph.js';
import { makeValueInfo } from '../onnx/build.js';
import { ELEM, graphOf, onnx, saveOnnxModel, withGraph, type OnnxModel, type OnnxTensorProto } from '../onnx/model.js';
import { nodeLabel } from '../onnx/opset.js';
import { quantizeQdq } from '../onnx/qdq.js';
import type { LayerPrecision } from '../precision/map.js';
import { silentReporter, type Reporter } from '../reporter.js';
import type { Tensor } from '../tensor.js';

export interface BiasCorrectionOptions {
  /** The FP32 model. */
  model: OnnxModel;
  file: string;
  /** Activation tensor -> INT8 scale (amax / 127), as in a calibration cache. */
  activationScales: ReadonlyMap<string, number>;
  /** Layers kept out of INT8 are not corrected (and run in float). */
  precisionMap?: ReadonlyMap<string, LayerPrecision>;
  /** Per-channel weight scales by weight tensor (from --weight-search); default max|W_c| / 127. */
  weightScales?: ReadonlyMap<string, Float32Array>;
  /** The calibration images. */
  dataset: Dataset;
  threads?: number;
  imageCacheBytes?: number;
  /**
   * weights (default): only the weights' part, E[W x_q] - E[W_q x_q] on the same quantized input x_q (the weight
   * error that Nagel et al. and NNCF correct), which leaves the activations' clipping alone; full: the shift of
   * E[y] against the FP32 model, caused by quantizing the weights and the input (and everything before).
   * Measured on MobileNetV2 (docs/algorithms.md): full hurts with the clipping calibrators, weights helps.
   */
  mode?: 'full' | 'weights';
  /** Activations kept in memory at the cuts between segments, in bytes, before they go to temporary files. */
  frontierBytes?: number;
  reporter?: Reporter;
}

export interface LayerCorrection {
  node: string;
  op: string;
  /** The shift added to each output channel's bias. */
  shift: Float64Array;
}

export interface BiasCorrectionResult {
  /** The FP32 model with corrected biases (otherwise the input model). */
  model: OnnxModel;
  layers: LayerCorrection[];
  skipped: Array<{ node: string; reason: string }>;
  images: number;
  /** Passes over the images: one quantized (cut into segments), plus one FP32 in the full mode. */
  passes: number;
  /** Bytes of cut activations that went to temporary files (0: all fitted in memory). */
  spilledBytes: number;
  seconds: number;
}

interface Target {
  label: string;
  op: string;
  output: string;
}

/** The correction of every INT8 weighted layer; see the file comment. */
export async function correctBiases(options: BiasCorrectionOptions): Promise<BiasCorrectionResult> {
  const started = performance.now();
  const reporter = options.reporter ?? silentReporter;
  const { model, file } = options;
  const qdq = quantizeQdq(model, { activationScales: options.activationScales, precisionMap: options.precisionMap, weightScales: options.weightScales, file });
  const withWeights = new Set(qdq.weights.map((w) => w.node));
  const targets: Target[] = [];
  for (const n of graphOf(model).node) {
    const label = nodeLabel(n);
    if (withWeights.has(label)) targets.push({ label, op: n.opType, output: n.output[0]! });
  }
  const images = await imageSource(options.dataset, options.imageCacheBytes ?? DEFAULT_IMAGE_CACHE, reporter);
  if (targets.length === 0) return { model, layers: [], skipped: [], images: 0, passes: 0, spilledBytes: 0, seconds: (performance.now() - started) / 1000 };

  const mode = options.mode ?? 'weights';
  const floatWeights = mode === 'weights' ? floatWeightsOf(model, targets) : undefined;
  const segments = segmentsOf(qdq.model, targets, floatWeights);
  reporter.info(`bias correction (${mode}): ${targets.length} layers in ${segments.length} waves, ${mode === 'full' ? 'one FP32 pass and ' : ''}one quantized pass in ${segments.length} segments`);
  reporter.start('bias correction', 1 + segments.length, 'steps');
  const store = new FrontierStore(options.frontierBytes ?? DEFAULT_FRONTIER);
  try {
    // full: the FP32 model's means; weights: each layer's own output with FP32 weights on the same quantized input.
    const reference = mode === 'full' ? await channelMeans(saveOnnxModel(pruneToOutputs(model, targets.map((t) => t.output))), file, targets, images, options.threads) : new Map<string, Float64Array>();
    reporter.update({ done: 1 });
    const shifts = new Map<string, Float64Array>();
    const byOutput = new Map(targets.map((t) => [t.output, t]));
    for (const [d, segment] of segments.entries()) {
      // The inputs' ranks are known once the earlier segments have run: the segment model is made now.
      const rankOf = (name: string) => (name === segment.imageInput ? images.rank : store.rank(name));
      const session = await onnxruntimeBackend.open({ path: file, bytes: saveOnnxModel(segment.model(rankOf)) }, { threads: options.threads, qdq: 'emulate' });
      const sums = new Map<string, Float64Array>();
      const floatSums = new Map<string, Float64Array>();
      const byFloatOutput = new Map(segment.wave.map((t) => [floatOutputName(t), t]));
      let index = 0;
      try {
        await images.each(async (image) => {
          const feed: Record<string, Tensor> = {};
          for (const name of segment.inputs) feed[name] = name === segment.imageInput ? image : await store.get(name, index);
          await session.runEach(feed, segment.outputs, async (name, tensor) => {
            const t = byOutput.get(name) ?? byFloatOutput.get(name);
            if (t && segment.wave.includes(t)) {
              const means = perImageChannelMeans(tensor, outputChannelAxis(t.op, tensor.dims.length));
              const into = name === t.output ? sums : floatSums;
              const sum = into.get(t.label);
              if (!sum) into.set(t.label, means);
              else for (let c = 0; c < sum.length; c++) sum[c] = sum[c]! + means[c]!;
            }
            if (segment.kept.has(name)) await store.put(name, index, { dtype: 'float32', dims: [...tensor.dims], data: (tensor.data as Float32Array).slice() });
          });
          index++;
        });
      } finally {
        await session.release();
      }
      for (const t of segment.wave) {
        const q = sums.get(t.label)!;
        const ref = reference.get(t.label) ?? floatSums.get(t.label)!.map((v) => v / index);
        const shift = Float64Array.from(ref, (r, c) => r - q[c]! / index);
        shifts.set(t.label, shift);
        // The later segments read the corrected output: y + shift, exactly what the corrected bias gives.
        if (segment.kept.has(t.output)) await store.shift(t.output, index, shift, (dims) => outputChannelAxis(t.op, dims.length));
      }
      for (const name of segment.lastUse) await store.drop(name, index);
      reporter.update({ done: 2 + d, detail: segment.wave[0]!.label });
    }
    const final = applyBiasShifts(model, shifts);
    const skippedNodes = new Set(final.skipped.map((s) => s.node));
    return {
      model: final.model,
      layers: targets.filter((t) => !skippedNodes.has(t.label)).map((t) => ({ node: t.label, op: t.op, shift: shifts.get(t.label)! })),
      skipped: final.skipped,
      images: images.count,
      passes: mode === 'full' ? 2 : 1,
      spilledBytes: store.spilled,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    reporter.stop();
    await store.close();
  }
}

const DEFAULT_IMAGE_CACHE = 256 * 2 ** 20;
const DEFAULT_FRONTIER = 1024 * 2 ** 20;

function floatOutputName(t: Target): string {
  return `${t.output}/float_weight_output`;
}

/** The FP32 weight of each target (initializer or Constant value), for the weights mode. */
function floatWeightsOf(model: OnnxModel, targets: readonly Target[]): Map<string, OnnxTensorProto> {
  const g = graphOf(model);
  const sources = new Map<string, OnnxTensorProto>(g.initializer.map((t) => [t.name, t]));
  for (const n of g.node) {
    const value = n.opType === 'Constant' ? n.attribute.find((a) => a.name === 'value')?.t : undefined;
    if (value) sources.set(n.output[0]!, value as OnnxTensorProto);
  }
  const out = new Map<string, OnnxTensorProto>();
  const byOutput = new Map(targets.map((t) => [t.output, t]));
  for (const n of g.node) {
    const t = byOutput.get(n.output[0]!);
    const w = t ? sources.get(n.input[1] ?? '') : undefined;
    if (t && w) out.set(t.label, w);
  }
  return out;
}

interface Segment {
  /** The targets whose outputs this segment produces. */
  wave: Target[];
  model: (rankOf: (input: string) => number) => OnnxModel;
  inputs: string[];
  imageInput: string;
  outputs: string[];
  /** Outputs that later segments read (kept in the store). */
  kept: Set<string>;
  /** Stored tensors no segment after this one reads. */
  lastUse: string[];
}

/**
 * Cuts the quantized graph after each wave of target layers. depth(node) = the largest, over its inputs, of the
 * producer's depth, plus one where the producer is a target layer: segment d holds the nodes of depth d, and its
 * targets are exactly the layers whose target ancestors are all in earlier segments. Nodes that compute constants
 * (weight DequantizeLinear, Constant) go into every segment that reads them, so that no weight is stored.
 */
function segmentsOf(model: OnnxModel, targets: readonly Target[], floatWeights?: ReadonlyMap<string, OnnxTensorProto>): Segment[] {
  const g = graphOf(model);
  const analysis = analyzeGraph(model);
  const imageInput = analysis.inputs[0]!.name;
  const producer = new Map<string, number>();
  g.node.forEach((n, i) => n.output.forEach((o) => producer.set(o, i)));
  const targetOutputs = new Map(targets.map((t) => [t.output, t]));
  const isConstant = (name: string) => analysis.tensors.get(name)?.constant === true;
  const depth = new Int32Array(g.node.length).fill(-1);
  g.node.forEach((n, i) => {
    if (n.output.every(isConstant)) return; // constant: placed with its readers
    let d = 0;
    for (const input of n.input) {
      const p = producer.get(input);
      if (p === undefined || depth[p]! < 0) continue;
      d = Math.max(d, depth[p]! + (targetOutputs.has(g.node[p]!.output[0]!) ? 1 : 0));
    }
    depth[i] = d;
  });
  const count = Math.max(0, ...targets.map((t) => depth[producer.get(t.output)!]!)) + 1;
  const lastReader = new Map<string, number>();
  g.node.forEach((n, i) => {
    if (depth[i]! < 0) return;
    for (const input of n.input) if (!isConstant(input) && input !== '') lastReader.set(input, Math.max(lastReader.get(input) ?? -1, depth[i]!));
  });
  const segments: Segment[] = [];
  for (let d = 0; d < count; d++) {
    const members = new Set<number>();
    g.node.forEach((_, i) => depth[i] === d && members.add(i));
    // The constant nodes these read, transitively.
    const stack = [...members];
    while (stack.length > 0) {
      for (const input of g.node[stack.pop()!]!.input) {
        const p = producer.get(input);
        if (p !== undefined && depth[p]! < 0 && !members.has(p)) {
          members.add(p);
          stack.push(p);
        }
      }
    }
    const produced = new Set<string>();
    for (const i of members) for (const o of g.node[i]!.output) produced.add(o);
    const inputs = new Set<string>();
    for (const i of members) for (const input of g.node[i]!.input) if (input !== '' && !produced.has(input) && !isConstant(input)) inputs.add(input);
    const wave = targets.filter((t) => depth[producer.get(t.output)!] === d);
    const kept = new Set<string>();
    for (const name of produced) if ((lastReader.get(name) ?? -1) > d) kept.add(name);
    const node = g.node.filter((_, i) => members.has(i));
    // weights mode: a copy of each wave layer reading the same quantized input with its FP32 weight.
    const extraInits: OnnxTensorProto[] = [];
    const floatCopies: string[] = [];
    for (const t of floatWeights ? wave : []) {
      const w = floatWeights!.get(t.label);
      const q = node.find((n) => n.output[0] === t.output);
      if (!w || !q) continue;
      const weightName = `${t.output}/float_weight`;
      extraInits.push(onnx.TensorProto.create({ ...w, name: weightName }));
      node.push(onnx.NodeProto.create({ ...q, name: `${q.name}/float_weight_copy`, input: [q.input[0]!, weightName, ...q.input.slice(2)], output: [floatOutputName(t)] }));
      floatCopies.push(floatOutputName(t));
    }
    const outputs = [...new Set([...wave.map((t) => t.output), ...floatCopies, ...kept])];
    const reads = new Set(node.flatMap((n) => n.input));
    const segmentModel = (rankOf: (input: string) => number) =>
      withGraph(model, {
        ...g,
        node,
        initializer: [...g.initializer.filter((t) => reads.has(t.name)), ...extraInits],
        input: [...inputs].map((name) => makeValueInfo(name, ELEM.FLOAT, new Array<number>(rankOf(name)).fill(-1))),
        output: outputs.map((name) => makeValueInfo(name, ELEM.FLOAT)),
        valueInfo: [],
      });
    const lastUse = [...lastReader].filter(([name, last]) => last === d && name !== imageInput).map(([name]) => name);
    segments.push({ wave, model: segmentModel, inputs: [...inputs], imageInput, outputs, kept, lastUse });
  }
  return segments;
}

/**
 * The activations at the cuts, per image: in memory up to `budget` bytes, then in files of a temporary folder
 * (removed at the end). Only the tensors a later segment reads are kept, and each is dropped after its last reader.
 */
class FrontierStore {
  #memory = new Map<string, Tensor>();
  #bytes = 0;
  #dir: string | undefined;
  #onDisk = new Map<string, number[]>();
  #ranks = new Map<string, number>();
  spilled = 0;
  constructor(readonly budget: number) {}

  rank(name: string): number {
    const r = this.#ranks.get(name);
    if (r === undefined) throw new Error(`bias correction: '${name}' is read before any segment produced it`);
    return r;
  }

  async put(name: string, image: number, tensor: Tensor): Promise<void> {
    const key = `${image}\u0000${name}`;
    this.#ranks.set(name, tensor.dims.length);
    if (this.#bytes + tensor.data.byteLength <= this.budget) {
      this.#memory.set(key, tensor);
      this.#bytes += tensor.data.byteLength;
      return;
    }
    this.#dir ??= await fsp.mkdtemp(path.join(os.tmpdir(), 'trt-calib-bc-'));
    this.#onDisk.set(key, [...tensor.dims]);
    const data = tensor.data as Float32Array;
    await fsp.writeFile(this.#file(key), new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    this.spilled += data.byteLength;
  }

  async get(name: string, image: number): Promise<Tensor> {
    const key = `${image}\u0000${name}`;
    const t = this.#memory.get(key);
    if (t) return t;
    const dims = this.#onDisk.get(key);
    if (!dims) throw new Error(`bias correction: '${name}' of image ${image} was not stored`);
    const bytes = await fsp.readFile(this.#file(key));
    return { dtype: 'float32', dims, data: new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4) };
  }

  async shift(name: string, images: number, shift: Float64Array, axisOf: (dims: readonly number[]) => number): Promise<void> {
    for (let i = 0; i < images; i++) {
      const t = await this.get(name, i);
      const data = t.data as Float32Array;
      const axis = axisOf(t.dims);
      const inner = t.dims.slice(axis + 1).reduce((a, b) => a * b, 1);
      const channels = t.dims[axis]!;
      for (let k = 0; k < data.length; k++) data[k] = data[k]! + shift[Math.floor(k / inner) % channels]!;
      const key = `${i}\u0000${name}`;
      if (!this.#memory.has(key)) await fsp.writeFile(this.#file(key), new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
  }

  async drop(name: string, images: number): Promise<void> {
    for (let i = 0; i < images; i++) {
      const key = `${i}\u0000${name}`;
      const t = this.#memory.get(key);
      if (t) {
        this.#bytes -= t.data.byteLength;
        this.#memory.delete(key);
      } else if (this.#onDisk.delete(key)) await fsp.rm(this.#file(key), { force: true });
    }
  }

  async close(): Promise<void> {
    this.#memory.clear();
    if (this.#dir) await fsp.rm(this.#dir, { recursive: true, force: true });
  }

  #file(key: string): string {
    return path.join(this.#dir!, `${createHash('sha1').update(key).digest('hex')}.f32`);
  }
}

export interface ImageSource {
  count: number;
  /** Rank of the image tensors (known after the first pass). */
  rank: number;
  each(onImage: (feed: Tensor) => Promise<void>): Promise<void>;
}

/** One image at a time in file order; kept in memory across passes while they fit in `budget` bytes. */
export async function imageSource(dataset: Dataset, budget: number, reporter: Reporter): Promise<ImageSource> {
  const cached: Tensor[] = [];
  let bytes = 0;
  let fits = true;
  const each = async (onImage: (feed: Tensor) => Promise<void>, keep: boolean) => {
    let count = 0;
    for await (const batch of dataset.batches({ order: 'files', onSkip: (s) => keep && reporter.warn(`skipped ${s.file}: ${s.reason}`) })) {
      const per = batch.data.length / batch.files.length;
      for (let i = 0; i < batch.files.length; i++) {
        const image: Tensor = { dtype: 'float32', dims: [1, ...batch.dims.slice(1)], data: batch.data.slice(i * per, (i + 1) * per) };
        if (keep && fits) {
          bytes += image.data.byteLength;
          if (bytes > budget) {
            fits = false;
            cached.length = 0;
          } else cached.push(image);
        }
        count++;
        rank = image.dims.length;
        await onImage(image);
      }
    }
    return count;
  };
  // The first pass counts the images (and caches them); later passes replay the cache or decode again.
  let count = -1;
  let rank = dataset.imageDims.length + 1; // [1, ...image dims]
  return {
    get rank() {
      return rank;
    },
    get count() {
      return Math.max(count, 0);
    },
    async each(onImage) {
      if (count >= 0 && fits) {
        for (const image of cached) await onImage(image);
        return;
      }
      const n = await each(onImage, count < 0);
      if (count < 0) count = n;
      if (n === 0) throw new UserError(`None of the ${dataset.size} calibration images could be read for bias correction.`);
    },
  };
}

/** Mean of each output channel of each target, over the images (per-image means summed in file order). */
async function channelMeans(bytes: Uint8Array, file: string, targets: readonly Target[], images: ImageSource, threads?: number): Promise<Map<string, Float64Array>> {
  const session = await onnxruntimeBackend.open({ path: file, bytes }, { threads, qdq: 'emulate' });
  const sums = new Map<string, Float64Array>();
  let n = 0;
  try {
    const byOutput = new Map(targets.map((t) => [t.output, t]));
    const fetch = targets.map((t) => t.output);
    const inputName = session.inputs[0]!.name;
    await images.each(async (image) => {
      await session.runEach({ [inputName]: image }, fetch, (name, tensor) => {
        const t = byOutput.get(name)!;
        const means = perImageChannelMeans(tensor, outputChannelAxis(t.op, tensor.dims.length));
        const sum = sums.get(t.label);
        if (!sum) sums.set(t.label, means);
        else for (let c = 0; c < sum.length; c++) sum[c] = sum[c]! + means[c]!;
      });
      n++;
    });
  } finally {
    await session.release();
  }
  for (const s of sums.values()) for (let c = 0; c < s.length; c++) s[c] = s[c]! / n;
  return sums;
}

/** Float64 mean over every axis but `axis` of one image's output. */
export function perImageChannelMeans(tensor: Tensor, axis: number): Float64Array {
  const dims = tensor.dims;
  const data = tensor.data as Float32Array;
  const channels = dims[axis]!;
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const sums = new Float64Array(channels);
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++) {
      const base = (o * channels + c) * inner;
      let s = 0;
      for (let i = 0; i < inner; i++) s += data[base + i]!;
      sums[c] = sums[c]! + s;
    }
  }
  const count = outer * inner;
  for (let c = 0; c < channels; c++) sums[c] = sums[c]! / count;
  return sums;
}
