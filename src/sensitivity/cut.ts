/**
 * One-at-a-time variants cut at their layer (issue 14): a variant with only layer L in INT8 computes FP32 values
 * everywhere upstream of L, so it needs only the part of the graph from L to the outputs, fed with the FP32
 * activations at the cut. The FP32 model runs once per group of layers and hands out those activations; each
 * variant then runs from its cut.
 *
 * The cut (cutVariant), on the built variant (VariantBuilder.build, twin included):
 * - the suffix is L's node, every node that reads (transitively) what it produces, and, walking back from them,
 *   every producer of a tensor the FP32 model does not have (L's QuantizeLinear/DequantizeLinear, its float twin,
 *   the twin's reductions): the tensors that differ from FP32 are all computed inside the suffix;
 * - the cut is every other tensor the suffix reads (initializers aside): each is produced by a node that is not
 *   downstream of L and reads only such tensors, so it holds the FP32 model's value, under the same name. They
 *   become the suffix's graph inputs, with the dims onnxruntime reports for them in the FP32 model;
 * - each graph output's producer is in the suffix too (the twin's reductions of its reference, a head that does
 *   not depend on L): computed from the cut like the rest. A suffix of more than CUT_MAX_SHARE of the nodes runs
 *   whole (nothing to gain from feeding the image's first layers' outputs).
 * The suffix's nodes keep their order, names and attributes: the same kernels on the same values, so a cut
 * variant's numbers are those of the whole variant up to onnxruntime's fusions across the cut (none changes a
 * value on the fixtures: test/unit/sensitivity-cut.test.ts compares the two).
 *
 * Memory: the cut's activations are kept for every image of the evaluation data, at most CUT_MEMORY_BYTES for a
 * group of layers (planCutGroups, in graph order); a layer whose cut alone needs more runs whole, from the kept
 * images (recomputed, never spilled to disk). Cost: one FP32 run over the kept images per group (onnxruntime-node,
 * the cut's tensors exposed and copied out), against the prefix each of the group's variants no longer runs.
 */
import type { onnx as OnnxTypes } from 'onnx-proto';
import { onnxruntimeBackend } from '../backends/onnxruntime.js';
import { graphOf, onnx, saveOnnxModel, withGraph, type OnnxModel, type OnnxNode } from '../onnx/model.js';
import { onnxFromDtype, type Tensor, type TensorInfo } from '../tensor.js';
import type { EvaluationData } from './data.js';

/** Share of the variant's nodes above which the variant runs whole (the cut would save almost nothing). */
export const CUT_MAX_SHARE = 0.9;
/** The FP32 activations kept at the cuts of one group of layers, all images together. */
export const CUT_MEMORY_BYTES = 512 * 1024 * 1024;

export interface CutVariant {
  /** The suffix's graph inputs: tensors of the FP32 model (possibly its image input), in the order first read. */
  inputs: string[];
  /** Nodes kept, of the variant's. */
  nodes: number;
  of: number;
  /** The suffix as a model, its inputs typed with the dims onnxruntime reports for them in the FP32 model. */
  model(info: ReadonlyMap<string, TensorInfo>): OnnxModel;
}

/** Every tensor a node reads, its subgraphs' outer-scope references included. */
function nodeInputs(n: OnnxTypes.INodeProto): string[] {
  const out: string[] = [];
  const visit = (node: OnnxTypes.INodeProto) => {
    for (const i of node.input ?? []) if (i) out.push(i);
    for (const a of node.attribute ?? []) {
      for (const sg of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) for (const inner of sg.node ?? []) visit(inner);
    }
  };
  visit(n);
  return out;
}

/**
 * The variant cut at the node that produces `layerOutput` (see the file comment), or undefined when it must run
 * whole. `fp32` lists the tensors of the FP32 model (node outputs and graph inputs) and their info.
 */
