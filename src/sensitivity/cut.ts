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
 * variant's numbers are those of the whole variant up to float32 rounding where onnxruntime fuses differently
 * around a graph input or an exposed tensor (test/unit/sensitivity-cut.test.ts compares the two).
 *
 * Memory: the cut's activations are kept for every image of the evaluation data, at most CUT_MEMORY_BYTES for a
 * group of layers (planCutGroups, in graph order); a layer whose cut alone needs more runs whole, from the kept
 * images (recomputed, never spilled to disk). Cost: one FP32 run over the kept images per group, of the FP32
 * model cut down to what computes the group's cut tensors (pruneToOutputs: on MobileNetV2 the first group's run
 * stops at block 9, 0.45 -> 0.40 s over 43 images; onnxruntime-node, the cut's tensors copied out), against the
 * prefix each of the group's variants no longer runs.
 */
import type { onnx as OnnxTypes } from 'onnx-proto';
import { onnxruntimeBackend } from '../backends/onnxruntime.js';
import { pruneToOutputs } from '../onnx/expose.js';
import { graphOf, onnx, saveOnnxModel, withGraph, type OnnxModel, type OnnxNode } from '../onnx/model.js';
import { DTYPES, onnxFromDtype, type Tensor, type TensorInfo } from '../tensor.js';
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
export function cutVariant(variant: OnnxModel, layerOutput: string, fp32: ReadonlySet<string>, maxShare = CUT_MAX_SHARE): CutVariant | undefined {
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
  if (inSuffix.size > maxShare * nodes.length) return undefined;
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
  let n = DTYPES[info.dtype].bytes;
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
    for (const t of item.cut) if (!tensors.has(t)) (tensors.add(t), (bytes += sizes.get(t)! * images));
  }
  if (group.length > 0) groups.push(group);
  return { groups, whole };
}

export interface CutSummary {
  /** Variants run from their cut, and whole. */
  cut: number;
  whole: number;
  /** FP32 runs over the kept images that handed out the cuts' activations (one per group used). */
  fp32Passes: number;
  /** Largest group's activations kept for the measured layers (bytes). */
  peakBytes: number;
}

/**
 * Which layers of a model run from their cut over a number of images, in which groups: planned over EVERY
 * quantizable layer, whichever are measured, so that a layer's cut activations always come from the same FP32 run
 * (the same exposed tensors, so the same fusions and the same bits): the default search, --exhaustive, --layers and
 * each --shard give a layer the same numbers. Cuts are found on the FP32 graph (the same tensors as on the
 * variant: its extra nodes, the layer's Q/DQ and float twin, read the layer's own inputs; VariantCuts checks it);
 * their sizes from onnxruntime's shapes (a session opened with them exposed, not run).
 */
export interface CutPlan {
  /** The variants' FP32 model. */
  model: OnnxModel;
  /**
   * Group k's FP32 run: the FP32 model cut down to what computes every cut tensor of the group's layers but the
   * image input (pruneToOutputs), encoded when first asked for and kept for the plan's other searches; undefined
   * when the group reads only the image.
   */
  groupModel(k: number): Uint8Array | undefined;
  file: string;
  inputName: string;
  threads: number | undefined;
  images: number;
  /** Cut tensors of each layer that runs from its cut. */
  cuts: ReadonlyMap<string, readonly string[]>;
  groups: ReadonlyArray<readonly string[]>;
  info: ReadonlyMap<string, TensorInfo>;
  sizes: ReadonlyMap<string, number | undefined>;
  fp32Names: ReadonlySet<string>;
}

/** The plan (see CutPlan): `layers` every quantizable layer (graph order) and the tensor it produces. */
export async function planCuts(options: {
  model: OnnxModel;
  file: string;
  inputName: string;
  layers: ReadonlyArray<{ name: string; output: string }>;
  images: number;
  threads?: number;
  budget?: number;
}): Promise<CutPlan> {
  const fp32Names = producedTensors(options.model);
  const planned = new Map<string, string[]>();
  if (process.env.TRT_CALIB_CUT !== '0') {
    for (const l of options.layers) {
      const c = cutVariant(options.model, l.output, fp32Names);
      if (c) planned.set(l.name, c.inputs);
    }
  }
  const all = [...new Set([...planned.values()].flat())];
  const info = new Map<string, TensorInfo>();
  if (planned.size > 0) {
    const session = await onnxruntimeBackend.open({ path: options.file, bytes: saveOnnxModel(options.model) }, { ...(options.threads ? { threads: options.threads } : {}), expose: all.filter((t) => t !== options.inputName) });
    for (const [k, v] of session.exposedInfo) info.set(k, v);
    for (const i of session.inputs) info.set(i.name, i);
    await session.release();
  }
  const sizes = new Map(all.map((t) => [t, bytesPerImage(info.get(t))]));
  const items = options.layers.filter((l) => planned.has(l.name)).map((l) => ({ name: l.name, cut: planned.get(l.name)! }));
  const { groups, whole } = planCutGroups(items, sizes, options.images, options.budget);
  for (const w of whole) planned.delete(w.name);
  const groupModels = new Map<number, Uint8Array | undefined>();
  const groupModel = (k: number): Uint8Array | undefined => {
    if (!groupModels.has(k)) {
      const exposed = [...new Set(groups[k]!.flatMap((i) => i.cut))].filter((t) => t !== options.inputName);
      groupModels.set(k, exposed.length > 0 ? saveOnnxModel(pruneToOutputs(options.model, exposed, { file: options.file })) : undefined);
    }
    return groupModels.get(k);
  };
  return {
    model: options.model,
    groupModel,
    file: options.file,
    inputName: options.inputName,
    threads: options.threads,
    images: options.images,
    cuts: planned,
    groups: groups.map((g) => g.map((i) => i.name)),
    info,
    sizes,
    fp32Names,
  };
}

