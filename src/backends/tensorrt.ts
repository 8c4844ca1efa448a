/**
 * TensorRT through the native bridge (native/src/tensorrt, built only where TensorRT was found):
 *
 * - calibrationFeed(): turns the batches of a Dataset (or any async iterable of batches) into the nextBatch()
 *   answers the native batch feeder asks for from TensorRT's builder thread (IInt8Calibrator::getBatch).
 * - buildEngine(): ONNX -> serialized engine, written atomically: INT8 from a calibration cache (ours or
 *   TensorRT's; handed to TensorRT as opaque bytes, as Polygraphy does) or from TensorRT's own calibrator fed with
 *   images, FP16, per-layer precisions from the precision map, workspace, timing cache, optimization profile.
 *   TensorRT 11 has no implicit quantization: there, the model must be the Q/DQ ONNX from `trt-calib quantize`.
 * - tensorrtBackend(): the Backend interface (src/backends/types.ts) over engines run with enqueueV3, so that
 *   `compare` can measure real TensorRT engines.
 *
 * Fixed batches: TensorRT calibrates on the one shape of the calibration profile, so every batch has exactly the
 * dataset's batch size. The dataset's last, partial batch is dropped rather than padded: padding would repeat
 * images and weigh them twice in the activation histograms, which biases the scales; dropping only loses a few
 * images, and the result says how many (choose a --batch that divides the image count to use them all).
 */
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { parseCalibrationCache } from '../cache/trt-cache.js';
import { decodeTrtVersion, formatTrtVersion } from '../cache/trt-version.js';
import type { Batch, Dataset } from '../datasets/types.js';
import { parseShapes } from '../datasets/shapes.js';
import { UserError, invalidParameter } from '../errors.js';
import { tensorrtBridge } from '../native.js';
import { silentReporter, type Reporter } from '../reporter.js';
import { DTYPES, type DType, type Tensor, elementCount } from '../tensor.js';
import { READ_LIMITS, readUserFile, writeFileAtomic } from '../util/fs.js';
import { prepareOutputs } from '../util/outputs.js';
import { newTemporaryFolder, removeTemporaryFolder } from '../util/run-temp.js';
import { readPrecisionMap, type LayerPrecision } from '../precision/map.js';
import { usesFloat16 } from '../onnx/autocast.js';
import { loadOnnxModel } from '../onnx/model.js';
import { findTensorRTInstall, type TensorRTDetection } from '../util/tensorrt-install.js';
import type {
  FeederCallbacks,
  TensorRTBinding,
  TrtBuildOptions,
  TrtBuildResult,
  TrtCalibrationAlgorithm,
  TrtEngineHandle,
  TrtEngineIo,
  TrtInfo,
  TrtLayerDesc,
  TrtNetworkDesc,
  TrtTensorDesc,
} from './tensorrt-native.js';
import type { Backend, Session, SessionOptions, TensorInfo } from './types.js';

export type { TrtCalibrationAlgorithm, TrtNetworkDesc, TrtLayerDesc, TrtTensorDesc } from './tensorrt-native.js';

// ---------------------------------------------------------------------------------------------- availability

export type { TensorRTDetection } from '../util/tensorrt-install.js';

/** Runs the same detection as the native build (native/find-tensorrt.js), now. */
export async function detectTensorRTInstall(env: NodeJS.ProcessEnv = process.env): Promise<TensorRTDetection> {
  return findTensorRTInstall(env);
}

/** The bridge, or a UserError that says why it is missing and how to get it (`trt-calib build` exits 1 with it). */
export async function requireTensorRT(): Promise<TensorRTBinding> {
  const status = tensorrtBridge();
  if (status.state === 'loaded') return status.binding;
  if (status.state === 'load-failed') {
    throw new UserError(`The TensorRT bridge (${status.path}) was built but failed to load: ${status.error}`, {
      hint:
        'libnvinfer, libnvonnxparser and libcudart must be found at run time (LD_LIBRARY_PATH on Linux, PATH on Windows) ' +
        'and be the TensorRT the bridge was built against; after changing TensorRT, rebuild with `npm run build:native`. ' +
        '`trt-calib doctor` shows what is installed.',
    });
  }
  const detection = await detectTensorRTInstall().catch(() => undefined);
  if (detection?.found) {
    throw new UserError(
      `The TensorRT bridge is not built, although TensorRT ${detection.versionString} is installed now (${detection.headers}).`,
      { hint: 'Build the bridge for it: `npx trt-calib build-bridge` (or `npm run build:native` in a clone of trt-calib).' },
    );
  }
  throw new UserError(
    'The TensorRT bridge is not built (TensorRT was not found when the native addon was built' +
      `${detection?.reason ? `; now: ${detection.reason}` : ''}), so engines cannot be built here. Everything else works: ` +
      '`trt-calib calibrate` writes caches TensorRT reads, `trt-calib quantize` writes Q/DQ ONNX.',
    {
      hint:
        (detection?.hint ??
          'Install TensorRT (8.6 or newer, with headers) and CUDA, set TENSORRT_ROOT and CUDA_HOME, then run `npm run build:native`.') +
        ' `trt-calib doctor` shows what was found.',
    },
  );
}

/** "10.3.0" from getInferLibVersion()'s number (100300; 8601 for 8.6.1). */
export function formatTensorRTLibraryVersion(encoded: number): string {
  try {
    return formatTrtVersion(decodeTrtVersion(encoded));
  } catch {
    return String(encoded);
  }
}

// ---------------------------------------------------------------------------------------------- feeding

/** A batch as a Dataset yields it; `partial` marks the last, short one. */
export type BatchLike = Pick<Batch, 'data' | 'dims'> & Partial<Pick<Batch, 'partial' | 'files'>>;

