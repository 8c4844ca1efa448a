/**
 * Graph analysis: inputs and outputs, element types, constness, and the list of activations, i.e. every tensor
 * TensorRT wants a scale for.
 *
 * Method.
 * - Weights are graph initializers or outputs of `Constant` nodes (Paddle2ONNX models such as PP-OCR keep all
 *   their weights in Constant nodes). A node whose inputs are all constant computes a constant too
 *   (constant-foldable chains: Constant->Reshape, Shape->Gather of initializers...), unless it is random.
 *   Everything that depends on a graph input is dynamic.
 * - An activation is a graph input or a node output that is dynamic and floating point.
 * - Element types come from the model's value_info / graph inputs and outputs where declared; the rest is
 *   inferred by a forward pass over the ops with the typing rules of the ONNX operator specs (Operators.md):
 *   most ops keep their first input's type; the exceptions are listed in `inferNodeTypes`. Ops outside the
 *   default domain (custom ops) and ops we do not know get "unknown" types and are reported, never guessed;
 *   `probeTensorTypes` in src/backends/onnxruntime.ts resolves them with onnxruntime when needed.
 * - Order: topological, i.e. the node order of the file when it is already sorted (ONNX requires it); names are
 *   the ONNX tensor names exactly, which is what TensorRT's ONNX parser uses as tensor names in its caches.
 */
import type { onnx as OnnxTypes } from 'onnx-proto';
import { UserError } from '../errors.js';
import { dtypeFromOnnx } from '../tensor.js';
import type { TensorInfo } from '../tensor.js';
import { ELEM, elemTypeName, getAttribute, graphOf, int64, isFloatElemType, attrInt, type Int64Like, type OnnxModel, type OnnxNode } from './model.js';

/** A graph input or output as declared. `dims` is null when the model declares no shape. */
export interface GraphIO {
  name: string;
  /** ONNX element type code (0: not declared). */
  elemType: number;
  /** Element type name ('float32', 'bfloat16', 'unknown'...). */
  dtype: string;
  /** Static dims as numbers, symbolic ones by name, unnamed dynamic ones as -1; null when the rank is unknown. */
  dims: Array<number | string> | null;
}

/** One activation: a tensor that gets an INT8 scale. */
export interface ActivationInfo {
  name: string;
  /** Element type name: 'float32', 'float16', 'bfloat16', 'float64'. */
  dtype: string;
  /** Op type of the producing node; null for graph inputs. */
  producerOp: string | null;
  /** Name of the producing node ('' when the node is unnamed); null for graph inputs. */
  producerNode: string | null;
  /** Declared dims when the model states them (value_info, graph inputs/outputs). */
  dims?: Array<number | string>;
}

export interface TensorMeta {
  name: string;
  /** ONNX element type code; 0 when unknown. */
  elemType: number;
  /** Weight, or computed from weights only. */
  constant: boolean;
  /** Producing node (index into `GraphAnalysis.nodes`) and output slot; absent for inputs and initializers. */
  producer?: { node: number; output: number };
  dims?: Array<number | string>;
  /** Whether the tensor is a sequence/map/optional, not a tensor. */
  nonTensor?: boolean;
}

export interface UnknownTypedTensor {
  tensor: string;
  op: string;
  domain: string;
  node: string;
}

export interface GraphAnalysis {
  inputs: GraphIO[];
  outputs: GraphIO[];
  /** Nodes of the main graph in topological order. */
  nodes: OnnxNode[];
  /** Every tensor of the main graph by name. */
  tensors: Map<string, TensorMeta>;
  /** Consumers of each tensor: indices into `nodes`. */
  consumers: Map<string, number[]>;
  /** Dynamic tensors whose element type could not be determined (custom or unknown ops). */
  unknownTypes: UnknownTypedTensor[];
  activations: ActivationInfo[];
}

