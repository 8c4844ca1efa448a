/**
 * Ranking quantizable layers by sensitivity: pure functions of the measured scores, deterministic (ties broken
 * by the mean cosine, then by layer name), so the same measurements always give the same order.
 *
 * Sensitivity of a layer, larger = quantizing it hurts more, in the units of the chosen metric:
 * - one-at-a-time (only this layer INT8): the damage it does alone, against FP32:
 *     cosine: 1 - mean cosine;  agreement: the drop in points;  worst-cosine: 1 - worst cosine.
 * - leave-one-out (every layer INT8 but this one): what taking it out of INT8 recovers, against full INT8:
 *     cosine: mean cosine - full INT8's;  agreement: full INT8's drop - this drop;  worst-cosine likewise.
 * - both: the sum of the two (same units: what the layer costs alone plus what it costs among the others).
 */
import type { VariantScore } from './evaluate.js';

/** The default measure and ranking metric (why: docs/mixed-precision.md). */
export const DEFAULT_MEASURE: MeasureChoice = 'one-at-a-time';
export const DEFAULT_RANK_METRIC: RankMetric = 'cosine';

export type SensitivityMeasure = 'one-at-a-time' | 'leave-one-out';
export type MeasureChoice = SensitivityMeasure | 'both';
export const MEASURES: readonly MeasureChoice[] = ['one-at-a-time', 'leave-one-out', 'both'];
export type RankMetric = 'cosine' | 'agreement' | 'worst-cosine';
export const RANK_METRICS: readonly RankMetric[] = ['cosine', 'agreement', 'worst-cosine'];

export interface RankInput {
  name: string;
  oneAtATime?: VariantScore;
  leaveOneOut?: VariantScore;
}

function metricValue(s: VariantScore, metric: RankMetric): number {
  switch (metric) {
    case 'cosine':
      return s.cosineMean;
    case 'worst-cosine':
      return s.cosineMin;
    case 'agreement':
      // As a "higher is better" number, so that both measures read the same way.
      return -s.drop;
  }
}

/** Damage of a layer alone against FP32 (one-at-a-time), in the metric's units. */
export function oneAtATimeSensitivity(s: VariantScore, metric: RankMetric): number {
  const v = metricValue(s, metric);
  return metric === 'agreement' ? -v : 1 - v;
}

/** What leaving a layer out of INT8 recovers against full INT8 (leave-one-out). */
export function leaveOneOutSensitivity(s: VariantScore, fullInt8: VariantScore, metric: RankMetric): number {
  return metricValue(s, metric) - metricValue(fullInt8, metric);
}

/** The ranking key of one layer for a measure choice. */
export function sensitivityOf(layer: RankInput, measure: MeasureChoice, metric: RankMetric, fullInt8?: VariantScore): number {
  let total = 0;
  if (measure !== 'leave-one-out') {
    if (!layer.oneAtATime) throw new Error(`layer ${layer.name} has no one-at-a-time measurement`);
    total += oneAtATimeSensitivity(layer.oneAtATime, metric);
  }
  if (measure !== 'one-at-a-time') {
    if (!layer.leaveOneOut) throw new Error(`layer ${layer.name} has no leave-one-out measurement`);
    if (!fullInt8) throw new Error('leave-one-out needs the full INT8 score');
    total += leaveOneOutSensitivity(layer.leaveOneOut, fullInt8, metric);
  }
  return total;
}

/**
 * Orders layers most sensitive first. Ties on the key are broken by the same measure on the mean cosine (when
 * the key is another metric), then by name (code-unit order), so the order never depends on the input order.
 */
export function rankLayers<T extends RankInput>(layers: readonly T[], measure: MeasureChoice, metric: RankMetric, fullInt8?: VariantScore): Array<T & { sensitivity: number; rank: number }> {
  const keyed = layers.map((l) => ({
    layer: l,
    key: sensitivityOf(l, measure, metric, fullInt8),
    tie: metric === 'cosine' ? 0 : sensitivityOf(l, measure, 'cosine', fullInt8),
  }));
  keyed.sort((a, b) => {
    if (a.key !== b.key) return b.key - a.key;
    if (a.tie !== b.tie) return b.tie - a.tie;
    return a.layer.name < b.layer.name ? -1 : a.layer.name > b.layer.name ? 1 : 0;
  });
  return keyed.map((k, i) => ({ ...k.layer, sensitivity: k.key, rank: i + 1 }));
}
