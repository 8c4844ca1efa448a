/**
 * Tensors INT8 would destroy, found from the graph and the calibration statistics before anything runs. By default
 * they stay out of INT8 everywhere: left out of the calibration cache (TensorRT then runs the layer that produces
 * them in higher precision), given no Q/DQ by `quantize` and `compare`, and `fp16` in the precision map for
 * `build` (protectionPrecisionMap). Rules (docs/quantization.md has the measurements behind the factors):
 *
 * 1. mixed-range-concat: a Concat whose float inputs' ranges (max |x|) differ by more than MIXED_RANGE_FACTOR
 *    (16). The output holds copies of every input under one scale (amax = the largest input's), so the smallest
 *    input keeps at most 127 / ratio INT8 steps: 8 at the factor, none at the ~300 of YOLO's boxes-with-scores
 *    head (one step of 2.5 zeroes every score in 0..1). Ordinary Concats measure at most 7.0 on the fixtures. The
 *    tensors that only re-lay the Concat's output out (Reshape, Transpose, Flatten, Squeeze, Unsqueeze, Identity)
 *    carry the same mixture and are protected with it. Only Concat: an Add's output is a sum, dominated by the
 *    large input, and its own scale serves the sum; PP-OCR's ordinary FPN Adds reach 25x between their inputs.
 * 2. score-branch: a Sigmoid or Softmax whose output reaches a graph output through layout ops only (Concat,
 *    Reshape, Transpose, Slice, Gather, Split, Squeeze, Unsqueeze, Flatten, Identity, Mul or Div by a constant):
 *    the probability itself is the model's answer. The Sigmoid/Softmax output and every tensor on those paths.
 * 3. outliers: the `percentile` calibrator (with the calibration's --percentile) would put amax more than
 *    OUTLIER_FACTOR (100) below `minmax`: a few huge values the calibrators disagree about by two orders of
 *    magnitude; whichever is picked, either the outliers or everything else is lost. Needs the statistics (a
 *    cache's single amax cannot show it).
 *
 * Pure and deterministic: the result is in the model's topological order, one entry per tensor.
 */
import { computeAmaxes } from '../calibrators/registry.js';
import type { CalibratorOptions } from '../calibrators/types.js';
import { analyzeGraph, type GraphAnalysis } from '../onnx/graph.js';
import { ELEM, type OnnxModel, type OnnxNode } from '../onnx/model.js';
import { nodeLabel } from '../onnx/opset.js';
import type { TensorStatistics } from '../stats/types.js';
import type { LayerPrecision } from './map.js';

export type ProtectionKind = 'mixed-range-concat' | 'score-branch' | 'outliers';

export interface ProtectedTensor {
  /** ONNX tensor name (as in the calibration cache). */
  tensor: string;
  /** The first rule that found it (in the order of the file comment). */
  kind: ProtectionKind;
  /** Why, in words a user reads; several rules' reasons joined by "; ". */
  reason: string;
}

/** Ratio of max |x| between a Concat's inputs above which its output is protected (see the file comment). */
export const MIXED_RANGE_FACTOR = 16;
/** minmax amax / percentile amax above which a tensor is protected. */
export const OUTLIER_FACTOR = 100;

export interface ProtectOptions {
  /** Ranges when there are no statistics: amax by tensor (a cache's scale x 127). Statistics win when given. */
  amax?: ReadonlyMap<string, number>;
  /** The calibration's options (the --percentile of rule 3). */
  calibrator?: CalibratorOptions;
  mixedRangeFactor?: number;
  outlierFactor?: number;
  file?: string;
}

/** Ops that move values without changing them (rule 2; Mul/Div by a constant are checked apart). */
const LAYOUT_OPS = new Set(['Concat', 'Reshape', 'Transpose', 'Slice', 'Gather', 'Split', 'Squeeze', 'Unsqueeze', 'Flatten', 'Identity']);
/** Ops whose output holds every value of their input (rule 1's propagation). */
const RESHAPING_OPS = new Set(['Reshape', 'Transpose', 'Flatten', 'Squeeze', 'Unsqueeze', 'Identity']);
const SCORE_OPS = new Set(['Sigmoid', 'Softmax']);

