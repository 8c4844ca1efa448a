/**
 * Explicit quantization: inserts QuantizeLinear/DequantizeLinear (Q/DQ) pairs into an FP32 ONNX model, the INT8
 * form TensorRT 10 prefers and TensorRT 11 requires, and that onnxruntime runs on any machine.
 *
 * Quantization scheme (TensorRT's: symmetric, zero point 0, int8):
 * - activations per tensor: scale = amax / 127 from the calibration cache (the cache stores that scale);
 * - weights per output channel: scale_c = max|W_c| / 127, computed from the weights themselves, the int8 values
 *   q = clamp(round_half_even(w / scale_c), -127, 127) stored as an int8 initializer followed by a
 *   DequantizeLinear (TensorRT's "pre-quantized weights" form; onnxruntime's QDQ format too). Axis: Conv 0
 *   ([M, C/g, kH, kW]), ConvTranspose 1 ([C, M/g, kH, kW]), Gemm 0 when transB=1 ([N, K]) else 1 ([K, N]),
 *   MatMul the last axis of the constant right operand ([.., K, N]). A channel whose weights are all zero gets
 *   scale 1 (any positive scale represents zeros exactly; TensorRT rejects scale 0). Biases stay float:
 *   TensorRT quantizes them itself.
 * - Weights may be initializers or `Constant` node outputs (Paddle2ONNX models); the Constant node goes away
 *   when nothing else reads it.
 *
 * Placement (TensorRT developer guide, "Q/DQ Layer-Placement Recommendations", and NVIDIA's
 * pytorch-quantization / TensorRT Model Optimizer defaults):
 * 1. Quantize every input of the weighted ops, Conv, ConvTranspose, Gemm and MatMul: the activation input
 *    (per tensor) and the weight (per channel). TensorRT then runs the op in INT8 and fuses the DQs into it.
 * 2. Do not quantize the outputs of weighted ops. The next consumer's Q quantizes the value; TensorRT fuses
 *    the following BatchNorm/ReLU/Clip (and Q) into the convolution, so simulating those fusions in the graph is
 *    neither needed nor wanted.
 * 3. Residual Add: when an Add sums the output of a weighted op (read by nothing else, so TensorRT can fuse the
 *    Add into that op) with another activation, quantize that other input (the skip connection). TensorRT then
 *    fuses Conv+Add with an INT8 residual and keeps the block in INT8; without it the Add runs in float with
 *    reformatting around it. If both inputs are weighted-op outputs, the one produced first is the skip branch.
 *    Adds with no fusable input get no Q/DQ (it would only add reformatting).
 * 4. One Q/DQ pair per tensor, shared by all its quantized consumers (one tensor, one scale, as in the cache).
 * 5. Nothing else is quantized: graph outputs, pooling, Concat, Resize stay float unless a weighted consumer
 *    quantizes their output; TensorRT propagates Q/DQ through such layers itself.
 * 6. Optional (`pooling: true`, off by default: measured in docs/quantization.md): MaxPool, AveragePool,
 *    GlobalAveragePool and Resize between INT8 layers get a Q/DQ pair on their data input too, so that they run in
 *    INT8 (Model Optimizer counts them as quantizable; TensorRT moves a Q backwards across them). "Between INT8
 *    layers": the input is the output of an INT8 weighted op (directly, through the ops TensorRT fuses into it, or
 *    through data-movement ops) and every reader of the output reads its dequantized copy (an INT8 layer's
 *    input, through data-movement ops too), so no float layer sits on either side.
 * Implicit placement (`placement: 'implicit'`), the pessimistic bound of TensorRT <= 10 implicit INT8, where any
 * layer whose input and output have a scale may run in INT8: a Q/DQ pair after every float32 activation the cache
 * names (graph input included: it is in TensorRT's cache and is quantized when the first layer runs in INT8;
 * graph outputs too, the producer's output renamed `<name>_unquantized` and the DQ writing `<name>`), and the
 * weights of the weighted ops as above. Left out: tensors without a scale (e.g. protected ones), non-float
 * tensors (shapes, indices), the outputs of layers the precision map keeps out of INT8, and tensors TensorRT never
 * materialises because it fuses their consumer into the producer (a weighted op's output read only by a
 * BatchNorm, an activation or one Add, and so on down such a chain; a pointwise op's output read only by another
 * pointwise op; a tensor read only by data-movement ops, rounded as their output instead, that output taking the
 * tensor's scale where the cache has none for it): rounding those would be more pessimistic than any engine.
 * A node the precision map sets to 'fp16' or 'fp32', a weighted op whose activation has no scale in the cache,
 * or one whose weight is not a stored constant (e.g. computed by a Reshape) stays float; each is reported.
 *
 * Opset: per-axis Q/DQ needs opset 13; models at opset 11 or 12 are upgraded (src/onnx/opset.ts), older ones
 * refused, unless per-tensor weights are asked for (opset 10 suffices then).
 */
