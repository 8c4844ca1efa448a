/**
 * Small constructors for ONNX messages (nodes, attributes, value infos, models), used by the graph rewriters
 * (Q/DQ, FP16) and by tests that build models programmatically.
 */
import type { onnx as OnnxTypes } from 'onnx-proto';
import type { Tensor } from '../tensor.js';
import { onnx, tensorToProto, type OnnxModel, type OnnxNode, type OnnxTensorProto, type OnnxValueInfo } from './model.js';

const AT = onnx.AttributeProto.AttributeType;

export type AttributeValue =
  | { int: number }
  | { float: number }
  | { string: string }
  | { ints: number[] }
  | { floats: number[] }
  | { tensor: OnnxTensorProto }
  | { graph: OnnxTypes.IGraphProto };

export function makeAttribute(name: string, value: AttributeValue): OnnxTypes.AttributeProto {
  if ('int' in value) return onnx.AttributeProto.create({ name, type: AT.INT, i: value.int });
  if ('float' in value) return onnx.AttributeProto.create({ name, type: AT.FLOAT, f: value.float });
  if ('string' in value) return onnx.AttributeProto.create({ name, type: AT.STRING, s: Buffer.from(value.string, 'utf8') });
  if ('ints' in value) return onnx.AttributeProto.create({ name, type: AT.INTS, ints: value.ints });
  if ('floats' in value) return onnx.AttributeProto.create({ name, type: AT.FLOATS, floats: value.floats });
  if ('tensor' in value) return onnx.AttributeProto.create({ name, type: AT.TENSOR, t: value.tensor });
  return onnx.AttributeProto.create({ name, type: AT.GRAPH, g: value.graph });
}

export function makeNode(
  opType: string,
  inputs: string[],
  outputs: string[],
  options: { name?: string; domain?: string; attributes?: Record<string, AttributeValue> } = {},
): OnnxNode {
  return onnx.NodeProto.create({
    opType,
    input: inputs,
    output: outputs,
    name: options.name ?? '',
    domain: options.domain ?? '',
    attribute: Object.entries(options.attributes ?? {}).map(([k, v]) => makeAttribute(k, v)),
  });
}

/**
 * A tensor ValueInfo; `dims` null or absent: no shape; string dims are symbolic; -1: unnamed dynamic.
 * elemType 0 without dims gives a ValueInfo with no type at all (onnxruntime infers it; a TypeProto with
 * elem_type 0 is invalid).
 */
export function makeValueInfo(name: string, elemType: number, dims?: Array<number | string> | null): OnnxValueInfo {
  if (!elemType && !dims) return onnx.ValueInfoProto.create({ name });
  const tensorType: OnnxTypes.TypeProto.ITensor = { elemType };
  if (dims) {
    tensorType.shape = onnx.TensorShapeProto.create({
      dim: dims.map((d) =>
        onnx.TensorShapeProto.Dimension.create(typeof d === 'string' ? { dimParam: d } : d >= 0 ? { dimValue: d } : {}),
      ),
    });
  }
  return onnx.ValueInfoProto.create({ name, type: onnx.TypeProto.create({ tensorType: onnx.TypeProto.Tensor.create(tensorType) }) });
}

/** A `Constant` node holding `tensor`, named after its output. */
export function makeConstantNode(output: string, tensor: Tensor, name = ''): OnnxNode {
  return makeNode('Constant', [], [output], { name, attributes: { value: { tensor: tensorToProto(output, tensor) } } });
}

export function makeModel(parts: {
  nodes: OnnxNode[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  initializers?: OnnxTensorProto[];
  valueInfo?: OnnxValueInfo[];
  opset?: number;
  irVersion?: number;
  name?: string;
  extraOpsets?: Array<{ domain: string; version: number }>;
}): OnnxModel {
  return onnx.ModelProto.create({
    irVersion: parts.irVersion ?? 8,
    producerName: 'trt-calib',
    opsetImport: [{ domain: '', version: parts.opset ?? 13 }, ...(parts.extraOpsets ?? [])].map((o) => onnx.OperatorSetIdProto.create(o)),
    graph: onnx.GraphProto.create({
      name: parts.name ?? 'graph',
      node: parts.nodes,
      input: parts.inputs,
      output: parts.outputs,
      initializer: parts.initializers ?? [],
      valueInfo: parts.valueInfo ?? [],
    }),
  });
}
