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
  /** native/src/stats/noise.cc over one image's values, in place (the sums of OrtNoiseTarget); for the tests. */
  noiseSums(sums: Float64Array, data: Float32Array, scale: number): void;
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
  // --- onnxruntime statistics collector (native/src/ort/collector.cc), used only by src/backends/onnxruntime-collect.ts ---
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

/** Where a tensor's values are counted: a state, optionally clamped, plus a Pad's zeros (see src/backends/collection-plan.ts). */
export interface OrtCollectorTarget {
  state: number;
  clamp?: [number, number];
  pads?: number[];
  /** Only the pad's zeros go to this state; its values are merged in from another state afterwards. */
  zerosOnly?: boolean;
}

/**
 * A tensor's quantization noise sums (src/sensitivity/noise.ts TensorNoise, bit for bit; native/src/stats/noise.cc)
 * into noise state `noise`, image by image: 9 values, see OrtCollector.result().noise. `scale`: the INT8 scale (0 or
 * absent: FP16 and the range only).
 */
export interface OrtNoiseTarget {
  noise: number;
  scale?: number;
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
  inputTargets: Array<OrtCollectorTarget | OrtNoiseTarget>;
  outputs: { name: string; targets: Array<OrtCollectorTarget | OrtNoiseTarget> }[];
  /** Number of noise states (OrtNoiseTarget), 9 values each; default 0. */
  noiseStates?: number;
  /** In-graph counting: the model has a counting node per output (withCountingNodes); the last one's output. */
  countOutput?: string;
  /** Threads counting a large tensor in-graph (1 or 2): onnxruntime's and a helper. */
  countThreads?: number;
}

/** A session whose outputs are counted in native memory; see native/src/ort/collector.cc for the contract. */
export interface OrtCollector {
  /** Loads onnxruntime and the model; resolves to onnxruntime's version. */
  open(): Promise<string>;
  /** Runs one batch and queues its outputs for the counting thread (waits while another run is queued). */
  infer(data: Float32Array, dims: number[]): Promise<void>;
  /** Resolves once every queued run is counted; rejects with the first counting failure. */
  drain(): Promise<void>;
  /** Copies of every state: headers (states x 9), histograms (states x bins) and noise sums (noiseStates x 9). */
  result(): { headers: Float64Array; hists: Float64Array; noise: Float64Array };
  close(): void;
}

let cached: NativeBinding | undefined;
let loadedFrom: NativeAddonSource | undefined;

/** Where the base addon comes from: built on this machine, or the prebuilt binary shipped in the package. */
export interface NativeAddonSource {
  kind: 'source-build' | 'prebuilt';
  path: string;
}

/** The source build's place: native/install.js (the fallback), `npm run build:native` and build-bridge write it. */
export function sourceBuildPath(root = PACKAGE_ROOT): string {
  return path.join(root, 'native', 'build', 'Release', 'trt_calib.node');
}

/**
 * The addon loadNative() loads: a source build where there is one (the user or a developer built it on purpose,
 * and it is what `npm run build:native` just compiled), else the prebuilt binary that node-gyp-build picks for
 * this platform, architecture and libc from prebuilds/ (scripts/prebuild.js builds them at pack time). The
 * package root has no build/ folder (ours is native/build), so node-gyp-build looks only at prebuilds/ there.
 */
export function resolveNativeAddon(root = PACKAGE_ROOT): NativeAddonSource | undefined {
  const built = sourceBuildPath(root);
  if (existsSync(built)) return { kind: 'source-build', path: built };
  try {
    const nodeGypBuild = require('node-gyp-build') as { resolve(dir: string): string };
    return { kind: 'prebuilt', path: nodeGypBuild.resolve(root) };
  } catch {
    return undefined; // node-gyp-build throws "No native build was found for ..." when nothing matches
  }
}

/** The addon's path: the one loaded, else the one that would be, else where a source build would go. */
export function nativeAddonPath(): string {
  return (loadedFrom ?? resolveNativeAddon())?.path ?? sourceBuildPath();
}

/** Which addon was loaded (for doctor); undefined before loadNative() succeeded. */
export function nativeAddonSource(): NativeAddonSource | undefined {
  return loadedFrom;
}

export function loadNative(): NativeBinding {
  if (cached) return cached;
  const source = resolveNativeAddon();
  if (!source) {
    throw new UserError(
      `No native addon for ${process.platform}-${process.arch}: the package has no prebuilt binary for this platform ` +
        `(in ${path.join(PACKAGE_ROOT, 'prebuilds')}) and none was built from source (${sourceBuildPath()}).`,
      {
        hint:
          'Build it from source: `npm rebuild trt-calib` in your project, or `npm run build:native` in a clone of trt-calib ' +
          '(needs python3, make and a C++17 compiler).',
      },
    );
  }
  try {
    cached = require(source.path) as NativeBinding;
  } catch (err) {
    const what = source.kind === 'prebuilt' ? 'The prebuilt native addon' : 'The native addon built from source';
    throw new UserError(`${what} at ${source.path} failed to load: ${(err as Error).message.split('\n')[0]}`, {
      hint:
        source.kind === 'prebuilt'
          ? 'Build it from source for this machine: `npm rebuild trt-calib` in your project, or `npm run build:native` in a clone ' +
            '(needs python3, make and a C++17 compiler; the prebuilt Linux binary needs glibc 2.34 and libstdc++ from GCC 12 or newer).'
          : 'Rebuild it for this machine with `npm run build:native` (in a clone) or `npm rebuild trt-calib` (in your project).',
      cause: err,
    });
  }
  loadedFrom = source;
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
