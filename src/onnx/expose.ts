/**
 * Exposing intermediate tensors as graph outputs, so that onnxruntime returns them (how onnxruntime's own
 * Python calibrator collects activations). onnxruntime keeps graph outputs intact: fusions that would remove an
 * exposed tensor (Conv+Clip, Conv+Add...) are not applied to it, so exposed values are the original graph's.
 */
import { UserError } from '../errors.js';
import { analyzeGraph } from './graph.js';
import { graphOf, onnx, saveOnnxModel, sourceBytesOf, withGraph, type OnnxModel, type OnnxNode } from './model.js';

/**
 * A copy of `model` with `names` added as graph outputs (after the model's own outputs, in the given order).
 * Names already outputs are kept once; graph inputs cannot be outputs of the same graph in onnxruntime, so they
 * are refused here (callers read inputs from their feed). The ValueInfo carries the element type when known and
 * no shape; onnxruntime infers the rest.
 */
export function exposeTensors(model: OnnxModel, names: readonly string[], options: { file?: string } = {}): OnnxModel {
  const file = options.file ?? 'the model';
  const analysis = analyzeGraph(model, { file });
  const graph = graphOf(model);
  const present = new Set(graph.output.map((o) => o.name));
  const inputs = new Set(analysis.inputs.map((i) => i.name));
  const extra = [];
  for (const name of names) {
    if (present.has(name)) continue;
    if (inputs.has(name)) {
      throw new UserError(`${file}: '${name}' is a graph input and cannot be exposed as an output`, {
        hint: 'read graph inputs from the feed instead',
      });
    }
    const meta = analysis.tensors.get(name);
    if (!meta || !meta.producer) {
      throw new UserError(`${file}: there is no tensor '${name}' produced by a node of the model`, {
        hint: 'tensor names are the ONNX names (as Netron shows them); list them with `trt-calib inspect`',
      });
    }
    if (meta.nonTensor) throw new UserError(`${file}: '${name}' is not a tensor (a sequence, map or optional) and cannot be exposed`);
    present.add(name);
    extra.push(
      onnx.ValueInfoProto.create({
        name,
        ...(meta.elemType ? { type: onnx.TypeProto.create({ tensorType: onnx.TypeProto.Tensor.create({ elemType: meta.elemType }) }) } : {}),
      }),
    );
  }
  if (extra.length === 0) return model;
  return withGraph(model, { ...graph, output: [...graph.output, ...extra] });
}

/**
 * Bytes for onnxruntime of exposeTensors(model, names). For a model just loaded from a file that holds all of
 * it, the file's bytes followed by a small ModelProto holding only the added graph outputs: protobuf parsers merge
 * concatenated messages (repeated fields append, embedded messages merge field by field; onnxruntime's C++
 * protobuf does), so the weights are not encoded again (MobileNetV2: 1 ms instead of 12 on the thread that also
 * decodes images). protobufjs replaces rather than merges embedded messages, so these bytes are for onnxruntime
 * only; anything else gets saveOnnxModel's. Tested: statistics equal to the re-encoded model's.
 */
export function exposedModelBytesForOnnxruntime(model: OnnxModel, names: readonly string[], options: { file?: string } = {}): Uint8Array {
  const exposed = exposeTensors(model, names, options);
  const source = sourceBytesOf(model);
  if (!source) return saveOnnxModel(exposed);
  if (exposed === model) return source;
  const added = graphOf(exposed).output.slice(graphOf(model).output.length);
  const tail = onnx.ModelProto.encode(onnx.ModelProto.create({ graph: onnx.GraphProto.create({ output: added }) })).finish();
  const out = new Uint8Array(source.length + tail.length);
  out.set(source, 0);
  out.set(tail, source.length);
  return out;
}

/**
 * A copy of `model` that computes `outputs` only: the nodes they depend on (in their order), the initializers
 * those read, and `outputs` as the graph outputs (exposeTensors: element type, no shape; onnxruntime infers the
 * rest). For the partial passes of bias correction and the FP32 runs that hand out sensitivity's cut activations.
 */
export function pruneToOutputs(model: OnnxModel, outputs: readonly string[], options: { file?: string } = {}): OnnxModel {
  const g = graphOf(model);
  const producer = new Map<string, number>();
  g.node.forEach((n, i) => n.output.forEach((o) => producer.set(o, i)));
  const needed = new Set<number>();
  const stack = [...outputs];
  const read = new Set<string>();
  while (stack.length > 0) {
    const name = stack.pop()!;
    if (read.has(name)) continue;
    read.add(name);
    const p = producer.get(name);
    if (p === undefined || needed.has(p)) continue;
    needed.add(p);
    const node = g.node[p]!;
    stack.push(...node.input.filter((i) => i !== ''), ...subgraphInputs(node));
  }
  const node = g.node.filter((_, i) => needed.has(i));
  const initializer = g.initializer.filter((t) => read.has(t.name));
  return exposeTensors(withGraph(model, { ...g, node, initializer, output: [], valueInfo: [] }), outputs, options);
}

/** Names a node's subgraphs (If/Loop bodies) read from the outer scope, conservatively: every name they read. */
function subgraphInputs(node: OnnxNode): string[] {
  const out: string[] = [];
  const visit = (graph: { node?: Array<{ input?: string[] | null; attribute?: Array<{ g?: unknown; graphs?: unknown[] | null }> | null }> | null }) => {
    for (const n of graph.node ?? []) {
      out.push(...(n.input ?? []));
      for (const a of n.attribute ?? []) {
        if (a.g) visit(a.g as never);
        for (const s of a.graphs ?? []) visit(s as never);
      }
    }
  };
  for (const a of node.attribute) {
    if (a.g) visit(a.g as never);
    for (const s of a.graphs ?? []) visit(s as never);
  }
  return out;
}