import { UserError } from '../errors.js';
import { makeNode } from './build.js';
import { analyzeGraph, type GraphAnalysis } from './graph.js';
import {
  ELEM,
  attrInt,
  defaultOpset,
  graphOf,
  makeTensor,
  onnx,
  tensorFromProto,
  tensorToProto,
  withGraph,
  type OnnxModel,
  type OnnxNode,
  type OnnxTensorProto,
} from './model.js';
import { nodeLabel, upgradeOpset } from './opset.js';

export type LayerPrecision = 'int8' | 'fp16' | 'fp32';
export type QdqPlacement = 'explicit' | 'implicit';

export interface QdqOptions {
  /** Per-tensor activation scales (amax / 127), by ONNX tensor name: a calibration cache's content. */
  activationScales: ReadonlyMap<string, number>;
  /** Per-node precision, by node name (or, for unnamed nodes, 'Op:firstOutput'); default 'int8'. */
  precisionMap?: ReadonlyMap<string, LayerPrecision>;
  /** Per-output-channel weight scales (default true); false: one scale per weight tensor. */
  perChannel?: boolean;
  /** Quantize the skip input of residual Adds (default true; explicit placement only). */
  residualAdd?: boolean;
  /**
   * 'explicit' (default): the placement rules above, as `quantize` writes for TensorRT. 'implicit': Q/DQ after
   * every named activation (see the file comment), the worst case of TensorRT's implicit INT8.
   */
  placement?: QdqPlacement;
  /** Rule 6: Q/DQ on the input of pooling and Resize between INT8 layers (default false; explicit placement only). */
  pooling?: boolean;
  /**
   * Per-output-channel weight scales by weight tensor name, chosen elsewhere (--weight-search,
   * src/calibrators/weight-search.ts); used where the count matches the channels, else max|W_c| / 127.
   */
  weightScales?: ReadonlyMap<string, Float32Array>;
  /** For messages. */
  file?: string;
}

export interface QuantizedWeight {
  /** The original weight tensor. */
  tensor: string;
  node: string;
  axis: number | null;
  scales: Float32Array;
}

export interface QdqResult {
  model: OnnxModel;
  /** Weighted ops now running in INT8 (node labels, topological order). */
  quantizedNodes: string[];
  /** Residual Adds whose skip input got a Q/DQ pair. */
  residualAdds: string[];
  /** Pooling and Resize nodes whose input got a Q/DQ pair (rule 6). */
  poolingNodes: string[];
  /** Activation tensors that got a Q/DQ pair. */
  quantizedTensors: string[];
  /** Activation tensor -> the name of its dequantized copy (what the INT8 consumers read; for layerwise error). */
  dequantized: Map<string, string>;
  weights: QuantizedWeight[];
  /** Weighted ops left in float, and why. */
  skipped: Array<{ node: string; op: string; reason: string }>;
  /**
   * Float activations that the INT8 layers (weighted ops, residual Adds) read and would quantize given a scale,
   * in first-use order; with `activationScales`, what tells how much of the model a cache covers.
   */
  quantizable: string[];
  opset: { from: number; to: number; converted: string[] };
}

