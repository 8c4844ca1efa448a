/**
 * Bias correction for the commands (calibrate, quantize): the calibration images as a batch-1 dataset, the
 * correction (src/calibrators/bias-correction.ts), and a summary for the results.
 */
import { correctBiases, type BiasCorrectionResult } from '../calibrators/bias-correction.js';
import { UserError } from '../errors.js';
import type { OnnxModel } from '../onnx/model.js';
import type { LayerPrecision } from '../precision/map.js';
import type { Reporter } from '../reporter.js';
import { datasetForModel, type DataOptions } from './data.js';

export interface BiasCorrectionSummary {
  layers: number;
  images: number;
  passes: number;
  seconds: number;
  /** Over every corrected channel: the mean and the largest |shift|. */
  meanAbsShift: number;
  maxAbsShift: number;
  /** The layer with the largest shift. */
  largest?: { node: string; shift: number };
  skipped: Array<{ node: string; reason: string }>;
  /** The FP32 model with the corrected biases, where one was written (implicit quantization). */
  model?: string;
}

export async function correctModelBiases(options: {
  modelFile: string;
  model: OnnxModel;
  scales: ReadonlyMap<string, number>;
  data: DataOptions;
  precisionMap?: ReadonlyMap<string, LayerPrecision>;
  threads?: number;
  reporter: Reporter;
}): Promise<{ result: BiasCorrectionResult; summary: BiasCorrectionSummary }> {
  // One image at a time, whatever --batch says: the shifts must not depend on the batch size.
  const { input, dataset } = await datasetForModel(options.modelFile, options.model, { ...options.data, batch: 1, prefetchImages: 8 }, 'bias correction', 1);
  if (typeof input.dims[0] === 'number' && input.dims[0] > 1) {
    throw new UserError(`${options.modelFile} has a fixed batch of ${input.dims[0]}; --bias-correction runs the images one at a time.`, {
      hint: 'export the model with a dynamic (or 1) batch dimension',
    });
  }
  const result = await correctBiases({
    model: options.model,
    file: options.modelFile,
    activationScales: options.scales,
    precisionMap: options.precisionMap,
    dataset,
    threads: options.threads,
    reporter: options.reporter,
  });
  return { result, summary: summarize(result) };
}

function summarize(r: BiasCorrectionResult): BiasCorrectionSummary {
  let sum = 0;
  let count = 0;
  let max = 0;
  let largest: BiasCorrectionSummary['largest'];
  for (const l of r.layers) {
    for (const s of l.shift) {
      const a = Math.abs(s);
      sum += a;
      count++;
      if (a > max) {
        max = a;
        largest = { node: l.node, shift: s };
      }
    }
  }
  return {
    layers: r.layers.length,
    images: r.images,
    passes: r.passes,
    seconds: r.seconds,
    meanAbsShift: count > 0 ? sum / count : 0,
    maxAbsShift: max,
    ...(largest ? { largest } : {}),
    skipped: r.skipped,
  };
}
