/**
 * From a precision map to a runnable mixed-precision model: the one place where a map becomes an ONNX graph, so
 * that what `sensitivity --max-drop`, `quantize --mixed auto` and `compare --mixed auto` measure is the model
 * `quantize` writes.
 *
 * - INT8 layers: Q/DQ pairs placed by src/onnx/qdq.ts (its placement rules; a layer the map keeps out of INT8
 *   gets no Q/DQ on its inputs, and a residual Add whose fusable producer is kept out loses its Q/DQ too, as in
 *   TensorRT, where the Add can only fuse into an INT8 convolution).
 * - FP16 layers: the FP16 converter (src/onnx/fp16.ts) applied to those nodes only (every other node is on its
 *   block list): inputs and weights rounded to float16, the output stored as float16 and cast back to float32 for
 *   its float consumers. Where onnxruntime's CPU provider has no float16 kernel (Conv, Gemm, Add...), the op runs
 *   in float32 between the float16 roundings, which is TensorRT's FP16 arithmetic up to the accumulator.
 * - FP32 layers and every node the map does not name (Clip, Pad, pooling...) stay float32. TensorRT would be
 *   free to run the latter in FP16 or INT8 when the builder flags allow it; they are not layers one can keep out
 *   of INT8 by removing Q/DQ, so the map does not decide them.
 * - With `highPrecision` (quantize --high-precision fp16): everything that is not INT8 is FP16 (src/onnx/autocast.ts),
 *   FP32 only for the map's fp32 layers and the tensors the caller keeps in FP32 (src/precision/fp16-safety.ts).
 */
import { castRestToFp16, type AutocastResult } from '../onnx/autocast.js';
import { convertToFp16WithReport, type Fp16Result } from '../onnx/fp16.js';
import { graphOf, type OnnxModel } from '../onnx/model.js';
import { nodeLabel } from '../onnx/opset.js';
import { quantizeQdq, type QdqPlacement, type QdqResult } from '../onnx/qdq.js';
import type { LayerPrecision, PrecisionMap } from './map.js';

export interface MixedModelOptions {
  /** Activation scales (amax / 127) by tensor name: the calibration cache. */
  activationScales: ReadonlyMap<string, number>;
  /** Layer -> precision; layers not named run in INT8. */
  precisionMap?: PrecisionMap;
  /** Per-channel weight scales (default true). */
  perChannel?: boolean;
  /** Q/DQ on the skip input of residual Adds (default true). */
  residualAdd?: boolean;
  /** Q/DQ on the input of pooling and Resize between INT8 layers (src/onnx/qdq.ts rule 6; default false). */
  pooling?: boolean;
  /** Q/DQ placement (src/onnx/qdq.ts): 'explicit' (default) or 'implicit' (after every named activation). */
  placement?: QdqPlacement;
  /** INT8 + FP16: the non-INT8 rest in FP16 (see the file comment). */
  highPrecision?: HighPrecisionFp16;
  /** Per-channel weight scales by weight tensor (--weight-search); default max|W_c| / 127. */
  weightScales?: ReadonlyMap<string, Float32Array>;
  file?: string;
}

export interface HighPrecisionFp16 {
  /** Tensors to keep in FP32 (out of FP16's range, protected...), with the reason. */
  fp32Tensors?: ReadonlyMap<string, string>;
  /** Graph inputs and outputs in float16 too. */
  ioFp16?: boolean;
  /** For measuring on onnxruntime's CPU provider (src/onnx/fp16.ts cpuFallback); false: pure float16 for TensorRT. */
  emulateOnCpu?: boolean;
}

export interface MixedModelResult {
  model: OnnxModel;
  /** Layers with Q/DQ (weighted ops and residual Adds), in topological order. */
  int8Layers: string[];
  /** Nodes computing in FP16 (as the map asked). */
  fp16Layers: string[];
  /** Layers the map kept in FP32. */
  fp32Layers: string[];
  qdq: QdqResult;
  fp16?: Fp16Result;
  /** With highPrecision: the layer counts by type and what stayed FP32. */
  autocast?: AutocastResult;
}

export interface QuantizableLayer {
  /** Node label (node name, or 'Op:firstOutput' for an unnamed node): the key of the precision map. */
  name: string;
  op: string;
  /** A weighted op (Conv, ConvTranspose, Gemm, MatMul) or a residual Add (its skip input quantized). */
  kind: 'weighted' | 'residual-add';
}

