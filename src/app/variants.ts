/**
 * The model variants the comparison and quantization commands build from an FP32 ONNX model: INT8 (Q/DQ from a
 * calibration cache's scales, optionally mixed with FP16/FP32 layers by a precision map) and FP16.
 */
import path from 'node:path';
import { parseCalibrationCache, type CalibrationCache } from '../cache/trt-cache.js';
import { isAlgorithmName } from '../calibrators/registry.js';
import { UserError } from '../errors.js';
import { convertToFp16WithReport, type Fp16Result } from '../onnx/fp16.js';
import type { OnnxModel } from '../onnx/model.js';
import type { QdqPlacement } from '../onnx/qdq.js';
import { buildMixedPrecisionModel, type HighPrecisionFp16, type MixedModelResult } from '../precision/apply.js';
import { readPrecisionMap, type PrecisionMap } from '../precision/map.js';
import { nodeLabel } from '../onnx/opset.js';
import { readUserFile } from '../util/fs.js';

export interface LoadedCache {
  file: string;
  cache: CalibrationCache;
  /** The algorithm, from the file name `<model>.<algo>.cache` when it names one, else the header's. */
  algorithm: string;
  scales: Map<string, number>;
}

const HEADER_TO_ALGO: Record<string, string> = {
  EntropyCalibration2: 'entropy2',
  EntropyCalibration: 'entropy',
  MinMaxCalibration: 'minmax',
  LegacyCalibration: 'legacy',
};

/**
 * Reads a cache and checks it belongs to the model: at least one of its tensors must be an activation of the
 * model (a cache of another model has none). Activations without a scale are reported in `missing`.
 */
export async function loadCacheFor(file: string, activations: readonly string[], modelFile: string): Promise<LoadedCache & { missing: string[] }> {
  const cache = parseCalibrationCache(await readUserFile(file, 'Calibration cache'), file);
  const scales = new Map(cache.entries.map((e) => [e.name, e.scale]));
  const known = activations.filter((a) => scales.has(a));
  if (known.length === 0) {
    throw new UserError(`${file} has no scale for any activation of ${modelFile} (${cache.entries.length} tensors, none of them in the model).`, {
      hint: 'The cache was written for another model: calibrate this one first (trt-calib --model ... --data ...).',
    });
  }
  const base = path.basename(file).replace(/\.cache$/i, '');
  const fromName = base.includes('.') ? base.slice(base.lastIndexOf('.') + 1) : '';
  const algorithm = isAlgorithmName(fromName) ? fromName : HEADER_TO_ALGO[cache.algorithm] ?? cache.algorithm;
  return { file, cache, algorithm, scales, missing: activations.filter((a) => !scales.has(a)) };
}

export function buildInt8Variant(
  model: OnnxModel,
  scales: ReadonlyMap<string, number>,
  options: { precisionMap?: PrecisionMap; file?: string; placement?: QdqPlacement; highPrecision?: HighPrecisionFp16 } = {},
): MixedModelResult {
  return buildMixedPrecisionModel(model, {
    activationScales: scales,
    precisionMap: options.precisionMap,
    file: options.file,
    ...(options.placement ? { placement: options.placement } : {}),
    ...(options.highPrecision ? { highPrecision: options.highPrecision } : {}),
  });
}

/**
 * FP16 variant. For onnxruntime (measuring), ops without float16 CPU kernels are emulated in float32 between
 * float16 roundings; for TensorRT (`forTensorRT`), a pure float16 graph.
 */
export function buildFp16Variant(model: OnnxModel, options: { forTensorRT?: boolean; file?: string } = {}): Fp16Result {
  return convertToFp16WithReport(model, { cpuFallback: !options.forTensorRT, file: options.file });
}

/** Reads a precision map and checks every layer it names is a node of the model (a typo is an error, not ignored). */
export async function readPrecisionMapFor(file: string, model: OnnxModel, modelFile: string): Promise<Map<string, import('../precision/map.js').LayerPrecision>> {
  return readPrecisionMap(file, { layers: (model.graph?.node ?? []).map((n) => nodeLabel(n)), model: modelFile });
}
