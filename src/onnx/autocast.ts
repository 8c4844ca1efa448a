/**
 * The FP16 cast of the non-INT8 rest of a Q/DQ model: the strongly typed INT8 + FP16 model TensorRT 11 builds as
 * it is (every layer runs in the type the graph gives it), with FP32 only where asked.
 *
 * Method, after NVIDIA Model Optimizer (modelopt/onnx/quantization/int8.py: with high_precision_dtype='fp16' the
 * Q/DQ model goes through autocast.convert_to_f16, which converts every node but a block list, Q/DQ included):
 * - opset 19 first (src/onnx/opset.ts): QuantizeLinear-19 / DequantizeLinear-19 are the first to take float16;
 *   Model Optimizer's convert_to_f16 raises the opset to 21 for its NVFP4 block sizes, which INT8 does not need.
 * - Q reads the float16 activation with a float16 scale; DQ writes float16 with a float16 scale, the weights' DQ
 *   too, so an INT8 convolution reads DQ -> Conv directly (TensorRT fuses DQ into the layer; a Cast between them
 *   would be a separate layer in a strongly typed network). A scale that rounds to 0 in float16 becomes the
 *   smallest subnormal, as Model Optimizer's replace_zero_scale_with_smallest_nonzero does.
 * - FP32 layers (the precision map's, unsafe ops, and the producer and consumers of every tensor kept in FP32:
 *   beyond FP16's range, protected from INT8, or with a subnormal scale) stay float32 with Casts around them. A
 *   DQ is float32 when all its consumers are (its Q too when all its DQs are); a DQ read by FP32 and FP16 layers
 *   alike gets a float32 twin for the FP32 ones, so that no layer reads its DQ through a Cast.
 * - Graph inputs and outputs keep float32 through Casts at the boundary unless ioFp16.
 * With `emulateOnCpu` the ops onnxruntime's CPU provider has no float16 kernel for run in float32 between float16
 * roundings (src/onnx/fp16.ts), to measure the FP16 error; without it the graph is pure float16 for TensorRT.
 */
import { convertToFp16WithReport } from './fp16.js';
import { ELEM, graphOf, onnx, tensorFromProto, withGraph, type OnnxModel, type OnnxNode } from './model.js';
import { nodeLabel, upgradeOpset } from './opset.js';
import { FP16_UNSAFE_OPS, fp16ScaleVerdict } from '../precision/fp16-safety.js';

export type LayerType = 'INT8' | 'FP16' | 'FP32';

export interface AutocastOptions {
  /** Tensors (activations of the source model) to keep in FP32, with the reason. */
  fp32Tensors?: ReadonlyMap<string, string>;
  /** Layers (node labels) to keep in FP32, with the reason (the precision map's fp32 layers). */
  fp32Layers?: ReadonlyMap<string, string>;
  /** Layers with Q/DQ (src/precision/apply.ts): counted as INT8. */
  int8Layers?: readonly string[];
  /** Graph inputs and outputs in float16 (default false: float32 through Casts). */
  ioFp16?: boolean;
  /** Emulate the ops without float16 CPU kernels in float32 between roundings (measuring on onnxruntime). */
  emulateOnCpu?: boolean;
  file?: string;
}

export interface AutocastResult {
  model: OnnxModel;
  /** Layers (not Q/DQ, Casts or shape ops) by type, then by op: e.g. { INT8: { Conv: 52 }, FP16: { Clip: 35 } }. */
  layersByType: Record<LayerType, Record<string, number>>;
  /** Layers kept in FP32 and why. */
  fp32Layers: Array<{ layer: string; op: string; reason: string }>;
  /** Tensors kept in FP32 and why. */
  fp32Tensors: Array<{ tensor: string; reason: string }>;
  opset: { from: number; to: number; converted: string[] };
}

const QDQ = new Set(['QuantizeLinear', 'DequantizeLinear']);
/** Not layers in the count: type plumbing and shape arithmetic. */
const NOT_LAYERS = new Set(['QuantizeLinear', 'DequantizeLinear', 'Cast', 'Constant', 'Shape', 'Size', 'Identity']);

