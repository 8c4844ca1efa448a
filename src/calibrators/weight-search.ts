/**
 * Weight-scale search (explicit quantization only): for each INT8 weighted layer and each output channel c, the
 * weight scale s_c = alpha * max|W_c| / 127 with alpha on a small grid (default 20 points from 0.5 to 1.0) that
 * minimises the channel's output error on the calibration images,
 *   sum over images and positions of (y_c(W, x) - y_c(Q_alpha(W), Q(x)))^2,
 * y the layer's output, Q(x) the layer's input quantized per tensor with the cache's scale, Q_alpha(W) the weights
 * rounded to int8 at that scale (clamped to +-127: a smaller scale clips the largest weights and rounds the others
 * finer). This is the layer-wise form of Sequential MSE (Qualcomm AIMET's seq_mse, "Sequential MSE" in its docs,
 * after Nagel et al. / AdaRound's layer-wise objective): each layer is compared with its FP32 output on the FP32
 * input, independently of the others. Per channel, because a channel's error depends only on its own scale.
 *
 * TensorRT's implicit INT8 (8.6-10.x, a calibration cache) quantizes weights itself at max|W_c| / 127, so the
 * search only changes what the Q/DQ model carries (quantize, compare's variants).
 *
 * How: the FP32 model gains, for each searched layer, its input quantized (QuantizeLinear/DequantizeLinear with the
 * cache's scale), one copy of the layer per grid point with the dequantized weights of that point, and per copy the
 * per-channel sum of squared differences against the FP32 output (ReduceSumSquare inside the graph): what comes
 * back per image is (grid x channels) floats per layer, never the activations.
 *
 * Memory: the grid copies of the weights are (grid x weights) floats; the layers are split into groups whose copies
 * stay under `gridBytes` (default 256 MiB; MobileNetV2 needs about 196 MiB, one group), one pass over the images per
 * group. onnxruntime frees each copy's output once reduced, so the activations add about one layer's output
 * times the grid. Cost: each pass runs the model plus (grid) copies of its layers, about grid + 1 plain passes.
 *
 * Determinism: one image at a time (batch 1) in file order, the per-image sums accumulated in float64 in that
 * order; ties go to the larger alpha (1.0, the default scale, wins a tie).
 */
import { onnxruntimeBackend } from '../backends/onnxruntime.js';
import type { Dataset } from '../datasets/types.js';
import { makeNode, makeValueInfo } from '../onnx/build.js';
import { ELEM, defaultOpset, graphOf, makeTensor, onnx, saveOnnxModel, tensorFromProto, tensorToProto, withGraph, type OnnxModel, type OnnxTensorProto } from '../onnx/model.js';
import { nodeLabel } from '../onnx/opset.js';
import { quantizeQdq, weightScales as maxScales, quantizeWeights, type LayerPrecision } from '../onnx/qdq.js';
import { silentReporter, type Reporter } from '../reporter.js';
import type { Tensor } from '../tensor.js';
import { imageSource } from './bias-correction.js';

export interface WeightSearchOptions {
  model: OnnxModel;
  file: string;
  /** Activation tensor -> INT8 scale (amax / 127), as in a calibration cache. */
  activationScales: ReadonlyMap<string, number>;
  precisionMap?: ReadonlyMap<string, LayerPrecision>;
  /** The calibration images. */
  dataset: Dataset;
  /** Grid points (default 20), alpha from `low` (default 0.5) to 1.0 evenly. */
  grid?: number;
  low?: number;
  /** Bytes of grid weight copies per pass (default 256 MiB). */
  gridBytes?: number;
  imageCacheBytes?: number;
  threads?: number;
  reporter?: Reporter;
}

export interface SearchedLayer {
  node: string;
  /** The weight tensor whose scales were chosen. */
  tensor: string;
  channels: number;
  /** Channels whose scale went below max|W_c| / 127. */
  shrunk: number;
  /** Mean chosen alpha over the channels. */
  meanAlpha: number;
  /** Summed squared output error over the images, at alpha 1 and at the chosen alphas. */
  errorBefore: number;
  errorAfter: number;
}