export interface CalibrationFeedStats {
  /** Batches handed to the native feeder. */
  batches: number;
  images: number;
  /** Images of a partial last batch, not used (see the file comment). */
  droppedImages: number;
}

export interface CalibrationFeed {
  /** Give these to the native side (buildEngine / feederSelfTest). */
  readonly callbacks: Required<Pick<FeederCallbacks, 'nextBatch'>>;
  readonly stats: CalibrationFeedStats;
  /** Ends the source's iteration early (stops decoding ahead); safe to call more than once. */
  close(): Promise<void>;
}

/**
 * Feeds fixed-size batches of `batchDims` (N first) from `source` to the native feeder, one per nextBatch() call.
 * A short batch (fewer than N images, the dataset's last) is dropped and counted; any other shape is a UserError.
 * `onBatch` is called after each batch handed over (progress).
 */
export function calibrationFeed(
  source: AsyncIterable<BatchLike>,
  batchDims: readonly number[],
  options: { inputName?: string; onBatch?: (stats: CalibrationFeedStats) => void; onEnd?: (stats: CalibrationFeedStats) => void } = {},
): CalibrationFeed {
  if (batchDims.length < 1 || batchDims.some((d) => !Number.isInteger(d) || d < 1)) {
    throw invalidParameter('batchDims', 'positive integer dims, batch first', batchDims);
  }
  const perBatch = elementCount(batchDims);
  const perImage = perBatch / batchDims[0]!;
  const imageShape = batchDims.slice(1).join('x');
  const stats: CalibrationFeedStats = { batches: 0, images: 0, droppedImages: 0 };
  let iterator: AsyncIterator<BatchLike> | undefined;
  let finished = false;
  let pulling = false; // a next() of the source is in flight
  const name = options.inputName ? ` for input ${JSON.stringify(options.inputName)}` : '';

  const close = async () => {
    if (finished) return;
    finished = true;
    const closing = iterator?.return?.();
    // An async generator handles return() only once its pending next() settles: after a cancel while a decode
    // hangs, that may be never, so do not wait for it then.
    if (pulling) closing?.catch(() => {});
    else await closing;
  };

  const nextBatch = async (): Promise<Float32Array | null> => {
    if (finished) return null;
    iterator ??= source[Symbol.asyncIterator]();
    for (;;) {
      pulling = true;
      const step = await iterator.next().finally(() => {
        pulling = false;
      });
      if (step.done) {
        finished = true;
        options.onEnd?.(stats);
        return null;
      }
      const batch = step.value;
      const n = batch.dims[0] ?? 0;
      if (batch.dims.slice(1).join('x') !== imageShape || batch.data.length !== n * perImage) {
        throw new UserError(
          `A calibration batch${name} has shape ${batch.dims.join('x')} but TensorRT calibrates on ${batchDims.join('x')} ` +
            `(images of ${imageShape}).`,
          { hint: 'The preprocessing must produce the model input\'s shape: check --size, --layout and --shapes.' },
        );
      }
      if (n < batchDims[0]! || batch.partial) {
        stats.droppedImages += n;
        continue; // the last, short batch: see the file comment
      }
      if (n > batchDims[0]!) {
        throw new UserError(`A calibration batch${name} holds ${n} images but TensorRT calibrates on batches of ${batchDims[0]}.`);
      }
      stats.batches += 1;
      stats.images += n;
      options.onBatch?.(stats);
      return batch.data;
    }
  };
  return { callbacks: { nextBatch }, stats, close };
}

// ---------------------------------------------------------------------------------------------- precision map

/** ONNX node -> precision: the precision map of src/precision/map.ts (read and parsed there). */
export type LayerPrecisionName = LayerPrecision;

/** TensorRT layers that carry no arithmetic: a precision constraint on them means nothing (and can fail a build). */
const UNCONSTRAINED_LAYER_TYPES = new Set(['Constant', 'Shape']);

/**
 * Maps the precision map's ONNX node names onto TensorRT layers. A node's layers are those whose parser
 * metadata names it ("[ONNX Layer: <node>]", TensorRT 10), else those named like it (the ONNX parser names layers
 * after their node, adding "_N" for the second and later ones); an unnamed node "Op:out" is "node_of_out" there.
 * Only fp16/fp32 entries become constraints: "int8" is what implicit quantization already picks wherever TensorRT
 * has an INT8 kernel and a scale, and forcing it where it has none would only fail the build.
 * Throws a UserError naming the entries that match no layer.
 */
export function resolvePrecisionMap(
  map: ReadonlyMap<string, LayerPrecisionName>,
  layers: readonly TrtLayerDesc[],
  source = 'precision map',
): Array<{ layer: string; precision: 'fp16' | 'fp32'; node: string }> {
  const byNode = new Map<string, TrtLayerDesc[]>();
  const add = (key: string, layer: TrtLayerDesc) => {
    const list = byNode.get(key);
    if (list) list.push(layer);
    else byNode.set(key, [layer]);
  };
  for (const layer of layers) {
    if (layer.onnxNode !== null) {
      add(layer.onnxNode, layer);
    } else {
      add(layer.name, layer);
      const m = /^(.*)_\d+$/.exec(layer.name);
      if (m) add(m[1]!, layer);
    }
  }
  const out: Array<{ layer: string; precision: 'fp16' | 'fp32'; node: string }> = [];
  const unmatched: string[] = [];
  for (const [node, precision] of map) {
    const unnamed = /^[A-Za-z][A-Za-z0-9]*:(.+)$/.exec(node);
    const found = byNode.get(node) ?? (unnamed ? byNode.get(`node_of_${unnamed[1]}`) : undefined);
    if (!found) {
      unmatched.push(node);
      continue;
    }
    if (precision === 'int8') continue;
    for (const layer of found) {
      if (!UNCONSTRAINED_LAYER_TYPES.has(layer.type)) out.push({ layer: layer.name, precision, node });
    }
  }
  if (unmatched.length > 0) {
    const sample = layers.filter((l) => !UNCONSTRAINED_LAYER_TYPES.has(l.type)).slice(0, 3).map((l) => JSON.stringify(l.onnxNode ?? l.name));
    throw new UserError(
      `${source} names ${unmatched.length} node(s) that the model has no layer for: ${unmatched.slice(0, 5).map((n) => JSON.stringify(n)).join(', ')}` +
        `${unmatched.length > 5 ? ', ...' : ''}.`,
      { hint: `Keys are the model's ONNX node names (e.g. ${sample.join(', ')}); was the map made for another model?` },
    );
  }
  out.sort((a, b) => (a.layer < b.layer ? -1 : a.layer > b.layer ? 1 : 0));
  return out;
}

