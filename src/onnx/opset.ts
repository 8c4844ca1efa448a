/**
 * Default-domain opset upgrade from 11 or 12 to 13, the first opset with per-axis QuantizeLinear /
 * DequantizeLinear (per-channel weights).
 *
 * Method: the ONNX changelog (Changelog.md, opsets 12 and 13) lists, besides type extensions (bfloat16 etc.,
 * harmless here), these semantic changes, which are converted node by node:
 * - Split-13: `split` attribute -> second input (int64 tensor).
 * - Squeeze-13 / Unsqueeze-13: `axes` attribute -> second input.
 * - ReduceSum-13: `axes` attribute -> second input (the other Reduce ops keep attributes until opset 18).
 * - Softmax / LogSoftmax / Hardmax-13: `axis` now names one axis (default -1) instead of flattening to 2-D at
 *   `axis` (default 1). When the old axis is the last one the attribute is simply made explicit; otherwise the
 *   node becomes Flatten(axis) -> op(axis=1) -> Reshape(Shape(x)), the old definition spelled out.
 * - Dropout-12: `ratio` attribute -> second input (from opset 11 only).
 * - Resize-13 drops coordinate_transformation_mode 'tf_half_pixel_for_nn': refused (no exact equivalent).
 * Upsample and Scatter (deprecated before 13) are refused, as are subgraphs (If/Loop/Scan) containing ops that
 * would need converting. Unchanged ops (Conv, Clip with min/max inputs since 11, Pad, Slice, Resize otherwise,
 * BatchNormalization until 14...) are left alone. Models below opset 11 are refused: convert them with
 * onnx.version_converter first.
 */
import { UserError } from '../errors.js';
import { makeNode } from './build.js';
import { analyzeGraph } from './graph.js';
import {
  attrInt,
  attrInts,
  attrString,
  defaultOpset,
  graphOf,
  int64,
  makeTensor,
  onnx,
  tensorToProto,
  withGraph,
  type Int64Like,
  type OnnxModel,
  type OnnxNode,
  type OnnxTensorProto,
} from './model.js';
import type { onnx as OnnxTypes } from 'onnx-proto';

export interface OpsetUpgrade {
  model: OnnxModel;
  from: number;
  to: number;
  /** Nodes rewritten, as 'op name' labels. */
  converted: string[];
}

const DEFAULT_DOMAINS = new Set(['', 'ai.onnx']);
const REFUSED = new Set(['Upsample', 'Scatter']);
const AXES_TO_INPUT = new Set(['Squeeze', 'Unsqueeze', 'ReduceSum']);
const SOFTMAX_LIKE = new Set(['Softmax', 'LogSoftmax', 'Hardmax']);

export function nodeLabel(node: OnnxTypes.INodeProto): string {
  return node.name || `${node.opType}:${node.output?.[0] ?? ''}`;
}

function needsConversion(node: OnnxTypes.INodeProto, from: number): boolean {
  if (!DEFAULT_DOMAINS.has(node.domain ?? '')) return false;
  const op = node.opType ?? '';
  if (REFUSED.has(op)) return true;
  if (op === 'Split') return (node.attribute ?? []).some((a) => a.name === 'split');
  if (AXES_TO_INPUT.has(op)) return (node.attribute ?? []).some((a) => a.name === 'axes');
  if (SOFTMAX_LIKE.has(op)) return true;
  if (op === 'Dropout') return from < 12 && (node.attribute ?? []).some((a) => a.name === 'ratio');
  if (op === 'Resize') return attrString(node as OnnxNode, 'coordinate_transformation_mode') === 'tf_half_pixel_for_nn';
  return false;
}

function* subgraphNodes(node: OnnxTypes.INodeProto): Generator<OnnxTypes.INodeProto> {
  for (const a of node.attribute ?? []) {
    for (const g of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) {
      for (const n of g.node ?? []) {
        yield n;
        yield* subgraphNodes(n);
      }
    }
  }
}

/**
 * Ops whose `axes` attribute became an input at opset 18 (ReduceSum did at 13), and Split-18, which wants
 * `num_outputs` when it has no `split` input (ONNX Changelog.md, opset 18).
 */
