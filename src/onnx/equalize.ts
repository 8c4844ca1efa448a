/**
 * Cross-layer equalization (CLE) of an FP32 model's weights, a graph transform done before calibration.
 *
 * Method: Nagel, van Baalen, Blankevoort, Welling, "Data-Free Quantization Through Weight Equalization and Bias
 * Correction", ICCV 2019, §4.1. For two consecutive convolutions A -> f -> B, with f positively homogeneous
 * (f(x/s) = f(x)/s for s > 0: nothing, Relu, a zero Pad), output channel i of A is divided by s_i (its weights
 * and bias) and the matching input channel of B multiplied by s_i: the FP32 function is unchanged. With r1_i the
 * range max|W_A[i]| of A's output channel and r2_i the range of B's input channel i (over all of B's output
 * channels that read it), s_i = sqrt(r1_i * r2_i) / r2_i makes both ranges sqrt(r1_i * r2_i). Chains (A -> B -> C,
 * the depthwise convolution of a MobileNetV2 block in the middle) share a layer between two pairs, so the pairs are
 * equalized in turn, repeatedly, until no scale moves any more (the paper's iteration), in float64, stored once as
 * float32.
 *
 * ReLU6 (Clip 0..6) is not scale-equivariant: after the scaling channel i would have to clip at 6/s_i, and ONNX
 * Clip takes one scalar bound. `clip` says what to do with such a pair:
 * - 'skip' (default): leave it alone; the model stays exactly equivalent.
 * - 'relu': replace the Clip by Relu, as Nagel et al. do for MobileNetV2 (§5.1); this changes the FP32 function
 *   wherever A's output exceeded the bound (measure the drift against the input model).
 * - 'min': Relu then Min with the per-channel bound c/s_i (a [1, C, 1, 1] constant): exact in FP32, but the
 *   bound is now a tensor, which TensorRT does not fuse into the convolution as it fuses Clip.
 * A Clip whose lower bound is 0 and which has no upper bound is a Relu and always passes.
 *
 * Weights may be initializers or `Constant` outputs (Paddle2ONNX style); a pair is skipped, with the reason, when a
 * weight or bias is shared with another node, when an intermediate tensor is read elsewhere or is a graph output,
 * or when a shape does not fit.
 */
import { makeNode } from './build.js';
import { analyzeGraph } from './graph.js';
import { attrFloat, attrInt, attrString, graphOf, onnx, tensorFromProto, tensorToProto, withGraph, type OnnxModel, type OnnxNode, type OnnxTensorProto } from './model.js';
import { nodeLabel } from './opset.js';

export type EqualizeClipMode = 'skip' | 'relu' | 'min';

export interface EqualizeOptions {
  clip?: EqualizeClipMode;
  /** At most this many sweeps over the pairs (default 50). */
  maxIterations?: number;
  /** Stop when every scale of a sweep is within this of 1 (default 1e-6). */
  tolerance?: number;
  /**
   * A channel whose range on either side is below this fraction of its layer's largest (default 1e-3) keeps s = 1:
   * a (nearly) dead channel carries only its bias, and s_i = sqrt(r1_i / r2_i) would multiply that constant by up
   * to 1/s_i (on the MobileNetV2 fixture 5e4: one channel of block_11_expand at 2.3e6, the per-tensor INT8 scale
   * of the whole activation with it). Nagel et al. treat such channels with bias absorption (§4.1.2) instead.
   */
  minRelativeRange?: number;
  file?: string;
}

export interface EqualizedPair {
  first: string;
  second: string;
  /** The ops between them, in order (e.g. ['Clip', 'Pad']). */
  through: string[];
  /** 'relu' or 'min' when a Clip between them was changed; absent otherwise. */
  clipChanged?: EqualizeClipMode;
  /** max over the equalized channels of max(r1_i, r2_i) / min(r1_i, r2_i), before and after. */
  rangeRatioBefore: number;
  rangeRatioAfter: number;
}

export interface EqualizeResult {
  model: OnnxModel;
  pairs: EqualizedPair[];
  skipped: Array<{ first: string; second?: string; reason: string }>;
  iterations: number;
}

interface Layer {
  node: OnnxNode;
  index: number;
  w: Float64Array;
  dims: number[];
  b: Float64Array;
  hasBias: boolean;
  group: number;
}

interface Pair {
  a: Layer;
  b: Layer;
  through: OnnxNode[];
  clip?: { node: OnnxNode; lo: number; hi: number };
  /** The product of every sweep's scales, per channel (for the per-channel Min bound). */
  total: Float64Array;
}

const HOMOGENEOUS = new Set(['Relu', 'Clip', 'Pad']);