export function cutVariant(variant: OnnxModel, layerOutput: string, fp32: ReadonlySet<string>): CutVariant | undefined {
  const g = graphOf(variant);
  const nodes = g.node;
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => n.output.forEach((o) => o && producer.set(o, i)));
  const start = producer.get(layerOutput);
  if (start === undefined) return undefined;
  const initializers = new Set(g.initializer.map((t) => t.name));
  const inputsOf = nodes.map((n) => nodeInputs(n));
  const consumers = new Map<string, number[]>();
  inputsOf.forEach((ins, i) => ins.forEach((t) => (consumers.get(t) ?? consumers.set(t, []).get(t)!).push(i)));

  // Downstream of the layer.
  const inSuffix = new Set<number>([start]);
  const stack = [start];
  while (stack.length > 0) {
    const i = stack.pop()!;
    for (const o of nodes[i]!.output) for (const c of (o && consumers.get(o)) || []) if (!inSuffix.has(c)) (inSuffix.add(c), stack.push(c));
  }
  // Every graph output's producer (the twin's sums of its reference only, a head that does not depend on the
  // layer: computed from the cut like the rest), then the upstream producers of tensors the FP32 model lacks (the
  // layer's Q/DQ, its twin).
  for (const o of g.output) {
    const p = producer.get(o.name);
    if (p !== undefined) inSuffix.add(p);
  }
  const back = [...inSuffix];
  while (back.length > 0) {
    const i = back.pop()!;
    for (const t of inputsOf[i]!) {
      if (initializers.has(t) || fp32.has(t)) continue;
      const p = producer.get(t);
      if (p === undefined) return undefined; // an input the FP32 model does not have: run whole
      if (!inSuffix.has(p)) (inSuffix.add(p), back.push(p));
    }
  }
  // Nodes upstream of the suffix that read a tensor produced inside it are impossible by construction; the cut's
  // tensors must come from nodes outside the suffix (or be graph inputs).
  const produced = new Set<string>();
  for (const i of inSuffix) for (const o of nodes[i]!.output) if (o) produced.add(o);
  if (g.output.some((o) => !produced.has(o.name))) return undefined;
  if (inSuffix.size > CUT_MAX_SHARE * nodes.length) return undefined;
  // A check of the above: no tensor at the cut may depend on the layer or on a tensor the FP32 model lacks.
  const tainted = new Set<string>();
  nodes.forEach((n, i) => {
    if (i === start || inputsOf[i]!.some((t) => tainted.has(t)) || n.output.some((o) => o && !fp32.has(o))) for (const o of n.output) if (o) tainted.add(o);
  });
  const cut: string[] = [];
  const seen = new Set<string>();
  const kept = nodes.filter((_, i) => inSuffix.has(i));
  for (const n of kept) {
    for (const t of nodeInputs(n)) {
      if (produced.has(t) || initializers.has(t) || seen.has(t)) continue;
      if (tainted.has(t)) return undefined;
      seen.add(t);
      cut.push(t);
    }
  }
  const read = new Set<string>(kept.flatMap((n) => nodeInputs(n)));
  return {
    inputs: cut,
    nodes: kept.length,
    of: nodes.length,
    model(info) {
      const input = cut.map((name) => {
        const t = info.get(name);
        if (!t) throw new Error(`no type for the cut tensor ${JSON.stringify(name)}`);
        const dim = t.dims.map((d) =>
          typeof d === 'number' && d >= 0 ? onnx.TensorShapeProto.Dimension.create({ dimValue: d }) : onnx.TensorShapeProto.Dimension.create({ dimParam: typeof d === 'string' ? d : `${name}_dim` }),
        );
        return onnx.ValueInfoProto.create({
          name,
          type: onnx.TypeProto.create({ tensorType: onnx.TypeProto.Tensor.create({ elemType: onnxFromDtype(t.dtype), shape: onnx.TensorShapeProto.create({ dim }) }) }),
        });
      });
      return withGraph(variant, {
        ...g,
        node: kept as OnnxNode[],
        input,
        initializer: g.initializer.filter((t) => read.has(t.name)),
        valueInfo: (g.valueInfo ?? []).filter((v) => produced.has(v.name ?? '')),
      });
    },
  };
}

/** The tensors of a model by name: its graph inputs and every node output (the FP32 model's, for cutVariant). */
export function producedTensors(model: OnnxModel): Set<string> {
  const g = graphOf(model);
  const initializers = new Set(g.initializer.map((t) => t.name));
  const out = new Set<string>(g.input.map((i) => i.name).filter((n) => !initializers.has(n)));
  for (const n of g.node) for (const o of n.output) if (o) out.add(o);
  return out;
}

