/**
 * BatchNormalization folding into the preceding Conv, as TensorRT does at build time:
 *   W'[m] = W[m] * g[m] / sqrt(var[m] + eps),   b'[m] = (b[m] - mean[m]) * g[m] / sqrt(var[m] + eps) + beta[m].
 * Used before the FP16 conversion: without it, the Conv's raw output (which TensorRT never materialises) would be
 * rounded to float16, and BatchNorm statistics beyond the float16 range (PP-OCR has a variance above 65504)
 * could not be represented. The folded Conv takes the BatchNorm's output name, so tensor names downstream are
 * unchanged. Computed in float64, stored as float32.
 */
import { analyzeGraph } from './graph.js';
import { attrFloat, graphOf, onnx, tensorFromProto, tensorToProto, withGraph, type OnnxModel, type OnnxNode, type OnnxTensorProto } from './model.js';
import { nodeLabel } from './opset.js';

export function foldBatchNorms(model: OnnxModel, options: { file?: string } = {}): { model: OnnxModel; folded: string[] } {
  const g = graphOf(model);
  const analysis = analyzeGraph(model, { file: options.file });
  const { nodes, tensors, consumers } = analysis;
  const outputs = new Set(g.output.map((o) => o.name));
  const sources = new Map<string, OnnxTensorProto>();
  for (const t of g.initializer) sources.set(t.name, t);
  for (const n of nodes) {
    const v = n.opType === 'Constant' ? n.attribute.find((a) => a.name === 'value')?.t : undefined;
    if (v) sources.set(n.output[0]!, v as OnnxTensorProto);
  }
  const floats = (name: string | undefined): Float32Array | undefined => {
    const src = name ? sources.get(name) : undefined;
    if (!src || src.dataType !== 1) return undefined;
    return tensorFromProto(src).data as Float32Array;
  };
  const taken = new Set<string>(tensors.keys());
  const fresh = (base: string) => {
    let name = base;
    for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
    taken.add(name);
    return name;
  };

  const replace = new Map<OnnxNode, OnnxNode | null>();
  const initializers: OnnxTensorProto[] = [];
  const folded: string[] = [];
  for (const bn of nodes) {
    if (bn.opType !== 'BatchNormalization' || (bn.domain ?? '') !== '' || bn.output.filter(Boolean).length !== 1) continue;
    const x = bn.input[0]!;
    const producer = tensors.get(x)?.producer;
    if (!producer) continue;
    const conv = nodes[producer.node]!;
    if (conv.opType !== 'Conv' || (conv.domain ?? '') !== '' || replace.has(conv)) continue;
    if ((consumers.get(x)?.length ?? 0) !== 1 || outputs.has(x)) continue;
    const W = conv.input[1] ? sources.get(conv.input[1]) : undefined;
    const w = floats(conv.input[1]);
    const [gamma, beta, mean, variance] = [1, 2, 3, 4].map((i) => floats(bn.input[i]));
    if (!W || !w || !gamma || !beta || !mean || !variance) continue;
    const dims = tensorFromProto(W).dims;
    const m = dims[0]!;
    if (gamma.length !== m || beta.length !== m || mean.length !== m || variance.length !== m) continue;
    const b = conv.input[2] ? floats(conv.input[2]) : new Float32Array(m);
    if (!b || b.length !== m) continue;
    const eps = attrFloat(bn, 'epsilon') ?? 1e-5;
    const per = w.length / m;
    const w2 = new Float32Array(w.length);
    const b2 = new Float32Array(m);
    for (let c = 0; c < m; c++) {
      const k = gamma[c]! / Math.sqrt(variance[c]! + eps);
      for (let i = 0; i < per; i++) w2[c * per + i] = w[c * per + i]! * k;
      b2[c] = (b[c]! - mean[c]!) * k + beta[c]!;
    }
    const wName = fresh(`${conv.input[1]}_bnfolded`);
    const bName = fresh(`${conv.input[2] || `${nodeLabel(conv)}_bias`}_bnfolded`);
    initializers.push(tensorToProto(wName, { dtype: 'float32', dims, data: w2 }), tensorToProto(bName, { dtype: 'float32', dims: [m], data: b2 }));
    replace.set(conv, onnx.NodeProto.create({ ...conv, input: [conv.input[0]!, wName, bName], output: [bn.output[0]!] }));
    replace.set(bn, null);
    folded.push(`${nodeLabel(conv)} + ${nodeLabel(bn)}`);
  }
  if (folded.length === 0) return { model, folded };
  const newNodes: OnnxNode[] = [];
  for (const n of nodes) {
    const r = replace.get(n);
    if (r === undefined) newNodes.push(n);
    else if (r) newNodes.push(r);
  }
  // Drop the weights nothing reads any more.
  const read = new Set<string>(outputs);
  for (const n of newNodes) for (const i of n.input) read.add(i);
  const finalNodes = newNodes.filter((n) => !(n.opType === 'Constant' && n.output.every((o) => !read.has(o))));
  const initializer = [...g.initializer.filter((t) => read.has(t.name)), ...initializers];
  // value_info of the removed Conv outputs would dangle harmlessly; drop them for tidiness.
  const valueInfo = g.valueInfo.filter((v) => read.has(v.name) || finalNodes.some((n) => n.output.includes(v.name)));
  return { model: withGraph(model, { ...g, node: finalNodes, initializer, valueInfo }), folded };
}
