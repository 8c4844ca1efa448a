/**
 * Variant models for sensitivity analysis: the fully quantized Q/DQ model (every quantizable layer INT8, placed
 * by src/onnx/qdq.ts) with the Q/DQ of some layers taken out again.
 *
 * Why start from the full model rather than from precision maps: a layer's quantization is exactly the set of its
 * input slots that read a DequantizeLinear output in the full model. Putting a layer back to float reconnects
 * those slots to the float tensors (the activation the Q read, the float weight); keeping only one layer in INT8
 * keeps only its slots. So "only this layer INT8" and "every layer but this one" mean the same Q/DQ, scales and
 * int8 weights as the full model, for every kind of layer. (A precision map cannot say "only this residual Add":
 * Q/DQ placement quantizes an Add's skip input only when the convolution it fuses into is INT8.)
 *
 * For one-at-a-time, the layer can also get a float twin: the same node reading the float inputs, whose output
 * is the layer's FP32 output on the very same input (everything upstream is float in that variant). Comparing
 * the layer's output with its twin's gives the layer's own output SNR without keeping any FP32 activation.
 */
import type { onnx as OnnxTypes } from 'onnx-proto';
import { graphOf, onnx, tensorFromProto, tensorToProto, withGraph, type OnnxModel, type OnnxNode, type OnnxTensorProto } from '../onnx/model.js';
import { makeNode } from '../onnx/build.js';
import type { Tensor } from '../tensor.js';
import { nodeLabel } from '../onnx/opset.js';
import type { QdqResult } from '../onnx/qdq.js';
import { exposeTensors } from '../onnx/expose.js';

export interface QuantizedSlot {
  slot: number;
  kind: 'activation' | 'weight';
  /** The input the layer reads in the full model (a DequantizeLinear output). */
  dequantized: string;
  /** The float tensor it replaces (the activation, or the float weight of the original model). */
  float: string;
}

export interface LayerPlan {
  /** Node label: the precision map's key. */
  name: string;
  op: string;
  kind: 'weighted' | 'residual-add';
  /** Index of the node in the full model's node list. */
  node: number;
  slots: QuantizedSlot[];
  /** The layer's first output. */
  output: string;
  /** Quantized activation tensors it reads (float names) and weights. */
  activations: string[];
  weights: string[];
}

export interface BuiltVariant {
  model: OnnxModel;
  /** With `twin`: the layer's output and its float twin's output. */
  twin?: { output: string; reference: string };
}

const TWIN_SUFFIX = '__trt_calib_fp32_twin';
const INT8_TWIN_SUFFIX = '__trt_calib_int8_twin';

/**
 * The proxy model (VariantBuilder.buildProxy): per layer, its FP32 output, its INT8 twin's, and their difference
 * (src/sensitivity/proxy.ts sums the output and the difference as they stream by).
 */
export interface ProxyModel {
  model: OnnxModel;
  pairs: Array<{
    layer: string;
    output: string;
    twin: string;
    /** output - twin (float32, a Sub node). */
    error: string;
  }>;
}

export class VariantBuilder {
  readonly layers: LayerPlan[];
  readonly #full: OnnxModel;
  readonly #byName: Map<string, LayerPlan>;
  /** Float weights of the original model, to restore: initializers and Constant nodes by tensor name. */
  readonly #initializers: Map<string, OnnxTensorProto>;
  readonly #constants: Map<string, OnnxNode>;