const WEIGHTED = new Set(['Conv', 'ConvTranspose', 'Gemm', 'MatMul']);
/**
 * Pointwise ops TensorRT fuses into the weighted op (or fused chain) before them, so that the tensor between them
 * never exists in an engine (TensorRT developer guide, "Types of Fusions": convolution with BatchNorm, activation
 * and elementwise sum).
 */
const FUSED_FOLLOWERS = new Set(['BatchNormalization', 'Relu', 'Clip', 'LeakyRelu', 'Sigmoid', 'Tanh', 'Elu', 'Selu', 'Softplus', 'HardSigmoid', 'HardSwish', 'PRelu', 'Add', 'Sum']);
/** Rule 6's ops: TensorRT runs them in INT8 when Q/DQ surround them (Model Optimizer's quantizable pooling/Resize). */
const POOLING = new Set(['MaxPool', 'AveragePool', 'GlobalAveragePool', 'Resize']);
/** Ops that only re-lay values out. */
const DATA_MOVEMENT = new Set(['Identity', 'Reshape', 'Transpose', 'Squeeze', 'Unsqueeze', 'Flatten']);
/**
 * Elementwise ops TensorRT merges, when adjacent, into one pointwise kernel (developer guide, "Types of Fusions":
 * PointWise fusion): the tensors between them are never written out.
 */
const POINTWISE = new Set([
  'Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Sum', 'Abs', 'Neg', 'Exp', 'Log', 'Sqrt', 'Reciprocal', 'Erf',
  'Floor', 'Ceil', 'Round', 'Sign', 'Relu', 'Clip', 'LeakyRelu', 'Sigmoid', 'Tanh', 'Elu', 'Selu', 'Softplus',
  'HardSigmoid', 'HardSwish', 'PRelu',
]);

/**
 * Tensors that TensorRT does not materialise, not a graph output and read by exactly one node: the output of a
 * weighted op (or of a node already fused into one) read by a FUSED_FOLLOWERS node (only one input of an Add/Sum
 * fuses; a Clip's bounds or a PRelu's slope are not the fused input), and the output of a pointwise op read by
 * another pointwise op. A tensor read only by data-movement ops (Identity, Reshape, Transpose, Squeeze, Unsqueeze,
 * Flatten) is rounded once, as their output (which takes its scale where it has none: see quantizeQdq).
 */
function fusedTensors(nodes: readonly OnnxNode[], tensors: GraphAnalysis['tensors'], consumers: GraphAnalysis['consumers'], outputs: ReadonlySet<string>): Set<string> {
  const chain = new Set<number>();
  const fused = new Set<string>();
  const addFused = new Set<number>();
  const isDefault = (n: OnnxNode) => (n.domain ?? '') === '';
  nodes.forEach((node, index) => {
    if (WEIGHTED.has(node.opType) && isDefault(node)) chain.add(index);
    for (const out of node.output) {
      const users = consumers.get(out) ?? [];
      if (!out || outputs.has(out) || users.length === 0 || tensors.get(out)?.elemType !== ELEM.FLOAT) continue;
      // Read only by data-movement ops (TensorRT's shuffles pass INT8 through with one scale): the values are
      // rounded once, as those ops' outputs. (onnxruntime's extended optimisations also crash on a DQ feeding such
      // an op when the DQ's output is exposed for the layerwise comparison.)
      if (users.every((k) => DATA_MOVEMENT.has(nodes[k]!.opType) && nodes[k]!.input[0] === out)) {
        fused.add(out);
        continue;
      }
      if (users.length !== 1) continue;
      const k = users[0]!;
      const next = nodes[k]!;
      if (!isDefault(next)) continue;
      if (chain.has(index) && FUSED_FOLLOWERS.has(next.opType)) {
        if (next.opType === 'Add' || next.opType === 'Sum') {
          if (addFused.has(k)) continue;
          addFused.add(k);
        } else if (next.input[0] !== out) continue;
        fused.add(out);
        chain.add(k);
      } else if (POINTWISE.has(node.opType) && isDefault(node) && POINTWISE.has(next.opType)) {
        fused.add(out);
      }
    }
  });
  return fused;
}