const DEFAULT_DOMAINS = new Set(['', 'ai.onnx']);
const RANDOM_OPS = new Set(['RandomNormal', 'RandomUniform', 'RandomNormalLike', 'RandomUniformLike', 'Multinomial', 'Bernoulli']);
const SUBGRAPH_OPS = new Set(['If', 'Loop', 'Scan']);

/** Ops whose every output has the type of input 0 (ONNX type constraint "T" shared by input 0 and outputs). */
const SAME_AS_INPUT0 = new Set([
  'Abs', 'Acos', 'Acosh', 'Add', 'Asin', 'Asinh', 'Atan', 'Atanh', 'AveragePool', 'BatchNormalization',
  'BitShift', 'BitwiseAnd', 'BitwiseNot', 'BitwiseOr', 'BitwiseXor', 'Ceil', 'Celu', 'CenterCropPad', 'Clip',
  'Col2Im', 'Compress', 'Concat', 'Conv', 'ConvTranspose', 'Cos', 'Cosh', 'CumSum', 'DeformConv', 'DepthToSpace',
  'Det', 'DFT', 'Div', 'Einsum', 'Elu', 'Erf', 'Exp', 'Expand', 'Flatten', 'Floor', 'GRU', 'Gather',
  'GatherElements', 'GatherND', 'Gelu', 'Gemm', 'GlobalAveragePool', 'GlobalLpPool', 'GlobalMaxPool',
  'GridSample', 'GroupNormalization', 'HardSigmoid', 'HardSwish', 'Hardmax', 'Identity', 'InstanceNormalization',
  'LRN', 'LSTM', 'LeakyRelu', 'Log', 'LogSoftmax', 'LpNormalization', 'LpPool', 'MatMul', 'Max', 'MaxRoiPool',
  'MaxUnpool', 'Mean', 'MeanVarianceNormalization', 'Min', 'Mish', 'Mod', 'Mul', 'Neg',
  'NegativeLogLikelihoodLoss', 'Pad', 'Pow', 'PRelu', 'RNN', 'Range', 'Reciprocal', 'ReduceL1', 'ReduceL2',
  'ReduceLogSum', 'ReduceLogSumExp', 'ReduceMax', 'ReduceMean', 'ReduceMin', 'ReduceProd', 'ReduceSum',
  'ReduceSumSquare', 'Relu', 'Reshape', 'Resize', 'ReverseSequence', 'RoiAlign', 'Round', 'STFT', 'Scatter',
  'ScatterElements', 'ScatterND', 'Selu', 'Shrink', 'Sigmoid', 'Sign', 'Sin', 'Sinh', 'Slice', 'Softmax',
  'SoftmaxCrossEntropyLoss', 'Softplus', 'Softsign', 'SpaceToDepth', 'Split', 'Sqrt', 'Squeeze', 'Sub', 'Sum',
  'Swish', 'Tan', 'Tanh', 'ThresholdedRelu', 'Tile', 'Transpose', 'Trilu', 'Unsqueeze', 'Upsample',
  'RMSNormalization', 'RotaryEmbedding', 'Attention', 'AffineGrid', 'Crop', 'ImageScaler', 'Scale',
]);
const BOOL_OPS = new Set(['Equal', 'Greater', 'GreaterOrEqual', 'Less', 'LessOrEqual', 'And', 'Or', 'Xor', 'Not', 'IsNaN', 'IsInf', 'RegexFullMatch']);
const INT64_OPS = new Set(['Shape', 'Size', 'ArgMax', 'ArgMin', 'NonZero', 'NonMaxSuppression']);
/** Ops that produce sequences, maps or optionals: not tensors, never activations, not "unknown" either. */
const NON_TENSOR_OPS = new Set([
  'SequenceConstruct', 'SequenceEmpty', 'SequenceInsert', 'SequenceErase', 'SplitToSequence', 'SequenceMap',
  'Optional', 'ZipMap',
]);

