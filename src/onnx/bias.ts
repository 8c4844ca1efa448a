/**
 * Graph edits for bias correction: add a per-output-channel shift to the bias of a weighted layer (created where
 * the layer has none). (The partial passes of the layer-by-layer correction cut the model with pruneToOutputs,
 * src/onnx/expose.ts.)
 *
 * Where the bias goes:
 * - Conv, ConvTranspose: input 2 ([M]), added when absent;
 * - Gemm: input C (Y = alpha*A*B + beta*C), so the shift is divided by beta; C of [N] or [.., N] gets it along its
 *   last axis, a scalar C becomes [N]; added as C = shift/beta when absent;
 * - MatMul has no bias input: an Add of a [N] constant follows it, and takes over its output name, so that every
 *   reader (and the graph outputs) see the corrected value; TensorRT fuses such an Add into the MatMul.
 * A bias initializer read by this node alone is rewritten in place (same name, same dims); a shared one or a
 * `Constant` output gets a fresh initializer for this node, so the other readers keep their values.
 */
import { attrFloat, graphOf, onnx, tensorFromProto, tensorToProto, withGraph, type OnnxModel, type OnnxNode, type OnnxTensorProto } from './model.js';
import { makeNode } from './build.js';
import { nodeLabel } from './opset.js';
import { ELEM } from './model.js';

export const BIAS_CORRECTED_OPS: ReadonlySet<string> = new Set(['Conv', 'ConvTranspose', 'Gemm', 'MatMul']);

/** Axis of the output channels in a weighted layer's output (NCHW for convolutions; the last axis otherwise). */
export function outputChannelAxis(opType: string, rank: number): number {
  return opType === 'Conv' || opType === 'ConvTranspose' ? 1 : rank - 1;
}

export interface BiasShiftResult {
  model: OnnxModel;
  /** Layers whose bias could not take the shift, and why (left as they were). */
  skipped: Array<{ node: string; reason: string }>;
}

/**
 * A copy of `model` with `shifts` (node label -> one value per output channel) added to the layers' biases.
 * Float64 shifts are added in float64 to the float32 bias and rounded once.
 */
export function applyBiasShifts(model: OnnxModel, shifts: ReadonlyMap<string, ArrayLike<number>>): BiasShiftResult {
  const g = graphOf(model);
  const skipped: BiasShiftResult['skipped'] = [];
  const initializers = new Map(g.initializer.map((t, i) => [t.name, i]));
  const constants = new Map<string, OnnxNode>();
  const readers = new Map<string, number>();
  for (const n of g.node) {
    if (n.opType === 'Constant' && (n.domain ?? '') === '') constants.set(n.output[0]!, n);
    for (const i of n.input) readers.set(i, (readers.get(i) ?? 0) + 1);
  }
  for (const o of g.output) readers.set(o.name, (readers.get(o.name) ?? 0) + 1);
  const taken = new Set<string>([...g.initializer.map((t) => t.name), ...g.node.flatMap((n) => [...n.input, ...n.output]), ...g.input.map((i) => i.name)]);
  const fresh = (base: string) => {
    let name = base;
    for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
    taken.add(name);
    return name;
  };

  const initializer = [...g.initializer];
  const added: OnnxTensorProto[] = [];
  const nodes: OnnxNode[] = [];
  const wanted = new Set(shifts.keys());
  for (const node of g.node) {
    const label = nodeLabel(node);
    const shift = shifts.get(label);
    if (!shift || !BIAS_CORRECTED_OPS.has(node.opType) || (node.domain ?? '') !== '') {
      nodes.push(node);
      continue;
    }
    wanted.delete(label);
    const channels = shift.length;
    if (node.opType === 'MatMul') {
      const pre = fresh(`${node.output[0]}_before_bias`);
      const biasName = fresh(`${label}_bias`);
      added.push(tensorToProto(biasName, { dtype: 'float32', dims: [channels], data: Float32Array.from(shift) }));
      nodes.push(onnx.NodeProto.create({ ...node, output: [pre] }));
      nodes.push(makeNode('Add', [pre, biasName], [node.output[0]!], { name: fresh(`${label}_bias_add`) }));
      continue;
    }
    const slot = 2;
    let scale = 1;
    if (node.opType === 'Gemm') {
      const beta = attrFloat(node, 'beta') ?? 1;
      if (beta === 0 || !Number.isFinite(beta)) {
        skipped.push({ node: label, reason: `beta is ${beta}: the bias C does not reach the output` });
        nodes.push(node);
        continue;
      }
      scale = 1 / beta;
    }
    const biasInput = node.input[slot] ?? '';
    if (biasInput === '') {
      const biasName = fresh(`${label}_bias`);
      added.push(tensorToProto(biasName, { dtype: 'float32', dims: [channels], data: Float32Array.from(shift, (s) => s * scale) }));
      const input = [...node.input];
      while (input.length < slot) input.push('');
      input[slot] = biasName;
      nodes.push(onnx.NodeProto.create({ ...node, input }));
      continue;
    }
    const index = initializers.get(biasInput);
    const proto = index !== undefined ? initializer[index]! : (constants.get(biasInput)?.attribute.find((a) => a.name === 'value')?.t as OnnxTensorProto | undefined);
    if (!proto) {
      skipped.push({ node: label, reason: `bias '${biasInput}' is computed by other nodes, not a constant` });
      nodes.push(node);
      continue;
    }
    if (proto.dataType !== ELEM.FLOAT) {
      skipped.push({ node: label, reason: `bias '${biasInput}' is not float32` });
      nodes.push(node);
      continue;
    }
    const bias = tensorFromProto(proto);
    const values = bias.data as Float32Array;
    let data: Float32Array;
    let dims: number[];
    if (values.length === 1 && channels !== 1) {
      dims = [channels];
      data = Float32Array.from(shift, (s) => values[0]! + s * scale);
    } else if ((bias.dims[bias.dims.length - 1] ?? 1) === channels) {
      dims = [...bias.dims];
      data = new Float32Array(values.length);
      for (let i = 0; i < values.length; i++) data[i] = values[i]! + shift[i % channels]! * scale;
    } else {
      skipped.push({ node: label, reason: `bias '${biasInput}' has dims [${bias.dims.join(', ')}], not [${channels}]` });
      nodes.push(node);
      continue;
    }
    const alone = index !== undefined && (readers.get(biasInput) ?? 0) === 1;
    if (alone) {
      initializer[index] = tensorToProto(biasInput, { dtype: 'float32', dims, data });
      nodes.push(node);
    } else {
      const biasName = fresh(`${label}_bias`);
      added.push(tensorToProto(biasName, { dtype: 'float32', dims, data }));
      const input = [...node.input];
      input[slot] = biasName;
      nodes.push(onnx.NodeProto.create({ ...node, input }));
    }
  }
  for (const label of wanted) skipped.push({ node: label, reason: 'no weighted node of this name' });
  return { model: withGraph(model, { ...g, node: nodes, initializer: [...initializer, ...added] }), skipped };
}
