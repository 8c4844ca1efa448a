/**
 * `quantize`: writes the explicit-quantization (Q/DQ) INT8 model, or an FP16 model, from an FP32 ONNX model.
 * Scales come from a calibration cache, or from calibrating on images first.
 */
import path from 'node:path';
import { scaleFromAmax } from '../cache/trt-cache.js';
import { isAlgorithmName } from '../calibrators/registry.js';
import { UserError } from '../errors.js';
import { checkModel } from '../onnx/check.js';
import { listActivations } from '../onnx/graph.js';
import { loadOnnxModel, writeOnnxModel } from '../onnx/model.js';
import { countPrecisions, type PrecisionMap } from '../precision/map.js';
import { silentReporter, type Reporter } from '../reporter.js';
import { correctModelBiases, type BiasCorrectionMode, type BiasCorrectionSummary } from './bias-correction.js';
import { calibrate, DEFAULT_OUT_DIR, type DataOptions } from './calibrate.js';
import { searchMixedPrecision, summarizeMixed, type MixedSummary } from './mixed.js';
import { buildFp16Variant, buildInt8Variant, loadCacheFor, readPrecisionMapFor } from './variants.js';

export interface QuantizeOptions {
  model: string;
  precision: 'int8' | 'fp16';
  /** INT8: the calibration cache with the activation scales. */
  cache?: string;
  /** INT8 without a cache: calibrate on these images first with `algorithm`. */
  data?: DataOptions;
  algorithm?: string;
  /** Layer -> int8|fp16|fp32 (a precision map file). */
  precisionMap?: string;
  /**
   * --mixed auto: rank the layers on `data` (evaluation images) with the cache's scales, keep the most sensitive
   * ones out of INT8 until the top-1 drop against FP32 is at most maxDrop points, write the precision map
   * (precisionOut, default <outDir>/<model>.precision.json) and quantize with it.
   */
  mixed?: { maxDrop: number; maxLayers?: string; precisionOut?: string };
  /** FP16 for TensorRT: a pure float16 graph (default: onnxruntime-runnable, see src/onnx/fp16.ts). */
  forTensorRT?: boolean;
  /** INT8: correct the biases of the INT8 layers on `data` (the calibration images; with or without `cache`). */
  biasCorrection?: boolean;
  /** full (default) or weights: see src/calibrators/bias-correction.ts. */
  biasCorrectionMode?: BiasCorrectionMode;
  out?: string;
  outDir?: string;
  threads?: number;
  reporter?: Reporter;
}

export interface QuantizeResult {
  model: string;
  out: string;
  precision: 'int8' | 'fp16';
  cache?: string;
  algorithm?: string;
  int8Layers?: number;
  fp16Layers?: number;
  fp32Layers?: number;
  quantizedTensors?: number;
  skipped: Array<{ node: string; op: string; reason: string }>;
  /** Activations the cache has no scale for (left unquantized). */
  missingScales: string[];
  opset?: { from: number; to: number; converted: string[] };
  precisionMap?: { file: string; int8: number; fp16: number; fp32: number };
  mixed?: MixedSummary;
  biasCorrection?: BiasCorrectionSummary;
}

export function defaultVariantPath(modelFile: string, suffix: string, outDir = DEFAULT_OUT_DIR): string {
  return path.join(outDir, `${path.basename(modelFile).replace(/\.onnx$/i, '')}.${suffix}.onnx`);
}