/** Element type of the value a Constant / ConstantOfShape node holds. */
function constantValueType(node: OnnxNode): number {
  for (const a of node.attribute) {
    switch (a.name) {
      case 'value':
        return a.t?.dataType ?? ELEM.UNDEFINED;
      case 'sparse_value':
        return a.sparseTensor?.values?.dataType ?? ELEM.UNDEFINED;
      case 'value_float':
      case 'value_floats':
        return ELEM.FLOAT;
      case 'value_int':
      case 'value_ints':
        return ELEM.INT64;
      case 'value_string':
      case 'value_strings':
        return ELEM.STRING;
    }
  }
  return ELEM.UNDEFINED;
}

/**
 * Output element types of one node from its input types (0 = unknown). `subgraphOutputTypes` gives the
 * declared output types of a subgraph attribute (If/Loop/Scan). Returns null for ops we do not know.
 */
export function inferNodeTypes(node: OnnxNode, inTypes: readonly number[], subgraphOutputTypes?: (attr: string) => number[] | undefined): number[] | null {
  const n = node.output.length;
  const all = (t: number) => new Array<number>(n).fill(t);
  const t0 = inTypes[0] ?? 0;
  const op = node.opType;
  if (!DEFAULT_DOMAINS.has(node.domain ?? '')) return null;
  if (SAME_AS_INPUT0.has(op)) return all(t0);
  if (BOOL_OPS.has(op)) return all(ELEM.BOOL);
  if (INT64_OPS.has(op)) return all(ELEM.INT64);
  switch (op) {
    case 'Constant':
      return all(constantValueType(node));
    case 'ConstantOfShape': {
      const v = getAttribute(node, 'value');
      return all(v?.t?.dataType ?? ELEM.FLOAT);
    }
    case 'Cast':
      return all(attrInt(node, 'to') ?? ELEM.UNDEFINED);
    case 'CastLike':
      return all(inTypes[1] ?? 0);
    case 'Where':
      return all(inTypes[1] || inTypes[2] || 0);
    case 'OneHot':
      return all(inTypes[2] ?? 0);
    case 'EyeLike':
    case 'RandomNormalLike':
    case 'RandomUniformLike':
    case 'Bernoulli':
      return all(attrInt(node, 'dtype') ?? t0);
    case 'RandomNormal':
    case 'RandomUniform':
      return all(attrInt(node, 'dtype') ?? ELEM.FLOAT);
    case 'Multinomial':
      return all(attrInt(node, 'dtype') ?? ELEM.INT32);
    case 'BlackmanWindow':
    case 'HammingWindow':
    case 'HannWindow':
    case 'MelWeightMatrix':
      return all(attrInt(node, 'output_datatype') ?? ELEM.FLOAT);
    case 'Dropout':
      return [t0, ELEM.BOOL].slice(0, n);
    case 'MaxPool':
    case 'TopK':
      return [t0, ELEM.INT64].slice(0, n);
    case 'Unique':
      return [t0, ELEM.INT64, ELEM.INT64, ELEM.INT64].slice(0, n);
    case 'LayerNormalization':
      // Mean and InvStdDev use stash_type (default float32).
      return [t0, attrInt(node, 'stash_type') ?? ELEM.FLOAT, attrInt(node, 'stash_type') ?? ELEM.FLOAT].slice(0, n);
    case 'QuantizeLinear': {
      // Output type follows the zero point; without one, output_dtype (opset 21) or uint8.
      const zp = node.input[2] ? inTypes[2] ?? 0 : 0;
      return all(zp || attrInt(node, 'output_dtype') || (node.input[2] ? 0 : ELEM.UINT8));
    }
    case 'DequantizeLinear': {
      // float32 up to opset 18; from 19 the scale's type (float16/bfloat16 allowed).
      const s = inTypes[1] ?? 0;
      return all(s && isFloatElemType(s) ? s : ELEM.FLOAT);
    }
    case 'DynamicQuantizeLinear':
      return [ELEM.UINT8, ELEM.FLOAT, ELEM.UINT8].slice(0, n);
    case 'QLinearConv':
    case 'QLinearMatMul':
      return all(inTypes[7] ?? 0);
    case 'ConvInteger':
    case 'MatMulInteger':
      return all(ELEM.INT32);
    case 'ImageDecoder':
      return all(ELEM.UINT8);
    case 'StringNormalizer':
    case 'StringConcat':
      return all(ELEM.STRING);
    case 'StringSplit':
      return [ELEM.STRING, ELEM.INT64].slice(0, n);
    case 'TfIdfVectorizer':
      return all(ELEM.FLOAT);
    case 'If': {
      const t = subgraphOutputTypes?.('then_branch') ?? subgraphOutputTypes?.('else_branch');
      return t ? Array.from({ length: n }, (_, i) => t[i] ?? 0) : all(0);
    }
    case 'Loop': {
      // Body outputs: cond, carried state..., scan outputs; node outputs: carried state..., scan outputs.
      const t = subgraphOutputTypes?.('body');
      return Array.from({ length: n }, (_, i) => t?.[i + 1] || inTypes[i + 2] || 0);
    }
    case 'Scan': {
      const t = subgraphOutputTypes?.('body');
      return Array.from({ length: n }, (_, i) => t?.[i] || 0);
    }
  }
  return null;
}