export function castRestToFp16(qdqModel: OnnxModel, options: AutocastOptions = {}): AutocastResult {
  const file = options.file ?? 'the model';
  const up = upgradeOpset(qdqModel, { to: 19, file });
  let model = up.model;
  let nodes = graphOf(model).node;
  const inits = new Map(graphOf(model).initializer.map((t) => [t.name, t]));
  const producer = new Map<string, OnnxNode>();
  const consumers = new Map<string, OnnxNode[]>();
  for (const n of nodes) {
    for (const o of n.output) if (o) producer.set(o, n);
    for (const i of n.input) if (i) (consumers.get(i) ?? consumers.set(i, []).get(i)!).push(n);
  }

  const blocked = new Map<OnnxNode, string>();
  const block = (n: OnnxNode, reason: string) => {
    if (!blocked.has(n)) blocked.set(n, reason);
  };
  for (const n of nodes) {
    const unsafe = FP16_UNSAFE_OPS.get(n.opType);
    if (unsafe) block(n, `${n.opType}: ${unsafe}`);
    const mapped = options.fp32Layers?.get(nodeLabel(n)) ?? (n.name ? options.fp32Layers?.get(n.name) : undefined);
    if (mapped) block(n, mapped);
  }

  // Tensors kept in FP32: by the caller's reasons, and quantized tensors whose scale is subnormal in float16.
  const fp32Tensors = new Map(options.fp32Tensors ?? []);
  for (const n of nodes) {
    if (n.opType !== 'QuantizeLinear' || inits.has(n.input[0]!)) continue;
    const scale = inits.get(n.input[1]!);
    if (!scale) continue;
    const values = tensorFromProto(scale).data as Float32Array;
    const why = values.length === 1 ? fp16ScaleVerdict(values[0]!) : undefined;
    if (why && !fp32Tensors.has(n.input[0]!)) fp32Tensors.set(n.input[0]!, why);
  }
  const keptTensors: Array<{ tensor: string; reason: string }> = [];
  for (const [tensor, reason] of fp32Tensors) {
    const p = producer.get(tensor);
    const cs = consumers.get(tensor) ?? [];
    if (!p && cs.length === 0) continue; // not in this model
    keptTensors.push({ tensor, reason });
    const why = `reads or writes ${tensor}, kept in FP32: ${reason}`;
    if (p && !QDQ.has(p.opType)) block(p, why);
    for (const c of cs) {
      block(c, why);
      // Q -> DQ -> layer: the pair and the layer after it stay FP32 (no Cast between a DQ and its layer).
      if (c.opType === 'QuantizeLinear') {
        for (const dq of consumers.get(c.output[0]!) ?? []) {
          block(dq, why);
          for (const l of consumers.get(dq.output[0]!) ?? []) block(l, why);
        }
      }
    }
  }
  // No layer reads its DQ through a Cast (TensorRT fuses DQ -> layer only when they are adjacent): a DQ read by
  // FP32 and FP16 layers alike gets a float32 twin (same int8 input and scale) for the FP32 ones.
  const taken = new Set<string>([...nodes.flatMap((n) => [...n.output, n.name]), ...inits.keys(), ...graphOf(model).input.map((i) => i.name)]);
  const fresh = (base: string) => {
    let name = base;
    for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
    taken.add(name);
    return name;
  };
  const rewired = new Map<OnnxNode, OnnxNode>();
  const twins = new Map<OnnxNode, OnnxNode>();
  for (const dq of nodes) {
    if (dq.opType !== 'DequantizeLinear') continue;
    const cs = [...new Set(consumers.get(dq.output[0]!) ?? [])];
    const fp32Readers = cs.filter((c) => blocked.has(c));
    if (fp32Readers.length === 0 || fp32Readers.length === cs.length) continue;
    const out = fresh(`${dq.output[0]}_fp32`);
    const twin = onnx.NodeProto.create({ ...dq, name: fresh(`${nodeLabel(dq)}_fp32`), output: [out] });
    twins.set(dq, twin);
    blocked.set(twin, 'its consumers are FP32');
    for (const c of fp32Readers) {
      const current = rewired.get(c) ?? c;
      rewired.set(c, onnx.NodeProto.create({ ...current, input: current.input.map((i) => (i === dq.output[0] ? out : i)) }));
    }
  }
  if (twins.size > 0) {
    for (const [old, now] of rewired) {
      blocked.set(now, blocked.get(old)!);
      blocked.delete(old);
    }
    nodes = nodes.flatMap((n) => (twins.has(n) ? [n, twins.get(n)!] : [rewired.get(n) ?? n]));
    model = withGraph(model, { ...graphOf(model), node: nodes });
    consumers.clear();
    for (const n of nodes) for (const i of n.input) if (i) (consumers.get(i) ?? consumers.set(i, []).get(i)!).push(n);
  }
  // A DQ is FP32 when all its consumers are (a weight's DQ too); a Q when all its DQs are, or when its input is
  // kept FP32. A Q in FP16 may then feed a twin DQ in FP32: each reads its own scale input.
  for (const n of nodes) {
    if (n.opType !== 'DequantizeLinear') continue;
    const cs = consumers.get(n.output[0]!) ?? [];
    if (cs.length > 0 && cs.every((c) => blocked.has(c))) block(n, 'its consumers are FP32');
  }
  for (const q of nodes) {
    if (q.opType !== 'QuantizeLinear') continue;
    const dqs = consumers.get(q.output[0]!) ?? [];
    if (dqs.length > 0 && dqs.every((d) => blocked.has(d))) block(q, blocked.get(dqs[0]!)!);
  }

  const r = convertToFp16WithReport(model, {
    blockList: [...blocked.keys()].map(nodeLabel),
    keepIo: !options.ioFp16,
    cpuFallback: options.emulateOnCpu ?? false,
    foldBatchNorm: false,
    qdq: true,
    file,
  });

  const int8 = new Set(options.int8Layers ?? []);
  const fp16 = new Set([...r.fp16Nodes, ...r.emulatedNodes]);
  const fp32 = new Set(r.float32Nodes);
  const outOfRange = new Set(r.outOfRangeNodes);
  const layersByType: Record<LayerType, Record<string, number>> = { INT8: {}, FP16: {}, FP32: {} };
  const fp32Layers: AutocastResult['fp32Layers'] = [];
  for (const n of nodes) {
    if (NOT_LAYERS.has(n.opType)) continue;
    const label = nodeLabel(n);
    const type: LayerType | undefined = int8.has(label) ? 'INT8' : fp16.has(label) ? 'FP16' : fp32.has(label) ? 'FP32' : undefined;
    if (!type) continue; // computes on shapes only
    layersByType[type][n.opType] = (layersByType[type][n.opType] ?? 0) + 1;
    if (type === 'FP32') fp32Layers.push({ layer: label, op: n.opType, reason: blocked.get(n) ?? (outOfRange.has(label) ? 'a weight exceeds FP16\'s range (65504)' : 'no float16 form') });
  }
  return { model: r.model, layersByType, fp32Layers, fp32Tensors: keptTensors, opset: { from: up.from, to: up.to, converted: up.converted } };
}

/** Total layers of one type. */
export function countLayers(byOp: Record<string, number>): number {
  return Object.values(byOp).reduce((a, b) => a + b, 0);
}

/** Whether a model computes in float16 anywhere (float16 weights or scales, or a Cast to float16). */
export function usesFloat16(model: OnnxModel): boolean {
  const g = graphOf(model);
  return g.initializer.some((t) => t.dataType === ELEM.FLOAT16) || g.node.some((n) => n.opType === 'Cast' && n.attribute.some((a) => a.name === 'to' && a.i === ELEM.FLOAT16));
}
