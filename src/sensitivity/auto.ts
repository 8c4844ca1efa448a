/**
 * `--mixed auto`: sensitivity ranking then the mixed-precision search, on data prepared once. The entry point for
 * `sensitivity --max-drop`, `quantize --mixed auto` and `compare --mixed auto`:
 *
 *   const ctx = await prepareSensitivity({ model, cache, data });       // decode + FP32 once
 *   const { sensitivity, mixed } = await autoMixedPrecision(ctx, { maxDrop: 1, out: precisionMapPath(model) });
 *   report.tradeoff = mixed.tradeoff;                                     // the curve, chosen point marked
 */
import { UserError } from '../errors.js';
import type { Reporter } from '../reporter.js';
import { ensureInputNoise, fp16Checks, measureSensitivity, type SensitivityContext, type SensitivityReport } from './analyze.js';
import { chooseMixedPrecision, type MixedEvaluator, type MixedResult } from './mixed.js';
import type { MeasureChoice, RankMetric } from './rank.js';

export interface AutoMixedOptions {
  /** Budget in points (see chooseMixedPrecision). */
  maxDrop: number;
  /** At most this many layers out of INT8: a count, or a string "N" or "P%" of the quantizable layers. */
  maxNonInt8?: number | string;
  measure?: MeasureChoice;
  metric?: RankMetric;
  /** Rank with every layer measured (default: proxy-then-measure, src/sensitivity/analyze.ts). */
  exhaustive?: boolean;
  /** Measure the proxy's candidates on the N hardest images only (MeasureOptions.hardest). */
  hardest?: number;
  /** A ranking already measured on this context (skips the analysis). */
  sensitivity?: SensitivityReport;
  /** Precision map file to write when the budget is met. */
  out?: string;
  evaluate?: MixedEvaluator;
  reporter?: Reporter;
  signal?: AbortSignal;
}

/** "12" -> 12; "10%" -> floor(10% of total) (at least 1 when the percentage is positive). */
export function parseLayerCap(spec: number | string, total: number, option = '--max-layers'): number {
  const text = String(spec).trim();
  const m = /^(\d+(?:\.\d+)?)(%?)$/.exec(text);
  if (!m) throw new UserError(`Expected a number of layers or a percentage (e.g. 6 or 10%) for ${option} but received ${JSON.stringify(text)}.`);
  const n = Number(m[1]);
  if (m[2] === '%') {
    if (n > 100) throw new UserError(`${option} ${text}: a percentage of the layers is at most 100%.`);
    return n === 0 ? 0 : Math.max(1, Math.floor((n / 100) * total + 1e-9));
  }
  if (!Number.isInteger(n)) throw new UserError(`${option} ${text}: a number of layers is a whole number.`);
  return Math.min(n, total);
}

export async function autoMixedPrecision(ctx: SensitivityContext, options: AutoMixedOptions): Promise<{ sensitivity: SensitivityReport; mixed: MixedResult }> {
  const layers = ctx.builder.layers.map((l) => l.name);
  const cap = options.maxNonInt8 === undefined ? undefined : parseLayerCap(options.maxNonInt8, layers.length);
  const sensitivity =
    options.sensitivity ??
    (await measureSensitivity(ctx, {
      ...(options.measure ? { measure: options.measure } : {}),
      ...(options.exhaustive ? { exhaustive: true } : {}),
      ...(options.hardest !== undefined ? { hardest: options.hardest } : {}),
      ...(options.metric ? { metric: options.metric } : {}),
      ...(options.reporter ? { reporter: options.reporter } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    }));
  await ensureInputNoise(ctx, { ...(options.reporter ? { reporter: options.reporter } : {}), ...(options.signal ? { signal: options.signal } : {}) });
  const notEnough = new Map([...fp16Checks(ctx, sensitivity)].filter(([, c]) => !c.enough).map(([l, c]) => [l, c.reason!]));
  const mixed = await chooseMixedPrecision({
    model: ctx.model,
    scales: ctx.scales,
    data: ctx.data,
    layers,
    ranking: sensitivity.layers.map((l) => l.name),
    maxDrop: options.maxDrop,
    ...(cap !== undefined ? { maxNonInt8: cap } : {}),
    fp16NotEnough: notEnough,
    ...(options.evaluate ? { evaluate: options.evaluate } : {}),
    ...(ctx.threads ? { threads: ctx.threads } : {}),
    file: ctx.modelFile,
    ...(options.out !== undefined ? { out: options.out } : {}),
    ...(options.reporter ? { reporter: options.reporter } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  return { sensitivity, mixed };
}
