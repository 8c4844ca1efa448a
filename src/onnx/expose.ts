/**
 * Exposing intermediate tensors as graph outputs, so that onnxruntime returns them (how onnxruntime's own
 * Python calibrator collects activations). onnxruntime keeps graph outputs intact: fusions that would remove an
 * exposed tensor (Conv+Clip, Conv+Add...) are not applied to it, so exposed values are the original graph's.
 */
import { UserError } from '../errors.js';
import { analyzeGraph } from './graph.js';
import { graphOf, onnx, saveOnnxModel, sourceBytesOf, withGraph, type OnnxModel } from './model.js';

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