  constructor(original: OnnxModel, full: QdqResult) {
    this.#full = full.model;
    const og = graphOf(original);
    this.#initializers = new Map(og.initializer.map((t) => [t.name, t]));
    this.#constants = new Map();
    for (const n of og.node) if (n.opType === 'Constant' && (n.domain ?? '') === '' && n.output[0]) this.#constants.set(n.output[0], n);
    const originalByLabel = new Map(og.node.map((n) => [nodeLabel(n), n]));

    const g = graphOf(full.model);
    const producer = new Map<string, OnnxNode>();
    for (const n of g.node) for (const o of n.output) if (o) producer.set(o, n);
    const weighted = new Set(full.quantizedNodes);
    const adds = new Set(full.residualAdds);
    this.layers = [];
    g.node.forEach((node, index) => {
      const name = nodeLabel(node);
      if (!weighted.has(name) && !adds.has(name)) return;
      const slots: QuantizedSlot[] = [];
      node.input.forEach((input, slot) => {
        const dq = producer.get(input);
        if (!dq || dq.opType !== 'DequantizeLinear') return;
        const q = producer.get(dq.input[0] ?? '');
        if (q && q.opType === 'QuantizeLinear') {
          slots.push({ slot, kind: 'activation', dequantized: input, float: q.input[0]! });
        } else {
          // A weight: its float original is what the original model's node reads in this slot.
          const before = originalByLabel.get(name)?.input[slot];
          if (!before) throw new Error(`cannot find the float weight of ${name} (input ${slot}) in the original model`);
          slots.push({ slot, kind: 'weight', dequantized: input, float: before });
        }
      });
      if (slots.length === 0) throw new Error(`layer ${name} is reported quantized but reads no DequantizeLinear output`);
      this.layers.push({
        name,
        op: node.opType,
        kind: weighted.has(name) ? 'weighted' : 'residual-add',
        node: index,
        slots,
        output: node.output[0]!,
        activations: slots.filter((s) => s.kind === 'activation').map((s) => s.float),
        weights: slots.filter((s) => s.kind === 'weight').map((s) => s.float),
      });
    });
    this.#byName = new Map(this.layers.map((l) => [l.name, l]));
  }

  layer(name: string): LayerPlan {
    const l = this.#byName.get(name);
    if (!l) throw new Error(`no quantizable layer ${JSON.stringify(name)}`);
    return l;
  }