export function findProtectedTensors(
  model: OnnxModel,
  statistics: readonly TensorStatistics[] | undefined,
  options: ProtectOptions = {},
): ProtectedTensor[] {
  const analysis = analyzeGraph(model, { file: options.file ?? 'the model' });
  const { nodes, tensors, consumers } = analysis;
  const outputs = new Set(analysis.outputs.map((o) => o.name));
  const byName = new Map((statistics ?? []).map((s) => [s.name, s]));
  const range = (name: string): number | undefined => byName.get(name)?.absMax ?? options.amax?.get(name);
  const mixedFactor = options.mixedRangeFactor ?? MIXED_RANGE_FACTOR;
  const outlierFactor = options.outlierFactor ?? OUTLIER_FACTOR;

  const found = new Map<string, { kind: ProtectionKind; reasons: string[] }>();
  const mark = (tensor: string, kind: ProtectionKind, reason: string) => {
    const entry = found.get(tensor);
    if (entry) {
      if (!entry.reasons.includes(reason)) entry.reasons.push(reason);
    } else found.set(tensor, { kind, reasons: [reason] });
  };
  const isFloatActivation = (name: string) => {
    const meta = tensors.get(name);
    return meta !== undefined && !meta.constant && meta.elemType === ELEM.FLOAT;
  };
  /** The reshaping-only successors of a tensor, as far as they go. */
  const carriers = (start: string): string[] => {
    const out: string[] = [];
    const stack = [start];
    while (stack.length > 0) {
      const t = stack.pop()!;
      for (const k of consumers.get(t) ?? []) {
        const n = nodes[k]!;
        if (!RESHAPING_OPS.has(n.opType) || n.input[0] !== t) continue;
        for (const o of n.output) if (o && isFloatActivation(o) && !out.includes(o)) (out.push(o), stack.push(o));
      }
    }
    return out;
  };

  // Rule 1: mixed-range Concats.
  for (const node of nodes) {
    if (node.opType !== 'Concat' || (node.domain ?? '') !== '') continue;
    const out = node.output[0];
    if (!out || !isFloatActivation(out)) continue;
    const ranges = node.input
      .filter((i) => i && tensors.get(i)?.elemType === ELEM.FLOAT)
      .map((i) => ({ name: i, amax: range(i) }))
      .filter((r): r is { name: string; amax: number } => r.amax !== undefined && r.amax > 0);
    if (ranges.length < 2) continue;
    const widest = ranges.reduce((a, b) => (b.amax > a.amax ? b : a));
    const narrowest = ranges.reduce((a, b) => (b.amax < a.amax ? b : a));
    const ratio = widest.amax / narrowest.amax;
    if (!(ratio > mixedFactor)) continue;
    const step = widest.amax / 127;
    const reason =
      `Concat '${nodeLabel(node)}' joins '${widest.name}' (max |x| ${fmt(widest.amax)}) with '${narrowest.name}' (max |x| ${fmt(narrowest.amax)}), ` +
      `${fmt(ratio)}x apart: under one INT8 scale (step ${fmt(step)}) the smaller input keeps ${Math.floor(narrowest.amax / step)} of 127 steps`;
    mark(out, 'mixed-range-concat', reason);
    for (const t of carriers(out)) mark(t, 'mixed-range-concat', `${reason} (re-laid out from '${out}')`);
  }

  // Rule 2: score branches.
  const reaches = reachesOutputThroughLayout(nodes, analysis, outputs);
  for (const node of nodes) {
    if (!SCORE_OPS.has(node.opType) || (node.domain ?? '') !== '') continue;
    const start = node.output[0];
    if (!start || !isFloatActivation(start) || !reaches.has(start)) continue;
    const path = [start];
    const stack = [start];
    while (stack.length > 0) {
      const t = stack.pop()!;
      for (const next of layoutSuccessors(t, nodes, analysis)) {
        if (reaches.has(next) && isFloatActivation(next) && !path.includes(next)) (path.push(next), stack.push(next));
      }
    }
    const reason = `score branch: the ${node.opType} '${nodeLabel(node)}' reaches the graph output${outputsReached(path, outputs)} through layout ops only; INT8 would round its probabilities to steps of about 1/127 of their range`;
    for (const t of path) mark(t, 'score-branch', reason);
  }

  // Rule 3: outliers (statistics only).
  if (statistics && statistics.length > 0) {
    const candidates = statistics.filter((s) => isFloatActivation(s.name) || analysis.inputs.some((i) => i.name === s.name));
    const minmax = computeAmaxes('minmax', candidates);
    const percentile = computeAmaxes('percentile', candidates, options.calibrator ?? {});
    for (const s of candidates) {
      const hi = minmax.get(s.name)!;
      const lo = percentile.get(s.name)!;
      if (hi > 0 && lo > 0 && hi / lo > outlierFactor) {
        mark(
          s.name,
          'outliers',
          `outliers: max |x| is ${fmt(hi)} but the ${options.calibrator?.percentile ?? 99.99}th percentile is ${fmt(lo)} (${fmt(hi / lo)}x below): one INT8 scale loses either the outliers or the rest`,
        );
      }
    }
  }

  // Topological order: the activation list's.
  const out: ProtectedTensor[] = [];
  for (const a of analysis.activations) {
    const entry = found.get(a.name);
    if (entry) out.push({ tensor: a.name, kind: entry.kind, reason: entry.reasons.join('; ') });
  }
  return out;
}