export function equalizeModel(model: OnnxModel, options: EqualizeOptions = {}): EqualizeResult {
  const clipMode = options.clip ?? 'skip';
  const maxIterations = options.maxIterations ?? 50;
  const tolerance = options.tolerance ?? 1e-6;
  const minRelativeRange = options.minRelativeRange ?? 1e-3;
  const g = graphOf(model);
  const { nodes, consumers } = analyzeGraph(model, { file: options.file });
  const graphOutputs = new Set(g.output.map((o) => o.name));
  const initializerIndex = new Map(g.initializer.map((t, i) => [t.name, i]));
  const constantNode = new Map<string, number>();
  nodes.forEach((n, i) => {
    if (n.opType === 'Constant' && (n.domain ?? '') === '') constantNode.set(n.output[0]!, i);
  });
  const readers = new Map<string, number>();
  for (const n of nodes) for (const i of n.input) if (i !== '') readers.set(i, (readers.get(i) ?? 0) + 1);
  const proto = (name: string): OnnxTensorProto | undefined => {
    const i = initializerIndex.get(name);
    if (i !== undefined) return g.initializer[i];
    const c = constantNode.get(name);
    return c === undefined ? undefined : (nodes[c]!.attribute.find((a) => a.name === 'value')?.t as OnnxTensorProto | undefined);
  };
  const scalar = (name: string | undefined): number | undefined => {
    if (!name) return undefined;
    const p = proto(name);
    if (!p || p.dataType !== 1) return undefined;
    const t = tensorFromProto(p);
    return t.data.length === 1 ? Number(t.data[0]) : undefined;
  };
  const onlyReader = (name: string) => (readers.get(name) ?? 0) === 1 && !graphOutputs.has(name);

  const skipped: EqualizeResult['skipped'] = [];
  const layers = new Map<number, Layer>();
  const layerOf = (index: number): Layer | string => {
    const known = layers.get(index);
    if (known) return known;
    const node = nodes[index]!;
    const wName = node.input[1] ?? '';
    const wp = wName ? proto(wName) : undefined;
    if (!wp || wp.dataType !== 1) return `its weight '${wName}' is not a float32 constant`;
    if (!onlyReader(wName)) return `its weight '${wName}' is read by other nodes too`;
    const wt = tensorFromProto(wp);
    if (wt.dims.length < 3) return `its weight has dims [${wt.dims.join(', ')}]`;
    const m = wt.dims[0]!;
    const bName = node.input[2] ?? '';
    let b = new Float64Array(m);
    if (bName) {
      const bp = proto(bName);
      if (!bp || bp.dataType !== 1) return `its bias '${bName}' is not a float32 constant`;
      if (!onlyReader(bName)) return `its bias '${bName}' is read by other nodes too`;
      const bt = tensorFromProto(bp);
      if (bt.data.length !== m) return `its bias has ${bt.data.length} values for ${m} channels`;
      b = Float64Array.from(bt.data as Float32Array);
    }
    const layer: Layer = { node, index, w: Float64Array.from(wt.data as Float32Array), dims: wt.dims, b, hasBias: bName !== '', group: attrInt(node, 'group') ?? 1 };
    layers.set(index, layer);
    return layer;
  };

  // Find the pairs: a Conv whose only reader chain (through homogeneous ops) ends in another Conv.
  const pairs: Pair[] = [];
  nodes.forEach((node, index) => {
    if (node.opType !== 'Conv' || (node.domain ?? '') !== '') return;
    const first = nodeLabel(node);
    const through: OnnxNode[] = [];
    let clip: Pair['clip'];
    let tensor = node.output[0]!;
    for (;;) {
      const readersOf = consumers.get(tensor) ?? [];
      if (readersOf.length !== 1 || graphOutputs.has(tensor)) return; // a fan-out or an output: not a pair
      const next = nodes[readersOf[0]!]!;
      if ((next.domain ?? '') !== '') return;
      if (next.opType === 'Conv') {
        if (next.input[0] !== tensor) return;
        const second = nodeLabel(next);
        const why = homogeneousChainProblem(through, clip, clipMode);
        if (why) {
          skipped.push({ first, second, reason: why });
          return;
        }
        const a = layerOf(index);
        const b = layerOf(readersOf[0]!);
        if (typeof a === 'string' || typeof b === 'string') {
          skipped.push({ first, second, reason: typeof a === 'string' ? `${first}: ${a}` : `${second}: ${b as string}` });
          return;
        }
        const channels = a.dims[0]!;
        const perGroupIn = b.dims[1]!;
        if (channels % perGroupIn !== 0 || channels / perGroupIn !== b.group || b.dims[0]! % b.group !== 0) {
          skipped.push({ first, second, reason: `${second} reads ${perGroupIn * b.group} channels in ${b.group} groups, ${first} writes ${channels}` });
          return;
        }
        pairs.push({ a, b, through, ...(clip ? { clip } : {}), total: new Float64Array(channels).fill(1) });
        return;
      }
      if (!HOMOGENEOUS.has(next.opType) || next.input[0] !== tensor) return;
      if (next.opType === 'Clip') {
        // Opset 11 on: bounds are optional inputs; before: attributes. Absent bounds are -inf / +inf.
        const attrs = next.attribute.some((a) => a.name === 'min' || a.name === 'max');
        const bound = (slot: number, attr: string, none: number) => (attrs ? (attrFloat(next, attr) ?? none) : next.input[slot] ? scalar(next.input[slot]) : none);
        const lo = bound(1, 'min', -Infinity);
        const hi = bound(2, 'max', Infinity);
        if (lo === undefined || hi === undefined) return skipped.push({ first, reason: `${nodeLabel(next)}: bounds are not constants` }), undefined;
        if (lo !== 0 || clip) return skipped.push({ first, reason: `${nodeLabel(next)}: Clip(${lo}, ${hi}) is not positively homogeneous` }), undefined;
        clip = { node: next, lo, hi };
      } else if (next.opType === 'Pad') {
        const mode = attrString(next, 'mode') ?? 'constant';
        const value = next.input.length > 2 && next.input[2] ? scalar(next.input[2]) : (attrFloat(next, 'value') ?? 0);
        if (mode !== 'constant' || value !== 0) return skipped.push({ first, reason: `${nodeLabel(next)}: a ${mode} Pad of ${value} is not scale-equivariant` }), undefined;
        if ((next.input[1] && proto(next.input[1]) === undefined) || (next.input[3] && proto(next.input[3]) === undefined)) return;
      }
      through.push(next);
      tensor = next.output[0]!;
    }
  });

  const ranges = (p: Pair) => {
    const { a, b } = p;
    const channels = a.dims[0]!;
    const perA = a.w.length / channels;
    const r1 = new Float64Array(channels);
    for (let c = 0; c < channels; c++) {
      let m = 0;
      for (let k = 0; k < perA; k++) m = Math.max(m, Math.abs(a.w[c * perA + k]!));
      r1[c] = m;
    }
    const r2 = new Float64Array(channels);
    const [outB, inPerGroup] = [b.dims[0]!, b.dims[1]!];
    const kernel = b.w.length / (outB * inPerGroup);
    const outPerGroup = outB / b.group;
    for (let o = 0; o < outB; o++) {
      const grp = Math.floor(o / outPerGroup);
      for (let j = 0; j < inPerGroup; j++) {
        const c = grp * inPerGroup + j;
        let m = r2[c]!;
        const base = (o * inPerGroup + j) * kernel;
        for (let k = 0; k < kernel; k++) m = Math.max(m, Math.abs(b.w[base + k]!));
        r2[c] = m;
      }
    }
    return { r1, r2 };
  };
  const ratio = (p: Pair) => {
    const { r1, r2 } = ranges(p);
    let worst = 1;
    const floor1 = minRelativeRange * Math.max(...r1);
    const floor2 = minRelativeRange * Math.max(...r2);
    for (let c = 0; c < r1.length; c++) if (r1[c]! > floor1 && r2[c]! > floor2 && r1[c]! > 0 && r2[c]! > 0) worst = Math.max(worst, r1[c]! / r2[c]!, r2[c]! / r1[c]!);
    return worst;
  };
  const before = pairs.map(ratio);

  let iterations = 0;
  for (; iterations < maxIterations && pairs.length > 0; ) {
    iterations++;
    let moved = 0;
    for (const p of pairs) {
      const { r1, r2 } = ranges(p);
      const { a, b } = p;
      const channels = r1.length;
      const perA = a.w.length / channels;
      const [outB, inPerGroup] = [b.dims[0]!, b.dims[1]!];
      const kernel = b.w.length / (outB * inPerGroup);
      const outPerGroup = outB / b.group;
      const s = new Float64Array(channels);
      const floor1 = minRelativeRange * Math.max(...r1);
      const floor2 = minRelativeRange * Math.max(...r2);
      for (let c = 0; c < channels; c++) {
        // A channel that is (nearly) zero on either side has nothing to balance (see minRelativeRange).
        s[c] = r1[c]! > floor1 && r2[c]! > floor2 && r1[c]! > 0 && r2[c]! > 0 ? Math.sqrt(r1[c]! * r2[c]!) / r2[c]! : 1;
        moved = Math.max(moved, Math.abs(s[c]! - 1));
        p.total[c]! *= s[c]!;
        for (let k = 0; k < perA; k++) a.w[c * perA + k]! /= s[c]!;
        a.b[c]! /= s[c]!;
      }
      for (let o = 0; o < outB; o++) {
        const grp = Math.floor(o / outPerGroup);
        for (let j = 0; j < inPerGroup; j++) {
          const sc = s[grp * inPerGroup + j]!;
          const base = (o * inPerGroup + j) * kernel;
          for (let k = 0; k < kernel; k++) b.w[base + k]! *= sc;
        }
      }
    }
    if (moved <= tolerance) break;
  }

  // Write the weights back (same names, same dims), and change the Clips of equalized pairs.
  const initializer = [...g.initializer];
  const replaced = new Map<number, OnnxNode[]>();
  const added: OnnxTensorProto[] = [];
  const taken = new Set<string>([...g.initializer.map((t) => t.name), ...nodes.flatMap((n) => [...n.input, ...n.output]), ...g.input.map((i) => i.name)]);
  const fresh = (base: string) => {
    let name = base;
    for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
    taken.add(name);
    return name;
  };
  const store = (name: string, data: Float64Array, dims: number[]) => {
    const t = tensorToProto(name, { dtype: 'float32', dims, data: Float32Array.from(data) });
    const i = initializerIndex.get(name);
    if (i !== undefined) {
      initializer[i] = t;
      return;
    }
    const c = constantNode.get(name)!;
    const node = nodes[c]!;
    replaced.set(c, [onnx.NodeProto.create({ ...node, attribute: node.attribute.map((a) => (a.name === 'value' ? onnx.AttributeProto.create({ ...a, t }) : a)) })]);
  };
  const newBias = new Map<number, string>();
  for (const layer of layers.values()) {
    if (!pairs.some((p) => p.a === layer || p.b === layer)) continue;
    store(layer.node.input[1]!, layer.w, layer.dims);
    if (layer.hasBias) store(layer.node.input[2]!, layer.b, [layer.dims[0]!]);
    else if (layer.b.some((v) => v !== 0)) newBias.set(layer.index, fresh(`${nodeLabel(layer.node)}_bias`));
  }
  for (const [index, name] of newBias) {
    const layer = layers.get(index)!;
    added.push(tensorToProto(name, { dtype: 'float32', dims: [layer.dims[0]!], data: Float32Array.from(layer.b) }));
  }
  const result: EqualizedPair[] = [];
  pairs.forEach((p, k) => {
    const entry: EqualizedPair = { first: nodeLabel(p.a.node), second: nodeLabel(p.b.node), through: p.through.map((n) => n.opType), rangeRatioBefore: before[k]!, rangeRatioAfter: ratio(p) };
    if (p.clip && Number.isFinite(p.clip.hi) && clipMode !== 'skip') {
      entry.clipChanged = clipMode;
      const clipIndex = nodes.indexOf(p.clip.node);
      const label = nodeLabel(p.clip.node);
      const out = p.clip.node.output[0]!;
      if (clipMode === 'relu') {
        replaced.set(clipIndex, [makeNode('Relu', [p.clip.node.input[0]!], [out], { name: label })]);
      } else {
        const relu = fresh(`${out}_relu`);
        const bound = fresh(`${label}_bound`);
        const channels = p.total.length;
        added.push(tensorToProto(bound, { dtype: 'float32', dims: [1, channels, 1, 1], data: Float32Array.from(p.total, (s) => p.clip!.hi / s) }));
        replaced.set(clipIndex, [makeNode('Relu', [p.clip.node.input[0]!], [relu], { name: `${label}_relu` }), makeNode('Min', [relu, bound], [out], { name: label })]);
      }
    }
    result.push(entry);
  });
  const node: OnnxNode[] = [];
  nodes.forEach((n, i) => {
    const r = replaced.get(i);
    if (!r) {
      const bias = newBias.get(i);
      node.push(bias ? onnx.NodeProto.create({ ...n, input: [n.input[0]!, n.input[1]!, bias] }) : n);
    } else node.push(...r);
  });
  // A replaced Clip's bounds may be read by nothing now.
  const read = new Set<string>(graphOutputs);
  for (const n of node) for (const i of n.input) read.add(i);
  const finalNodes = node.filter((n) => !(n.opType === 'Constant' && n.output.every((o) => !read.has(o))));
  const finalInit = [...initializer.filter((t) => read.has(t.name)), ...added];
  return { model: withGraph(model, { ...g, node: finalNodes, initializer: finalInit }), pairs: result, skipped, iterations };
}

function homogeneousChainProblem(through: OnnxNode[], clip: Pair['clip'], mode: EqualizeClipMode): string | undefined {
  if (through.length > 3) return `${through.length} ops between the two convolutions`;
  if (clip && Number.isFinite(clip.hi) && mode === 'skip') return `${nodeLabel(clip.node)}: Clip(0, ${clip.hi}) is not scale-equivariant (clip 'relu' or 'min' to equalize across it)`;
  return undefined;
}