// ---------------------------------------------------------------------------------------------- shapes

export interface ShapeOptions {
  /** trtexec --shapes: one fixed shape per input (min = opt = max). */
  fixed?: string;
  min?: string;
  opt?: string;
  max?: string;
}

export interface ProfileEntry {
  input: string;
  min: number[];
  opt: number[];
  max: number[];
}

/**
 * The optimization profile: min/opt/max for every input with a dynamic dim, from --min/--opt/--max-shapes (all
 * three), else --shapes, else the calibration batch shape for the calibrated input. Shapes must have the input's
 * rank, agree with its static dims and satisfy min <= opt <= max.
 */
export function resolveProfile(inputs: readonly TrtTensorDesc[], shapes: ShapeOptions = {}, calibration?: { input: string; dims: readonly number[] }): ProfileEntry[] {
  const parse = (spec: string | undefined, option: string): Map<string, number[]> | undefined => {
    if (spec === undefined) return undefined;
    const parsed = parseShapes(spec);
    for (const name of parsed.keys()) {
      if (!inputs.some((i) => i.name === name)) {
        throw new UserError(`${option} names ${JSON.stringify(name)}, which is not an input of the model (inputs: ${inputs.map((i) => JSON.stringify(i.name)).join(', ')}).`);
      }
    }
    return parsed;
  };
  const fixed = parse(shapes.fixed, '--shapes');
  const min = parse(shapes.min, '--min-shapes');
  const opt = parse(shapes.opt, '--opt-shapes');
  const max = parse(shapes.max, '--max-shapes');
  const profile: ProfileEntry[] = [];
  for (const input of inputs) {
    const dynamic = input.dims.some((d) => d < 0);
    const ranged = [min?.get(input.name), opt?.get(input.name), max?.get(input.name)];
    const given = ranged.filter((d) => d !== undefined).length;
    let entry: ProfileEntry | undefined;
    if (given > 0) {
      if (given < 3) {
        throw new UserError(`Input ${JSON.stringify(input.name)} needs all three of --min-shapes, --opt-shapes and --max-shapes (or one --shapes).`);
      }
      entry = { input: input.name, min: ranged[0]!, opt: ranged[1]!, max: ranged[2]! };
    } else if (fixed?.has(input.name)) {
      const d = fixed.get(input.name)!;
      entry = { input: input.name, min: d, opt: d, max: d };
    } else if (dynamic && calibration?.input === input.name) {
      const d = [...calibration.dims];
      entry = { input: input.name, min: d, opt: d, max: d };
    } else if (dynamic) {
      throw new UserError(`Input ${JSON.stringify(input.name)} has dynamic dims [${input.dims.join(', ')}], so the engine needs shapes for it.`, {
        hint: `Give --shapes ${input.name}:${input.dims.map((d) => (d < 0 ? 'N' : d)).join('x')} with N filled in, or --min-shapes/--opt-shapes/--max-shapes for a range.`,
      });
    }
    if (!entry) continue;
    for (const [which, dims] of [['min', entry.min], ['opt', entry.opt], ['max', entry.max]] as const) {
      if (dims.length !== input.dims.length) {
        throw new UserError(`The ${which} shape ${dims.join('x')} of input ${JSON.stringify(input.name)} has ${dims.length} dims; the input has ${input.dims.length} ([${input.dims.join(', ')}]).`);
      }
      dims.forEach((d, i) => {
        const fixedDim = input.dims[i]!;
        if (fixedDim >= 0 && d !== fixedDim) {
          throw new UserError(`The ${which} shape ${dims.join('x')} of input ${JSON.stringify(input.name)} disagrees with its fixed dim ${i} (${fixedDim}).`);
        }
      });
    }
    entry.min.forEach((d, i) => {
      if (d > entry.opt[i]! || entry.opt[i]! > entry.max[i]!) {
        throw new UserError(`Shapes of input ${JSON.stringify(input.name)} must satisfy min <= opt <= max in every dim: min ${entry.min.join('x')}, opt ${entry.opt.join('x')}, max ${entry.max.join('x')}.`);
      }
    });
    if (dynamic || given > 0 || fixed?.has(input.name)) profile.push(entry);
  }
  return profile;
}

// ---------------------------------------------------------------------------------------------- engine build

/** TensorRT's calibrators by --algo, with the algorithm name TensorRT writes in their cache header. */
export const TRT_CALIBRATION_ALGORITHMS: Readonly<Record<TrtCalibrationAlgorithm, { cacheName: string; description: string }>> = {
  entropy2: { cacheName: 'EntropyCalibration2', description: 'IInt8EntropyCalibrator2: TensorRT\'s default (and DLA\'s only) calibrator' },
  entropy: { cacheName: 'EntropyCalibration', description: 'IInt8EntropyCalibrator: the legacy entropy calibrator' },
  minmax: { cacheName: 'MinMaxCalibration', description: 'IInt8MinMaxCalibrator: the whole range of each activation' },
  legacy: { cacheName: 'LegacyCalibration', description: 'IInt8LegacyCalibrator: quantile / regression cutoff' },
};