function ioFromValueInfo(v: OnnxTypes.IValueInfoProto): GraphIO {
  const tt = v.type?.tensorType;
  const elemType = tt?.elemType ?? 0;
  const dims = tt?.shape ? (tt.shape.dim ?? []).map(dimOf) : null;
  return { name: v.name ?? '', elemType, dtype: elemTypeName(elemType), dims };
}

function dimOf(d: OnnxTypes.TensorShapeProto.IDimension): number | string {
  if (d.dimParam) return d.dimParam;
  // dim_value and dim_param are a oneof: protobufjs sets only the one present as an own property (the
  // prototype holds a default 0), so a dim with neither set is dynamic and unnamed.
  if (Object.prototype.hasOwnProperty.call(d, 'dimValue') && d.dimValue !== null && d.dimValue !== undefined) {
    return int64(d.dimValue as Int64Like);
  }
  return -1;
}

/** Graph inputs, excluding initializers (IR < 4 models list their weights as inputs too). */
export function graphInputs(model: OnnxModel): GraphIO[] {
  const g = graphOf(model);
  const inits = new Set(g.initializer.map((t) => t.name));
  return g.input.filter((v) => !inits.has(v.name)).map(ioFromValueInfo);
}

export function graphOutputs(model: OnnxModel): GraphIO[] {
  return graphOf(model).output.map(ioFromValueInfo);
}

/**
 * The model's inputs in the Backend contract's form: static dims as numbers, symbolic ones by name ('N'),
 * unnamed dynamic ones as -1. Throws a UserError for inputs whose type the tool cannot feed.
 */
export function describeInputs(model: OnnxModel, file = 'the model'): TensorInfo[] {
  return graphInputs(model).map((io) => {
    const dtype = dtypeFromOnnx(io.elemType);
    if (!dtype) {
      throw new UserError(`${file}: input '${io.name}' has element type ${io.dtype}, which trt-calib cannot feed`, {
        hint: 'image models take float32 (or uint8) NCHW inputs; export the model with such an input',
      });
    }
    return { name: io.name, dtype, dims: io.dims ?? [] };
  });
}

/** Names a subgraph uses but does not define (outer-scope references), recursively. */
function outerReferences(graph: OnnxTypes.IGraphProto, out: Set<string> = new Set()): Set<string> {
  const defined = new Set<string>();
  for (const v of graph.input ?? []) defined.add(v.name ?? '');
  for (const t of graph.initializer ?? []) defined.add(t.name ?? '');
  for (const node of graph.node ?? []) {
    for (const i of node.input ?? []) if (i && !defined.has(i)) out.add(i);
    for (const a of node.attribute ?? []) {
      const subs = [...(a.g ? [a.g] : []), ...(a.graphs ?? [])];
      for (const s of subs) for (const r of outerReferences(s)) if (!defined.has(r)) out.add(r);
    }
    for (const o of node.output ?? []) if (o) defined.add(o);
  }
  return out;
}