export async function quantize(options: QuantizeOptions): Promise<QuantizeResult> {
  const reporter = options.reporter ?? silentReporter;
  if (options.precision === 'fp16') {
    if (options.cache || options.data) throw new UserError('--precision fp16 takes no calibration: drop --cache/--data.');
    const model = await loadOnnxModel(options.model);
    const r = buildFp16Variant(model, { forTensorRT: options.forTensorRT, file: options.model });
    const out = options.out ?? defaultVariantPath(options.model, 'fp16', options.outDir);
    await writeChecked(out, r.model);
    return { model: options.model, out, precision: 'fp16', fp16Layers: r.fp16Nodes.length, fp32Layers: r.float32Nodes.length, skipped: [], missingScales: [] };
  }

  if (options.biasCorrection && options.mixed) throw new UserError('--bias-correction and --mixed auto cannot be combined yet: quantize with --bias-correction and a precision map (--precision-map).');
  if (options.biasCorrection && !options.data) throw new UserError('--bias-correction needs --data DIR: the calibration images the shifts are measured on.');
  if (options.mixed) {
    if (!options.cache || !options.data) throw new UserError('--mixed auto needs --cache (the scales) and --data (the images the accuracy budget is measured on).');
    if (options.precisionMap) throw new UserError('--mixed auto writes its own precision map: drop --precision-map.');
  } else {
    if (options.cache && options.data && !options.biasCorrection) throw new UserError('Give either --cache (scales from a cache) or --data (calibrate first), not both.');
    if (!options.cache && !options.data) throw new UserError('INT8 needs activation scales: pass --cache FILE, or --data DIR to calibrate first.');
  }
  const model = await loadOnnxModel(options.model);
  const activations = listActivations(model, { file: options.model }).map((a) => a.name);
  let precisionMap: PrecisionMap | undefined;
  let precisionMapFile = options.precisionMap;
  let mixed: MixedSummary | undefined;
  if (options.precisionMap) precisionMap = await readPrecisionMapFor(options.precisionMap, model, options.model);
  if (options.mixed) {
    const r = await searchMixedPrecision({ model: options.model, cache: options.cache!, data: options.data!, outDir: options.outDir, threads: options.threads, reporter, ...options.mixed });
    precisionMap = r.mixed.map;
    precisionMapFile = r.mixed.written;
    mixed = summarizeMixed(r.mixed);
    if (!r.mixed.met) reporter.warn(`the budget of ${options.mixed.maxDrop} points cannot be met (${r.mixed.reason}); quantizing with the best map found`);
  }

  let scales: Map<string, number>;
  let algorithm: string;
  let missing: string[] = [];
  if (options.cache) {
    const loaded = await loadCacheFor(options.cache, activations, options.model);
    ({ scales, algorithm, missing } = loaded);
    if (missing.length > 0) {
      reporter.warn(`${options.cache} has no scale for ${missing.length} activation(s) of ${options.model} (e.g. ${missing.slice(0, 3).join(', ')}): their consumers stay in float.`);
    }
  } else {
    const algo = options.algorithm ?? 'entropy2';
    if (!isAlgorithmName(algo)) throw new UserError(`Unknown --algo ${JSON.stringify(algo)}.`);
    // A Q/DQ model carries its scales itself: no TensorRT cache (and no TensorRT version) is needed.
    const r = await calibrate({ model: options.model, data: options.data, algorithms: [algo], writeCaches: false, outDir: options.outDir, threads: options.threads, reporter });
    scales = new Map(Object.entries(r.amax[algo]!).map(([name, amax]) => [name, scaleFromAmax(amax)]));
    algorithm = algo;
  }
  let corrected = model;
  let biasCorrection: BiasCorrectionSummary | undefined;
  if (options.biasCorrection) {
    const bc = await correctModelBiases({ modelFile: options.model, model, scales, data: options.data!, precisionMap, mode: options.biasCorrectionMode, threads: options.threads, reporter });
    corrected = bc.result.model;
    biasCorrection = bc.summary;
  }
  const r = buildInt8Variant(corrected, scales, { precisionMap, file: options.model });
  const out = options.out ?? defaultVariantPath(options.model, `${algorithm}${options.biasCorrection ? '.bc' : ''}${precisionMap ? '.mixed' : '.int8'}`, options.outDir);
  await writeChecked(out, r.model);
  const counts = precisionMap ? countPrecisions(precisionMap) : undefined;
  return {
    model: options.model,
    out,
    precision: 'int8',
    ...(options.cache ? { cache: options.cache } : {}),
    algorithm,
    int8Layers: r.int8Layers.length,
    fp16Layers: r.fp16Layers.length,
    fp32Layers: r.fp32Layers.length,
    quantizedTensors: r.qdq.quantizedTensors.length,
    skipped: r.qdq.skipped,
    missingScales: missing,
    opset: r.qdq.opset,
    ...(precisionMap && precisionMapFile ? { precisionMap: { file: precisionMapFile, int8: counts!.int8, fp16: counts!.fp16, fp32: counts!.fp32 } } : {}),
    ...(mixed ? { mixed } : {}),
    ...(biasCorrection ? { biasCorrection } : {}),
  };
}

async function writeChecked(out: string, model: Awaited<ReturnType<typeof loadOnnxModel>>): Promise<void> {
  const problems = checkModel(model);
  // A structural problem here is our bug, not the user's: never write such a model.
  if (problems.length > 0) throw new Error(`the written model would be invalid: ${problems.slice(0, 5).join('; ')}`);
  await writeOnnxModel(out, model);
}
