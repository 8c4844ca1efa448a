/**
 * Bias correction for the commands (calibrate, quantize): the calibration images as a batch-1 dataset, the
 * correction (src/calibrators/bias-correction.ts), and a summary for the results.
 */
import path from 'node:path';
import { scaleFromAmax } from '../cache/trt-cache.js';
import type { AlgorithmName } from '../calibrators/types.js';
import { writeOnnxModel } from '../onnx/model.js';
import { correctBiases, type BiasCorrectionResult } from '../calibrators/bias-correction.js';
import { UserError } from '../errors.js';
import type { OnnxModel } from '../onnx/model.js';
import type { LayerPrecision } from '../precision/map.js';
import type { Reporter } from '../reporter.js';
import { datasetForModel, type DataOptions } from './data.js';

export type BiasCorrectionMode = 'full' | 'weights';

export interface BiasCorrectionSummary {
  mode: BiasCorrectionMode;
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
  /** Weight scales from --weight-search (the correction is measured with them). */
  weightScales?: ReadonlyMap<string, Float32Array>;
  mode?: BiasCorrectionMode;
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
    ...(options.weightScales ? { weightScales: options.weightScales } : {}),
    mode: options.mode,
    dataset,
    threads: options.threads,
    reporter: options.reporter,
  });
  return { result, summary: summarize(result, options.mode ?? 'weights') };
}

function summarize(r: BiasCorrectionResult, mode: BiasCorrectionMode): BiasCorrectionSummary {
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
    mode,
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

/**
 * TensorRT 8.6-10.x implicit INT8: TensorRT quantizes the weights itself, so the correction travels as an FP32
 * model whose biases are corrected for the cache's scales: <outDir>/<model>.<algo>.bc.onnx beside each cache,
 * otherwise the input model, to be built with that cache.
 */
export async function writeBiasCorrectedModels(options: {
  modelFile: string;
  model: OnnxModel;
  amax: Record<string, Record<string, number>>;
  algorithms: readonly string[];
  data: DataOptions;
  outDir: string;
  mode?: BiasCorrectionMode;
  threads?: number;
  reporter: Reporter;
}): Promise<Array<{ algorithm: AlgorithmName; file: string } & BiasCorrectionSummary>> {
  const base = path.basename(options.modelFile).replace(/\.onnx$/i, '');
  const written: Array<{ algorithm: AlgorithmName; file: string } & BiasCorrectionSummary> = [];
  for (const algorithm of options.algorithms) {
    const scales = new Map(Object.entries(options.amax[algorithm]!).map(([name, amax]) => [name, scaleFromAmax(amax)]));
    options.reporter.info(`bias correction for the ${algorithm} scales`);
    const { result, summary } = await correctModelBiases({ ...options, scales });
    const file = path.join(options.outDir, `${base}.${algorithm}.bc.onnx`);
    await writeOnnxModel(file, result.model);
    written.push({ algorithm: algorithm as AlgorithmName, file, ...summary, model: file });
  }
  return written;
}
