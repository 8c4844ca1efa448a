/**
 * Backend contracts. onnxruntime-node is the default backend; the TensorRT backend implements the same
 * interfaces where TensorRT is installed.
 */
import type { Tensor } from '../tensor.js';

export interface TensorInfo {
  name: string;
  dtype: import('../tensor.js').DType;
  /** Static dims as numbers, dynamic ones as their symbolic name (or -1 when unnamed). */
  dims: Array<number | string>;
}

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