  /**
   * The full model with only the layers in `int8` quantized. With `twin`, a float copy of that layer (which must
   * be in `int8`) is added right after it; see the file comment.
   */
  build(int8: ReadonlySet<string>, options: { twin?: string } = {}): BuiltVariant {
    for (const name of int8) this.layer(name);
    const g = graphOf(this.#full);
    const restore = new Map<number, Map<number, string>>();
    const neededWeights = new Set<string>();
    for (const l of this.layers) {
      if (int8.has(l.name)) continue;
      restore.set(l.node, new Map(l.slots.map((s) => [s.slot, s.float])));
      for (const s of l.slots) if (s.kind === 'weight') neededWeights.add(s.float);
    }
    const nodes: OnnxNode[] = [];
    let twin: BuiltVariant['twin'];
    const twinLayer = options.twin !== undefined ? this.layer(options.twin) : undefined;
    if (twinLayer && !int8.has(twinLayer.name)) throw new Error(`the twin of ${twinLayer.name} needs the layer in INT8`);
    g.node.forEach((node, index) => {
      const r = restore.get(index);
      nodes.push(r ? onnx.NodeProto.create({ ...node, input: node.input.map((name, slot) => r.get(slot) ?? name) }) : node);
      if (twinLayer && twinLayer.node === index) {
        const floats = new Map(twinLayer.slots.map((s) => [s.slot, s.float]));
        for (const s of twinLayer.slots) if (s.kind === 'weight') neededWeights.add(s.float);
        const reference = `${twinLayer.output}${TWIN_SUFFIX}`;
        nodes.push(
          onnx.NodeProto.create({
            ...node,
            name: `${node.name || nodeLabel(node)}${TWIN_SUFFIX}`,
            input: node.input.map((name, slot) => floats.get(slot) ?? name),
            output: [reference, ...node.output.slice(1).map(() => '')],
          }),
        );
        twin = { output: twinLayer.output, reference };
      }
    });

    // Float weights the variant reads again: back from the original model (the full model dropped them).
    const { initializer, constants } = this.#floatWeights(g, neededWeights);
    const all = [...constants, ...nodes];
    const pruned = pruneUnreadQdq(all, g.output.map((o) => o.name));
    const read = readNames(pruned, g.output.map((o) => o.name));
    const model = withGraph(this.#full, { ...g, node: pruned, initializer: initializer.filter((t) => read.has(t.name)) });
    return twin ? { model, twin } : { model };
  }

  /** The float weights a built model reads that its graph `g` lacks: initializers, or Constant nodes to prepend. */
  #floatWeights(g: { initializer: OnnxTensorProto[]; node: OnnxNode[] }, needed: ReadonlySet<string>): { initializer: OnnxTensorProto[]; constants: OnnxNode[] } {
    const present = new Set<string>([...g.initializer.map((t) => t.name), ...g.node.flatMap((n) => n.output)]);
    const initializer = [...g.initializer];
    const constants: OnnxNode[] = [];
    for (const w of [...needed].sort()) {
      if (present.has(w)) continue;
      const init = this.#initializers.get(w);
      if (init) initializer.push(init);
      else {
        const c = this.#constants.get(w);
        if (!c) throw new Error(`float weight ${w} is neither an initializer nor a Constant of the original model`);
        constants.push(c);
      }
    }
    return { initializer, constants };
  }

  /** The float32 values a weight's DequantizeLinear gives ((q - zero point) x scale, per axis), if its inputs are constants. */
  #dequantizedWeight(output: string, producer: ReadonlyMap<string, OnnxNode>, initializers: ReadonlyMap<string, OnnxTensorProto>): Tensor | undefined {
    const dq = producer.get(output);
    if (!dq || dq.opType !== 'DequantizeLinear') return undefined;
    const [qp, sp, zp] = [0, 1, 2].map((i) => (dq.input[i] ? initializers.get(dq.input[i]!) : undefined));
    if (!qp || !sp) return undefined;
    const q = tensorFromProto(qp);
    const scale = tensorFromProto(sp).data as Float32Array;
    const zero = zp ? tensorFromProto(zp).data : undefined;
    if (q.dtype !== 'int8' && q.dtype !== 'uint8') return undefined;
    const axisAttr = dq.attribute.find((a) => a.name === 'axis');
    const rank = q.dims.length;
    const axis = scale.length === 1 ? null : axisAttr ? (Number(axisAttr.i) + rank) % rank : 1;
    const inner = axis === null ? 1 : q.dims.slice(axis + 1).reduce((a, b) => a * b, 1);
    const channels = axis === null ? 1 : q.dims[axis]!;
    const data = new Float32Array(q.data.length);
    for (let i = 0; i < data.length; i++) {
      const c = axis === null ? 0 : Math.floor(i / inner) % channels;
      data[i] = Math.fround((Number(q.data[i]) - Number(zero ? zero[c] ?? 0 : 0)) * scale[c]!);
    }
    return { dtype: 'float32', dims: [...q.dims], data };
  }

