/**
 * `quantize`: writes the explicit-quantization (Q/DQ) INT8 model, or an FP16 model, from an FP32 ONNX model.
 * Scales come from a calibration cache, or from calibrating on images first.
 */
import path from 'node:path';
import { scaleFromAmax } from '../cache/trt-cache.js';
import { isAlgorithmName } from '../calibrators/registry.js';
import type { AlgorithmName } from '../calibrators/types.js';
import { UserError } from '../errors.js';
import { checkModel } from '../onnx/check.js';
import { listActivations } from '../onnx/graph.js';
import { externalDataFiles, loadOnnxModel, modelSha256, writeOnnxModel, type OnnxModel } from '../onnx/model.js';
import { countPrecisions, precisionMapPath, type PrecisionMap } from '../precision/map.js';
import { withoutProtected, type ProtectedTensor } from '../precision/protect.js';
import { protectedForCache, protectionStatistics } from './protection.js';
import { silentReporter, type Reporter } from '../reporter.js';
import { prepareOutputs, type InputPath } from '../util/outputs.js';
import { searchModelWeightScales, type WeightSearchSummary } from './weight-search.js';
import { correctModelBiases, type BiasCorrectionMode, type BiasCorrectionSummary } from './bias-correction.js';
import { calibrate, DEFAULT_OUT_DIR, type DataOptions } from './calibrate.js';
import { highPrecisionOptions, statisticsForFp16, type HighPrecision } from './high-precision.js';
import type { LayerType } from '../onnx/autocast.js';
import type { TensorStatistics } from '../stats/types.js';
import { searchMixedPrecision, summarizeMixed, type MixedSummary } from './mixed.js';
import { buildFp16Variant, buildInt8Variant, checkCacheCoverage, describePartialCoverage, loadCacheFor, readPrecisionMapFor } from './variants.js';

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
   * ones out of INT8 until the drop against FP32 is at most maxDrop points of the task metric (`task`, default auto:
   * top-1 for a classifier, mAP for a detector...), write the precision map (precisionOut, default
   * <outDir>/<model>.precision.json) and quantize with it.
   */
  mixed?: { maxDrop: number; maxLayers?: string; precisionOut?: string; task?: import('../compare/task/index.js').TaskFlags };
  /** FP16 for TensorRT: a pure float16 graph (default: onnxruntime-runnable, see src/onnx/fp16.ts). */
  forTensorRT?: boolean;
  /**
   * Keep the tensors INT8 would destroy out of INT8 (default true; src/precision/protect.ts): no Q/DQ on them.
   * From a cache they are decided from the graph and the cache's ranges; when calibrating first, from the statistics.
   */
  protect?: boolean;
  /** Statistics for the protection decisions from a cache (default <outDir>/<model>.stats.msgpack when present). */
  stats?: string;
  /**
   * INT8: the type of the layers that are not INT8 (default fp32: a drop-in for onnxruntime). fp16: the strongly
   * typed INT8 + FP16 model TensorRT 11 builds as it is (src/onnx/autocast.ts), FP32 only where FP16 is not safe.
   */
  highPrecision?: HighPrecision;
  /** With highPrecision fp16: graph inputs and outputs in float16 too (default fp32, Casts at the boundary). */
  io?: 'fp32' | 'fp16';
  /** INT8: correct the biases of the INT8 layers on `data` (the calibration images; with or without `cache`). */
  biasCorrection?: boolean;
  /**
   * INT8: per output channel, the weight scale at or below max|W_c|/127 that minimises the layer's output error on
   * `data` (the calibration images): src/calibrators/weight-search.ts. Runs before the bias correction.
   */
  weightSearch?: boolean;
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
  /** Activations the INT8 layers read that the cache has no scale for (their consumers stay in float), protected ones apart. */
  missingScales: string[];
  /** Tensors kept out of INT8 (no Q/DQ), in topological order. */
  protected: ProtectedTensor[];
  opset?: { from: number; to: number; converted: string[] };
  precisionMap?: { file: string; int8: number; fp16: number; fp32: number };
  mixed?: MixedSummary;
  /** INT8 only: the type of the non-INT8 layers. */
  highPrecision?: HighPrecision;
  /** highPrecision fp16: layers by type then op, and what stayed FP32 and why. */
  layersByType?: Record<LayerType, Record<string, number>>;
  keptFp32?: { layers: Array<{ layer: string; op: string; reason: string }>; tensors: Array<{ tensor: string; reason: string }> };
  biasCorrection?: BiasCorrectionSummary;
  weightSearch?: WeightSearchSummary;
}