export interface WeightSearchResult {
  /** Weight tensor -> per-channel scales (for quantizeQdq's weightScales). */
  weightScales: Map<string, Float32Array>;
  layers: SearchedLayer[];
  skipped: Array<{ node: string; reason: string }>;
  alphas: number[];
  images: number;
  passes: number;
  seconds: number;
}

interface Target {
  label: string;
  nodeIndex: number;
  op: string;
  input: string;
  output: string;
  tensor: string;
  axis: number;
  weight: Tensor;
  amaxScales: Float32Array;
}

/** The grid: `points` values of alpha from `low` to 1, evenly spaced, ascending. */
export function alphaGrid(points = 20, low = 0.5): number[] {
  if (!(Number.isInteger(points) && points >= 1)) throw new Error(`weight search: grid of ${points} points`);
  if (points === 1) return [1];
  return Array.from({ length: points }, (_, g) => low + ((1 - low) * g) / (points - 1));
}

/** The dequantized weights at scales alpha * max|W_c| / 127 (float32, as DequantizeLinear computes them). */
export function dequantizedAt(weight: Tensor, axis: number, amaxScales: Float32Array, alpha: number): Float32Array {
  const scales = Float32Array.from(amaxScales, (s) => s * alpha);
  const q = quantizeWeights(weight.data as Float32Array, weight.dims, axis, scales);
  const dims = weight.dims;
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const channels = dims[axis]!;
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) out[i] = q[i]! * scales[Math.floor(i / inner) % channels]!;
  return out;
}

/**
 * Per channel, the alpha index with the least error (errors[g][c]); ties go to the larger alpha.
 */
export function chooseAlphas(errors: readonly Float64Array[]): Int32Array {
  const channels = errors[0]!.length;
  const best = new Int32Array(channels);
  for (let c = 0; c < channels; c++) {
    let g0 = errors.length - 1;
    for (let g = errors.length - 2; g >= 0; g--) if (errors[g]![c]! < errors[g0]![c]!) g0 = g;
    best[c] = g0;
  }
  return best;
}

