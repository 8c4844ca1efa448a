/**
 * Which activations are counted from another tensor's values instead of being exported by onnxruntime.
 *
 * Exporting every activation is what calibration pays most for (MobileNetV2: 29 ms per image with all 112
 * exported against 7.7 ms for a plain run). Some outputs are a fixed, exact function of their input, so their
 * statistics can be counted from the input's values, value for value the same as counting the output:
 *   Clip(x, lo, hi) with constant bounds, Relu(x) = Clip(x, 0, +inf):   count clamp(x, lo, hi)   (native kernel)
 *   Pad(x) in constant mode with value 0 and constant pads >= 0:        count x, plus the pad's zeros
 * A Pad may read a Clip counted that way (Conv -> Clip -> Pad in MobileNetV2). Clip and Pad outputs are 54% of
 * MobileNetV2's activation bytes; not exporting them takes the export from 27 to 17 ms per image.
 * Only float32 tensors are derived. The statistics are the same bytes either way (tested).
 */
import type { ActivationInfo } from '../onnx/graph.js';
import { attrFloat, attrInts, attrString, defaultOpset, getAttribute, graphOf, tensorFromProto, type OnnxModel } from '../onnx/model.js';

export interface DerivedTensor {
  name: string;
  /** The exported tensor whose values are counted. */
  root: string;
  clamp?: { lo: number; hi: number };
  /** Pad: [begin..., end...] per axis; the zeros added per image follow from the root's dims. */
  pads?: number[];
}

export interface CollectionPlan {
  /** Tensors onnxruntime exports. */
  exported: string[];
  /** Tensors counted from an exported one, by root. */
  derived: DerivedTensor[];
}

const FLOAT32_MAX = 3.4028234663852886e38;

/** Number of zeros a Pad with these pads adds to one batch of the root tensor with dims `dims`. */
export function padZeros(dims: readonly number[], pads: readonly number[]): number {
  const rank = dims.length;
  let inner = 1;
  let outer = 1;
  for (let i = 0; i < rank; i++) {
    inner *= dims[i]!;
    outer *= dims[i]! + pads[i]! + pads[i + rank]!;
  }
  return outer - inner;
}

export function planCollection(model: OnnxModel, activations: readonly ActivationInfo[], options: { derive?: boolean } = {}): CollectionPlan {
  const names = activations.map((a) => a.name);
  if (options.derive === false) return { exported: names, derived: [] };
  const g = graphOf(model);
  const opset = defaultOpset(model);
  const float32 = new Set(activations.filter((a) => a.dtype === 'float32').map((a) => a.name));
  const consts = constantTensors(model);
  const scalar = (name: string | undefined): number | undefined | null => {
    if (!name) return undefined; // input omitted
    const t = consts.get(name);
    if (!t || t.data.length !== 1) return null; // not a constant scalar
    return Number(t.data[0]);
  };
  const byOutput = new Map<string, DerivedTensor>();
  for (const node of g.node) {
    const out = node.output[0];
    const src = node.input[0];
    if (!out || !src || !float32.has(out) || !float32.has(src) || node.domain) continue;
    const parent = byOutput.get(src);
    if (node.opType === 'Clip' || node.opType === 'Relu') {
      if (parent) continue; // clamps are taken from an exported tensor only
      let lo = -Infinity;
      let hi = Infinity;
      if (node.opType === 'Relu') lo = 0;
      else if (opset < 11) {
        lo = attrFloat(node, 'min') ?? -FLOAT32_MAX;
        hi = attrFloat(node, 'max') ?? FLOAT32_MAX;
      } else {
        const a = scalar(node.input[1]);
        const b = scalar(node.input[2]);
        if (a === null || b === null) continue;
        lo = a ?? -Infinity;
        hi = b ?? Infinity;
      }
      if (!(lo <= hi)) continue;
      byOutput.set(out, { name: out, root: src, clamp: { lo, hi } });
    } else if (node.opType === 'Pad') {
      if (parent && (parent.pads || !parent.clamp)) continue;
      if ((attrString(node, 'mode') ?? 'constant') !== 'constant') continue;
      let pads: number[] | undefined;
      let value: number | undefined | null;
      if (opset < 11) {
        pads = attrInts(node, 'pads');
        value = getAttribute(node, 'value') ? attrFloat(node, 'value') : 0;
      } else {
        const p = node.input[1] ? consts.get(node.input[1]) : undefined;
        pads = p ? Array.from(p.data as ArrayLike<number | bigint>, Number) : undefined;
        value = node.input[2] ? scalar(node.input[2]) : 0;
        if (node.input[3]) continue; // axes (opset 18): not handled
      }
      if (!pads || pads.some((v) => !(v >= 0)) || value !== 0) continue;
      byOutput.set(out, { name: out, root: parent ? parent.root : src, ...(parent?.clamp ? { clamp: parent.clamp } : {}), pads });
    }
  }
  const derived = names.map((n) => byOutput.get(n)).filter((d): d is DerivedTensor => d !== undefined);
  const derivedNames = new Set(derived.map((d) => d.name));
  return { exported: names.filter((n) => !derivedNames.has(n)), derived };
}

/** Initializers and Constant-node outputs, as tensors (scalars and small vectors are what is read here). */
function constantTensors(model: OnnxModel) {
  const g = graphOf(model);
  const out = new Map<string, ReturnType<typeof tensorFromProto>>();
  for (const t of g.initializer) if (t.name) out.set(t.name, tensorFromProto(t));
  for (const n of g.node) {
    if (n.opType !== 'Constant' || n.domain) continue;
    const v = getAttribute(n, 'value');
    if (v?.t && n.output[0]) out.set(n.output[0], tensorFromProto(v.t));
  }
  return out;
}