/** Main-graph inputs of a node: its inputs plus, for If/Loop/Scan, the outer names its subgraphs read. */
function nodeDependencies(node: OnnxNode): string[] {
  const deps = node.input.filter((i) => i !== '');
  for (const a of node.attribute) {
    const subs = [...(a.g ? [a.g] : []), ...(a.graphs ?? [])];
    for (const s of subs) deps.push(...outerReferences(s));
  }
  return deps;
}

/**
 * Nodes in topological order: the file's order when it is already topological (the common case, and the
 * order users see in Netron), else a stable Kahn sort that keeps the file's order among ready nodes.
 */
function topologicalOrder(nodes: readonly OnnxNode[], available: Set<string>, file: string): OnnxNode[] {
  const known = new Set(available);
  let sorted = true;
  for (const node of nodes) {
    if (nodeDependencies(node).some((d) => !known.has(d))) {
      sorted = false;
      break;
    }
    for (const o of node.output) if (o) known.add(o);
  }
  if (sorted) return nodes.slice();

  const producedBy = new Map<string, number>();
  nodes.forEach((node, i) => node.output.forEach((o) => o && producedBy.set(o, i)));
  const deps = nodes.map((node) => new Set(nodeDependencies(node).filter((d) => !available.has(d))));
  for (const [i, ds] of deps.entries()) {
    for (const d of ds) {
      if (!producedBy.has(d)) {
        throw new UserError(`${file}: node '${nodes[i]!.name || nodes[i]!.opType}' reads tensor '${d}', which no node, input or initializer provides`, {
          hint: 'the model is malformed; export it again or check it with onnx.checker',
        });
      }
    }
  }
  const remaining = deps.map((ds) => new Set([...ds].map((d) => producedBy.get(d)!)));
  const done = new Array<boolean>(nodes.length).fill(false);
  const order: OnnxNode[] = [];
  // O(n^2) worst case; graphs are a few thousand nodes and this path is only taken for unsorted files.
  while (order.length < nodes.length) {
    let progressed = false;
    for (let i = 0; i < nodes.length; i++) {
      if (done[i]) continue;
      if ([...remaining[i]!].every((p) => done[p])) {
        done[i] = true;
        order.push(nodes[i]!);
        progressed = true;
      }
    }
    if (!progressed) {
      throw new UserError(`${file}: the graph has a cycle`, { hint: 'the model is malformed; export it again' });
    }
  }
  return order;
}

/** Declared output element types of a subgraph attribute of `node`. */
function subgraphTypes(node: OnnxNode): (attr: string) => number[] | undefined {
  return (attr: string) => {
    const g = getAttribute(node, attr)?.g;
    return g ? (g.output ?? []).map((o) => o.type?.tensorType?.elemType ?? 0) : undefined;
  };
}

/**
 * Analyses the main graph: types, constness, topological order, consumers and activations.
 * `typeHints` supplies element types found elsewhere (e.g. onnxruntime's output metadata) for tensors the
 * model does not declare and the rules cannot infer.
 */
