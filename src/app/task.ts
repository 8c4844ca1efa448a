/**
 * The task a model is judged as, resolved once for compare, sensitivity and --mixed auto (src/compare/task/).
 */
import { onnxruntimeBackend } from '../backends/onnxruntime.js';
import { prepareTask, type PreparedTask, type TaskFlags } from '../compare/task/index.js';
import type { InputInfo } from '../compare/task/select.js';
import type { Dataset } from '../datasets/types.js';
import { graphInputs, graphOutputs } from '../onnx/graph.js';
import type { OnnxModel } from '../onnx/model.js';
import type { Reporter } from '../reporter.js';
import type { Tensor } from '../tensor.js';

/**
 * Resolves the task before any long work: for auto, FP32 runs one batch first so that the task modules can look at
 * value ranges (a plain session, let go at once). Says what it decided and why.
 */
export async function resolveTask(
  modelFile: string,
  model: OnnxModel,
  dataset: Dataset,
  dataRoot: string,
  flags: TaskFlags,
  options: { threads?: number; worst?: number; threshold?: number; reporter?: Reporter; /** FP32's outputs on a batch of the dataset, when the caller has them. */ sample?: Record<string, Tensor> } = {},
): Promise<PreparedTask> {
  const outputs = graphOutputs(model).map((o) => ({ name: o.name, dims: o.dims ?? [] }));
  const sample = (flags.task ?? 'auto') === 'auto' ? (options.sample ?? (await firstBatchOutputs(modelFile, dataset, outputs.map((o) => o.name), options.threads))) : undefined;
  const task = await prepareTask({
    flags,
    outputs,
    ...(sample ? { sample } : {}),
    datasetFiles: dataset.files,
    preprocess: dataset.preprocess,
    ...(inputOf(model) ? { input: inputOf(model)! } : {}),
    dataRoot,
    ...(options.worst !== undefined ? { worstCount: options.worst } : {}),
    ...(options.threshold !== undefined ? { threshold: options.threshold } : {}),
  });
  options.reporter?.info(`task: ${task.kind} (${task.selection.reason})`);
  for (const n of task.notes) options.reporter?.warn(n);
  return task;
}

function inputOf(model: OnnxModel): InputInfo | undefined {
  const first = graphInputs(model)[0];
  return first?.dims ? { dims: first.dims } : undefined;
}

/** FP32's outputs on the dataset's first batch (undefined when no image of it decodes). */
export async function firstBatchOutputs(modelFile: string, dataset: Dataset, outputs: readonly string[], threads?: number): Promise<Record<string, Tensor> | undefined> {
  const session = await onnxruntimeBackend.open({ path: modelFile }, { ...(threads ? { threads } : {}) });
  try {
    for await (const batch of dataset.batches()) {
      return await session.run({ [dataset.inputName]: { dtype: 'float32', dims: batch.dims, data: batch.data } }, outputs);
    }
    return undefined;
  } finally {
    await session.release();
  }
}