const REDUCE_AXES_18 = new Set(['ReduceMean', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp', 'ReduceSumSquare']);

/**
 * Upgrades the default-domain opset to `to` (13, or 19: the first opset with float16 QuantizeLinear /
 * DequantizeLinear, which an INT8 + FP16 model needs); returns the model unchanged when it is already there.
 * 13 -> 19 changes, besides type extensions: the Reduce ops' `axes` attribute becomes an input (18), Split takes
 * `num_outputs` when it has no `split` input (18); Resize-18/19, Pad-18/19, Cast-19 and the others only add
 * attributes or modes whose defaults keep the old meaning. IR version 9 is the first that allows opset 19.
 */
export function upgradeOpset(model: OnnxModel, options: { to?: number; file?: string } = {}): OpsetUpgrade {
  const to = options.to ?? 13;
  const file = options.file ?? 'the model';
  const from = defaultOpset(model);
  if (to === 19) {
    if (from >= 19) return { model, from, to: from, converted: [] };
    const first = from < 13 ? upgradeOpset(model, { to: 13, file }) : { model, from, to: from, converted: [] as string[] };
    const second = upgradeTo19(first.model, first.to);
    return { model: second.model, from, to: 19, converted: [...first.converted, ...second.converted] };
  }
  if (to !== 13) throw new Error('only upgrades to opset 13 or 19 are implemented');
  if (from >= to) return { model, from, to: from, converted: [] };
  if (from < 11) {
    throw new UserError(`${file} uses opset ${from}; per-channel Q/DQ needs opset 13 and trt-calib converts only from opset 11 or 12`, {
      hint: 'convert the model first: python -c "import onnx; from onnx import version_converter as v; onnx.save(v.convert_version(onnx.load(\'m.onnx\'), 13), \'m13.onnx\')"',
    });
  }
  const g = graphOf(model);
  for (const node of g.node) {
    for (const sub of subgraphNodes(node)) {
      if (needsConversion(sub, from)) {
        throw new UserError(`${file}: ${sub.opType} inside the subgraph of '${nodeLabel(node)}' changed meaning between opset ${from} and 13; trt-calib does not convert subgraphs`, {
          hint: 'convert the model to opset 13 with onnx.version_converter first',
        });
      }
    }
  }
  const analysis = analyzeGraph(model, { file });
  const taken = new Set<string>([...analysis.tensors.keys(), ...g.node.map((n) => n.name)]);
  const fresh = (base: string) => {
    let name = base;
    for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
    taken.add(name);
    return name;
  };
  const initializers: OnnxTensorProto[] = [];
  const int64Input = (base: string, values: number[]) => {
    const name = fresh(base);
    initializers.push(tensorToProto(name, makeTensor('int64', [values.length], values.map(BigInt))));
    return name;
  };
  const converted: string[] = [];
  const nodes: OnnxNode[] = [];
  for (const node of g.node) {
    if (!needsConversion(node, from)) {
      nodes.push(node);
      continue;
    }
    const op = node.opType;
    const label = nodeLabel(node);
    if (REFUSED.has(op)) {
      throw new UserError(`${file}: node '${label}' is ${op}, which is deprecated before opset 13; trt-calib cannot upgrade it`, {
        hint: op === 'Upsample' ? 'export the model with Resize instead of Upsample, or convert it to opset 13 with onnx.version_converter' : 'use ScatterElements instead',
      });
    }
    if (op === 'Resize') {
      throw new UserError(`${file}: Resize '${label}' uses coordinate_transformation_mode 'tf_half_pixel_for_nn', removed in opset 13`, {
        hint: 'export the model at opset 13 or later, or quantize with per-tensor weights (--no-per-channel), which keeps its opset',
      });
    }
    converted.push(`${op} ${label}`);
    const keepAttrs = (drop: string) => node.attribute.filter((a) => a.name !== drop);
    if (op === 'Split') {
      const split = attrInts(node, 'split')!;
      const input = [node.input[0]!, int64Input(`${label}_split`, split)];
      nodes.push(onnx.NodeProto.create({ ...node, input, attribute: keepAttrs('split') }));
    } else if (AXES_TO_INPUT.has(op)) {
      const axes = attrInts(node, 'axes')!;
      const input = [node.input[0]!, int64Input(`${label}_axes`, axes)];
      nodes.push(onnx.NodeProto.create({ ...node, input, attribute: keepAttrs('axes') }));
    } else if (op === 'Dropout') {
      const ratio = node.attribute.find((a) => a.name === 'ratio')!.f ?? 0.5;
      const name = fresh(`${label}_ratio`);
      initializers.push(tensorToProto(name, makeTensor('float32', [], [ratio])));
      nodes.push(onnx.NodeProto.create({ ...node, input: [node.input[0]!, name], attribute: keepAttrs('ratio') }));
    } else {
      // Softmax-like: the old definition flattens to 2-D at `axis` (default 1) and normalises each row.
      const x = node.input[0]!;
      const rank = analysis.tensors.get(x)?.dims?.length;
      let axis = attrInt(node, 'axis') ?? 1;
      if (rank !== undefined && axis < 0) axis += rank;
      if (rank !== undefined && axis === rank - 1) {
        nodes.push(onnx.NodeProto.create({ ...node, attribute: [...keepAttrs('axis'), onnx.AttributeProto.create({ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: axis })] }));
      } else {
        const shape = fresh(`${label}_shape`);
        const flat = fresh(`${label}_flat`);
        const soft = fresh(`${label}_2d`);
        nodes.push(makeNode('Shape', [x], [shape], { name: fresh(`${label}_Shape`) }));
        nodes.push(makeNode('Flatten', [x], [flat], { name: fresh(`${label}_Flatten`), attributes: { axis: { int: axis } } }));
        nodes.push(onnx.NodeProto.create({ ...node, input: [flat], output: [soft], attribute: [...keepAttrs('axis'), onnx.AttributeProto.create({ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 })] }));
        nodes.push(makeNode('Reshape', [soft, shape], [node.output[0]!], { name: fresh(`${label}_Reshape`) }));
      }
    }
  }
  const opsetImport = model.opsetImport.map((o) =>
    DEFAULT_DOMAINS.has(o.domain ?? '') ? onnx.OperatorSetIdProto.create({ domain: o.domain ?? '', version: to }) : o,
  );
  const upgraded = withGraph(model, { ...g, node: nodes, initializer: [...g.initializer, ...initializers] });
  upgraded.opsetImport = opsetImport;
  // Opset 13 needs IR version 7 or later.
  if (int64(model.irVersion as Int64Like) < 7) upgraded.irVersion = 7;
  return { model: upgraded, from, to, converted };
}

function upgradeTo19(model: OnnxModel, from: number): { model: OnnxModel; converted: string[] } {
  const g = graphOf(model);
  const analysis = analyzeGraph(model);
  const taken = new Set<string>([...analysis.tensors.keys(), ...g.node.map((n) => n.name)]);
  const fresh = (base: string) => {
    let name = base;
    for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
    taken.add(name);
    return name;
  };
  const initializers: OnnxTensorProto[] = [];
  const converted: string[] = [];
  const nodes = g.node.map((node) => {
    if (!DEFAULT_DOMAINS.has(node.domain ?? '') || from >= 18) return node;
    const label = nodeLabel(node);
    if (REDUCE_AXES_18.has(node.opType) && attrInts(node, 'axes')) {
      const name = fresh(`${label}_axes`);
      initializers.push(tensorToProto(name, makeTensor('int64', [attrInts(node, 'axes')!.length], attrInts(node, 'axes')!.map(BigInt))));
      converted.push(`${node.opType} ${label}`);
      return onnx.NodeProto.create({ ...node, input: [node.input[0]!, name], attribute: node.attribute.filter((a) => a.name !== 'axes') });
    }
    if (node.opType === 'Split' && !node.input[1] && attrInt(node, 'num_outputs') === undefined) {
      converted.push(`${node.opType} ${label}`);
      const numOutputs = onnx.AttributeProto.create({ name: 'num_outputs', type: onnx.AttributeProto.AttributeType.INT, i: node.output.length });
      return onnx.NodeProto.create({ ...node, attribute: [...node.attribute, numOutputs] });
    }
    return node;
  });
  for (const sub of from < 18 ? g.node.flatMap((n) => [...subgraphNodes(n)]) : []) {
    if (REDUCE_AXES_18.has(sub.opType ?? '') || sub.opType === 'Split') {
      throw new UserError(`${sub.opType} inside a subgraph changed meaning at opset 18; trt-calib does not convert subgraphs`, { hint: 'convert the model to opset 19 with onnx.version_converter first' });
    }
  }
  const upgraded = withGraph(model, { ...g, node: nodes, initializer: [...g.initializer, ...initializers] });
  upgraded.opsetImport = model.opsetImport.map((o) => (DEFAULT_DOMAINS.has(o.domain ?? '') ? onnx.OperatorSetIdProto.create({ domain: o.domain ?? '', version: 19 }) : o));
  if (int64(model.irVersion as Int64Like) < 9) upgraded.irVersion = 9;
  return { model: upgraded, converted };
}