export function defaultVariantPath(modelFile: string, suffix: string, outDir = DEFAULT_OUT_DIR): string {
  return path.join(outDir, `${path.basename(modelFile).replace(/\.onnx$/i, '')}.${suffix}.onnx`);
}

export async function quantize(options: QuantizeOptions): Promise<QuantizeResult> {
  const reporter = options.reporter ?? silentReporter;
  if (options.precision === 'fp16') {
    if (options.cache || options.data) throw new UserError('--precision fp16 takes no calibration: drop --cache/--data.');
    if (options.highPrecision === 'fp16' || options.io === 'fp16') throw new UserError('--high-precision and --io shape the INT8 model; --precision fp16 writes FP16 throughout: drop them (or use --precision int8 --high-precision fp16).');
    const model = await loadOnnxModel(options.model);
    const out = options.out ?? defaultVariantPath(options.model, 'fp16', options.outDir);
    const outputs = prepareOutputs([{ path: out, option: options.out !== undefined ? '--out' : '--out-dir' }], modelInputs(options.model, model));
    const r = buildFp16Variant(model, { forTensorRT: options.forTensorRT, file: options.model });
    try {
      await writeChecked(out, r.model);
    } finally {
      outputs.release();
    }
    return { model: options.model, out, precision: 'fp16', fp16Layers: r.fp16Nodes.length, fp32Layers: r.float32Nodes.length, skipped: [], missingScales: [], protected: [] };
  }

  const highPrecision = options.highPrecision ?? 'fp32';
  if (options.io === 'fp16' && highPrecision !== 'fp16') throw new UserError('--io fp16 goes with --high-precision fp16 (an FP32 model keeps float32 inputs and outputs).');
  if (options.biasCorrection && options.mixed) throw new UserError('--bias-correction and --mixed auto cannot be combined yet: quantize with --bias-correction and a precision map (--precision-map).');
  if (options.weightSearch && options.mixed) throw new UserError('--weight-search and --mixed auto cannot be combined yet: quantize with --weight-search and a precision map (--precision-map).');
  if (options.weightSearch && !options.data) throw new UserError('--weight-search needs --data DIR: the calibration images the layers\' output error is measured on.');
  if (options.biasCorrection && !options.data) throw new UserError('--bias-correction needs --data DIR: the calibration images the shifts are measured on.');
  if (options.mixed) {
    if (!options.cache || !options.data) throw new UserError('--mixed auto needs --cache (the scales) and --data (the images the accuracy budget is measured on).');
    if (options.precisionMap) throw new UserError('--mixed auto writes its own precision map: drop --precision-map.');
  } else {
    if (options.cache && options.data && !options.biasCorrection && !options.weightSearch) throw new UserError('Give either --cache (scales from a cache) or --data (calibrate first), not both.');
    if (!options.cache && !options.data) throw new UserError('INT8 needs activation scales: pass --cache FILE, or --data DIR to calibrate first.');
  }
  const model = await loadOnnxModel(options.model);
  const activations = listActivations(model, { file: options.model }).map((a) => a.name);
  // From a cache, the statistics the FP16 range rules need are read before any long work.
  let fp16Statistics: readonly TensorStatistics[] | undefined;
  const defaultStats = path.join(options.outDir ?? DEFAULT_OUT_DIR, `${path.basename(options.model).replace(/\.onnx$/i, '')}.stats.msgpack`);
  if (highPrecision === 'fp16' && options.cache) fp16Statistics = await statisticsForFp16(options.stats ?? defaultStats, await modelSha256(options.model), options.model);
  let precisionMap: PrecisionMap | undefined;
  if (options.precisionMap) precisionMap = await readPrecisionMapFor(options.precisionMap, model, options.model);
  // The cache first (cheap): the default output's name has its algorithm, and every output is checked before the work.
  const loaded = options.cache ? await loadCacheFor(options.cache, activations, options.model) : undefined;
  // A cache that covers nothing is refused before any long work (the mixed-precision search).
  if (loaded && options.mixed) checkCacheCoverage(loaded, buildInt8Variant(model, loaded.scales, { file: options.model }), options.model);
  const algorithmName = loaded?.algorithm ?? options.algorithm ?? 'entropy2';
  if (!loaded && !isAlgorithmName(algorithmName)) throw new UserError(`Unknown --algo ${JSON.stringify(algorithmName)}.`);
  const kind = `${precisionMap || options.mixed ? 'mixed' : 'int8'}${highPrecision === 'fp16' ? '-fp16' : ''}`;
  const out = options.out ?? defaultVariantPath(options.model, `${algorithmName}${options.weightSearch ? '.ws' : ''}${options.biasCorrection ? '.bc' : ''}.${kind}`, options.outDir);
  const byDefault = (option: string, given: unknown) => (given !== undefined ? option : '--out-dir');
  const outputs = prepareOutputs(
    [
      { path: out, option: byDefault('--out', options.out) },
      ...(options.mixed ? [{ path: options.mixed.precisionOut ?? precisionMapPath(options.model, options.outDir ?? DEFAULT_OUT_DIR), option: byDefault('--precision-out', options.mixed.precisionOut) }] : []),
      // Calibrating first (--data without --cache) stores the statistics.
      ...(!options.cache ? [{ path: path.join(options.outDir ?? DEFAULT_OUT_DIR, `${path.basename(options.model).replace(/\.onnx$/i, '')}.stats.msgpack`), option: '--out-dir' }] : []),
    ],
    [
      ...modelInputs(options.model, model),
      ...(options.cache ? [{ path: options.cache, what: '--cache' }] : []),
      ...(options.precisionMap ? [{ path: options.precisionMap, what: '--precision-map' }] : []),
      ...(options.stats ? [{ path: options.stats, what: '--stats' }] : []),
    ],
  );
  try {
    return await quantizeInt8(options, { model, precisionMap, loaded, out, reporter, highPrecision, ...(fp16Statistics ? { fp16Statistics } : {}) });
  } finally {
    outputs.release();
  }
}