export const TRT_CALIBRATION_ALGORITHM_NAMES = Object.keys(TRT_CALIBRATION_ALGORITHMS) as TrtCalibrationAlgorithm[];

export interface EngineBuildOptions {
  /** ONNX model. */
  model: string;
  /** Engine file, written atomically. */
  out: string;
  int8?: boolean;
  fp16?: boolean;
  /** Strongly typed network (TensorRT 9-10; always on in 11): types come from the model (Q/DQ, casts). */
  stronglyTyped?: boolean;
  /** A calibration cache (ours from `calibrate`, or TensorRT's): TensorRT reads its scales and skips calibration. */
  cache?: string;
  /** Calibrate with TensorRT's own calibrator on these images: a Dataset for the model input it is given. */
  calibrationData?: (input: { name: string; dims: Array<number | string> }) => Promise<Dataset>;
  algorithm?: TrtCalibrationAlgorithm;
  /** legacy: quantile and regression cutoff (TensorRT's defaults in Polygraphy: 0.5 and 0.5). */
  quantile?: number;
  regressionCutoff?: number;
  /** Where the cache TensorRT writes after calibrating goes (default calib-cache/<model>.tensorrt-<algo>.cache). */
  cacheOut?: string;
  /** A precision map file or its content: ONNX node -> int8 | fp16 | fp32. */
  precisionMap?: string | ReadonlyMap<string, LayerPrecisionName>;
  precisionConstraints?: 'obey' | 'prefer';
  workspaceMiB?: number;
  /** Timing cache file: read if it exists, written back (atomically) after the build. */
  timingCache?: string;
  shapes?: ShapeOptions;
  device?: number;
  logLevel?: 'error' | 'warning' | 'info' | 'verbose';
  reporter?: Reporter;
  signal?: AbortSignal;
  /** The native bridge to use (default: the built one, or a UserError saying how to build it). For tests and embedders. */
  bridge?: TensorRTBinding;
}

export interface EngineBuildResult {
  out: string;
  bytes: number;
  seconds: number;
  /** The TensorRT the bridge was compiled against, and the libnvinfer it runs with. */
  tensorrt: { compiledAgainst: string; library: string };
  precision: { int8: boolean; fp16: boolean; stronglyTyped: boolean; qdqLayers: number; layerConstraints: number };
  calibration:
    | { mode: 'none' }
    | { mode: 'cache'; cache: string; algorithm: string; entries: number; bytes: number }
    | {
        mode: 'calibrated';
        algorithm: TrtCalibrationAlgorithm;
        batches: number;
        images: number;
        droppedImages: number;
        batchDims: number[];
        /** The cache TensorRT wrote, and how many tensors it holds. */
        cacheOut?: string;
        cacheTensors?: number;
      }
    | { mode: 'qdq' };
  profile: ProfileEntry[];
  timingCache?: string;
  warnings: string[];
}

const CACHE_ALGORITHM_TO_TRT: Record<string, TrtCalibrationAlgorithm> = {
  EntropyCalibration2: 'entropy2',
  EntropyCalibration: 'entropy',
  MinMaxCalibration: 'minmax',
  LegacyCalibration: 'legacy',
};

export const DEFAULT_CACHE_DIR = 'calib-cache';

function modelStem(model: string): string {
  return path.basename(model).replace(/\.onnx$/i, '');
}

/** Builds an engine and writes it atomically to options.out. */
export async function buildEngine(options: EngineBuildOptions): Promise<EngineBuildResult> {
  // Before the build: no output is an input, every output folder can be written, and is this run's.
  const cacheOut = options.calibrationData ? (options.cacheOut ?? path.join(DEFAULT_CACHE_DIR, `${modelStem(options.model)}.tensorrt-${options.algorithm ?? 'entropy2'}.cache`)) : undefined;
  const outputs = prepareOutputs(
    [
      { path: options.out, option: '--out' },
      ...(cacheOut ? [{ path: cacheOut, option: options.cacheOut !== undefined ? '--cache-out' : 'the default --cache-out' }] : []),
      // Read and written back on purpose: an output only.
      ...(options.timingCache !== undefined ? [{ path: options.timingCache, option: '--timing-cache' }] : []),
    ],
    [
      { path: options.model, what: '--model' },
      ...(options.cache !== undefined ? [{ path: options.cache, what: '--cache' }] : []),
      ...(typeof options.precisionMap === 'string' ? [{ path: options.precisionMap, what: '--precision-map' }] : []),
    ],
  );
  try {
    const built = await buildEngineBytes(options);
    await writeFileAtomic(options.out, built.engine);
    return { ...built.result, out: options.out, bytes: built.engine.byteLength };
  } finally {
    outputs.release();
  }
}

interface BuiltEngine {
  engine: Buffer;
  result: Omit<EngineBuildResult, 'out' | 'bytes'>;
  /** The network as parsed, before extra outputs were marked. */
  network: TrtNetworkDesc;
}

