/**
 * The images a model is run on: its one image input, the preprocessing resolved against that input (presets,
 * flags, static dims or --shapes/--size), the batch size, and the Dataset. One place for calibrate, compare and
 * sensitivity, so that they read the same flags the same way.
 */
import { createDataset } from '../datasets/dataset.js';
import { DEFAULT_BATCH } from './defaults.js';
import { resolveBatchSize, resolvePreprocess, type PreprocessOptions } from '../datasets/presets.js';
import type { Dataset, PreprocessConfig } from '../datasets/types.js';
import { UserError } from '../errors.js';
import { graphInputs } from '../onnx/graph.js';
import type { OnnxModel } from '../onnx/model.js';
import { shardRange, type ShardSpec } from './shard.js';

export interface DataOptions {
  /** A folder (recursive), a glob or a list file. */
  data: string;
  preprocess?: PreprocessOptions;
  batch?: number;
  maxImages?: number;
  seed?: number;
  strict?: boolean;
  concurrency?: number;
  /** Images decoded ahead of the consumer, at least (default: two batches). */
  prefetchImages?: number;
  /** Only the shard's slice of the selection (src/app/shard.ts). */
  shard?: ShardSpec;
}

/** Batch size when neither --batch, --shapes nor a fixed model batch says otherwise (in defaults.ts for --help). */
export { DEFAULT_BATCH };

export interface ModelData {
  input: { name: string; dims: Array<number | string> };
  preprocess: PreprocessConfig;
  batchSize: number;
  dataset: Dataset;
  /** With a shard: every selected file, and the slice of them that `dataset` holds. */
  selection?: { files: readonly string[]; start: number; end: number };
}

/** `purpose` completes the error for a model without exactly one image input ("calibration", "comparison"...). */
export async function datasetForModel(modelFile: string, model: OnnxModel, data: DataOptions, purpose: string, defaultBatch = DEFAULT_BATCH): Promise<ModelData> {
  const inputs = graphInputs(model);
  if (inputs.length !== 1) {
    throw new UserError(`${modelFile} has ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')}); ${purpose} on images feeds models with one image input.`);
  }
  const first = inputs[0]!;
  if (!first.dims) throw new UserError(`${modelFile}: the rank of input '${first.name}' is not declared.`, { hint: 'Give its shape with --shapes.' });
  const input = { name: first.name, dims: first.dims };
  const preprocess = resolvePreprocess(data.preprocess ?? {}, input);
  const batchSize = resolveBatchSize({ batch: data.batch, shapes: data.preprocess?.shapes }, input, defaultBatch);
  const settings = {
    preprocess,
    inputName: input.name,
    batchSize,
    strict: data.strict,
    concurrency: data.concurrency,
    prefetchBatches: Math.max(2, Math.ceil((data.prefetchImages ?? 0) / batchSize)),
  };
  const dataset = await createDataset({ data: data.data, maxImages: data.maxImages, seed: data.seed, ...settings });
  if (!data.shard) return { input, preprocess, batchSize, dataset };
  // A fixed batch: slices on batch boundaries, so that the shards drop what one run would drop.
  const fixedBatch = typeof input.dims[0] === 'number' && input.dims[0] > 0 ? input.dims[0] : 1;
  const { start, end } = shardRange(dataset.files.length, data.shard, fixedBatch);
  const slice = await createDataset({ files: dataset.files.slice(start, end), ...settings });
  return { input, preprocess, batchSize, dataset: slice, selection: { files: dataset.files, start, end } };
}
