/**
 * `--mixed auto` for quantize and compare: the sensitivity ranking and the mixed-precision search
 * (src/sensitivity/), on images decoded and run in FP32 once, writing the precision map.
 */
import path from 'node:path';
import type { TaskFlags } from '../compare/task/index.js';
import { precisionMapPath } from '../precision/map.js';
import type { Reporter } from '../reporter.js';
import { prepareSensitivity } from '../sensitivity/analyze.js';
import { autoMixedPrecision } from '../sensitivity/auto.js';
import { defaultMixedEvaluator, type MixedResult } from '../sensitivity/mixed.js';
import type { HighPrecisionFp16 } from '../precision/apply.js';
import { DEFAULT_OUT_DIR, type DataOptions } from './calibrate.js';

export interface MixedSearchOptions {
  model: string;
  cache: string;
  data: DataOptions;
  maxDrop: number;
  /** At most this many layers out of INT8 ("N" or "P%"). */
  maxLayers?: string;
  precisionOut?: string;
  outDir?: string;
  threads?: number;
  /** The task the budget is in points of (default auto). */
  task?: TaskFlags;
  /**
   * --high-precision fp16: every candidate map is measured as the INT8 + FP16 model it becomes (the rest in FP16,
   * FP32 only where the map or the FP16 rules say), not with the rest in FP32: the budget holds for the model written.
   */
  highPrecision?: HighPrecisionFp16;
  reporter?: Reporter;
}

export async function searchMixedPrecision(options: MixedSearchOptions): Promise<{ mixed: MixedResult }> {
  const ctx = await prepareSensitivity({
    model: options.model,
    cache: options.cache,
    data: options.data,
    ...(options.threads ? { threads: options.threads } : {}),
    ...(options.task ? { task: options.task } : {}),
    ...(options.reporter ? { reporter: options.reporter } : {}),
  });
  const evaluate = options.highPrecision
    ? defaultMixedEvaluator(ctx.model, ctx.scales, ctx.data, { ...(ctx.threads ? { threads: ctx.threads } : {}), file: ctx.modelFile, highPrecision: { ...options.highPrecision, emulateOnCpu: true } })
    : undefined;
  if (options.highPrecision) options.reporter?.info('mixed precision: each candidate measured as the INT8 + FP16 model (--high-precision fp16)');
  const { mixed } = await autoMixedPrecision(ctx, {
    maxDrop: options.maxDrop,
    ...(evaluate ? { evaluate } : {}),
    ...(options.maxLayers !== undefined ? { maxNonInt8: options.maxLayers } : {}),
    out: options.precisionOut ?? precisionMapPath(options.model, options.outDir ?? DEFAULT_OUT_DIR),
    ...(options.reporter ? { reporter: options.reporter } : {}),
  });
  if (options.highPrecision) mixed.highPrecision = 'fp16';
  mixed.tradeoff.rest = options.highPrecision ? 'fp16' : 'fp32';
  return { mixed };
}

export interface MixedSummary {
  met: boolean;
  reason?: string;
  /** Layers kept out of INT8, most sensitive first. */
  keptOut: Array<{ layer: string; precision: 'fp16' | 'fp32' }>;
  int8Layers: number;
  nonInt8Layers: number;
  agreement: number;
  drop: number;
  /** The chosen map's mean per-image output cosine against FP32. */
  meanCosine: number;
  precisionMap?: string;
  /** The type of the non-INT8 rest in every model the search measured. */
  highPrecision: 'fp16' | 'fp32';
  evaluations: number;
  seconds: number;
}

export function summarizeMixed(m: MixedResult): MixedSummary {
  return {
    met: m.met,
    ...(m.reason !== undefined ? { reason: m.reason } : {}),
    keptOut: m.chosen.keptOut,
    int8Layers: m.chosen.int8Layers,
    nonInt8Layers: m.chosen.nonInt8Layers,
    agreement: m.chosen.agreement,
    drop: m.chosen.drop,
    meanCosine: m.chosen.meanCosine,
    ...(m.written ? { precisionMap: path.normalize(m.written) } : {}),
    highPrecision: m.highPrecision ?? 'fp32',
    evaluations: m.evaluations,
    seconds: m.seconds,
  };
}