export async function searchWeightScales(options: WeightSearchOptions): Promise<WeightSearchResult> {
  const started = performance.now();
  const reporter = options.reporter ?? silentReporter;
  const alphas = alphaGrid(options.grid ?? 20, options.low ?? 0.5);
  const { model, file } = options;
  const qdq = quantizeQdq(model, { activationScales: options.activationScales, precisionMap: options.precisionMap, file });
  const g = graphOf(model);
  const sources = new Map<string, OnnxTensorProto>(g.initializer.map((t) => [t.name, t]));
  for (const n of g.node) {
    const value = n.opType === 'Constant' ? n.attribute.find((a) => a.name === 'value')?.t : undefined;
    if (value) sources.set(n.output[0]!, value as OnnxTensorProto);
  }
  const skipped: WeightSearchResult['skipped'] = [];
  const uses = new Map<string, number>();
  for (const w of qdq.weights) uses.set(w.tensor, (uses.get(w.tensor) ?? 0) + 1);
  const byLabel = new Map(qdq.weights.map((w) => [w.node, w]));
  const targets: Target[] = [];
  g.node.forEach((n, nodeIndex) => {
    const label = nodeLabel(n);
    const w = byLabel.get(label);
    if (!w) return;
    if (w.axis === null) return void skipped.push({ node: label, reason: 'per-tensor weights' });
    if ((uses.get(w.tensor) ?? 0) > 1) return void skipped.push({ node: label, reason: `weight '${w.tensor}' is shared by several layers` });
    const proto = sources.get(n.input[1] ?? '');
    if (!proto) return void skipped.push({ node: label, reason: 'weight not found' });
    const scale = options.activationScales.get(n.input[0]!);
    if (scale === undefined) return void skipped.push({ node: label, reason: 'no activation scale' });
    if (n.opType === 'MatMul' && w.axis !== proto.dims.length - 1) return void skipped.push({ node: label, reason: 'unsupported weight layout' });
    const weight = tensorFromProto(proto);
    targets.push({ label, nodeIndex, op: n.opType, input: n.input[0]!, output: n.output[0]!, tensor: w.tensor, axis: w.axis, weight, amaxScales: maxScales(weight.data as Float32Array, weight.dims, w.axis) });
  });
  const images = await imageSource(options.dataset, options.imageCacheBytes ?? 256 * 2 ** 20, reporter);
  const budget = options.gridBytes ?? 256 * 2 ** 20;
  const groups: Target[][] = [];
  let bytes = Infinity;
  for (const t of targets) {
    const b = t.weight.data.length * 4 * alphas.length;
    if (bytes + b > budget) {
      groups.push([]);
      bytes = 0;
    }
    groups[groups.length - 1]!.push(t);
    bytes += b;
  }
  reporter.info(`weight search: ${targets.length} layers, ${alphas.length} scales per channel (${alphas[0]!.toFixed(2)}..1.00 of max|W|), ${groups.length} pass${groups.length === 1 ? '' : 'es'}`);
  reporter.start('weight search', groups.length, 'passes');
  const errors = new Map<string, Float64Array[]>();
  try {
    for (const [k, group] of groups.entries()) {
      const bytesOut = saveOnnxModel(searchModel(model, group, alphas, options.activationScales));
      const session = await onnxruntimeBackend.open({ path: file, bytes: bytesOut }, { threads: options.threads });
      const fetch = group.flatMap((t) => alphas.map((_, a) => errorName(t, a)));
      const owner = new Map(group.flatMap((t) => alphas.map((_, a) => [errorName(t, a), [t, a] as const])));
      const inputName = session.inputs[0]!.name;
      try {
        await images.each(async (image) => {
          await session.runEach({ [inputName]: image }, fetch, (name, tensor) => {
            const [t, a] = owner.get(name)!;
            let list = errors.get(t.label);
            if (!list) errors.set(t.label, (list = alphas.map(() => new Float64Array(t.weight.dims[t.axis]!))));
            const into = list[a]!;
            const data = tensor.data as Float32Array;
            for (let c = 0; c < into.length; c++) into[c] = into[c]! + data[c]!;
          });
        });
      } finally {
        await session.release();
      }
      reporter.update({ done: k + 1 });
    }
  } finally {
    reporter.stop();
  }
  const weightScales = new Map<string, Float32Array>();
  const layers: SearchedLayer[] = [];
  for (const t of targets) {
    const errs = errors.get(t.label);
    if (!errs) continue;
    const best = chooseAlphas(errs);
    const scales = Float32Array.from(t.amaxScales, (s, c) => s * alphas[best[c]!]!);
    weightScales.set(t.tensor, scales);
    let before = 0;
    let after = 0;
    let shrunk = 0;
    let alphaSum = 0;
    for (let c = 0; c < best.length; c++) {
      before += errs[alphas.length - 1]![c]!;
      after += errs[best[c]!]![c]!;
      if (best[c]! !== alphas.length - 1) shrunk++;
      alphaSum += alphas[best[c]!]!;
    }
    layers.push({ node: t.label, tensor: t.tensor, channels: best.length, shrunk, meanAlpha: alphaSum / best.length, errorBefore: before, errorAfter: after });
  }
  return { weightScales, layers, skipped, alphas, images: images.count, passes: groups.length, seconds: (performance.now() - started) / 1000 };
}

function errorName(t: Target, a: number): string {
  return `${t.output}/weight_search_error_${a}`;
}

