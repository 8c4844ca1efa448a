/**
 * The one module that loads the native addon and types it (onnxruntime-node's habit): nothing else in
 * the code base touches untyped native objects. Other modules import `loadNative()` and get a typed binding.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { UserError } from './errors.js';
import type { FeederBinding, TensorRTBinding } from './backends/tensorrt-native.js';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
/** Repository (or installed package) root: dist/ and src/ both sit one level below it. */
export const PACKAGE_ROOT = path.resolve(here, '..');

/**
 * The binding's shape. Each native part documents its functions here.
 * The TensorRT bridge's feeder (native/src/feeder) adds feederSelfTest: see src/backends/tensorrt-native.ts.
 */
export interface NativeBinding extends FeederBinding {
  // --- statistics kernels (native/src/stats) ---
  /**
   * Adds a tensor's values to one tensor's statistics state, in place. header: Float64Array(statsHeaderSize)
   * [count, nanCount, posInfCount, negInfCount, zeroCount, min, max, absMax, range]; hist: Float64Array of a
   * power-of-two length; data: float32 values, or float16 bits in a Uint16Array. Throws TypeError/RangeError on
   * malformed arguments. Used only by src/stats/collector.ts.
   */
  /** With lo and hi (float32 data only), counts clamp(x, lo, hi). */
  statsAccumulate(header: Float64Array, hist: Float64Array, data: Float32Array | Uint16Array, lo?: number, hi?: number): void;
  /** The same on a libuv worker thread; the arrays must not be touched (or updated again) until it settles. */
  statsAccumulateAsync(header: Float64Array, hist: Float64Array, data: Float32Array | Uint16Array, lo?: number, hi?: number): Promise<void>;
  readonly statsHeaderSize: number;
  /**
   * KL-divergence threshold scan of src/calibrators/kl.ts (`klScan`) in C++: returns the chosen number of bins and
   * fills `divergences` (length hist.length - startBin + 1) when given. spec: a KlScanSpec.
   */
  klScan(
    hist: Float64Array,
    spec: { grouping: string; emptyBins: string; ties: string; levels: number; startBin: number; emptyQ?: number },
    divergences?: Float64Array,
  ): number;
  /** The same for a list of histograms, on one libuv worker thread; resolves to the chosen bins. */
  klScanAsync(
    hists: Float64Array[],
    spec: { grouping: string; emptyBins: string; ties: string; levels: number; startBin: number; emptyQ?: number },
  ): Promise<Int32Array>;
  /**
   * percentile and mse amax (src/calibrators/{percentile,mse}.ts, the same arithmetic in C++) for a list of tensors
   * on one libuv worker thread. fields: [count, zeroCount, absMax, range] per tensor; percentile: p, or undefined
   * for none; mse: [qmax, candidates, startBin], or undefined for none.
   */
  densityAmaxAsync(
    fields: Float64Array,
    hists: Float64Array[],
    percentile: number | undefined,
    mse: number[] | undefined,
  ): Promise<{ percentile?: Float64Array; mse?: Float64Array }>;
  /**
   * glibc only: allocations of `bytes` and more always get their own mapping, returned to the system on free (see
   * configureSharp() in src/datasets/preprocess.ts). Returns whether it applied (false elsewhere).
   */
  keepLargeAllocationsMapped(bytes: number): boolean;
  // --- onnxruntime statistics collector (native/src/ort/collector.cc), used only by src/stats/native-collect.ts ---
  /** The model as bytes, or a file path (with its external data beside it). */
  OrtCollector: new (libraryPath: string, model: Uint8Array | string, config: OrtCollectorConfig) => OrtCollector;
  /**
   * Opens `model` as OrtCollector would (same settings) with onnxruntime writing the graph it optimised to
   * `outPath`, then frees the session; resolves to onnxruntime's version.
   */
  ortOptimizeModel(libraryPath: string, model: Uint8Array, config: Pick<OrtCollectorConfig, 'threads' | 'optimization' | 'configEntries'>, outPath: string): Promise<string>;
  /** Loads the onnxruntime library as OrtCollector does; its version, or throws "onnxruntime library: <why>". */
  ortRuntimeVersion(libraryPath: string): string;
  [key: string]: unknown;
}

