/**
 * Exposing intermediate tensors as graph outputs, so that onnxruntime returns them (how onnxruntime's own
 * Python calibrator collects activations). onnxruntime keeps graph outputs intact: fusions that would remove an
 * exposed tensor (Conv+Clip, Conv+Add...) are not applied to it, so exposed values are the original graph's.
 */
import { UserError } from '../errors.js';
import { analyzeGraph } from './graph.js';
import { graphOf, onnx, withGraph, type OnnxModel } from './model.js';

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
