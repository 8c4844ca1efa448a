/**
 * `--algo auto`: the amax of each activation chosen among the five algorithms' (and the geometric midpoints
 * between neighbouring ones) by the error of what the tensor feeds, not by the tensor's own error: for a tensor
 * read by a weighted layer (Conv, ConvTranspose, Gemm, MatMul with a constant weight), the sum of squared
 * differences between that layer's output with the tensor quantized at the candidate amax and its FP32 output;
 * for any other tensor, the tensor's own squared quantization error (what an Add or a Concat passes on unchanged).
 * This is the criterion of layer-wise output-error calibration (e.g. PPQ's and AIMET's per-layer searches), applied
 * to the choice of the activation's scale.
 *
 * One extra pass: a probe model is the FP32 model plus, for each tensor and candidate, a QuantizeLinear/
 * DequantizeLinear pair, a copy of each weighted consumer reading the dequantized value (weights in FP32, so that
 * only the tensor's quantization is measured) and a ReduceSumSquare of the difference: the pass returns scalars
 * only. Images go one at a time in file order, each image's errors summed in float64: the choice depends neither
 * on the batch size nor on the order of the files. Ties keep the first candidate in ALGORITHM_NAMES order.
 */
import { onnxruntimeBackend } from '../backends/onnxruntime.js';
import type { Dataset } from '../datasets/types.js';
import { makeNode, makeValueInfo } from '../onnx/build.js';
import { analyzeGraph } from '../onnx/graph.js';
import { ELEM, graphOf, makeTensor, onnx, saveOnnxModel, tensorToProto, withGraph, type OnnxModel, type OnnxNode, type OnnxTensorProto } from '../onnx/model.js';
import { silentReporter, type Reporter } from '../reporter.js';
import type { AlgorithmName } from './types.js';

export interface AutoCandidate {
  amax: number;
  /** The algorithm it comes from, or "a~b" for the geometric midpoint between algorithms a and b. */
  source: string;
}

export interface AutoChoice {
  amax: number;
  source: string;
  /** The error of each candidate, summed over the images (same order as candidatesOf). */
  errors: number[];
}

/** Distinct amaxes of the algorithms (in `order`), sorted, plus the geometric midpoints between neighbours. */
export function candidatesOf(amaxes: ReadonlyMap<AlgorithmName, number>, order: readonly AlgorithmName[], midpoints = true): AutoCandidate[] {
  const distinct: AutoCandidate[] = [];
  for (const algo of order) {
    const a = amaxes.get(algo);
    if (a === undefined || !(a > 0) || !Number.isFinite(a)) continue;
    if (!distinct.some((c) => c.amax === a)) distinct.push({ amax: a, source: algo });
  }
  if (!midpoints) return distinct;
  const sorted = [...distinct].sort((x, y) => x.amax - y.amax);
  const out = [...distinct];
  for (let i = 1; i < sorted.length; i++) {
    const [lo, hi] = [sorted[i - 1]!, sorted[i]!];
    out.push({ amax: Math.fround(Math.sqrt(lo.amax * hi.amax)), source: `${lo.source}~${hi.source}` });
  }
  return out;
}

const WEIGHTED = new Set(['Conv', 'ConvTranspose', 'Gemm', 'MatMul']);

/**
 * Builds the probe model: for tensor t and candidate i, output `auto_err/<k>` (a scalar per image) where k indexes
 * the flattened (tensor, candidate) list returned alongside.
 */