/** The build without the final write: the engine bytes (the TensorRT backend keeps them in memory). */
export async function buildEngineBytes(options: Omit<EngineBuildOptions, 'out'> & { out?: string; markOutputs?: readonly string[] }): Promise<BuiltEngine> {
  const reporter = options.reporter ?? silentReporter;
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    reporter.warn(message);
  };
  if (options.cache !== undefined && options.calibrationData !== undefined) {
    throw new UserError('--cache and --data both give INT8 scales: use one (a cache from `trt-calib calibrate`, or images for TensorRT\'s calibrator).');
  }
  const algorithm = options.algorithm ?? 'entropy2';
  if (!TRT_CALIBRATION_ALGORITHM_NAMES.includes(algorithm)) {
    throw new UserError(`--algo ${JSON.stringify(algorithm)} is not a TensorRT calibrator: expected ${TRT_CALIBRATION_ALGORITHM_NAMES.join(', ')}.`, {
      hint: 'Other algorithms (percentile, mse) run in trt-calib itself: `trt-calib calibrate --algo percentile` writes a cache, then `trt-calib build --cache <it>`.',
    });
  }
  if (options.workspaceMiB !== undefined && (!Number.isFinite(options.workspaceMiB) || options.workspaceMiB <= 0)) {
    throw invalidParameter('--workspace', 'a positive number of MiB', options.workspaceMiB);
  }
  if (!existsSync(options.model)) throw new UserError(`The model ${options.model} does not exist.`, { hint: 'Check the --model path.' });

  const binding = options.bridge ?? (await requireTensorRT());
  const info: TrtInfo = binding.tensorrtInfo();
  const library = formatTensorRTLibraryVersion(info.libraryVersion);
  const implicit = info.implicitQuantization;
  const int8 = options.int8 ?? false;
  let fp16 = options.fp16 ?? false;
  const stronglyTyped = options.stronglyTyped ?? false;

  reporter.info(`TensorRT ${library} (bridge compiled against ${info.compiledAgainst})`);
  const network = await settleNative(binding.inspectOnnx({ model: options.model, stronglyTyped }, {}), options.signal, `TensorRT could not parse ${options.model}`);
  const qdq = network.qdqLayers > 0;

  // Where INT8 comes from, by TensorRT generation and model kind.
  let mode: 'none' | 'cache' | 'calibrated' | 'qdq' = 'none';
  // TensorRT 11, and strongly typed networks on 9-10: every type comes from the model (Q/DQ nodes, casts).
  const typedByModel = !implicit || stronglyTyped;
  const why = implicit ? 'a strongly typed network takes every type from the model' : `TensorRT ${library} has no implicit quantization`;
  if (typedByModel) {
    if (options.cache !== undefined || options.calibrationData !== undefined || options.precisionMap !== undefined) {
      throw new UserError(`${why} (no calibrators, caches or per-layer precisions): INT8 and FP16 come from the model itself.`, {
        hint: 'Make the INT8 + FP16 model with `trt-calib quantize --model m.onnx --cache C --stats S --high-precision fp16 [--precision-map P]` and build that: `trt-calib build --model m.int8-fp16.onnx --out m.engine`.',
      });
    }
    if (int8 && !qdq) {
      throw new UserError(`${options.model} has no QuantizeLinear/DequantizeLinear nodes, and ${why}: INT8 engines come only from such a model.`, {
        hint: 'Run `trt-calib quantize` first and build the Q/DQ model it writes.',
      });
    }
    if (fp16) warn(`--fp16 has no effect here (${why}): FP16 comes from the model's types (trt-calib quantize --high-precision fp16).`);
    if (qdq) mode = 'qdq';
    // The INT8 model with a float32 rest builds, but every layer without Q/DQ then runs in FP32: slower than FP16.
    if (qdq && !usesFloat16(await loadOnnxModel(options.model))) {
      warn(`${options.model} has Q/DQ but no float16: ${why}, so every layer that is not INT8 runs in FP32. For INT8 + FP16, write the model with \`trt-calib quantize --high-precision fp16\`.`);
    }
    fp16 = false;
  } else if (qdq) {
    mode = 'qdq';
    if (options.cache !== undefined || options.calibrationData !== undefined) {
      warn(`${options.model} is explicitly quantized (${network.qdqLayers} Q/DQ layers): TensorRT takes its scales from the model and ignores calibration; --cache/--data are not used.`);
    }
    if (!int8) warn('the model has Q/DQ nodes but --int8 was not given: TensorRT needs the INT8 flag to use them (add --int8).');
    // An INT8 + FP16 model (quantize --high-precision fp16) on a weakly typed network: the builder may still pick
    // FP32 for its float16 layers unless FP16 is allowed; --strongly-typed (TensorRT 9-10) keeps the model's types.
    if (!fp16 && usesFloat16(await loadOnnxModel(options.model))) {
      warn(`${options.model} is an INT8 + FP16 model: add --strongly-typed (TensorRT 9-10) to build it with its own types, or --fp16 to let FP16 kernels run.`);
    }
  } else if (options.cache !== undefined || options.calibrationData !== undefined) {
    if (!int8) throw new UserError('--cache and --data give INT8 scales, but --int8 was not given.', { hint: 'Add --int8.' });
    mode = options.cache !== undefined ? 'cache' : 'calibrated';
  } else if (int8) {
    throw new UserError('--int8 needs scales: give --cache C (from `trt-calib calibrate`) or --data DIR (TensorRT\'s calibrator on those images).', {
      hint: 'Or build the Q/DQ model from `trt-calib quantize`.',
    });
  }

  // Per-layer precisions.
  let layerPrecisions: Array<{ layer: string; precision: 'fp16' | 'fp32' }> = [];
  if (options.precisionMap !== undefined) {
    const source = typeof options.precisionMap === 'string' ? options.precisionMap : 'precision map';
    const map = typeof options.precisionMap === 'string' ? await readPrecisionMap(options.precisionMap) : options.precisionMap;
    layerPrecisions = resolvePrecisionMap(map, network.layers, source).map(({ layer, precision }) => ({ layer, precision }));
    if (layerPrecisions.some((l) => l.precision === 'fp16') && !fp16) {
      fp16 = true;
      reporter.info('FP16 enabled: the precision map keeps layers in FP16.');
    }
  }

  // Calibration input and cache.
  let calibration: TrtBuildOptions['calibration'];
  let cacheBytes: Uint8Array | undefined;
  let cacheInfo: { algorithm: string; entries: number } | undefined;
  let dataset: Dataset | undefined;
  let batchDims: number[] | undefined;
  if (mode === 'cache' || mode === 'calibrated') {
    if (network.inputs.length !== 1) {
      throw new UserError(`${options.model} has ${network.inputs.length} inputs; TensorRT's calibrator here feeds one image input.`, {
        hint: 'Calibrate such a model through a Q/DQ model (`trt-calib quantize`) instead.',
      });
    }
    const input = network.inputs[0]!;
    if (mode === 'calibrated') {
      dataset = await options.calibrationData!({ name: input.name, dims: input.dims.map((d) => (d < 0 ? '?' : d)) });
      batchDims = [dataset.batchSize, ...dataset.imageDims];
      if (batchDims.length !== input.dims.length || input.dims.some((d, i) => d >= 0 && d !== batchDims![i])) {
        throw new UserError(`The images give batches of ${batchDims.join('x')} but the input ${JSON.stringify(input.name)} is [${input.dims.join(', ')}].`, {
          hint: 'Match the model input with --batch, --size, --layout or --shapes.',
        });
      }
      if (dataset.size < dataset.batchSize) {
        throw new UserError(`Only ${dataset.size} image(s) were found, fewer than one batch of ${dataset.batchSize}: TensorRT calibrates on full batches.`, {
          hint: 'Use more images or a smaller --batch.',
        });
      }
      calibration = { input: input.name, dims: batchDims, algorithm, quantile: options.quantile, regressionCutoff: options.regressionCutoff };
    } else {
      cacheBytes = await readUserFile(options.cache!, 'The calibration cache', READ_LIMITS.calibrationCache);
      const parsed = parseCalibrationCache(cacheBytes, options.cache!);
      const cacheAlgorithm = CACHE_ALGORITHM_TO_TRT[parsed.algorithm];
      if (!cacheAlgorithm) {
        throw new UserError(`${options.cache} was written for the algorithm "${parsed.algorithm}", which no TensorRT calibrator reads.`, {
          hint: `TensorRT's calibrators read ${Object.keys(CACHE_ALGORITHM_TO_TRT).join(', ')} caches; rewrite it with \`trt-calib calibrate --cache-algorithm EntropyCalibration2\`.`,
        });
      }
      if (parsed.trtVersion !== info.libraryVersion) {
        throw new UserError(
          `${options.cache} is for TensorRT ${formatTensorRTLibraryVersion(parsed.trtVersion)} (header TRT-${parsed.trtVersion}-${parsed.algorithm}) ` +
            `but this TensorRT is ${library} (${info.libraryVersion}): TensorRT would ignore the cache and ask for images to calibrate.`,
          { hint: `Write the cache for this TensorRT: \`trt-calib calibrate ... --trt-version ${library}\` (or --from-stats to skip the model run).` },
        );
      }
      cacheInfo = { algorithm: parsed.algorithm, entries: parsed.entries.length };
      // The feeder needs a shape even though TensorRT, given a cache it accepts, asks for no batch.
      const dims = input.dims.some((d) => d < 0)
        ? resolveProfile(network.inputs, options.shapes ?? {}).find((p) => p.input === input.name)?.opt
        : input.dims;
      calibration = { input: input.name, dims: dims ?? input.dims, algorithm: cacheAlgorithm };
    }
  }

  const profile = resolveProfile(network.inputs, options.shapes ?? {}, calibration && mode === 'calibrated' ? calibration : undefined);
  let timingCacheBytes: Uint8Array | undefined;
  if (options.timingCache !== undefined) {
    timingCacheBytes = existsSync(options.timingCache) ? await readUserFile(options.timingCache, 'The timing cache', READ_LIMITS.binary) : new Uint8Array(0);
  }

  const cacheOut =
    mode === 'calibrated' ? (options.cacheOut ?? path.join(DEFAULT_CACHE_DIR, `${modelStem(options.model)}.tensorrt-${algorithm}.cache`)) : undefined;
  let writtenTensors: number | undefined;
  // One Reporter task at a time: the calibration images while TensorRT asks for them, TensorRT's top-level build
  // phases otherwise (calibration runs inside one of them).
  let phase: string | undefined;
  let calibrating = false;
  const feed =
    dataset && batchDims
      ? calibrationFeed(dataset.batches(), batchDims, {
          inputName: calibration!.input,
          onBatch: (s) => {
            if (!calibrating) {
              if (phase !== undefined) reporter.stop();
              calibrating = true;
              reporter.start(`calibrating (TensorRT ${algorithm})`, dataset!.size - (dataset!.size % dataset!.batchSize), 'images');
            }
            reporter.update({ done: s.images });
          },
          onEnd: () => {
            if (calibrating) reporter.stop();
            calibrating = false;
            phase = undefined;
          },
        })
      : undefined;

  const buildOptions: TrtBuildOptions = {
    model: options.model,
    int8: !typedByModel && int8,
    fp16: !typedByModel && fp16,
    stronglyTyped,
    workspaceBytes: options.workspaceMiB !== undefined ? options.workspaceMiB * 1024 * 1024 : undefined,
    timingCache: timingCacheBytes,
    profile,
    calibration,
    layerPrecisions,
    precisionConstraints: options.precisionConstraints ?? 'obey',
    markOutputs: options.markOutputs ? [...options.markOutputs] : undefined,
    logLevel: options.logLevel ?? 'warning',
    device: options.device,
  };
  const task = binding.buildEngine(buildOptions, {
    ...(feed ? feed.callbacks : {}),
    readCache: (kind) => (kind === 'calibration' && cacheBytes ? cacheBytes : null),
    writeCache: async (bytes, kind) => {
      if (!cacheOut) return; // cache-only builds: TensorRT writing back the cache it read changes nothing
      if (kind === 'histogram') {
        await writeFileAtomic(`${cacheOut.replace(/\.cache$/, '')}.histogram`, bytes);
        return;
      }
      // Read back with our codec, so that `cache show/diff` will read it too; bytes are written as TensorRT gave them.
      try {
        writtenTensors = parseCalibrationCache(bytes, 'the cache TensorRT wrote').entries.length;
      } catch (err) {
        warn(`TensorRT wrote a calibration cache that trt-calib's reader rejects (${(err as Error).message}); it is kept as is.`);
      }
      await writeFileAtomic(cacheOut, bytes);
    },
    onProgress: (e) => {
      // Only the top-level phases: nested ones come and go thousands of times.
      if (e.parent || calibrating) return;
      if (e.event === 'start') {
        phase = e.phase;
        reporter.start(e.phase, e.steps ?? 0, 'steps');
      } else if (e.event === 'step' && e.phase === phase) {
        reporter.update({ done: e.step ?? 0 });
      } else if (e.event === 'finish' && e.phase === phase) {
        reporter.stop();
        phase = undefined;
      }
    },
    onLog: (severity, message) => {
      if (severity === 'warning') warn(`TensorRT: ${message}`);
      else if (severity === 'error' || severity === 'internal-error') reporter.warn(`TensorRT error: ${message}`);
      else reporter.info(`TensorRT: ${message}`);
    },
  });
  let result: TrtBuildResult;
  try {
    result = await settleNative(task, options.signal, 'TensorRT could not build the engine', {
      cacheRejected: () =>
        new UserError(`TensorRT did not use the calibration cache ${options.cache} and asked for images to calibrate.`, {
          hint: 'The cache may be for other tensor names (another export of the model?) or another TensorRT; check it with `trt-calib cache show`, or give --data instead.',
        }),
    });
  } finally {
    reporter.stop();
    await feed?.close();
  }
  if (feed && feed.stats.droppedImages > 0) {
    warn(
      `the last ${feed.stats.droppedImages} image(s) were not used: TensorRT calibrates on full batches of ${batchDims![0]} ` +
        `(choose a --batch that divides ${dataset!.size} to use them all).`,
    );
  }
  let timingCache: string | undefined;
  if (options.timingCache !== undefined && result.timingCache) {
    await writeFileAtomic(options.timingCache, result.timingCache);
    timingCache = options.timingCache;
  }
  const calibrationResult: EngineBuildResult['calibration'] =
    mode === 'cache'
      ? { mode, cache: options.cache!, algorithm: cacheInfo!.algorithm, entries: cacheInfo!.entries, bytes: cacheBytes!.byteLength }
      : mode === 'calibrated'
        ? {
            mode,
            algorithm,
            batches: feed!.stats.batches,
            images: feed!.stats.images,
            droppedImages: feed!.stats.droppedImages,
            batchDims: batchDims!,
            cacheOut: result.calibration.cacheWrites > 0 ? cacheOut : undefined,
            cacheTensors: writtenTensors,
          }
        : { mode };
  return {
    engine: result.engine,
    network,
    result: {
      seconds: result.seconds,
      tensorrt: { compiledAgainst: info.compiledAgainst, library },
      precision: { int8: int8 || mode === 'qdq', fp16, stronglyTyped: result.network.stronglyTyped, qdqLayers: network.qdqLayers, layerConstraints: layerPrecisions.length },
      calibration: calibrationResult,
      profile,
      timingCache,
      warnings,
    },
  };
}

