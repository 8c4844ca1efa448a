/**
 * Types of the TensorRT bridge's native functions (native/src/feeder, native/src/tensorrt). src/native.ts loads the
 * addons and types them with these; nothing else touches the untyped objects.
 *
 * Long native jobs (feederSelfTest, inspectOnnx, buildEngine) run on a thread of their own and return a
 * NativeTask: `done` settles once, `cancel()` wakes the native thread wherever it waits (see native/src/feeder/task.h).
 * `done` rejects with the very error a JS callback threw, or with an Error whose `code` is
 * 'ABORT_ERR' (cancelled), 'ERR_TRT_CALIB_CACHE_REJECTED' (TensorRT asked for batches in a cache-only build) or
 * 'ERR_TRT_CALIB_NATIVE'.
 */

export interface NativeTask<T> {
  done: Promise<T>;
  cancel(reason?: string): void;
}

export type CacheKind = 'calibration' | 'histogram';

/**
 * What the native feeder asks JavaScript for, on the JS thread, while the consumer thread waits
 * (native/src/feeder/batch_feeder.h). Each may return a Promise.
 */
export interface FeederCallbacks {
  /** The next batch: exactly the configured dims (N first) as float32, or null at the end. */
  nextBatch?: () => Float32Array | null | Promise<Float32Array | null>;
  /** Cache bytes for TensorRT to read, or null when there are none. */
  readCache?: (kind: CacheKind) => Uint8Array | null | undefined | Promise<Uint8Array | null | undefined>;
  /** Cache bytes TensorRT wrote; a rejected Promise fails the build. */
  writeCache?: (bytes: Buffer, kind: CacheKind) => unknown;
}

export interface FeederSelfTestOptions {
  input: string;
  /** One full batch, N first. */
  dims: number[];
  /** The names the imitated TensorRT passes to getBatch (default [input]). */
  bindingNames?: string[];
  /** Bytes the imitated builder writes through writeCalibrationCache after calibrating. */
  cacheToWrite?: Uint8Array;
  /** Skip the getBatch loop when readCalibrationCache returned bytes, as TensorRT does (default true). */
  useCacheIfPresent?: boolean;
  /** What getBatchSize() answers (default dims[0]). */
  reportedBatchSize?: number;
}

export interface FeederSelfTestLog {
  batchSize: number;
  /** Where batches were copied: 'host' in the self-test. */
  memory: string;
  /** The bytes readCalibrationCache handed to the imitated TensorRT, or null. */
  cacheRead: Buffer | null;
  /** False when a cache was read and the getBatch loop skipped. */
  calibrated: boolean;
  /** What reached the "device" buffer for each batch: FNV-1a 64 of its bytes (16 hex digits), sum, length. */
  batches: Array<{ checksum: string; sum: number; elements: number }>;
  cacheWrites: number;
  cacheBytesWritten: number;
  batchRequestedWithoutSource: boolean;
}

/** Always built: the feeder's test entry point. */
export interface FeederBinding {
  feederSelfTest(options: FeederSelfTestOptions, callbacks: FeederCallbacks): NativeTask<FeederSelfTestLog>;
}

/** TensorRT element types as the bridge names them (DType names where one exists). */
export type TrtDataType = 'float32' | 'float16' | 'int8' | 'int32' | 'int64' | 'uint8' | 'bool' | 'bfloat16' | 'fp8' | 'int4' | 'unsupported';

export interface TrtTensorDesc {
  name: string;
  dtype: TrtDataType;
  /** -1 for a dynamic dim. */
  dims: number[];
}

export interface TrtLayerDesc {
  name: string;
  type: string;
  /** The ONNX node the layer came from (parser metadata), or null. */
  onnxNode: string | null;
  outputs: TrtTensorDesc[];
}

export interface TrtNetworkDesc {
  inputs: TrtTensorDesc[];
  outputs: TrtTensorDesc[];
  layers: TrtLayerDesc[];
  /** Quantize + Dequantize layers: > 0 for an explicitly quantized (Q/DQ) model. */
  qdqLayers: number;
  stronglyTyped: boolean;
}

export type TrtCalibrationAlgorithm = 'entropy2' | 'entropy' | 'minmax' | 'legacy';

export interface TrtBuildOptions {
  model: string;
  int8?: boolean;
  fp16?: boolean;
  stronglyTyped?: boolean;
  workspaceBytes?: number;
  /** Timing cache bytes to start from (empty: a new cache); the result then carries the updated cache. */
  timingCache?: Uint8Array;
  profile?: Array<{ input: string; min: number[]; opt: number[]; max: number[] }>;
  /** Implicit INT8 calibration (TensorRT 8.6-10.x); without a nextBatch callback only the cache is offered. */
  calibration?: { input: string; dims: number[]; algorithm: TrtCalibrationAlgorithm; quantile?: number; regressionCutoff?: number };
  layerPrecisions?: Array<{ layer: string; precision: 'int8' | 'fp16' | 'fp32' }>;
  precisionConstraints?: 'obey' | 'prefer';
  /** Extra tensors to make network outputs (activations to compare). */
  markOutputs?: string[];
  logLevel?: 'error' | 'warning' | 'info' | 'verbose';
  device?: number;
}

export interface TrtProgressEvent {
  event: 'start' | 'step' | 'finish';
  phase: string;
  parent?: string | null;
  steps?: number;
  step?: number;
}

export interface TrtBuildCallbacks extends FeederCallbacks {
  onProgress?: (event: TrtProgressEvent) => void;
  onLog?: (severity: string, message: string) => void;
}

export interface TrtBuildResult {
  engine: Buffer;
  timingCache: Buffer | null;
  network: TrtNetworkDesc;
  calibration: { used: boolean; batches: number; cacheReads: number; cacheBytesRead: number; cacheWrites: number; cacheBytesWritten: number };
  seconds: number;
  /** The TensorRT headers the bridge was compiled against, e.g. "10.16.0". */
  tensorrt: string;
}

export interface TrtEngineIo {
  name: string;
  mode: 'input' | 'output';
  dtype: TrtDataType;
  dims: number[];
  profile?: { min: number[]; opt: number[]; max: number[] };
}

export interface TrtEngineHandle {
  io(): TrtEngineIo[];
  run(feeds: Array<{ name: string; dims: number[]; data: ArrayBufferView }>): Promise<Array<{ name: string; dtype: TrtDataType; dims: number[]; data: ArrayBuffer }>>;
  release(): void;
}

export interface TrtInfo {
  compiledAgainst: string;
  /** getInferLibVersion() of the libnvinfer actually loaded (encoded: 100300 for 10.3.0, 8601 for 8.6.1). */
  libraryVersion: number;
  implicitQuantization: boolean;
  cudaRuntimeVersion: number | null;
  cudaDriverVersion: number | null;
  deviceError?: string;
  devices: Array<{ index: number; name: string; computeCapability: string; memoryBytes: number }>;
}

/** The TensorRT bridge addon (trt_calib_tensorrt.node), built only where TensorRT was found. */
export interface TensorRTBinding extends FeederBinding {
  inspectOnnx(options: { model: string; stronglyTyped?: boolean }, callbacks?: { onLog?: (severity: string, message: string) => void }): NativeTask<TrtNetworkDesc>;
  buildEngine(options: TrtBuildOptions, callbacks: TrtBuildCallbacks): NativeTask<TrtBuildResult>;
  loadEngine(bytes: Uint8Array, options?: { device?: number }): Promise<TrtEngineHandle>;
  tensorrtInfo(): TrtInfo;
}