export function buildProbeModel(model: OnnxModel, candidates: ReadonlyMap<string, readonly AutoCandidate[]>, file = 'the model'): { model: OnnxModel; outputs: Array<{ tensor: string; candidate: number; name: string }> } {
  const g = graphOf(model);
  const analysis = analyzeGraph(model, { file });
  const consumers = new Map<string, OnnxNode[]>();
  for (const n of g.node) for (const i of new Set(n.input)) (consumers.get(i) ?? consumers.set(i, []).get(i)!).push(n);
  const taken = new Set<string>([...analysis.tensors.keys(), ...g.node.map((n) => n.name)]);
  const fresh = (base: string) => {
    let name = base;
    for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
    taken.add(name);
    return name;
  };
  const nodes: OnnxNode[] = [...g.node];
  const inits: OnnxTensorProto[] = [];
  const outputs: Array<{ tensor: string; candidate: number; name: string }> = [];
  const zp = fresh('auto_zero_point');
  inits.push(tensorToProto(zp, makeTensor('int8', [], [0])));
  for (const [tensor, list] of candidates) {
    const weighted = (consumers.get(tensor) ?? []).filter(
      (n) => WEIGHTED.has(n.opType) && (n.domain ?? '') === '' && n.input[0] === tensor && n.input.slice(1).every((i) => i === '' || analysis.tensors.get(i)?.constant),
    );
    list.forEach((c, i) => {
      const scale = fresh(`auto_scale/${tensor}/${i}`);
      inits.push(tensorToProto(scale, makeTensor('float32', [], [c.amax / 127])));
      const q = fresh(`auto_q/${tensor}/${i}`);
      const dq = fresh(`auto_dq/${tensor}/${i}`);
      nodes.push(makeNode('QuantizeLinear', [tensor, scale, zp], [q], { name: fresh(`auto_Q/${tensor}/${i}`) }));
      nodes.push(makeNode('DequantizeLinear', [q, scale, zp], [dq], { name: fresh(`auto_DQ/${tensor}/${i}`) }));
      const errors: string[] = [];
      const pairs: Array<[string, string]> = weighted.length > 0 ? weighted.map((n) => {
        const out = fresh(`auto_y/${tensor}/${i}/${n.output[0]}`);
        nodes.push(onnx.NodeProto.create({ ...n, name: fresh(`auto_copy/${n.name}/${i}`), input: [dq, ...n.input.slice(1)], output: [out] }));
        return [out, n.output[0]!] as [string, string];
      }) : [[dq, tensor]];
      for (const [a, b] of pairs) {
        const diff = fresh(`auto_diff/${a}`);
        const err = fresh(`auto_sse/${a}`);
        nodes.push(makeNode('Sub', [a, b], [diff], { name: fresh(`auto_Sub/${a}`) }));
        nodes.push(makeNode('ReduceSumSquare', [diff], [err], { name: fresh(`auto_RSS/${a}`), attributes: { keepdims: { int: 0 } } }));
        errors.push(err);
      }
      let total = errors[0]!;
      for (const e of errors.slice(1)) {
        const sum = fresh(`auto_sum/${e}`);
        nodes.push(makeNode('Add', [total, e], [sum], { name: fresh(`auto_Add/${e}`) }));
        total = sum;
      }
      outputs.push({ tensor, candidate: i, name: total });
    });
  }
  const probe = withGraph(model, {
    ...g,
    node: nodes,
    initializer: [...g.initializer, ...inits],
    output: [...g.output, ...outputs.map((o) => makeValueInfo(o.name, ELEM.FLOAT, []))],
  });
  return { model: probe, outputs };
}

/** Runs the probe pass and picks, per tensor, the candidate of least summed error. */
export async function chooseAmaxes(options: {
  model: OnnxModel;
  file: string;
  candidates: ReadonlyMap<string, readonly AutoCandidate[]>;
  dataset: Dataset;
  threads?: number;
  reporter?: Reporter;
}): Promise<Map<string, AutoChoice>> {
  const reporter = options.reporter ?? silentReporter;
  const { model: probe, outputs } = buildProbeModel(options.model, options.candidates, options.file);
  const session = await onnxruntimeBackend.open({ path: options.file, bytes: saveOnnxModel(probe) }, { threads: options.threads, qdq: 'emulate' });
  const sums = new Float64Array(outputs.length);
  const names = outputs.map((o) => o.name);
  let done = 0;
  reporter.start('auto: probing the candidates', options.dataset.size, 'images');
  try {
    const inputName = session.inputs[0]!.name;
    for await (const batch of options.dataset.batches({ order: 'files', onSkip: (s) => reporter.warn(`skipped ${s.file}: ${s.reason}`) })) {
      const per = batch.data.length / batch.files.length;
      for (let i = 0; i < batch.files.length; i++) {
        const image = { dtype: 'float32' as const, dims: [1, ...batch.dims.slice(1)], data: batch.data.slice(i * per, (i + 1) * per) };
        const r = await session.run({ [inputName]: image }, names);
        names.forEach((n, k) => (sums[k] = sums[k]! + (r[n]!.data as Float32Array)[0]!));
        reporter.update({ done: ++done });
      }
    }
  } finally {
    reporter.stop();
    await session.release();
  }
  const choices = new Map<string, AutoChoice>();
  for (const [tensor, list] of options.candidates) {
    const errors = list.map(() => 0);
    outputs.forEach((o, k) => o.tensor === tensor && (errors[o.candidate] = sums[k]!));
    let best = 0;
    for (let i = 1; i < errors.length; i++) if (errors[i]! < errors[best]!) best = i;
    choices.set(tensor, { amax: list[best]!.amax, source: list[best]!.source, errors });
  }
  return choices;
}
