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
import { READ_LIMITS, readUserFile } from '../util/fs.js';

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
  const cache = parseCalibrationCache(await readUserFile(file, 'Calibration cache', READ_LIMITS.calibrationCache), file);
  const scales = new Map(cache.entries.map((e) => [e.name, e.scale]));
  const known = activations.filter((a) => scales.has(a));
  if (known.length === 0) {
    throw new UserError(`${file} has no scale for any activation of ${modelFile} (${cache.entries.length} tensors, none of them in the model).`, {
      hint: 'The cache was written for another model: calibrate this one first (trt-calib --model ... --data ...).',
    });
  }
  const base = path.basename(file).replace(/\.cache$/i, '');
  const fromName = base.includes('.') ? base.slice(base.lastIndexOf('.') + 1) : '';
  // An --algo auto cache carries the EntropyCalibration2 header (docs/algorithms.md): its file name says what it is.
  const algorithm = isAlgorithmName(fromName) || fromName === 'auto' ? fromName : HEADER_TO_ALGO[cache.algorithm] ?? cache.algorithm;
  return { file, cache, algorithm, scales, missing: activations.filter((a) => !scales.has(a)) };
}

/** How much of a model's INT8 layers a cache gives scales to (in report.json as a variant's `cacheCoverage`). */
export interface CacheCoverage {
  cache: string;
  /** Tensors in the cache. */
  tensors: number;
  /** Activations the model's INT8 layers read (weighted ops and residual Adds left in INT8 by the precision map). */
  quantizable: number;
  /** Of those, the ones the cache has a scale for. */
  covered: number;
  /** The ones it has none for: their consumers stay in float. */
  missing: string[];
}

/**
 * The cache's coverage of the variant built from it. A cache that covers none of the activations the INT8 layers
 * read (cut short, or written for another export of the model) would give an "INT8" model with nothing in INT8,
 * which passes every accuracy gate: that is a UserError naming the cache and what it covers.
 */
export function checkCacheCoverage(loaded: LoadedCache, built: MixedModelResult, modelFile: string): CacheCoverage {
  const wanted = built.qdq.quantizable;
  const missing = wanted.filter((a) => !loaded.scales.has(a));
  const coverage = { cache: loaded.file, tensors: loaded.cache.entries.length, quantizable: wanted.length, covered: wanted.length - missing.length, missing };
  if (coverage.quantizable > 0 && coverage.covered === 0) {
    const names = loaded.cache.entries.slice(0, 3).map((e) => JSON.stringify(e.name)).join(', ');
    throw new UserError(
      `${loaded.file} covers ${coverage.tensors} tensor(s) (${names}${coverage.tensors > 3 ? ', ...' : ''}), none of the ${coverage.quantizable} activations that the INT8 layers of ${modelFile} read: nothing would run in INT8.`,
      { hint: 'The cache is cut short or was written for another model (or another export of it): look at it with `trt-calib cache show`, or calibrate this model (trt-calib --model ... --data ...).' },
    );
  }
  return coverage;
}

/** The warning for a cache that leaves some INT8 layers without a scale, as quantize and compare print it. */
export function describePartialCoverage(c: CacheCoverage, modelFile: string): string | undefined {
  if (c.missing.length === 0) return undefined;
  return `${c.cache} has no scale for ${c.missing.length} of the ${c.quantizable} activations that the INT8 layers of ${modelFile} read (e.g. ${c.missing.slice(0, 3).join(', ')}): their consumers stay in float.`;
}

export function buildInt8Variant(
  model: OnnxModel,
  scales: ReadonlyMap<string, number>,
  options: { precisionMap?: PrecisionMap; file?: string; placement?: QdqPlacement; highPrecision?: HighPrecisionFp16; weightScales?: ReadonlyMap<string, Float32Array> } = {},
): MixedModelResult {
  return buildMixedPrecisionModel(model, {
    activationScales: scales,
    precisionMap: options.precisionMap,
    file: options.file,
    ...(options.placement ? { placement: options.placement } : {}),
    ...(options.highPrecision ? { highPrecision: options.highPrecision } : {}),
    ...(options.weightScales ? { weightScales: options.weightScales } : {}),
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