async function quantizeInt8(
  options: QuantizeOptions,
  prepared: {
    model: OnnxModel;
    precisionMap?: PrecisionMap;
    loaded?: Awaited<ReturnType<typeof loadCacheFor>>;
    out: string;
    reporter: Reporter;
    highPrecision: HighPrecision;
    /** From a cache: read before the work; when calibrating first, read after it. */
    fp16Statistics?: readonly TensorStatistics[];
  },
): Promise<QuantizeResult> {
  const { model, loaded, out, reporter, highPrecision } = prepared;
  let fp16Statistics = prepared.fp16Statistics;
  let precisionMap = prepared.precisionMap;
  let precisionMapFile = options.precisionMap;
  let mixed: MixedSummary | undefined;
  let scales: Map<string, number>;
  let algorithm: string;
  let missing: string[] = [];
  let protectedTensors: ProtectedTensor[] = [];
  if (loaded) {
    ({ scales, algorithm, missing } = loaded);
    if (options.protect !== false) {
      // A cache written with protection already lacks these tensors; one written with --no-protect has them.
      const statsFile = options.stats ?? path.join(options.outDir ?? DEFAULT_OUT_DIR, `${path.basename(options.model).replace(/\.onnx$/i, '')}.stats.msgpack`);
      const source = await protectionStatistics(statsFile, options.stats !== undefined, await modelSha256(options.model), options.model, reporter);
      protectedTensors = protectedForCache(model, loaded.scales, source, options.model);
      scales = withoutProtected(scales, protectedTensors);
      const isProtected = new Set(protectedTensors.map((p) => p.tensor));
      missing = missing.filter((m) => !isProtected.has(m));
    }
    if (options.mixed) {
      // With --high-precision fp16 every candidate is measured as the INT8 + FP16 model this command writes.
      const hp = fp16Statistics ? highPrecisionOptions(fp16Statistics, protectedTensors) : undefined;
      const r = await searchMixedPrecision({ model: options.model, cache: options.cache!, data: options.data!, outDir: options.outDir, threads: options.threads, reporter, ...options.mixed, ...(hp ? { highPrecision: hp } : {}) });
      precisionMap = r.mixed.map;
      precisionMapFile = r.mixed.written;
      mixed = summarizeMixed(r.mixed);
      if (!r.mixed.met) reporter.warn(`the budget of ${options.mixed.maxDrop} points cannot be met (${r.mixed.reason}); quantizing with the best map found`);
    }
  } else {
    const algo = (options.algorithm ?? 'entropy2') as AlgorithmName; // checked above
    // A Q/DQ model carries its scales itself: no TensorRT cache (and no TensorRT version) is needed.
    // r.amax leaves the protected tensors out, as a cache would.
    const r = await calibrate({ model: options.model, data: options.data, algorithms: [algo], writeCaches: false, outDir: options.outDir, threads: options.threads, protect: options.protect, reporter });
    scales = new Map(Object.entries(r.amax[algo]!).map(([name, amax]) => [name, scaleFromAmax(amax)]));
    protectedTensors = r.protected;
    algorithm = algo;
    if (highPrecision === 'fp16') fp16Statistics = await statisticsForFp16(r.statsFile, await modelSha256(options.model), options.model);
  }
  let corrected = model;
  let weightScales: ReadonlyMap<string, Float32Array> | undefined;
  let weightSearch: WeightSearchSummary | undefined;
  if (options.weightSearch) {
    const ws = await searchModelWeightScales({ modelFile: options.model, model, scales, data: options.data!, precisionMap, threads: options.threads, reporter });
    weightScales = ws.result.weightScales;
    weightSearch = ws.summary;
  }
  let biasCorrection: BiasCorrectionSummary | undefined;
  if (options.biasCorrection) {
    const bc = await correctModelBiases({ modelFile: options.model, model, scales, data: options.data!, precisionMap, ...(weightScales ? { weightScales } : {}), mode: options.biasCorrectionMode, threads: options.threads, reporter });
    corrected = bc.result.model;
    biasCorrection = bc.summary;
  }
  const hp = fp16Statistics ? highPrecisionOptions(fp16Statistics, protectedTensors, { ioFp16: options.io === 'fp16' }) : undefined;
  const r = buildInt8Variant(corrected, scales, { precisionMap, file: options.model, ...(hp ? { highPrecision: hp } : {}), ...(weightScales ? { weightScales } : {}) });
  if (loaded) {
    const coverage = checkCacheCoverage(loaded, r, options.model);
    const isProtected = new Set(protectedTensors.map((p) => p.tensor));
    missing = coverage.missing.filter((m) => !isProtected.has(m));
    const warning = describePartialCoverage({ ...coverage, missing }, options.model);
    if (warning) reporter.warn(warning);
  }
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
    protected: protectedTensors,
    opset: r.autocast ? { from: r.qdq.opset.from, to: r.autocast.opset.to, converted: [...r.qdq.opset.converted, ...r.autocast.opset.converted] } : r.qdq.opset,
    highPrecision,
    ...(r.autocast ? { layersByType: r.autocast.layersByType, keptFp32: { layers: r.autocast.fp32Layers, tensors: r.autocast.fp32Tensors } } : {}),
    ...(precisionMap && precisionMapFile ? { precisionMap: { file: precisionMapFile, int8: counts!.int8, fp16: counts!.fp16, fp32: counts!.fp32 } } : {}),
    ...(mixed ? { mixed } : {}),
    ...(biasCorrection ? { biasCorrection } : {}),
    ...(weightSearch ? { weightSearch } : {}),
  };
}

function modelInputs(file: string, model: OnnxModel): InputPath[] {
  return [{ path: file, what: '--model' }, ...externalDataFiles(model).map((f) => ({ path: f, what: 'the external data of --model' }))];
}

async function writeChecked(out: string, model: Awaited<ReturnType<typeof loadOnnxModel>>): Promise<void> {
  const problems = checkModel(model);
  // A structural problem here is our bug, not the user's: never write such a model.
  if (problems.length > 0) throw new Error(`the written model would be invalid: ${problems.slice(0, 5).join('; ')}`);
  await writeOnnxModel(out, model);
}