/** Round half to even, as ONNX QuantizeLinear does. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  // Math.round rounds .5 up; move exact ties that landed on an odd number back down.
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Symmetric per-channel scales max|W_c| / 127 along `axis` (null: one scale for the whole tensor). */
export function weightScales(data: Float32Array, dims: readonly number[], axis: number | null): Float32Array {
  const { outer, channels, inner } = layout(dims, axis);
  const amax = new Float64Array(channels);
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++) {
      const base = (o * channels + c) * inner;
      let m = amax[c]!;
      for (let i = 0; i < inner; i++) {
        const v = Math.abs(data[base + i]!);
        if (v > m) m = v;
      }
      amax[c] = m;
    }
  }
  return Float32Array.from(amax, (m) => (m > 0 && Number.isFinite(m) ? m / 127 : 1));
}

/** int8 weights: clamp(round_half_even(w / scale_c), -127, 127). */
export function quantizeWeights(data: Float32Array, dims: readonly number[], axis: number | null, scales: Float32Array): Int8Array {
  const { outer, channels, inner } = layout(dims, axis);
  const q = new Int8Array(data.length);
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++) {
      const s = scales[c]!;
      const base = (o * channels + c) * inner;
      for (let i = 0; i < inner; i++) {
        const v = roundHalfEven(data[base + i]! / s);
        q[base + i] = v > 127 ? 127 : v < -127 ? -127 : v;
      }
    }
  }
  return q;
}

function layout(dims: readonly number[], axis: number | null): { outer: number; channels: number; inner: number } {
  const total = dims.reduce((a, b) => a * b, 1);
  if (axis === null) return { outer: 1, channels: 1, inner: total };
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const channels = dims[axis]!;
  return { outer, channels, inner: total / (outer * channels) };
}

interface WeightSource {
  proto: OnnxTensorProto;
  /** The Constant node holding it, when it is not an initializer. */
  constantNode?: OnnxNode;
}