export function analyzeGraph(model: OnnxModel, options: { file?: string; typeHints?: ReadonlyMap<string, number> } = {}): GraphAnalysis {
  const file = options.file ?? 'the model';
  if (!model.graph) throw new UserError(`${file} has no graph`);
  const g = graphOf(model);
  const tensors = new Map<string, TensorMeta>();
  const declared = new Map<string, GraphIO>();
  for (const v of [...g.valueInfo, ...g.output, ...g.input]) declared.set(v.name, ioFromValueInfo(v));

  const inputs = graphInputs(model);
  const outputs = graphOutputs(model);
  for (const t of g.initializer) {
    tensors.set(t.name, { name: t.name, elemType: t.dataType, constant: true, dims: t.dims.map((d) => int64(d as Int64Like)) });
  }
  for (const s of g.sparseInitializer) {
    const name = s.values?.name ?? '';
    tensors.set(name, { name, elemType: s.values?.dataType ?? 0, constant: true, dims: s.dims.map((d) => int64(d as Int64Like)) });
  }
  for (const io of inputs) {
    tensors.set(io.name, { name: io.name, elemType: io.elemType, constant: false, ...(io.dims ? { dims: io.dims } : {}) });
  }

  const nodes = topologicalOrder(g.node, new Set(tensors.keys()), file);
  const consumers = new Map<string, number[]>();
  const unknownTypes: UnknownTypedTensor[] = [];

  nodes.forEach((node, index) => {
    const deps = nodeDependencies(node);
    for (const d of new Set(deps)) {
      const list = consumers.get(d);
      if (list) list.push(index);
      else consumers.set(d, [index]);
    }
    const inputsMeta = node.input.map((i) => (i ? tensors.get(i) : undefined));
    const constant =
      !RANDOM_OPS.has(node.opType) &&
      DEFAULT_DOMAINS.has(node.domain ?? '') &&
      deps.every((d) => tensors.get(d)?.constant === true);
    const inferred = inferNodeTypes(
      node,
      inputsMeta.map((m) => m?.elemType ?? 0),
      SUBGRAPH_OPS.has(node.opType) ? subgraphTypes(node) : undefined,
    );
    const nonTensor = NON_TENSOR_OPS.has(node.opType);
    node.output.forEach((name, slot) => {
      if (!name) return;
      const decl = declared.get(name);
      let elemType = decl?.elemType || options.typeHints?.get(name) || inferred?.[slot] || 0;
      if (nonTensor) elemType = 0;
      const meta: TensorMeta = { name, elemType, constant, producer: { node: index, output: slot } };
      if (decl?.dims) meta.dims = decl.dims;
      if (nonTensor) meta.nonTensor = true;
      tensors.set(name, meta);
      if (!elemType && !constant && !nonTensor) {
        unknownTypes.push({ tensor: name, op: node.opType, domain: node.domain ?? '', node: node.name ?? '' });
      }
    });
  });

  const activations: ActivationInfo[] = [];
  const seen = new Set<string>();
  for (const io of inputs) {
    if (!isFloatElemType(io.elemType) || seen.has(io.name)) continue;
    seen.add(io.name);
    activations.push({ name: io.name, dtype: io.dtype, producerOp: null, producerNode: null, ...(io.dims ? { dims: io.dims } : {}) });
  }
  for (const node of nodes) {
    for (const name of node.output) {
      if (!name || seen.has(name)) continue;
      const meta = tensors.get(name)!;
      if (meta.constant || !isFloatElemType(meta.elemType)) continue;
      seen.add(name);
      activations.push({
        name,
        dtype: elemTypeName(meta.elemType),
        producerOp: node.opType,
        producerNode: node.name ?? '',
        ...(meta.dims ? { dims: meta.dims } : {}),
      });
    }
  }
  return { inputs, outputs, nodes, tensors, consumers, unknownTypes, activations };
}

/** Every tensor TensorRT would want a scale for, in topological order (graph inputs first). */
export function listActivations(model: OnnxModel, options: { file?: string; typeHints?: ReadonlyMap<string, number> } = {}): ActivationInfo[] {
  return analyzeGraph(model, options).activations;
}

/** Names of the tensors produced by Constant nodes or stored as initializers (the weights). */
export function weightNames(model: OnnxModel): Set<string> {
  const g = graphOf(model);
  const names = new Set(g.initializer.map((t) => t.name));
  for (const n of g.node) if (n.opType === 'Constant' && DEFAULT_DOMAINS.has(n.domain ?? '')) for (const o of n.output) names.add(o);
  return names;
}
