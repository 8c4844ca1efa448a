/**
 * FP16 variant of an FP32 model: float16 weights and activations, graph inputs and outputs kept float32
 * through Cast nodes (keepIo), so FP16 can be compared with FP32 and INT8 on the same data.
 *
 * Method (the approach of onnxconverter-common's float16 converter, typed with our graph analysis):
 * - Every float32 activation that depends on the data (not only on shapes: Shape->Cast->Mul chains stay float32,
 *   since float16 cannot count past 2048 exactly) becomes float16; the weights those ops read are stored as
 *   float16 (round to nearest even, clamped to +-65504). Inputs that must stay float32 by the operator
 *   schemas (Resize roi/scales, Dropout ratio, LayerNormalization's statistics outputs) are left alone.
 * - BatchNormalization after a Conv is folded into it first, as TensorRT does (src/onnx/fold.ts).
 * - Ops outside the default domain, ops with subgraphs, random/quantization/NMS ops and the nodes in
 *   `blockList` stay float32, with Casts around them.
 * - onnxruntime's CPU provider has float16 kernels for few ops. When it has none, it silently inserts Casts
 *   around the node and, for a chain of such nodes, runs the whole chain in float32 without rounding the
 *   intermediate activations to float16, which would understate the FP16 error. With `cpuFallback` (the
 *   default) each such op is instead written as Cast(fp16->fp32) -> op in float32 -> Cast(fp32->fp16): every
 *   activation is still rounded to float16 between ops, as TensorRT stores it, and onnxruntime keeps these
 *   casts (they lose precision, so its cast elimination leaves them). `cpuFallback: false` writes a pure float16
 *   graph for TensorRT.
 * The list of ops with float16 CPU kernels (ORT_CPU_FP16_OPS) was found empirically with onnxruntime-node 1.30
 * on x86-64: for each op, a one-node float16 model was loaded with `optimizedModelFilePath` set and the optimised
 * graph searched for Casts that onnxruntime had inserted (test/unit/onnx-fp16.test.ts re-checks it on MobileNetV2
 * and PP-OCR: no Cast in the optimised graph that we did not write).
 */
import type { onnx as OnnxTypes } from 'onnx-proto';
import { makeNode } from './build.js';
import { foldBatchNorms } from './fold.js';
import { analyzeGraph } from './graph.js';
import {
  ELEM,
  defaultOpset,
  graphOf,
  onnx,
  tensorFromProto,
  withGraph,
  type OnnxModel,
  type OnnxNode,
  type OnnxTensorProto,
  type OnnxValueInfo,
} from './model.js';
import { nodeLabel } from './opset.js';

/**
 * Ops with a float16 kernel in onnxruntime's CPU execution provider (onnxruntime-node 1.30, x86-64), with the
 * first default-domain opset at which the kernel is registered (Clip, Max, Min: 12).
 */
export const ORT_CPU_FP16_OPS: ReadonlyMap<string, number> = new Map([
  ['Cast', 1], ['Clip', 12], ['Concat', 1], ['Expand', 1], ['Flatten', 1], ['Gather', 1], ['Identity', 1],
  ['LayerNormalization', 1], ['Max', 12], ['Min', 12], ['Reshape', 1], ['Round', 1], ['Shape', 1], ['Slice', 1],
  ['Split', 1], ['Squeeze', 1], ['Transpose', 1], ['Unsqueeze', 1],
  // Q/DQ with a float16 input/output and float16 scale: opset 19 (QuantizeLinear-19's T1 and DequantizeLinear-19's
  // T2 add float16; checked: a Q -> DQ float16 model keeps no onnxruntime-inserted Cast).
  ['QuantizeLinear', 19], ['DequantizeLinear', 19],
]);

/** Q/DQ ops: float32-only unless `qdq` converts them (their scale then follows the float type, opset 19+). */
const QDQ_OPS = new Set(['QuantizeLinear', 'DequantizeLinear']);