/** Inserts Q/DQ pairs; see the file comment for the rules. Returns the new model and what was done. */
export function quantizeQdq(source: OnnxModel, options: QdqOptions): QdqResult {
  const file = options.file ?? 'the model';
  const perChannel = options.perChannel ?? true;
  const placement = options.placement ?? 'explicit';
  const residualAdd = placement === 'explicit' && (options.residualAdd ?? true);
  const pooling = placement === 'explicit' && (options.pooling ?? false);
  for (const [name, s] of options.activationScales) {
    if (!(Number.isFinite(s) && s >= 0)) {
      throw new UserError(`${file}: the scale of '${name}' is ${s}; scales must be finite and not negative`, { hint: 'check the calibration cache' });
    }
  }

  // Opset: per-axis Q/DQ needs 13; per-tensor works from 10.
  const from = defaultOpset(source);
  let model = source;
  let opset = { from, to: from, converted: [] as string[] };
  if (perChannel && from < 13) {
    const up = upgradeOpset(source, { to: 13, file });
    model = up.model;
    opset = { from, to: up.to, converted: up.converted };
  } else if (from < 10) {
    throw new UserError(`${file} uses opset ${from}; QuantizeLinear/DequantizeLinear need opset 10 or later`, {
      hint: 'convert the model with onnx.version_converter first',
    });
  }

  const g = graphOf(model);
  const analysis = analyzeGraph(model, { file });
  const { nodes, tensors, consumers } = analysis;
  const outputs = new Set(g.output.map((o) => o.name));

  const weightSources = new Map<string, WeightSource>();
  for (const t of g.initializer) weightSources.set(t.name, { proto: t });
  for (const n of nodes) {
    if (n.opType === 'Constant' && (n.domain ?? '') === '') {
      const value = n.attribute.find((a) => a.name === 'value')?.t;
      if (value) weightSources.set(n.output[0]!, { proto: value as OnnxTensorProto, constantNode: n });
    }
  }

  const precisionOf = (node: OnnxNode): LayerPrecision =>
    options.precisionMap?.get(node.name) ?? options.precisionMap?.get(nodeLabel(node)) ?? 'int8';

  const activationScales = new Map(options.activationScales);
  if (placement === 'implicit') {
    // A tensor read only by data-movement ops is rounded as their outputs (fusedTensors). Where such an output has
    // no scale of its own (e.g. a head re-laid out after the calibrated graph), that rounding would be lost though
    // the tensor's producer may still run in INT8: the output takes the input's scale (a shuffle does not change
    // values, so rounding after it is rounding before it, and no DQ feeds the shuffle). Topological order: chains.
    for (const node of nodes) {
      if (!DATA_MOVEMENT.has(node.opType) || (node.domain ?? '') !== '' || precisionOf(node) !== 'int8') continue;
      const input = node.input[0];
      const out = node.output[0];
      if (!input || !out || outputs.has(input) || !activationScales.has(input) || activationScales.has(out)) continue;
      if (tensors.get(out)?.elemType !== ELEM.FLOAT) continue;
      const producer = tensors.get(input)?.producer;
      if (producer && precisionOf(nodes[producer.node]!) !== 'int8') continue;
      if (!(consumers.get(input) ?? []).every((k) => DATA_MOVEMENT.has(nodes[k]!.opType) && nodes[k]!.input[0] === input)) continue;
      activationScales.set(out, activationScales.get(input)!);
    }
  }

  const taken = new Set<string>([...tensors.keys(), ...g.node.map((n) => n.name).filter(Boolean)]);
  const fresh = (base: string) => {
    let name = base;
    for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
    taken.add(name);
    return name;
  };

  // --- plan -----------------------------------------------------------------------------------------------
  /** Activation tensor -> the (node index, input slot) pairs that read its dequantized copy. */
  const actPlan = new Map<string, Array<[number, number]>>();
  /** (node index, input slot) -> weight plan. */
  const weightPlan = new Map<string, { tensor: string; axis: number | null; node: number; slot: number }>();
  const result: Omit<QdqResult, 'model' | 'opset'> = { quantizedNodes: [], residualAdds: [], poolingNodes: [], quantizedTensors: [], dequantized: new Map(), weights: [], skipped: [], quantizable: [] };
  const quantizable = new Set<string>();
  const quantizedProducers = new Set<number>();

  const activationProblem = (name: string): string | undefined => {
    const meta = tensors.get(name);
    if (!meta) return `input '${name}' is missing`;
    if (meta.constant) return `input '${name}' is a constant`;
    if (meta.elemType !== ELEM.FLOAT) return `input '${name}' is not float32`;
    if (!quantizable.has(name)) {
      quantizable.add(name);
      result.quantizable.push(name);
    }
    if (!activationScales.has(name)) return `no scale for '${name}' in the calibration cache`;
    return undefined;
  };
  const planActivation = (name: string, node: number, slot: number) => {
    const list = actPlan.get(name);
    if (list) {
      if (!list.some(([k, s]) => k === node && s === slot)) list.push([node, slot]);
    } else actPlan.set(name, [[node, slot]]);
  };
  /** Implicit placement: graph outputs that get Q/DQ (their producer's output is renamed). */
  const quantizedOutputs = new Map<string, string>();

  nodes.forEach((node, index) => {
    if (!WEIGHTED.has(node.opType) || (node.domain ?? '') !== '') return;
    const label = nodeLabel(node);
    const skip = (reason: string) => result.skipped.push({ node: label, op: node.opType, reason });
    const precision = precisionOf(node);
    if (precision !== 'int8') return skip(`precision ${precision} requested`);
    const [a, b] = [node.input[0] ?? '', node.input[1] ?? ''];
    const aMeta = tensors.get(a);
    const bMeta = tensors.get(b);
    if (node.opType === 'MatMul' && aMeta && bMeta && !aMeta.constant && !bMeta.constant) {
      // Activation x activation (attention-style): both per tensor.
      const problems = [activationProblem(a), activationProblem(b)]; // both, so that both count as quantizable
      const problem = problems[0] ?? problems[1];
      if (problem) return skip(problem);
      planActivation(a, index, 0);
      planActivation(b, index, 1);
      quantizedProducers.add(index);
      result.quantizedNodes.push(label);
      return;
    }
    const problem = activationProblem(a);
    if (problem) return skip(problem);
    const w = weightSources.get(b);
    if (!w) return skip(bMeta?.constant ? `weight '${b}' is computed by other nodes (fold constants first, e.g. with onnxsim)` : `weight '${b}' is not a constant`);
    if (w.proto.dataType !== ELEM.FLOAT) return skip(`weight '${b}' is not float32`);
    const rank = w.proto.dims.length;
    let axis: number | null = null;
    if (perChannel) {
      if (node.opType === 'Conv') axis = 0;
      else if (node.opType === 'ConvTranspose') axis = 1;
      else if (node.opType === 'Gemm') axis = (attrInt(node, 'transB') ?? 0) === 1 ? 0 : 1;
      else axis = rank - 1;
      if (rank < 2) return skip(`weight '${b}' has rank ${rank}`);
    }
    planActivation(a, index, 0);
    weightPlan.set(`${index}:1`, { tensor: b, axis, node: index, slot: 1 });
    quantizedProducers.add(index);
    result.quantizedNodes.push(label);
  });

  if (residualAdd) {
    nodes.forEach((node, index) => {
      if (node.opType !== 'Add' || (node.domain ?? '') !== '' || node.input.length !== 2) return;
      if (precisionOf(node) !== 'int8') return;
      const ins = node.input.map((n) => ({ name: n, meta: tensors.get(n) }));
      if (ins.some((i) => !i.meta || i.meta.constant || i.meta.elemType !== ELEM.FLOAT)) return;
      const fusable = ins.map(
        (i) =>
          i.meta!.producer !== undefined &&
          quantizedProducers.has(i.meta!.producer.node) &&
          (consumers.get(i.name)?.length ?? 0) === 1 &&
          !outputs.has(i.name),
      );
      if (!fusable[0] && !fusable[1]) return;
      let skipSlot: number;
      if (fusable[0] && fusable[1]) skipSlot = ins[0]!.meta!.producer!.node < ins[1]!.meta!.producer!.node ? 0 : 1;
      else skipSlot = fusable[0] ? 1 : 0;
      const skipName = ins[skipSlot]!.name;
      if (activationProblem(skipName)) return;
      planActivation(skipName, index, skipSlot);
      result.residualAdds.push(nodeLabel(node));
    });
  }

  if (pooling) {
    const isDefault = (n: OnnxNode) => (n.domain ?? '') === '';
    /** The tensor is an INT8 layer's output: a quantized weighted op's, possibly through fused followers or shuffles. */
    const int8Output = (name: string, depth = 0): boolean => {
      const producer = tensors.get(name)?.producer;
      if (!producer || depth > 64) return false;
      const p = nodes[producer.node]!;
      if (!isDefault(p) || precisionOf(p) !== 'int8') return false;
      if (quantizedProducers.has(producer.node)) return true;
      // TensorRT fuses a follower only when it is the sole reader of the value it extends.
      const sole = (input: string) => (consumers.get(input)?.length ?? 0) === 1 && !outputs.has(input);
      if (DATA_MOVEMENT.has(p.opType)) return int8Output(p.input[0] ?? '', depth + 1);
      if (p.opType === 'Add' || p.opType === 'Sum') return p.input.some((i) => sole(i) && int8Output(i, depth + 1));
      if (FUSED_FOLLOWERS.has(p.opType)) return sole(p.input[0] ?? '') && int8Output(p.input[0] ?? '', depth + 1);
      return false;
    };
    /** Every reader of the tensor reads its dequantized copy (directly or through data-movement ops). */
    const readByInt8Only = (name: string, depth = 0): boolean => {
      const users = consumers.get(name) ?? [];
      if (outputs.has(name) || users.length === 0 || depth > 64) return false;
      const planned = actPlan.get(name) ?? [];
      return users.every((k) => {
        const n = nodes[k]!;
        const slots = n.input.flatMap((input, slot) => (input === name ? [slot] : []));
        if (slots.every((slot) => planned.some(([j, s]) => j === k && s === slot))) return true;
        return DATA_MOVEMENT.has(n.opType) && isDefault(n) && slots.length === 1 && slots[0] === 0 && n.output.length === 1 && readByInt8Only(n.output[0]!, depth + 1);
      });
    };
    nodes.forEach((node, index) => {
      if (!POOLING.has(node.opType) || !isDefault(node) || precisionOf(node) !== 'int8' || node.output.length !== 1) return;
      const input = node.input[0] ?? '';
      if (activationProblem(input) || !int8Output(input) || !readByInt8Only(node.output[0]!)) return;
      planActivation(input, index, 0);
      result.poolingNodes.push(nodeLabel(node));
    });
  }

  if (placement === 'implicit') {
    const fused = fusedTensors(nodes, tensors, consumers, outputs);
    for (const act of analysis.activations) {
      const name = act.name;
      if (activationProblem(name) || fused.has(name)) continue;
      const producer = tensors.get(name)!.producer;
      if (producer && precisionOf(nodes[producer.node]!) !== 'int8') continue;
      if (outputs.has(name)) quantizedOutputs.set(name, fresh(`${name}_unquantized`));
      for (const k of consumers.get(name) ?? []) nodes[k]!.input.forEach((input, slot) => input === name && planActivation(name, k, slot));
      if (!actPlan.has(name)) actPlan.set(name, []);
    }
  }

  // --- rewrite --------------------------------------------------------------------------------------------
  const newInitializers: OnnxTensorProto[] = [];
  const prelude = new Map<number, OnnxNode[]>(); // nodes to emit before node index k
  const emitBefore = (k: number, ...ns: OnnxNode[]) => {
    const list = prelude.get(k);
    if (list) list.push(...ns);
    else prelude.set(k, [...ns]);
  };
  const replaced = new Map<string, string>(); // `${node}:${slot}` -> new input name

  for (const [name, uses] of actPlan) {
    const scale = activationScales.get(name)!;
    // A zero scale (an all-zero tensor in calibration) cannot be used; any positive scale keeps zeros exact.
    const s = scale > 0 ? scale : 1 / 127;
    const scaleName = fresh(`${name}_scale`);
    const zpName = fresh(`${name}_zero_point`);
    const qName = fresh(`${name}_QuantizeLinear_Output`);
    // A quantized graph output keeps its name on the DQ; the value before rounding is renamed.
    const renamed = quantizedOutputs.get(name);
    const dqName = renamed ? name : fresh(`${name}_DequantizeLinear_Output`);
    newInitializers.push(tensorToProto(scaleName, makeTensor('float32', [], [s])), tensorToProto(zpName, makeTensor('int8', [], [0])));
    // Before the first reader; a graph output nothing reads: right after its producer.
    const producer = tensors.get(name)?.producer;
    const first = uses.length > 0 ? Math.min(...uses.map(([k]) => k)) : producer ? producer.node + 1 : 0;
    emitBefore(
      first,
      makeNode('QuantizeLinear', [renamed ?? name, scaleName, zpName], [qName], { name: fresh(`${name}_QuantizeLinear`) }),
      makeNode('DequantizeLinear', [qName, scaleName, zpName], [dqName], { name: fresh(`${name}_DequantizeLinear`) }),
    );
    for (const [k, slot] of uses) replaced.set(`${k}:${slot}`, dqName);
    result.quantizedTensors.push(name);
    result.dequantized.set(name, dqName);
  }

  // Weights: one int8 copy per (tensor, axis), shared by the nodes that use it that way.
  const weightCopies = new Map<string, string>();
  for (const plan of weightPlan.values()) {
    const key = `${plan.tensor}@${plan.axis}`;
    let dq = weightCopies.get(key);
    const label = nodeLabel(nodes[plan.node]!);
    if (!dq) {
      const src = weightSources.get(plan.tensor)!;
      const w = tensorFromProto(src.proto);
      const data = w.data as Float32Array;
      const given = plan.axis !== null ? options.weightScales?.get(plan.tensor) : undefined;
      const scales = given && given.length === w.dims[plan.axis!] ? given : weightScales(data, w.dims, plan.axis);
      const q = quantizeWeights(data, w.dims, plan.axis, scales);
      // Names follow onnxruntime's quantizer (`W_quantized`, `W_scale`...); fresh() keeps them unique.
      const suffix = '';
      const qName = fresh(`${plan.tensor}${suffix}_quantized`);
      const scaleName = fresh(`${plan.tensor}${suffix}_scale`);
      const zpName = fresh(`${plan.tensor}${suffix}_zero_point`);
      dq = fresh(`${plan.tensor}${suffix}_DequantizeLinear_Output`);
      const perAxis = plan.axis !== null;
      newInitializers.push(
        tensorToProto(qName, { dtype: 'int8', dims: w.dims, data: q }),
        tensorToProto(scaleName, perAxis ? { dtype: 'float32', dims: [scales.length], data: scales } : makeTensor('float32', [], [scales[0]!])),
        tensorToProto(zpName, perAxis ? { dtype: 'int8', dims: [scales.length], data: new Int8Array(scales.length) } : makeTensor('int8', [], [0])),
      );
      emitBefore(
        plan.node,
        makeNode('DequantizeLinear', [qName, scaleName, zpName], [dq], {
          name: fresh(`${plan.tensor}${suffix}_DequantizeLinear`),
          ...(perAxis ? { attributes: { axis: { int: plan.axis! } } } : {}),
        }),
      );
      weightCopies.set(key, dq);
      result.weights.push({ tensor: plan.tensor, node: label, axis: plan.axis, scales });
    } else {
      // Shared weight: the DQ is emitted before its first user; later users come after it in topological order.
      result.weights.push({ tensor: plan.tensor, node: label, axis: plan.axis, scales: result.weights.find((x) => x.tensor === plan.tensor && x.axis === plan.axis)!.scales });
    }
    replaced.set(`${plan.node}:${plan.slot}`, dq);
  }

  const rewritten: OnnxNode[] = [];
  nodes.forEach((node, k) => {
    rewritten.push(...(prelude.get(k) ?? []));
    const input = node.input.map((name, slot) => replaced.get(`${k}:${slot}`) ?? name);
    const output = node.output.map((name) => quantizedOutputs.get(name) ?? name);
    const changed = input.some((v, i) => v !== node.input[i]) || output.some((v, i) => v !== node.output[i]);
    rewritten.push(changed ? onnx.NodeProto.create({ ...node, input, output }) : node);
  });
  rewritten.push(...(prelude.get(nodes.length) ?? []));

  // Drop weights nothing reads any more (the float originals of quantized weights).
  const read = new Set<string>(outputs);
  for (const n of rewritten) for (const i of n.input) read.add(i);
  for (const n of rewritten) for (const a of n.attribute) if (a.g || a.graphs?.length) for (const r of subgraphReads(a)) read.add(r);
  const finalNodes = rewritten.filter((n) => !(isWeightConstant(n, weightSources) && n.output.every((o) => !read.has(o))));
  const initializer = [...g.initializer.filter((t) => read.has(t.name)), ...newInitializers];

  const out = withGraph(model, { ...g, node: finalNodes, initializer });
  return { model: out, ...result, opset };
}

function isWeightConstant(n: OnnxNode, sources: Map<string, WeightSource>): boolean {
  return sources.get(n.output[0] ?? '')?.constantNode === n;
}

function subgraphReads(a: { g?: unknown; graphs?: unknown }): string[] {
  const out: string[] = [];
  const visit = (g: { node?: Array<{ input?: string[]; attribute?: Array<{ g?: unknown; graphs?: unknown }> }> }) => {
    for (const n of g.node ?? []) {
      out.push(...(n.input ?? []));
      for (const b of n.attribute ?? []) {
        if (b.g) visit(b.g as never);
        for (const s of (b.graphs as never[]) ?? []) visit(s);
      }
    }
  };
  if (a.g) visit(a.g as never);
  for (const s of (a.graphs as never[]) ?? []) visit(s);
  return out;
}

/** The Q/DQ model alone (see quantizeQdq for the report). */
export function insertQdq(model: OnnxModel, options: QdqOptions): OnnxModel {
  return quantizeQdq(model, options).model;
}