/** Bytes of one image's value of a tensor, from its dims (batch first); undefined when a dim is dynamic. */
export function bytesPerImage(info: TensorInfo | undefined): number | undefined {
  if (!info || info.dims.length === 0) return undefined;
  let n = 4;
  for (const d of info.dims.slice(1)) {
    if (typeof d !== 'number' || d < 0) return undefined;
    n *= d;
  }
  return n;
}

/**
 * Groups of layers (graph order) whose cuts' tensors, all images together, fit in `budget` bytes; a layer whose cut
 * alone does not fit, or whose size is unknown (dynamic dims), is left out (runs whole).
 */
export function planCutGroups<T extends { cut: readonly string[] }>(items: readonly T[], sizes: ReadonlyMap<string, number | undefined>, images: number, budget = CUT_MEMORY_BYTES): { groups: T[][]; whole: T[] } {
  const groups: T[][] = [];
  const whole: T[] = [];
  let group: T[] = [];
  let tensors = new Set<string>();
  let bytes = 0;
  for (const item of items) {
    const own = item.cut.map((t) => sizes.get(t));
    if (own.some((b) => b === undefined) || own.reduce<number>((a, b) => a + b!, 0) * images > budget) {
      whole.push(item);
      continue;
    }
    const added = item.cut.filter((t) => !tensors.has(t)).reduce((a, t) => a + sizes.get(t)! * images, 0);
    if (bytes + added > budget && group.length > 0) {
      groups.push(group);
      group = [];
      tensors = new Set();
      bytes = 0;
    }
    group.push(item);
    for (const t of item.cut) tensors.add(t);
    bytes = [...tensors].reduce((a, t) => a + sizes.get(t)! * images, 0);
  }
  if (group.length > 0) groups.push(group);
  return { groups, whole };
}

/**
 * The FP32 model's tensors by name (node outputs and graph inputs, with the dims onnxruntime reports), read by
 * opening it with every float tensor exposed once: the session is the one that later hands out the cuts' values.
 */
export class Fp32Activations {
  readonly info: ReadonlyMap<string, TensorInfo>;
  readonly #session: Awaited<ReturnType<typeof onnxruntimeBackend.open>>;
  readonly #inputName: string;

  private constructor(session: Awaited<ReturnType<typeof onnxruntimeBackend.open>>, inputName: string) {
    this.#session = session;
    this.#inputName = inputName;
    const info = new Map<string, TensorInfo>(session.exposedInfo);
    for (const i of session.inputs) info.set(i.name, i);
    this.info = info;
  }

  /** Opens `model` (the variants' FP32 model: bias-corrected where the variants are) exposing `tensors`. */
  static async open(model: OnnxModel, file: string, inputName: string, tensors: readonly string[], threads?: number): Promise<Fp32Activations> {
    const session = await onnxruntimeBackend.open({ path: file, bytes: saveOnnxModel(model) }, { ...(threads ? { threads } : {}), expose: tensors.filter((t) => t !== inputName) });
    return new Fp32Activations(session, inputName);
  }