/** Ops never converted (float32-only inputs, subgraphs, randomness, quantization). */
const FP32_ONLY_OPS = new Set([
  'NonMaxSuppression', 'QuantizeLinear', 'DequantizeLinear', 'DynamicQuantizeLinear', 'QLinearConv', 'QLinearMatMul',
  'ConvInteger', 'MatMulInteger', 'RandomNormal', 'RandomNormalLike', 'RandomUniform', 'RandomUniformLike',
  'Multinomial', 'Bernoulli', 'Range', 'If', 'Loop', 'Scan', 'ConstantOfShape', 'EyeLike', 'STFT', 'DFT',
  'MelWeightMatrix', 'BlackmanWindow', 'HammingWindow', 'HannWindow', 'Constant',
]);
/** Ops that accept any input type without tying it to another input or output. */
const TYPE_AGNOSTIC_OPS = new Set(['Shape', 'Size']);
/** Input slots that stay float32 in a converted node. */
const KEEP_FLOAT32_INPUTS: Readonly<Record<string, readonly number[]>> = { Resize: [1, 2], Upsample: [1], Dropout: [1] };
/** Output slots that keep their own type (not the converted T). */
const KEEP_OUTPUTS: Readonly<Record<string, readonly number[]>> = { LayerNormalization: [1, 2] };

export interface Fp16Options {
  /** Keep float32 graph inputs and outputs (Casts at the boundary). Default true. */
  keepIo?: boolean;
  /** Node names (or 'Op:firstOutput' labels) to keep in float32. */
  blockList?: Iterable<string>;
  /** Emulate ops lacking onnxruntime CPU float16 kernels in float32 between Casts (see above). Default true. */
  cpuFallback?: boolean;
  /** Fold BatchNormalization into the preceding Conv first, as TensorRT does (src/onnx/fold.ts). Default true. */
  foldBatchNorm?: boolean;
  /**
   * Convert QuantizeLinear/DequantizeLinear too (needs opset 19): Q reads the float16 activation with a float16
   * scale, DQ writes float16 with a float16 scale (also a weight's DQ), as Model Optimizer's AutoCast does for
   * `high_precision_dtype=fp16` (src/onnx/autocast.ts). Default false: Q/DQ stay float32 between Casts.
   */
  qdq?: boolean;
  file?: string;
}

export interface Fp16Result {
  model: OnnxModel;
  /** Nodes computing in float16. */
  fp16Nodes: string[];
  /** Nodes with float16 inputs and outputs computing in float32 (cpuFallback). */
  emulatedNodes: string[];
  /** Nodes touching activations that stay float32 (blocked, custom or float32-only ops). */
  float32Nodes: string[];
  /** Weights whose values exceeded the float16 range and were clamped. */
  clampedWeights: string[];
  /** Nodes kept in float32 because a weight exceeds the float16 range (also in float32Nodes). */
  outOfRangeNodes: string[];
  /** Conv + BatchNormalization pairs folded before the conversion. */
  foldedBatchNorms: string[];
}

// ---------------------------------------------------------------------------------------------------------------
// float32 -> float16 bits (IEEE 754 binary16, round to nearest even)

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf / NaN
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> Inf
  if (e <= 0) {
    // Subnormal half (or zero).
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (rem > mid || (rem === mid && (half & 1)) ? half + 1 : half);
  }
  const half = mant >>> 13;
  const rem = mant & 0x1fff;
  let out = sign | (e << 10) | half;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) out += 1; // may carry into the exponent: still correct
  return out;
}

export function float16BitsToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

const FP16_MAX = 65504;

// ---------------------------------------------------------------------------------------------------------------

type NodeClass = 'fp16' | 'emulated' | 'fp32' | 'agnostic' | 'untouched';