/** The tensors a layout op computes from `t` (t as its data input; Mul/Div only by a constant). */
function layoutSuccessors(t: string, nodes: readonly OnnxNode[], analysis: GraphAnalysis): string[] {
  const out: string[] = [];
  for (const k of analysis.consumers.get(t) ?? []) {
    const n = nodes[k]!;
    if ((n.domain ?? '') !== '') continue;
    let ok = false;
    if (n.opType === 'Concat') ok = n.input.includes(t);
    else if (LAYOUT_OPS.has(n.opType)) ok = n.input[0] === t;
    else if (n.opType === 'Mul' || n.opType === 'Div') {
      const other = n.input[0] === t ? n.input[1] : n.opType === 'Mul' && n.input[1] === t ? n.input[0] : undefined;
      ok = other !== undefined && analysis.tensors.get(other)?.constant === true;
    }
    if (ok) for (const o of n.output) if (o) out.push(o);
  }
  return out;
}

/** Tensors from which a graph output is reached through layout ops only (outputs included). */
function reachesOutputThroughLayout(nodes: readonly OnnxNode[], analysis: GraphAnalysis, outputs: ReadonlySet<string>): Set<string> {
  const reaches = new Set<string>(outputs);
  // Reverse topological order: a node's outputs are decided before its inputs.
  for (let k = nodes.length - 1; k >= 0; k--) {
    for (const t of nodes[k]!.input) {
      if (!t || reaches.has(t)) continue;
      if (layoutSuccessors(t, nodes, analysis).some((o) => reaches.has(o))) reaches.add(t);
    }
  }
  return reaches;
}

function outputsReached(path: readonly string[], outputs: ReadonlySet<string>): string {
  const reached = path.filter((t) => outputs.has(t));
  return reached.length > 0 ? ` ${reached.map((t) => `'${t}'`).join(', ')}` : '';
}

function fmt(x: number): string {
  return x >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(2) : x.toPrecision(3);
}

/** The scales without the protected tensors: what a cache (or a Q/DQ model) holds when they stay out of INT8. */
export function withoutProtected<V>(scales: ReadonlyMap<string, V>, protectedTensors: readonly ProtectedTensor[]): Map<string, V> {
  const drop = new Set(protectedTensors.map((p) => p.tensor));
  return new Map([...scales].filter(([name]) => !drop.has(name)));
}

/**
 * The precision map that keeps the protected tensors out of INT8 in a TensorRT build: their producing layers in
 * fp16 (node labels as src/precision/map.ts keys them). Identity nodes are left out: TensorRT's parser folds them
 * away, and their input is protected too whenever it matters. Graph inputs have no producer.
 */
export function protectionPrecisionMap(model: OnnxModel, protectedTensors: readonly ProtectedTensor[], options: { file?: string } = {}): Map<string, LayerPrecision> {
  const { nodes, tensors } = analyzeGraph(model, { file: options.file ?? 'the model' });
  const map = new Map<string, LayerPrecision>();
  for (const p of protectedTensors) {
    const producer = tensors.get(p.tensor)?.producer;
    if (!producer) continue;
    const node = nodes[producer.node]!;
    if (node.opType === 'Identity') continue;
    map.set(nodeLabel(node), 'fp16');
  }
  return map;
}