  /** The values of `names` for every kept batch, in order (the image input is the batch itself). */
  async values(data: EvaluationData, names: readonly string[]): Promise<Array<Record<string, Tensor>>> {
    const fetch = names.filter((n) => n !== this.#inputName);
    const out: Array<Record<string, Tensor>> = [];
    for (const b of data.batches) {
      const input: Tensor = { dtype: 'float32', dims: b.dims, data: b.data };
      const values = fetch.length > 0 ? await this.#session.run({ [this.#inputName]: input }, fetch) : {};
      if (names.includes(this.#inputName)) values[this.#inputName] = input;
      out.push(values);
    }
    return out;
  }

  async release(): Promise<void> {
    await this.#session.release();
  }
}

export interface CutSummary {
  /** Variants run from their cut, and whole. */
  cut: number;
  whole: number;
  /** FP32 runs over the kept images that handed out the cuts' activations (one per group). */
  fp32Passes: number;
  /** Largest group's kept activations (bytes). */
  peakBytes: number;
}

/**
 * The cuts of a list of one-at-a-time variants (in graph order) over one evaluation data: which run from their cut,
 * the groups, and the FP32 activations of the current group (loaded when its first variant is asked for).
 */
export class VariantCuts {
  readonly summary: CutSummary;
  readonly #cuts: Map<string, CutVariant>;
  readonly #groupOf: Map<string, number>;
  readonly #groups: string[][];
  readonly #fp32: Fp32Activations | undefined;
  readonly #data: EvaluationData;
  #loaded = -1;
  #values: Array<Record<string, Tensor>> = [];

  private constructor(cuts: Map<string, CutVariant>, groups: string[][], fp32: Fp32Activations | undefined, data: EvaluationData, summary: CutSummary) {
    this.#cuts = cuts;
    this.#groups = groups;
    this.#groupOf = new Map(groups.flatMap((g, k) => g.map((n) => [n, k] as const)));
    this.#fp32 = fp32;
    this.#data = data;
    this.summary = summary;
  }

  /**
   * `variants`: each layer's built variant and the tensor its layer produces; `model` the FP32 model the variants
   * are made of (its tensors are the cuts' values).
   */
  static async open(options: {
    model: OnnxModel;
    file: string;
    inputName: string;
    variants: ReadonlyArray<{ name: string; variant: OnnxModel; output: string }>;
    data: EvaluationData;
    threads?: number;
    budget?: number;
  }): Promise<VariantCuts> {
    const fp32Names = producedTensors(options.model);
    const cuts = new Map<string, CutVariant>();
    for (const v of options.variants) {
      const c = process.env.TRT_CALIB_CUT === '0' ? undefined : cutVariant(v.variant, v.output, fp32Names);
      if (c) cuts.set(v.name, c);
    }
    const images = options.data.files.length;
    const none = (whole: number): VariantCuts => new VariantCuts(new Map(), [], undefined, options.data, { cut: 0, whole, fp32Passes: 0, peakBytes: 0 });
    if (cuts.size === 0) return none(options.variants.length);
    const union = [...new Set([...cuts.values()].flatMap((c) => c.inputs))];
    const fp32 = await Fp32Activations.open(options.model, options.file, options.inputName, union, options.threads);
    const sizes = new Map(union.map((t) => [t, bytesPerImage(fp32.info.get(t))]));
    const items = options.variants.filter((v) => cuts.has(v.name)).map((v) => ({ name: v.name, cut: cuts.get(v.name)!.inputs }));
    const { groups, whole } = planCutGroups(items, sizes, images, options.budget);
    for (const w of whole) cuts.delete(w.name);
    if (groups.length === 0) {
      await fp32.release();
      return none(options.variants.length);
    }
    const peakBytes = Math.max(...groups.map((g) => [...new Set(g.flatMap((i) => i.cut))].reduce((a, t) => a + sizes.get(t)! * images, 0)));
    return new VariantCuts(cuts, groups.map((g) => g.map((i) => i.name)), fp32, options.data, {
      cut: cuts.size,
      whole: options.variants.length - cuts.size,
      fp32Passes: groups.length,
      peakBytes,
    });
  }

  /** The layer's variant from its cut, with its feeds per kept batch; undefined: run it whole. */
  async prepared(name: string): Promise<{ model: OnnxModel; feeds: Array<Record<string, Tensor>> } | undefined> {
    const k = this.#groupOf.get(name);
    const cut = this.#cuts.get(name);
    if (k === undefined || !cut || !this.#fp32) return undefined;
    if (k !== this.#loaded) {
      this.#values = [];
      const names = [...new Set(this.#groups[k]!.flatMap((n) => this.#cuts.get(n)!.inputs))];
      this.#values = await this.#fp32.values(this.#data, names);
      this.#loaded = k;
    }
    const feeds = this.#values.map((v) => Object.fromEntries(cut.inputs.map((t) => [t, v[t]!])));
    return { model: cut.model(this.#fp32.info), feeds };
  }

  async release(): Promise<void> {
    this.#values = [];
    await this.#fp32?.release();
  }
}
