/**
 * Backend contracts. onnxruntime-node is the default backend; the TensorRT backend implements the same
 * interfaces where TensorRT is installed.
 *
 * Two kinds of session:
 * - Session: runs batches and hands out tensors (the model's outputs, or activations it was asked to expose).
 *   Used by compare, sensitivity and bias correction, and by the onnxruntime-node collecting worker.
 * - CollectingSession: runs batches and counts the statistics of the activations of a collection plan
 *   (./collection-plan.ts: which tensors are exported, which are counted from another one's values) wherever the
 *   backend keeps them, handing back only statistics (src/stats). Calibration uses this one. onnxruntime has two:
 *   ./onnxruntime-collect.ts (its C API, counting straight from onnxruntime's output buffers, the usual path) and
 *   ./onnxruntime-collect-client.ts (onnxruntime-node's Session in a worker thread, the fallback). Both open the
 *   same exposed model with the same session options and count through the same kernels: the same bytes.
 *
 * A TensorRT collecting session would implement CollectingSession the same way: build an engine from the
 * exposed model (the plan's exported tensors marked as network outputs), run it with enqueueV3 into device
 * buffers, copy each exported tensor to the host and count it with src/stats (StatisticsCollector for host
 * tensors, or statisticsFromStates() over states counted in native code), the plan's derived tensors from their
 * roots as the onnxruntime sessions do. Nothing above the backend changes.
 */
import type { Tensor, TensorInfo } from '../tensor.js';
import type { TensorStatistics } from '../stats/types.js';

export type { TensorInfo } from '../tensor.js';

export interface SessionOptions {
  /** Intra-op threads (onnxruntime). 0 or undefined: the backend's default. */
  threads?: number;
  /** Extra tensors to return besides the model outputs (activations to calibrate). */
  expose?: readonly string[];
}

export interface Session {
  readonly inputs: readonly TensorInfo[];
  readonly outputs: readonly TensorInfo[];
  /** Runs one batch. `fetch` names the outputs wanted (default: the model outputs). */
  run(feed: Record<string, Tensor>, fetch?: readonly string[]): Promise<Record<string, Tensor>>;
  /**
   * Runs one batch and hands each fetched tensor to `onTensor` as soon as it is available, then lets it go,
   * so that peak memory does not grow with the number of tensors kept.
   */
  runEach(
    feed: Record<string, Tensor>,
    fetch: readonly string[],
    onTensor: (name: string, tensor: Tensor) => void | Promise<void>,
    options?: { /** Write into the previous run's output buffers (same input dims): tensors are valid only until the next run. */ reuseOutputs?: boolean },
  ): Promise<void>;
  release(): Promise<void>;
}

export interface Backend {
  readonly name: string;
  /** Opens a model (an ONNX file path, or serialized ONNX bytes with the path it came from for messages). */
  open(model: { path: string; bytes?: Uint8Array }, options?: SessionOptions): Promise<Session>;
}

/** A pass that runs the model over batches and counts its activations' statistics as it goes. */
export interface CollectingSession {
  /** Loads the model; rejects with why it could not. */
  start(): Promise<void>;
  /** Hands a batch (the input fed with images, float32) over; `data` may be reused once the promise resolves. */
  add(dims: number[], data: Float32Array): Promise<void>;
  /** Every tensor's statistics, sorted by name, once all batches are counted. */
  finish(): Promise<TensorStatistics[]>;
  close(): Promise<void>;
}