/**
 * Awaits a native task, cancelling it when `signal` aborts, and turns its native failures into UserErrors
 * (TensorRT's messages are about the model or the options). Errors thrown by our own callbacks pass unchanged.
 */
async function settleNative<T>(
  task: { done: Promise<T>; cancel(reason?: string): void },
  signal: AbortSignal | undefined,
  what: string,
  map: { cacheRejected?: () => Error } = {},
): Promise<T> {
  const onAbort = () => task.cancel('the build was cancelled');
  if (signal?.aborted) onAbort();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await task.done;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'ABORT_ERR') throw new UserError(`${what}: ${(err as Error).message}.`, { cause: err });
    if (code === 'ERR_TRT_CALIB_CACHE_REJECTED' && map.cacheRejected) throw map.cacheRejected();
    if (code === 'ERR_TRT_CALIB_NATIVE' || code === 'ERR_TRT_CALIB_CACHE_REJECTED') {
      throw new UserError(`${what}: ${(err as Error).message}`, { hint: 'Run with --trt-log-level info for TensorRT\'s own messages.', cause: err });
    }
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

// ---------------------------------------------------------------------------------------------- backend

/** TensorRT element types that cross to JavaScript, and their DType. */
const TRT_TO_DTYPE: Partial<Record<string, DType>> = {
  float32: 'float32',
  float16: 'float16',
  int8: 'int8',
  int32: 'int32',
  int64: 'int64',
  uint8: 'uint8',
  bool: 'bool',
};