/**
 * The measured layers' cuts over one evaluation data (of the plan's image count): the cut model of each built
 * variant, and the FP32 activations of the current group, computed when its first measured layer is asked for by
 * one FP32 run that exposes the whole group's cut tensors (the plan's) and keeps the measured layers' ones.
 */
export class VariantCuts {
  readonly summary: CutSummary;
  readonly #plan: CutPlan | undefined;
  readonly #cuts: Map<string, CutVariant>;
  readonly #groupOf: Map<string, number>;
  readonly #data: EvaluationData;
  #loaded = -1;
  #values: Array<Record<string, Tensor>> = [];

  constructor(plan: CutPlan | undefined, variants: ReadonlyArray<{ name: string; variant: OnnxModel; output: string }>, data: EvaluationData) {
    this.#plan = plan;
    this.#data = data;
    this.#cuts = new Map();
    this.#groupOf = new Map();
    const groupOf = new Map((plan?.groups ?? []).flatMap((g, k) => g.map((n) => [n, k] as const)));
    if (plan && plan.images !== data.files.length) throw new Error(`a cut plan for ${plan.images} images used on ${data.files.length}`);
    for (const v of variants) {
      const planned = plan?.cuts.get(v.name);
      const k = groupOf.get(v.name);
      if (!plan || !planned || k === undefined) continue;
      // The variant's cut must be the one planned on the FP32 graph (else it runs whole).
      const c = cutVariant(v.variant, v.output, plan.fp32Names, Number.POSITIVE_INFINITY);
      if (!c || c.inputs.length !== planned.length || !c.inputs.every((t) => planned.includes(t))) continue;
      this.#cuts.set(v.name, c);
      this.#groupOf.set(v.name, k);
    }
    const used = [...new Set(this.#groupOf.values())];
    const images = data.files.length;
    const kept = used.map((k) => this.#fetched(k).reduce((a, t) => a + (plan!.sizes.get(t) ?? 0) * images, 0));
    this.summary = { cut: this.#cuts.size, whole: variants.length - this.#cuts.size, fp32Passes: used.length, peakBytes: Math.max(0, ...kept) };
  }

  /** The layer's variant from its cut, with its feeds per kept batch; undefined: run it whole. */
  async prepared(name: string): Promise<{ model: OnnxModel; feeds: Array<Record<string, Tensor>> } | undefined> {
    const k = this.#groupOf.get(name);
    const cut = this.#cuts.get(name);
    const plan = this.#plan;
    if (k === undefined || !cut || !plan) return undefined;
    if (k !== this.#loaded) {
      this.#values = [];
      const fetch = this.#fetched(k).filter((t) => t !== plan.inputName);
      const bytes = fetch.length > 0 ? plan.groupModel(k) : undefined;
      const session = bytes ? await onnxruntimeBackend.open({ path: plan.file, bytes }, { ...(plan.threads ? { threads: plan.threads } : {}) }) : undefined;
      try {
        for (const b of this.#data.batches) {
          const input: Tensor = { dtype: 'float32', dims: b.dims, data: b.data };
          const values = session ? await session.run({ [plan.inputName]: input }, fetch) : {};
          values[plan.inputName] = input;
          this.#values.push(values);
        }
      } finally {
        await session?.release();
      }
      this.#loaded = k;
    }
    const feeds = this.#values.map((v) => Object.fromEntries(cut.inputs.map((t) => [t, v[t]!])));
    return { model: cut.model(plan.info), feeds };
  }

  /** The cut tensors the measured layers of group `k` read. */
  #fetched(k: number): string[] {
    return [...new Set([...this.#cuts].filter(([n]) => this.#groupOf.get(n) === k).flatMap(([, c]) => c.inputs))];
  }

  release(): void {
    this.#values = [];
    this.#loaded = -1;
  }
}
