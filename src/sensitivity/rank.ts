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

/**
 * The fast search's candidates (proxy-then-measure, see docs/mixed-precision.md): the layers ordered by their
 * proxy, the own output SNR of the proxy pass (lowest first; ties by name), and the first
 * max(PROXY_MIN_CANDIDATES, ceil(PROXY_CANDIDATE_SHARE x layers)) of them, plus every later layer whose SNR is
 * within PROXY_MARGIN_DB of the last one taken (the proxy cannot separate those from it).
 * Why so many: a layer's own SNR does not say how much its noise grows on the way to the outputs (an early layer's
 * noise passes through every later one). On the MobileNetV2 fixture the three layers the exhaustive search ranks
 * first sit at proxy ranks up to 13 of 65 over the five calibration algorithms (and bn_Conv1, exhaustive 4th to
 * 6th, at 58 to 60): 20% covers them; the prefix walk of the mixed search looks at 8 layers one by one first.
 * The margin: 0.1 dB is 2.3% of noise power, below what the choice of images moves a layer's SNR by; own SNRs
 * crowd (on MobileNetV2, 20 layers lie between 33 and 35 dB), so a wider margin measures many more (0.5 dB: 21 of 65).
 */
export const PROXY_CANDIDATE_SHARE = 0.2;
export const PROXY_MIN_CANDIDATES = 8;
export const PROXY_MARGIN_DB = 0.1;

export interface ProxyInput {
  name: string;
  /** The proxy: the layer's own output SNR (dB); lower is more sensitive. */
  outputSnrDb?: number;
}

export interface CandidateRule {
  share?: number;
  min?: number;
  marginDb?: number;
}

const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
/** NaN (no finite value seen) sorts as the least sensitive. */
const proxyKey = (l: ProxyInput) => (l.outputSnrDb === undefined || Number.isNaN(l.outputSnrDb) ? Infinity : l.outputSnrDb);

/** Layers by proxy, most sensitive (lowest SNR) first, ties by name. */
export function proxyOrder<T extends ProxyInput>(layers: readonly T[]): T[] {
  return [...layers].sort((a, b) => proxyKey(a) - proxyKey(b) || byName(a, b));
}

/** How many the rule takes before the margin, for `total` layers. */
export function candidateCount(total: number, rule: CandidateRule = {}): number {
  const share = rule.share ?? PROXY_CANDIDATE_SHARE;
  const min = rule.min ?? PROXY_MIN_CANDIDATES;
  return Math.min(total, Math.max(min, Math.ceil(share * total - 1e-9)));
}

/** The candidates to measure (see PROXY_CANDIDATE_SHARE), in proxy order. */
export function proxyCandidates<T extends ProxyInput>(layers: readonly T[], rule: CandidateRule = {}): T[] {
  const ordered = proxyOrder(layers);
  const k = candidateCount(ordered.length, rule);
  if (k === 0) return [];
  const margin = rule.marginDb ?? PROXY_MARGIN_DB;
  const last = proxyKey(ordered[k - 1]!);
  let end = k;
  while (end < ordered.length && proxyKey(ordered[end]!) - last <= margin) end++;
  return ordered.slice(0, end);
}

export interface Disagreement {
  layer: string;
  /** Its rank among the measured layers by the proxy, and by the measured key. */
  proxyRank: number;
  measuredRank: number;
}

/**
 * Proxy order against measured order among the measured layers: each layer whose two ranks differ, and Kendall's
 * tau-a of the two orders (1: the proxy orders them exactly as measured; -1: reversed).
 */
export function proxyAgreement(measuredOrder: readonly string[], proxyRanked: readonly string[]): { disagreements: Disagreement[]; kendallTau: number } {
  const inSet = new Set(measuredOrder);
  const proxy = proxyRanked.filter((l) => inSet.has(l));
  const p = new Map(proxy.map((l, i) => [l, i]));
  const disagreements = measuredOrder
    .map((layer, i) => ({ layer, proxyRank: p.get(layer)! + 1, measuredRank: i + 1 }))
    .filter((d) => d.proxyRank !== d.measuredRank);
  const n = measuredOrder.length;
  let concordant = 0;
  let discordant = 0;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      // i is measured more sensitive than j; concordant when the proxy says so too.
      if (p.get(measuredOrder[i]!)! < p.get(measuredOrder[j]!)!) concordant++;
      else discordant++;
    }
  }
  const pairs = (n * (n - 1)) / 2;
  return { disagreements, kendallTau: pairs === 0 ? 1 : (concordant - discordant) / pairs };
}