/**
 * The layers Q/DQ insertion quantizes when everything is INT8, in topological order: exactly the nodes
 * quantizeQdq puts Q/DQ in front of (taken from its result, so the rule lives in one place, src/onnx/qdq.ts).
 */
export function quantizableLayers(model: OnnxModel, activationScales: ReadonlyMap<string, number>, options: Omit<MixedModelOptions, 'activationScales' | 'precisionMap'> = {}): QuantizableLayer[] {
  const r = quantizeQdq(model, qdqOptions({ ...options, activationScales }));
  return layersOf(r);
}

export function layersOf(r: QdqResult): QuantizableLayer[] {
  const weighted = new Set(r.quantizedNodes);
  const adds = new Set(r.residualAdds);
  const out: QuantizableLayer[] = [];
  for (const node of graphOf(r.model).node) {
    const label = nodeLabel(node);
    if (weighted.has(label)) out.push({ name: label, op: node.opType, kind: 'weighted' });
    else if (adds.has(label)) out.push({ name: label, op: node.opType, kind: 'residual-add' });
  }
  return out;
}

function qdqOptions(o: MixedModelOptions) {
  return {
    activationScales: o.activationScales,
    ...(o.precisionMap ? { precisionMap: o.precisionMap as ReadonlyMap<string, LayerPrecision> } : {}),
    ...(o.perChannel !== undefined ? { perChannel: o.perChannel } : {}),
    ...(o.residualAdd !== undefined ? { residualAdd: o.residualAdd } : {}),
    ...(o.placement !== undefined ? { placement: o.placement } : {}),
    ...(o.pooling !== undefined ? { pooling: o.pooling } : {}),
    ...(o.file !== undefined ? { file: o.file } : {}),
    ...(o.weightScales !== undefined ? { weightScales: o.weightScales } : {}),
  };
}

/** Builds the model a precision map describes (see the file comment). */
export function buildMixedPrecisionModel(model: OnnxModel, options: MixedModelOptions): MixedModelResult {
  const qdq = quantizeQdq(model, qdqOptions(options));
  const int8Layers = layersOf(qdq).map((l) => l.name);
  const map = options.precisionMap ?? new Map<string, LayerPrecision>();
  const fp32Layers = [...map].filter(([, p]) => p === 'fp32').map(([n]) => n);
  const wanted16 = new Set([...map].filter(([, p]) => p === 'fp16').map(([n]) => n));
  if (options.highPrecision) {
    const hp = options.highPrecision;
    const autocast = castRestToFp16(qdq.model, {
      fp32Tensors: hp.fp32Tensors ?? new Map(),
      fp32Layers: new Map(fp32Layers.map((l) => [l, 'the precision map keeps it in FP32'])),
      int8Layers,
      ioFp16: hp.ioFp16 ?? false,
      emulateOnCpu: hp.emulateOnCpu ?? false,
      ...(options.file ? { file: options.file } : {}),
    });
    const fp16Layers = [...map].filter(([, p]) => p === 'fp16').map(([n]) => n);
    return { model: autocast.model, int8Layers, fp16Layers, fp32Layers, qdq, autocast };
  }
  if (wanted16.size === 0) return { model: qdq.model, int8Layers, fp16Layers: [], fp32Layers, qdq };

  const nodes = graphOf(qdq.model).node;
  const is16 = (n: (typeof nodes)[number]) => wanted16.has(nodeLabel(n)) || (n.name !== '' && wanted16.has(n.name));
  // Everything but the FP16 layers is blocked, so the converter touches those nodes alone. BatchNorm is not
  // folded: node names must stay those of the map (the FP32 reference is the unfolded model too).
  const blockList = nodes.filter((n) => !is16(n)).map(nodeLabel);
  const fp16 = convertToFp16WithReport(qdq.model, { blockList, foldBatchNorm: false, keepIo: true, cpuFallback: true, ...(options.file ? { file: options.file } : {}) });
  const converted = new Set([...fp16.fp16Nodes, ...fp16.emulatedNodes]);
  const fp16Layers = nodes.filter((n) => is16(n) && converted.has(nodeLabel(n))).map(nodeLabel);
  return { model: fp16.model, int8Layers, fp16Layers, fp32Layers, qdq, fp16 };
}