  /**
   * The proxy model: the FP32 model (every layer float) with, beside each layer of `layers` (default all), an
   * INT8 twin: the same node reading its Q/DQ'd input(s) and dequantized weights as in the full model, whose output
   * nothing else reads. Everything upstream is float, so the twin's input is the layer's FP32 input and the pair
   * (layer output, twin output) is what one-at-a-time compares through its float twin (the layer in INT8 on FP32
   * input against the layer in FP32), for every layer in one run; a Sub node gives each pair's difference.
   */
  buildProxy(layers: readonly LayerPlan[] = this.layers): ProxyModel {
    const g = graphOf(this.#full);
    const chosen = new Map(layers.map((l) => [l.node, this.layer(l.name)]));
    const restore = new Map<number, LayerPlan>(this.layers.map((l) => [l.node, l]));
    const neededWeights = new Set<string>();
    for (const l of this.layers) for (const s of l.slots) if (s.kind === 'weight') neededWeights.add(s.float);
    const nodes: OnnxNode[] = [];
    const pairs: ProxyModel['pairs'] = [];
    const producer = new Map<string, OnnxNode>();
    for (const n of g.node) for (const o of n.output) if (o) producer.set(o, n);
    const fullInitializers = new Map(g.initializer.map((t) => [t.name, t]));
    const dequantized = new Map<string, OnnxTensorProto>();
    g.node.forEach((node, index) => {
      const l = restore.get(index);
      if (!l) {
        nodes.push(node);
        return;
      }
      const floats = new Map(l.slots.map((s) => [s.slot, s.float]));
      nodes.push(onnx.NodeProto.create({ ...node, input: node.input.map((name, slot) => floats.get(slot) ?? name) }));
      if (!chosen.has(index)) return;
      const twin = `${l.output}${INT8_TWIN_SUFFIX}`;
      // The full model's node: it reads the activations' DequantizeLinear outputs, and its weights dequantized
      // here as constants (the same float32 values: q x scale, one rounding), so that onnxruntime runs the twin with
      // the kernels of a float layer (a blocked-layout convolution needs constant weights; a DequantizeLinear
      // weight makes a depthwise convolution several times slower, and the pass has one per layer).
      const weightInputs = new Map<number, string>();
      for (const slot of l.slots) {
        if (slot.kind !== 'weight') continue;
        const name = `${slot.dequantized}${INT8_TWIN_SUFFIX}`;
        if (!dequantized.has(name)) {
          const w = this.#dequantizedWeight(slot.dequantized, producer, fullInitializers);
          if (!w) continue; // not a constant DequantizeLinear: the twin reads it as the full model does
          dequantized.set(name, tensorToProto(name, w));
        }
        weightInputs.set(slot.slot, name);
      }
      nodes.push(
        onnx.NodeProto.create({
          ...node,
          name: `${node.name || nodeLabel(node)}${INT8_TWIN_SUFFIX}`,
          input: node.input.map((name, slot) => weightInputs.get(slot) ?? name),
          output: [twin, ...node.output.slice(1).map(() => '')],
        }),
      );
      pairs.push({ layer: l.name, output: l.output, twin, error: `${twin}_err` });
    });
    const { initializer, constants } = this.#floatWeights(g, neededWeights);
    // The difference in the graph (one pass over the two outputs); the sums are taken by the noise pass's counting
    // nodes, which read the tensors where onnxruntime leaves them.
    for (const p of pairs) nodes.push(makeNode('Sub', [p.output, p.twin], [p.error]));
    initializer.push(...dequantized.values());
    const outputs = g.output.map((o) => o.name);
    const pruned = pruneUnreadQdq([...constants, ...nodes], [...outputs, ...pairs.map((p) => p.error)]);
    const read = readNames(pruned, outputs);
    const model = withGraph(this.#full, { ...g, node: pruned, initializer: initializer.filter((t) => read.has(t.name)) });
    return { model, pairs };
  }
}

/** Removes QuantizeLinear/DequantizeLinear nodes whose outputs nothing reads, until none is left. */
function pruneUnreadQdq(nodes: OnnxNode[], graphOutputs: readonly string[]): OnnxNode[] {
  let current = nodes;
  for (;;) {
    const read = readNames(current, graphOutputs);
    const next = current.filter(
      (n) => !((n.opType === 'QuantizeLinear' || n.opType === 'DequantizeLinear') && (n.domain ?? '') === '' && n.output.every((o) => !o || !read.has(o))),
    );
    if (next.length === current.length) return next;
    current = next;
  }
}

function readNames(nodes: readonly OnnxNode[], graphOutputs: readonly string[]): Set<string> {
  const read = new Set<string>(graphOutputs);
  const visit = (ns: readonly OnnxTypes.INodeProto[]) => {
    for (const n of ns) {
      for (const i of n.input ?? []) if (i) read.add(i);
      for (const a of n.attribute ?? []) {
        if (a.g) visit(a.g.node ?? []);
        for (const sg of a.graphs ?? []) visit(sg.node ?? []);
      }
    }
  };
  visit(nodes);
  return read;
}
