/**
 * --weight-search for the commands that write a Q/DQ model (quantize, compare's variants): the calibration images as
 * a batch-1 dataset, the search (src/calibrators/weight-search.ts), and a summary for the results.
 */
import { searchWeightScales, type WeightSearchResult } from '../calibrators/weight-search.js';
import { UserError } from '../errors.js';
import type { OnnxModel } from '../onnx/model.js';
import type { LayerPrecision } from '../precision/map.js';
import type { Reporter } from '../reporter.js';
import { datasetForModel, type DataOptions } from './data.js';

export interface WeightSearchSummary {
  layers: number;
  channels: number;
  /** Channels whose scale went below max|W_c| / 127. */
  shrunk: number;
  images: number;
  passes: number;
  seconds: number;
  grid: number[];
  /** Summed squared output error of the searched layers at max|W|/127 and at the chosen scales. */
  errorBefore: number;
  errorAfter: number;
  skipped: Array<{ node: string; reason: string }>;
}

/**
 * TensorRT's implicit INT8 (a calibration cache, TensorRT 8.6-10.x) quantizes the weights itself, per output
 * channel at max|W| / 127; there is nothing to search on that path.
 */
export const WEIGHT_SEARCH_IMPLICIT =
  '--weight-search changes the weight scales of a Q/DQ model; a calibration cache holds activation scales only, and TensorRT (8.6-10.x implicit INT8) picks the weight scales itself ' +
  '(per output channel, max|W|/127: TensorRT developer guide, "Working with Quantized Types" / "Explicit vs Implicit Quantization").';

export async function searchModelWeightScales(options: {
  modelFile: string;
  model: OnnxModel;
  scales: ReadonlyMap<string, number>;
  data: DataOptions;
  precisionMap?: ReadonlyMap<string, LayerPrecision>;
  threads?: number;
  reporter: Reporter;
}): Promise<{ result: WeightSearchResult; summary: WeightSearchSummary }> {
  // One image at a time, whatever --batch says: the choice must not depend on the batch size.
  const { input, dataset } = await datasetForModel(options.modelFile, options.model, { ...options.data, batch: 1, prefetchImages: 8 }, 'weight search', 1);
  if (typeof input.dims[0] === 'number' && input.dims[0] > 1) {
    throw new UserError(`${options.modelFile} has a fixed batch of ${input.dims[0]}; --weight-search runs the images one at a time.`, { hint: 'export the model with a dynamic (or 1) batch dimension' });
  }
  const result = await searchWeightScales({
    model: options.model,
    file: options.modelFile,
    activationScales: options.scales,
    precisionMap: options.precisionMap,
    dataset,
    threads: options.threads,
    reporter: options.reporter,
  });
  return {
    result,
    summary: {
      layers: result.layers.length,
      channels: result.layers.reduce((a, l) => a + l.channels, 0),
      shrunk: result.layers.reduce((a, l) => a + l.shrunk, 0),
      images: result.images,
      passes: result.passes,
      seconds: result.seconds,
      grid: result.alphas,
      errorBefore: result.layers.reduce((a, l) => a + l.errorBefore, 0),
      errorAfter: result.layers.reduce((a, l) => a + l.errorAfter, 0),
      skipped: result.skipped,
    },
  };
}
