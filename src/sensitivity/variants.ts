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
 * the layer's output with its twin's gives the layer's own output SNR without keeping any FP32 activation. The
 * comparison is reduced inside the graph, per image (twinSums: sums of squares, the float16 round trip, max and
 * min), so that only a few numbers per image leave onnxruntime; the twin and its reductions only read tensors, so
 * the variant's own outputs are those of the same variant without twin.
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
  /** With `twin`: the layer's output, its float twin's output, and the graph outputs that reduce them per image. */
  twin?: TwinTensors;
}

/** The twin of a one-at-a-time variant: tensor names (see VariantBuilder.build). */
export interface TwinTensors {
  /** The layer's (INT8) output and its float twin's (the FP32 reference). */
  output: string;
  reference: string;
  /**
   * Graph outputs of shape [N], per image (ref: the twin's output, out: the layer's): sum of ref^2, of out^2, of
   * (ref - out)^2, of (ref - float16(ref))^2, and max and min of ref.
   */
  sums: { ref2: string; var2: string; err2: string; fp16Err2: string; max: string; min: string };
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
   * be in `int8`) is added right after it, and the per-image sums comparing the two are graph outputs (twinSums);
   * see the file comment.
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
        twin = { output: twinLayer.output, reference, sums: twinSumNames(reference) };
      }
    });
    if (twin) nodes.push(...twinSums(twin, opsetOf(this.#full)));

    // Float weights the variant reads again: back from the original model (the full model dropped them).
    const { initializer, constants } = this.#floatWeights(g, neededWeights);
    const all = [...constants, ...nodes];
    if (twin) initializer.push(...twinConstants());
    const outputs = [...g.output.map((o) => o.name), ...(twin ? Object.values(twin.sums) : [])];
    const pruned = pruneUnreadQdq(all, outputs);
    const read = readNames(pruned, outputs);
    const model = withGraph(this.#full, { ...g, node: pruned, initializer: initializer.filter((t) => read.has(t.name)) });
    return twin ? { model: exposeTensors(model, Object.values(twin.sums), { file: 'variant.onnx' }), twin } : { model };
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

function opsetOf(model: OnnxModel): number {
  const opset = model.opsetImport?.find((o) => (o.domain ?? '') === '')?.version;
  return typeof opset === 'number' ? opset : Number(opset ?? 13);
}

function int64Constant(name: string, values: bigint[]): OnnxTensorProto {
  return tensorToProto(name, { dtype: 'int64', dims: [values.length], data: BigInt64Array.from(values) });
}

/** `op` over `axis` with keepdims 0: axes as an input from opset 18 (ReduceSum: 13), an attribute before. */
function reduceAxis(version: number, axesName: string, op: string, input: string, output: string, axis = 1): OnnxNode {
  const axesInput = version >= 18 || (op === 'ReduceSum' && version >= 13);
  return axesInput
    ? makeNode(op, [input, axesName], [output], { attributes: { keepdims: { int: 0 } } })
    : makeNode(op, [input], [output], { attributes: { axes: { ints: [axis] }, keepdims: { int: 0 } } });
}

/** Each image's elements are padded to TWIN_BLOCKS blocks of a multiple of TWIN_ROW_FLOATS floats (see twinSums). */
const TWIN_ROW_FLOATS = 16n;
const TWIN_BLOCKS = 64n;
const TWIN_AXES = `axes${TWIN_SUFFIX}`;
const TWIN_AXES_2 = `axes_2${TWIN_SUFFIX}`;
const TWIN_PAD_SIGN = `pad_sign${TWIN_SUFFIX}`;
const TWIN_PAD_MOD = `pad_mod${TWIN_SUFFIX}`;
const TWIN_BLOCK_SHAPE = `block_shape${TWIN_SUFFIX}`;

function twinSumNames(reference: string): TwinTensors['sums'] {
  const t = (suffix: string) => `${reference}_${suffix}`;
  return { ref2: t('ref2'), var2: t('var2'), err2: t('err2'), fp16Err2: t('fp16_err2'), max: t('max'), min: t('min') };
}

/** The constants twinSums reads (initializers). */
function twinConstants(): OnnxTensorProto[] {
  return [
    int64Constant(TWIN_AXES, [1n]),
    int64Constant(TWIN_AXES_2, [2n]),
    int64Constant(TWIN_PAD_SIGN, [1n, -1n]),
    int64Constant(TWIN_PAD_MOD, [2n ** 62n, TWIN_BLOCKS * TWIN_ROW_FLOATS]),
    int64Constant(TWIN_BLOCK_SHAPE, [0n, TWIN_BLOCKS, -1n]),
  ];
}

/**
 * The twin's comparison inside the graph, per image: only the 6 numbers per image of TwinTensors.sums leave
 * onnxruntime, instead of the two tensors (8x32x112x112 floats each for an early MobileNetV2 layer, whose copies and
 * JavaScript loops took longer than the variant's own inference). Flatten from axis 1, sums per image in float32
 * (onnxruntime's vectorised kernels; float64 casts tripled the time of the proxy's pass), then added in float64 in
 * image order by evaluate.ts (TwinTotals), which also derives the cosine from these sums.
 *
 * Each image's row of M values is padded with zeros (which add nothing to a sum) to 64 blocks of a multiple of 16
 * floats, and summed block by block (ReduceSumSquare), then the 64 block sums (ReduceSum):
 * - accuracy: onnxruntime's ReduceSumSquare runs one float32 accumulator along the row; over a 401408-value row
 *   it was off by ~2e-4 relative (0.001 dB of SNR, 2e-4 of a cosine from a dot product). 64 blocks cut each
 *   sequential run 64-fold (measured: within 2e-6 dB of the float64 sums);
 * - the same bytes at any batch size: onnxruntime's ReduceSum sums a row with Eigen's vectorised reduction, whose
 *   packets start at the first aligned address; a row starts at image x M x 4 bytes, so for M not a multiple of
 *   the packet an image is summed in another order at another batch position (measured with ReduceSum over axis 1
 *   of [N, M]: per-image sums differ between batch 8 and batch 1 for M = 5, 143, 1001, not for multiples of 4).
 *   Here every row that is summed (a block, the 64 block sums) is a multiple of 16 floats (64 bytes: any SIMD
 *   width up to 512 bits) and starts aligned alike, whichever kernel onnxruntime picks. The pad comes from the
 *   shape in the graph ((-M) mod 1024, via Shape/Mul/Mod), so it holds for dynamic shapes.
 *
 * FP16 rounding: Cast to float16 and back, over every element (the FP32 pass's TensorNoise samples every 8th
 * to stay cheap in JavaScript; here a pass is a few ms and the full sum leaves no sampling question). A value
 * beyond the float16 range becomes infinite, so its sum is infinite: the FP16 SNR is then -Infinity, which
 * is what float16 does to that tensor (and the range check reports it first).
 */
function twinSums(twin: TwinTensors, version: number): OnnxNode[] {
  const t = (suffix: string) => `${twin.reference}_${suffix}`;
  const s = twin.sums;
  // Per block (axis 2 of [N, 64, L]), then per image.
  const sumSquares = (input: string, output: string): OnnxNode[] => [
    makeNode('Reshape', [input, TWIN_BLOCK_SHAPE], [`${output}_blocks_in`]),
    reduceAxis(version, TWIN_AXES_2, 'ReduceSumSquare', `${output}_blocks_in`, `${output}_blocks`, 2),
    reduceAxis(version, TWIN_AXES, 'ReduceSum', `${output}_blocks`, output),
  ];
  return [
    makeNode('Flatten', [twin.reference], [t('flat_ref')], { attributes: { axis: { int: 1 } } }),
    makeNode('Flatten', [twin.output], [t('flat_out')], { attributes: { axis: { int: 1 } } }),
    // [N, M] -> [N, -M] -> [N mod 2^62, (-M) mod 1024] = [N, pad]: integer Mod takes the divisor's sign.
    makeNode('Shape', [t('flat_ref')], [t('shape')]),
    makeNode('Mul', [t('shape'), TWIN_PAD_SIGN], [t('signed_shape')]),
    makeNode('Mod', [t('signed_shape'), TWIN_PAD_MOD], [t('pad_shape')]),
    makeNode('ConstantOfShape', [t('pad_shape')], [t('zeros')], { attributes: { value: { tensor: tensorToProto(t('zero'), { dtype: 'float32', dims: [1], data: new Float32Array([0]) }) } } }),
    makeNode('Concat', [t('flat_ref'), t('zeros')], [t('ref')], { attributes: { axis: { int: 1 } } }),
    makeNode('Concat', [t('flat_out'), t('zeros')], [t('out')], { attributes: { axis: { int: 1 } } }),
    makeNode('Sub', [t('ref'), t('out')], [t('err')]),
    makeNode('Cast', [t('ref')], [t('half')], { attributes: { to: { int: onnx.TensorProto.DataType.FLOAT16 } } }),
    makeNode('Cast', [t('half')], [t('half_back')], { attributes: { to: { int: onnx.TensorProto.DataType.FLOAT } } }),
    makeNode('Sub', [t('ref'), t('half_back')], [t('fp16_err')]),
    ...sumSquares(t('ref'), s.ref2),
    ...sumSquares(t('out'), s.var2),
    ...sumSquares(t('err'), s.err2),
    ...sumSquares(t('fp16_err'), s.fp16Err2),
    // Max and min are exact in any order: on the unpadded rows.
    reduceAxis(version, TWIN_AXES, 'ReduceMax', t('flat_ref'), s.max),
    reduceAxis(version, TWIN_AXES, 'ReduceMin', t('flat_ref'), s.min),
  ];
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