export interface TensorRTBackendOptions {
  /** Precision of engines built from ONNX models (engine files are used as they are). Default fp32. */
  precision?: 'fp32' | 'fp16' | 'int8';
  /** int8 from ONNX: the calibration cache to build with. */
  cache?: string;
  precisionMap?: string | ReadonlyMap<string, LayerPrecisionName>;
  shapes?: ShapeOptions;
  workspaceMiB?: number;
  timingCache?: string;
  device?: number;
  reporter?: Reporter;
  /** The native bridge to use (default: the built one). For tests and embedders. */
  bridge?: TensorRTBinding;
}

function toTensorInfo(t: TrtEngineIo): TensorInfo {
  const dtype = TRT_TO_DTYPE[t.dtype];
  if (!dtype) throw new UserError(`The engine tensor ${JSON.stringify(t.name)} has type ${t.dtype}, which the TensorRT backend cannot exchange.`);
  return { name: t.name, dtype, dims: t.dims.map((d) => (d < 0 ? -1 : d)) };
}

class TensorRTSession implements Session {
  readonly inputs: readonly TensorInfo[];
  readonly outputs: readonly TensorInfo[];
  private readonly all: Map<string, TensorInfo>;
  constructor(
    private readonly engine: TrtEngineHandle,
    modelOutputs: readonly string[] | undefined,
  ) {
    const io = engine.io();
    const infos = io.map(toTensorInfo);
    this.all = new Map(infos.map((t) => [t.name, t]));
    this.inputs = io.filter((t) => t.mode === 'input').map(toTensorInfo);
    const outputs = io.filter((t) => t.mode === 'output').map(toTensorInfo);
    this.outputs = modelOutputs ? outputs.filter((o) => modelOutputs.includes(o.name)) : outputs;
  }