/** Where a tensor's values are counted: a state, optionally clamped, plus a Pad's zeros (see src/stats/derive.ts). */
export interface OrtCollectorTarget {
  state: number;
  clamp?: [number, number];
  pads?: number[];
  /** Only the pad's zeros go to this state; its values are merged in from another state afterwards. */
  zerosOnly?: boolean;
}

export interface OrtCollectorConfig {
  threads: number;
  /** onnxruntime GraphOptimizationLevel value (0, 1, 2, 3, 99). */
  optimization: number;
  configEntries: [string, string][];
  inputName: string;
  bins: number;
  /** Number of statistics states (each a 9-value header and `bins` counts). */
  states: number;
  /** Targets counted from the input data itself. */
  inputTargets: OrtCollectorTarget[];
  outputs: { name: string; targets: OrtCollectorTarget[] }[];
}

/** A session whose outputs are counted in native memory; see native/src/ort/collector.cc for the contract. */
export interface OrtCollector {
  /** Loads onnxruntime and the model; resolves to onnxruntime's version. */
  open(): Promise<string>;
  /** Runs one batch and queues its outputs for the counting thread (waits while another run is queued). */
  infer(data: Float32Array, dims: number[]): Promise<void>;
  /** Resolves once every queued run is counted; rejects with the first counting failure. */
  drain(): Promise<void>;
  /** Copies of every state: headers (states x 9) and histograms (states x bins). */
  result(): { headers: Float64Array; hists: Float64Array };
  close(): void;
}

let cached: NativeBinding | undefined;

export function nativeAddonPath(): string {
  return path.join(PACKAGE_ROOT, 'native', 'build', 'Release', 'trt_calib.node');
}

export function loadNative(): NativeBinding {
  if (cached) return cached;
  const file = nativeAddonPath();
  if (!existsSync(file)) {
    throw new UserError(`The native addon was not found at ${file}.`, {
      hint: 'Build it with `npm run build:native` (needs python3, make and a C++17 compiler), or reinstall with `npm install`.',
    });
  }
  try {
    cached = require(file) as NativeBinding;
  } catch (err) {
    throw new UserError(`The native addon at ${file} failed to load: ${(err as Error).message}`, {
      hint: 'Rebuild it for this Node.js version with `npm run build:native`.',
      cause: err,
    });
  }
  return cached;
}

// --- the TensorRT bridge (native/src/tensorrt): a second addon, built only where TensorRT was found ---

export function tensorrtBridgePath(): string {
  return path.join(PACKAGE_ROOT, 'native', 'build', 'Release', 'trt_calib_tensorrt.node');
}

export type TensorRTBridgeStatus =
  | { state: 'loaded'; path: string; binding: TensorRTBinding }
  | { state: 'not-built'; path: string }
  | { state: 'load-failed'; path: string; error: string };

let bridge: TensorRTBridgeStatus | undefined;

/**
 * Loads trt_calib_tensorrt.node if it was built. Never throws: a bridge that fails to load (libnvinfer moved or
 * of another version, no CUDA driver) is reported as 'load-failed' with the loader's message.
 */
export function tensorrtBridge(): TensorRTBridgeStatus {
  if (bridge) return bridge;
  const file = tensorrtBridgePath();
  if (!existsSync(file)) return (bridge = { state: 'not-built', path: file });
  try {
    bridge = { state: 'loaded', path: file, binding: require(file) as TensorRTBinding };
  } catch (err) {
    bridge = { state: 'load-failed', path: file, error: (err as Error).message };
  }
  return bridge;
}