/** The FP32 model plus, per target, its quantized input, the grid copies and their per-channel squared errors. */
function searchModel(model: OnnxModel, targets: readonly Target[], alphas: readonly number[], activationScales: ReadonlyMap<string, number>): OnnxModel {
  const g = graphOf(model);
  const opset = defaultOpset(model);
  const nodes = [...g.node];
  const initializer = [...g.initializer];
  const outputs = [...g.output];
  const extra = new Map<number, ReturnType<typeof makeNode>[]>();
  const quantizedInput = new Map<string, string>();
  for (const t of targets) {
    const n = g.node[t.nodeIndex]!;
    const added: ReturnType<typeof makeNode>[] = [];
    let xq = quantizedInput.get(t.input);
    if (!xq) {
      const s = activationScales.get(t.input)!;
      const base = `${t.input}/weight_search`;
      initializer.push(tensorToProto(`${base}_scale`, makeTensor('float32', [], [s > 0 ? s : 1 / 127])), tensorToProto(`${base}_zero_point`, makeTensor('int8', [], [0])));
      xq = `${base}_dequantized`;
      added.push(
        makeNode('QuantizeLinear', [t.input, `${base}_scale`, `${base}_zero_point`], [`${base}_quantized`], { name: `${base}_QuantizeLinear` }),
        makeNode('DequantizeLinear', [`${base}_quantized`, `${base}_scale`, `${base}_zero_point`], [xq], { name: `${base}_DequantizeLinear` }),
      );
      quantizedInput.set(t.input, xq);
    }
    // The output's rank: a Conv's is its weight's; Gemm's 2; a MatMul's channels are last (reshaped to [-1, N]).
    const conv = t.op === 'Conv' || t.op === 'ConvTranspose';
    const rank = conv ? t.weight.dims.length : 2;
    const axes = Array.from({ length: rank }, (_, i) => i).filter((i) => i !== (conv ? 1 : rank - 1));
    alphas.forEach((alpha, a) => {
      const base = `${t.output}/weight_search_${a}`;
      initializer.push(tensorToProto(`${base}_weight`, { dtype: 'float32', dims: t.weight.dims, data: dequantizedAt(t.weight, t.axis, t.amaxScales, alpha) }));
      const inputs = n.input.map((name, slot) => (slot === 0 ? xq! : slot === 1 ? `${base}_weight` : name));
      added.push(onnx.NodeProto.create({ ...n, name: `${base}_layer`, input: inputs, output: [`${base}_output`] }));
      let diffOf = `${base}_output`;
      let refOf = t.output;
      if (t.op === 'MatMul') {
        const shape = `${base}_shape`;
        if (a === 0) initializer.push(tensorToProto(`${t.output}/weight_search_shape`, makeTensor('int64', [2], [-1n, BigInt(t.weight.dims[t.weight.dims.length - 1]!)])));
        added.push(makeNode('Reshape', [diffOf, `${t.output}/weight_search_shape`], [`${shape}_q`], { name: `${base}_reshape_q` }));
        added.push(makeNode('Reshape', [refOf, `${t.output}/weight_search_shape`], [`${shape}_r`], { name: `${base}_reshape_r` }));
        diffOf = `${shape}_q`;
        refOf = `${shape}_r`;
      }
      added.push(makeNode('Sub', [diffOf, refOf], [`${base}_difference`], { name: `${base}_sub` }));
      const out = errorName(t, a);
      if (opset >= 18) {
        initializer.push(tensorToProto(`${base}_axes`, makeTensor('int64', [axes.length], axes.map(BigInt))));
        added.push(makeNode('ReduceSumSquare', [`${base}_difference`, `${base}_axes`], [out], { name: `${base}_error`, attributes: { keepdims: { int: 0 } } }));
      } else {
        added.push(makeNode('ReduceSumSquare', [`${base}_difference`], [out], { name: `${base}_error`, attributes: { axes: { ints: axes }, keepdims: { int: 0 } } }));
      }
      outputs.push(makeValueInfo(out, ELEM.FLOAT, [t.weight.dims[t.axis]!]));
    });
    extra.set(t.nodeIndex, added);
  }
  const ordered = nodes.flatMap((n, k) => [n, ...(extra.get(k) ?? [])]);
  return withGraph(model, { ...g, node: ordered, initializer, output: outputs });
}