  async run(feed: Record<string, Tensor>, fetch?: readonly string[]): Promise<Record<string, Tensor>> {
    const wanted = fetch ?? this.outputs.map((o) => o.name);
    for (const name of wanted) {
      const info = this.all.get(name);
      if (!info || this.inputs.some((i) => i.name === name)) {
        throw new UserError(`The TensorRT engine has no output ${JSON.stringify(name)} (outputs: ${[...this.all.keys()].filter((k) => !this.inputs.some((i) => i.name === k)).join(', ')}).`, {
          hint: 'Tensors other than the model outputs exist in an engine only if marked as outputs when it was built (SessionOptions.expose on an ONNX model).',
        });
      }
    }
    const feeds = this.inputs.map((input) => {
      const t = feed[input.name];
      if (!t) throw new UserError(`No tensor was given for the engine input ${JSON.stringify(input.name)}.`);
      if (t.dtype !== input.dtype) throw new UserError(`The engine input ${JSON.stringify(input.name)} is ${input.dtype} but a ${t.dtype} tensor was given.`);
      return { name: input.name, dims: t.dims, data: t.data };
    });
    const outputs = await this.engine.run(feeds);
    const result: Record<string, Tensor> = {};
    for (const o of outputs) {
      if (!wanted.includes(o.name)) continue;
      const dtype = TRT_TO_DTYPE[o.dtype]!;
      const Ctor = DTYPES[dtype].array;
      result[o.name] = { dtype, dims: o.dims, data: new Ctor(o.data, 0, o.data.byteLength / DTYPES[dtype].bytes) };
    }
    return result;
  }

  async runEach(feed: Record<string, Tensor>, fetch: readonly string[], onTensor: (name: string, tensor: Tensor) => void | Promise<void>): Promise<void> {
    const out = await this.run(feed, fetch);
    for (const name of fetch) {
      const t = out[name];
      if (t) {
        await onTensor(name, t);
        delete out[name];
      }
    }
  }

  async release(): Promise<void> {
    this.engine.release();
  }
}

/**
 * The TensorRT backend: opens an engine file (.engine, .plan, .trt) as it is, or builds an engine from an ONNX
 * model in memory at the options' precision (with SessionOptions.expose marked as extra outputs).
 */
export function tensorrtBackend(options: TensorRTBackendOptions = {}): Backend {
  return {
    name: 'tensorrt',
    async open(model: { path: string; bytes?: Uint8Array }, session: SessionOptions = {}): Promise<Session> {
      const binding = options.bridge ?? (await requireTensorRT());
      let bytes: Uint8Array;
      let modelOutputs: string[] | undefined;
      if (/\.(engine|plan|trt)$/i.test(model.path)) {
        if (session.expose && session.expose.length > 0) {
          throw new UserError(`${model.path} is a built engine: it has only the outputs it was built with, so tensors cannot be exposed.`, {
            hint: 'Give the ONNX model instead; the backend builds an engine with those tensors marked as outputs.',
          });
        }
        bytes = model.bytes ?? (await readUserFile(model.path, 'The engine', READ_LIMITS.binary));
      } else {
        const precision = options.precision ?? 'fp32';
        let source = model.path;
        let tmpDir: string | undefined;
        if (model.bytes) {
          // The parser reads files: give it the bytes we were handed.
          tmpDir = await newTemporaryFolder('onnx');
          source = path.join(tmpDir, path.basename(model.path));
          await fsp.writeFile(source, model.bytes);
        }
        try {
          const built = await buildEngineBytes({
            model: source,
            int8: precision === 'int8',
            fp16: precision === 'fp16',
            cache: precision === 'int8' ? options.cache : undefined,
            precisionMap: options.precisionMap,
            shapes: options.shapes,
            workspaceMiB: options.workspaceMiB,
            timingCache: options.timingCache,
            device: options.device,
            reporter: options.reporter,
            markOutputs: session.expose,
            bridge: binding,
          });
          bytes = built.engine;
          modelOutputs = built.network.outputs.map((o) => o.name);
        } finally {
          if (tmpDir) await removeTemporaryFolder(tmpDir);
        }
      }
      const engine = await binding.loadEngine(bytes, { device: options.device });
      return new TensorRTSession(engine, modelOutputs);
    },
  };
}