export function convertToFp16WithReport(source: OnnxModel, options: Fp16Options = {}): Fp16Result {
  const file = options.file ?? 'the model';
  const { model, folded } = options.foldBatchNorm ?? true ? foldBatchNorms(source, { file }) : { model: source, folded: [] };
  const keepIo = options.keepIo ?? true;
  const cpuFallback = options.cpuFallback ?? true;
  const blocked = new Set(options.blockList ?? []);
  const g = graphOf(model);
  const analysis = analyzeGraph(model, { file });
  const { nodes, tensors } = analysis;
  const graphOutputs = new Set(g.output.map((o) => o.name));
  const inputNames = new Set(analysis.inputs.map((i) => i.name));
  const qdqFp16 = options.qdq ?? false;
  if (qdqFp16 && defaultOpset(model) < 19) throw new Error(`float16 Q/DQ needs opset 19 (model: ${defaultOpset(model)}): upgrade it first`);
  // A weight's DQ output is constant-foldable but is a float tensor of the graph in TensorRT's sense: with `qdq`
  // it is converted like an activation, so the INT8 layer reads a float16 DQ directly (no Cast between them).
  const dqOutputs = new Set<string>();
  if (qdqFp16) for (const n of nodes) if (n.opType === 'DequantizeLinear' && !blocked.has(n.name) && !blocked.has(nodeLabel(n))) dqOutputs.add(n.output[0]!);
  /** Q/DQ scales: a nonzero scale that rounds to 0 in float16 becomes the smallest subnormal (never a zero scale). */
  const scaleInputs = new Set<string>();
  if (qdqFp16) for (const n of nodes) if (QDQ_OPS.has(n.opType) && n.input[1]) scaleInputs.add(n.input[1]);

  // Data dependence: shape-only values (Shape, Size and what is computed from them) stay float32.
  const dataDependent = new Set<string>(analysis.inputs.map((i) => i.name));
  const subgraphRefs = new Set<string>();
  for (const node of nodes) {
    for (const a of node.attribute) for (const sg of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) for (const r of outerRefs(sg)) subgraphRefs.add(r);
    if (node.opType === 'Shape' || node.opType === 'Size') continue;
    if (node.input.some((i) => i && dataDependent.has(i)) || node.output.some((o) => dqOutputs.has(o))) for (const o of node.output) if (o) dataDependent.add(o);
  }
  const weightSources = new Map<string, OnnxTensorProto>();
  for (const t of g.initializer) weightSources.set(t.name, t);
  for (const n of nodes) {
    const v = n.opType === 'Constant' ? n.attribute.find((a) => a.name === 'value')?.t : undefined;
    if (v) weightSources.set(n.output[0]!, v as OnnxTensorProto);
  }
  const isActivation = (name: string) => {
    const m = tensors.get(name);
    return !!m && (!m.constant || dqOutputs.has(name)) && m.elemType === ELEM.FLOAT && dataDependent.has(name);
  };

  const opset = defaultOpset(model);
  const outOfRange: string[] = [];
  const rangeCache = new Map<string, boolean>();
  const outOfFp16Range = (name: string): boolean => {
    let r = rangeCache.get(name);
    if (r === undefined) {
      const src = weightSources.get(name);
      r = false;
      if (src && src.dataType === ELEM.FLOAT) {
        const data = tensorFromProto(src).data as Float32Array;
        for (let i = 0; i < data.length && !r; i++) if (Math.abs(data[i]!) > FP16_MAX) r = true;
      }
      rangeCache.set(name, r);
    }
    return r;
  };
  const classify = (node: OnnxNode): NodeClass => {
    const touches = node.input.some((i) => i && isActivation(i)) || node.output.some((o) => o && isActivation(o));
    if (!touches) return 'untouched';
    if (TYPE_AGNOSTIC_OPS.has(node.opType)) return 'agnostic';
    if (node.opType === 'Cast') {
      // Cast(to=float) of data: becomes Cast(to=float16). Casts to other types accept a float16 input as is.
      return node.attribute.find((a) => a.name === 'to')?.i === ELEM.FLOAT ? 'fp16' : 'agnostic';
    }
    if ((node.domain ?? '') !== '' && node.domain !== 'ai.onnx') return 'fp32';
    if (blocked.has(node.name) || blocked.has(nodeLabel(node))) return 'fp32';
    if (FP32_ONLY_OPS.has(node.opType) && !(qdqFp16 && QDQ_OPS.has(node.opType))) return 'fp32';
    if (node.output.some((o) => subgraphRefs.has(o))) return 'fp32';
    // Weights beyond the float16 range (e.g. a BatchNormalization variance of 1e5) would be clamped: such a
    // node stays float32 (TensorRT folds BatchNorm into the convolution in float32 anyway).
    const keepIn = KEEP_FLOAT32_INPUTS[node.opType] ?? [];
    if (node.input.some((i, slot) => i && !keepIn.includes(slot) && outOfFp16Range(i))) {
      outOfRange.push(nodeLabel(node));
      return 'fp32';
    }
    return !cpuFallback || (ORT_CPU_FP16_OPS.get(node.opType) ?? Infinity) <= opset ? 'fp16' : 'emulated';
  };

  const taken = new Set<string>([...tensors.keys(), ...g.node.map((n) => n.name).filter(Boolean)]);
  const fresh = (base: string) => {
    let name = base;
    for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
    taken.add(name);
    return name;
  };

  const out: OnnxNode[] = [];
  const newInitializers: OnnxTensorProto[] = [];
  const clampedWeights: string[] = [];
  /** Activation -> the name and type it is stored under. */
  const stored = new Map<string, { name: string; fp16: boolean }>();
  const as16 = new Map<string, string>();
  const as32 = new Map<string, string>();
  const cast = (input: string, to: number, base: string): string => {
    const name = fresh(base);
    out.push(makeNode('Cast', [input], [name], { name: fresh(`${base}_Cast`), attributes: { to: { int: to } } }));
    return name;
  };

  // Graph inputs.
  for (const io of analysis.inputs) {
    if (io.elemType !== ELEM.FLOAT) continue;
    stored.set(io.name, { name: io.name, fp16: !keepIo });
  }

  const const16 = new Map<string, string>();
  /** A float16 version of a float32 constant. */
  const constantAs16 = (name: string): string => {
    const cached = const16.get(name);
    if (cached) return cached;
    const src = weightSources.get(name);
    let result: string;
    if (src && src.dataType === ELEM.FLOAT) {
      const t = tensorFromProto(src);
      const data = t.data as Float32Array;
      const bits = new Uint16Array(data.length);
      let clamped = false;
      for (let i = 0; i < data.length; i++) {
        let v = data[i]!;
        if (v > FP16_MAX) (v = FP16_MAX), (clamped = true);
        else if (v < -FP16_MAX) (v = -FP16_MAX), (clamped = true);
        bits[i] = float32ToFloat16Bits(v);
        if ((bits[i]! & 0x7fff) === 0 && v !== 0 && scaleInputs.has(name)) bits[i] = 1;
      }
      if (clamped) clampedWeights.push(name);
      result = fresh(`${name}_fp16`);
      newInitializers.push(
        onnx.TensorProto.create({ name: result, dataType: ELEM.FLOAT16, dims: t.dims, rawData: new Uint8Array(bits.buffer) }),
      );
    } else {
      // Computed constant (folded chain): a Cast that onnxruntime and TensorRT fold at load time.
      result = cast(name, ELEM.FLOAT16, `${name}_fp16`);
    }
    const16.set(name, result);
    return result;
  };
  const get16 = (name: string): string => {
    const s = stored.get(name);
    if (!s) return constantAs16(name);
    if (s.fp16) return s.name;
    let c = as16.get(name);
    if (!c) as16.set(name, (c = cast(s.name, ELEM.FLOAT16, `${name}_fp16`)));
    return c;
  };
  const get32 = (name: string): string => {
    const s = stored.get(name);
    if (!s || !s.fp16) return s?.name ?? name;
    let c = as32.get(name);
    if (!c) as32.set(name, (c = cast(s.name, ELEM.FLOAT, `${name}_fp32`)));
    return c;
  };
  /** Float32 value rounded through float16 (inputs of emulated nodes). */
  const get16as32 = (name: string): string => {
    const s = stored.get(name);
    if (s) {
      if (s.fp16) return get32(name);
      return get32Of16(name);
    }
    const key = `${name}\u0000const32`;
    let c = as32.get(key);
    if (!c) as32.set(key, (c = cast(constantAs16(name), ELEM.FLOAT, `${name}_fp16_fp32`)));
    return c;
  };
  const get32Of16 = (name: string): string => {
    const key = `${name}\u0000via16`;
    let c = as32.get(key);
    if (!c) as32.set(key, (c = cast(get16(name), ELEM.FLOAT, `${name}_fp16_fp32`)));
    return c;
  };

  const report = { fp16Nodes: [] as string[], emulatedNodes: [] as string[], float32Nodes: [] as string[] };
  // Any float32 input of a converted node is converted: data, weights, and float shape arithmetic alike.
  const isFloatInput = (name: string) => tensors.get(name)?.elemType === ELEM.FLOAT;

  for (const node of nodes) {
    const cls = classify(node);
    const nodeName = nodeLabel(node);
    if (cls === 'untouched') {
      out.push(node);
      continue;
    }
    const keepIn = KEEP_FLOAT32_INPUTS[node.opType] ?? [];
    const keepOut = KEEP_OUTPUTS[node.opType] ?? [];
    const input = node.input.map((name, slot) => {
      if (!name) return name;
      const isAct = stored.has(name);
      if (cls === 'agnostic') return isAct ? stored.get(name)!.name : name;
      if (cls === 'fp32' || keepIn.includes(slot)) return isAct ? get32(name) : name;
      if (!isFloatInput(name)) return isAct ? stored.get(name)!.name : name;
      if (cls === 'fp16') return get16(name);
      return get16as32(name); // emulated
    });
    let output = node.output.slice();
    const after: Array<[string, string, boolean]> = []; // [computed name, activation, computed as fp16]
    output = output.map((name, slot) => {
      if (!name || !isActivation(name) || keepOut.includes(slot) || cls === 'fp32' || cls === 'agnostic') {
        if (name && isActivation(name)) stored.set(name, { name, fp16: false });
        return name;
      }
      if (cls === 'fp16') {
        const n16 = graphOutputs.has(name) && keepIo ? fresh(`${name}_fp16`) : name;
        after.push([n16, name, true]);
        return n16;
      }
      const n32 = fresh(`${name}_fp32`);
      after.push([n32, name, false]);
      return n32;
    });
    let attribute = node.attribute;
    if (node.opType === 'Cast' && cls === 'fp16') {
      attribute = node.attribute.map((a) => (a.name === 'to' ? onnx.AttributeProto.create({ ...a, i: ELEM.FLOAT16 }) : a));
    }
    const changed = input.some((v, i) => v !== node.input[i]) || output.some((v, i) => v !== node.output[i]) || attribute !== node.attribute;
    out.push(changed ? onnx.NodeProto.create({ ...node, input, output, attribute }) : node);
    for (const [computed, name, is16] of after) {
      const keep32Name = graphOutputs.has(name) && keepIo;
      let n16 = computed;
      if (!is16) n16 = keep32Name ? cast(computed, ELEM.FLOAT16, `${name}_fp16`) : castNamed(out, computed, ELEM.FLOAT16, name, fresh);
      stored.set(name, { name: n16, fp16: true });
      if (keep32Name) {
        out.push(makeNode('Cast', [n16], [name], { name: fresh(`${name}_Cast`), attributes: { to: { int: ELEM.FLOAT } } }));
        as32.set(name, name);
      }
    }
    (cls === 'fp16' ? report.fp16Nodes : cls === 'emulated' ? report.emulatedNodes : cls === 'fp32' ? report.float32Nodes : []).push(nodeName);
  }

  // Graph inputs/outputs without keepIo change type.
  const retype = (v: OnnxValueInfo, to: number): OnnxValueInfo =>
    onnx.ValueInfoProto.create({
      ...v,
      type: onnx.TypeProto.create({ tensorType: onnx.TypeProto.Tensor.create({ ...(v.type?.tensorType ?? {}), elemType: to }) }),
    });
  const inputs = g.input.map((v) => (!keepIo && inputNames.has(v.name) && stored.get(v.name)?.fp16 ? retype(v, ELEM.FLOAT16) : v));
  const outputsVi = g.output.map((v) => (!keepIo && stored.get(v.name)?.fp16 ? retype(v, ELEM.FLOAT16) : v));
  // value_info of converted tensors would now be wrong: keep only those whose type did not change.
  const valueInfo = g.valueInfo.filter((v) => !stored.get(v.name)?.fp16);

  // Drop float32 weights nothing reads any more.
  const read = new Set<string>(g.output.map((o) => o.name));
  for (const n of out) for (const i of n.input) read.add(i);
  for (const r of subgraphRefs) read.add(r);
  const finalNodes = out.filter((n) => !(n.opType === 'Constant' && n.output.every((o) => !read.has(o))));
  const initializer = [...g.initializer.filter((t) => read.has(t.name)), ...newInitializers.filter((t) => read.has(t.name))];
  const converted = withGraph(model, { ...g, node: finalNodes, initializer, input: inputs, output: outputsVi, valueInfo });
  return { model: converted, ...report, clampedWeights, outOfRangeNodes: outOfRange, foldedBatchNorms: folded };
}

function castNamed(out: OnnxNode[], input: string, to: number, output: string, fresh: (b: string) => string): string {
  out.push(makeNode('Cast', [input], [output], { name: fresh(`${output}_Cast`), attributes: { to: { int: to } } }));
  return output;
}

function outerRefs(graph: OnnxTypes.IGraphProto): Set<string> {
  const defined = new Set<string>();
  const refs = new Set<string>();
  for (const v of graph.input ?? []) defined.add(v.name ?? '');
  for (const t of graph.initializer ?? []) defined.add(t.name ?? '');
  for (const n of graph.node ?? []) {
    for (const i of n.input ?? []) if (i && !defined.has(i)) refs.add(i);
    for (const a of n.attribute ?? []) for (const sg of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) for (const r of outerRefs(sg)) if (!defined.has(r)) refs.add(r);
    for (const o of n.output ?? []) if (o) defined.add(o);
  }
  return refs;
}

/** The FP16 model alone (see convertToFp16WithReport). */
export function convertToFp16(model: OnnxModel, options: Fp16Options = {}): OnnxModel {
  return convertToFp16WithReport(model, options).model;
}
