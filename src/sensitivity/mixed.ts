/**
 * `--mixed auto --max-drop X`: the smallest set of layers to keep out of INT8 so that the model stays within an
 * accuracy budget, found greedily from a sensitivity ranking.
 *
 * Method (a greedy search over the ranking, in the spirit of the layer-wise "fall back the most sensitive layers"
 * procedures of NVIDIA's pytorch-quantization / TensorRT Model Optimizer and onnxruntime's mixed-precision
 * tooling):
 * 1. Evaluate full INT8. If it meets the budget, every layer stays INT8.
 * 2. Prefix walk: keep the k most sensitive layers out of INT8, k = 1, 2, ... 8, then growing by half each step
 *    up to the whole ranking, until the budget is met; then bisect between the last failing and the first
 *    passing k (accuracy need not be monotonic in k, so only evaluated prefixes are ever taken). The walk may
 *    pass the cap (--max-layers): the cap bounds the answer, and pruning often brings a longer prefix back under.
 * 3. Pruning: try putting each kept-out layer back into INT8, least sensitive first; it goes back whenever the
 *    budget still holds. The result has no layer that could go back alone.
 * 4. Precision: a kept-out layer runs in FP16 unless FP16 is not enough for it. "Not enough" is found two ways:
 *    statically (its values pass the FP16 range, or FP16 rounding alone costs it too much SNR: see
 *    FP16_MIN_SNR_DB in analyze.ts), those layers go to FP32 from the start; and empirically, when no prefix
 *    passes with FP16 but the whole ranking in FP32 would, the walk is redone in FP32 and each FP32 layer of the
 *    result is then tried in FP16 again, keeping FP16 wherever the budget still holds.
 * 5. The answer must keep at most `maxNonInt8` layers out; otherwise the best map within the cap is returned
 *    with the reason the budget was not met.
 * The budget: the drop against FP32, in points, of the primary output's agreement (top-1 agreement for a
 * classifier, IoU of the thresholded maps for a dense map) or of top-1 accuracy with labels: the `--max-drop` of compare.
 *
 * Every evaluation is one model built from a precision map by src/precision/apply.ts (the model `quantize`
 * writes from that map) and run on the kept batches; an evaluator can be injected (tests).
 */
import { METRIC_VALUE_NAMES } from '../compare/format.js';
import type { TradeoffCurve } from '../compare/types.js';
import { UserError } from '../errors.js';
import type { OnnxModel } from '../onnx/model.js';
import { buildMixedPrecisionModel, type HighPrecisionFp16 } from '../precision/apply.js';
import { writePrecisionMap, type LayerPrecision, type PrecisionMap } from '../precision/map.js';
import { silentReporter, type Reporter } from '../reporter.js';
import type { EvaluationData } from './data.js';
import { evaluateModel, type VariantScore } from './evaluate.js';

export interface MixedEvaluation {
  score: VariantScore;
  /** Layers that really have Q/DQ in the built model (a residual Add loses its Q/DQ with its convolution). */
  int8Layers: number;
}

/** Evaluates the model a precision map describes. */
export type MixedEvaluator = (map: PrecisionMap) => Promise<MixedEvaluation>;

export type SearchStep = 'all-int8' | 'prefix' | 'fp32-check' | 'prune' | 'precision' | 'ceiling';

export interface MixedPoint {
  step: SearchStep;
  /** Layers the map keeps out of INT8, in ranking order, with their precision. */
  keptOut: Array<{ layer: string; precision: 'fp16' | 'fp32' }>;
  int8Layers: number;
  nonInt8Layers: number;
  /** The budget metric's value (a fraction): agreement with FP32, or accuracy. */
  agreement: number;
  /** Its drop against FP32 in points. */
  drop: number;
  meanCosine: number;
  worstCosine: number;
  meets: boolean;
  label: string;
}

export interface ChooseMixedOptions {
  /** The FP32 model and its activation scales (the calibration cache). */
  model: OnnxModel;
  scales: ReadonlyMap<string, number>;
  /** The kept batches and FP32 outputs (src/sensitivity/data.ts). */
  data: EvaluationData;
  /** Every quantizable layer, in topological order (the map lists them all). */
  layers: readonly string[];
  /** Layers most sensitive first (from sensitivity analysis); only these are ever kept out. */
  ranking: readonly string[];
  /** Budget: the largest drop against FP32, in points. */
  maxDrop: number;
  /** Keep at most this many layers out of INT8 (default: the whole ranking). */
  maxNonInt8?: number;
  /** Layers for which FP16 is not enough (layer -> reason): kept out in FP32. */
  fp16NotEnough?: ReadonlyMap<string, string>;
  /** Replaces the default evaluator (build with apply.ts, run with onnxruntime). */
  evaluate?: MixedEvaluator;
  threads?: number;
  file?: string;
  /** Write the chosen map here (only when the budget is met). */
  out?: string;
  reporter?: Reporter;
  signal?: AbortSignal;
}

export interface MixedResult {
  /** Every quantizable layer -> its precision. */
  map: Map<string, LayerPrecision>;
  met: boolean;
  chosen: MixedPoint;
  /** Every evaluation, in the order made. */
  points: MixedPoint[];
  /** For report.tradeoff: full INT8, the prefix walk, everything out of INT8, and the chosen map (marked). */
  tradeoff: TradeoffCurve;
  /** The smallest value of the metric the budget accepts (a fraction). */
  target: number;
  metric: VariantScore['metric'];
  /** Why the budget was not met, when it was not. */
  reason?: string;
  /** The precision map file written. */
  written?: string;
  /** 'fp16' when every candidate was measured as the INT8 + FP16 model (the non-INT8 rest in FP16), else FP32. */
  highPrecision?: 'fp16';
  evaluations: number;
  seconds: number;
}

const METRIC_NAMES = METRIC_VALUE_NAMES;

/**
 * The default evaluator: the map's model (src/precision/apply.ts) run on the kept batches. With `highPrecision`
 * (quantize/compare --mixed auto --high-precision fp16) it is the INT8 + FP16 model those commands write, every
 * non-INT8 op in FP16 and FP32 only where the map or the FP16 rules say; emulateOnCpu should be true so that
 * onnxruntime's CPU provider rounds to float16 where it has no float16 kernel (the FP16 error is measured).
 */
export function defaultMixedEvaluator(
  model: OnnxModel,
  scales: ReadonlyMap<string, number>,
  data: EvaluationData,
  options: { threads?: number; file?: string; highPrecision?: HighPrecisionFp16 } = {},
): MixedEvaluator {
  return async (map) => {
    const built = buildMixedPrecisionModel(model, {
      activationScales: scales,
      precisionMap: map,
      ...(options.file ? { file: options.file } : {}),
      ...(options.highPrecision ? { highPrecision: options.highPrecision } : {}),
    });
    const r = await evaluateModel(built.model, data, { ...(options.threads ? { threads: options.threads } : {}), ...(options.file ? { file: options.file } : {}) });
    return { score: r.score, int8Layers: built.int8Layers.length };
  };
}

/** Prefix lengths of the walk: 1..8, then growing by half, always ending at `cap`. */
export function prefixSchedule(cap: number, linear = 8): number[] {
  const ks: number[] = [];
  for (let k = 1; k <= Math.min(cap, linear); k++) ks.push(k);
  let k = Math.min(cap, linear);
  while (k < cap) {
    k = Math.min(cap, Math.ceil(k * 1.5));
    ks.push(k);
  }
  return ks;
}

export async function chooseMixedPrecision(options: ChooseMixedOptions): Promise<MixedResult> {
  const started = performance.now();
  const reporter = options.reporter ?? silentReporter;
  const { layers, ranking, maxDrop } = options;
  if (!Number.isFinite(maxDrop) || maxDrop < 0) throw new UserError(`Expected a number of points >= 0 for --max-drop but received ${maxDrop}.`);
  const known = new Set(layers);
  const unknown = ranking.filter((l) => !known.has(l));
  if (unknown.length > 0) throw new Error(`ranked layers not among the quantizable layers: ${unknown.slice(0, 3).join(', ')}`);
  if (new Set(ranking).size !== ranking.length) throw new Error('the ranking names a layer twice');
  const cap = Math.max(0, Math.min(options.maxNonInt8 ?? ranking.length, ranking.length));
  const notEnough = options.fp16NotEnough ?? new Map<string, string>();
  const evaluate = options.evaluate ?? defaultMixedEvaluator(options.model, options.scales, options.data, { ...(options.threads ? { threads: options.threads } : {}), ...(options.file ? { file: options.file } : {}) });
  const rankOf = new Map(ranking.map((l, i) => [l, i]));

  type Kept = Map<string, 'fp16' | 'fp32'>;
  const points: MixedPoint[] = [];
  const memo = new Map<string, MixedPoint>();
  let target = Number.NaN;
  let metric: VariantScore['metric'] = 'top1-agreement';

  const mapOf = (kept: Kept): Map<string, LayerPrecision> => new Map(layers.map((l) => [l, kept.get(l) ?? 'int8']));
  const keyOf = (kept: Kept) => [...kept].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([l, p]) => `${l}=${p}`).join('\u0000');
  const run = async (kept: Kept, step: SearchStep, label: string): Promise<MixedPoint> => {
    options.signal?.throwIfAborted();
    const key = keyOf(kept);
    const seen = memo.get(key);
    if (seen) return seen;
    const r = await evaluate(mapOf(kept));
    if (points.length === 0) {
      metric = r.score.metric;
      // value + drop/100 is FP32's own value (1 for agreement, FP32's accuracy with labels).
      target = r.score.value + r.score.drop / 100 - maxDrop / 100;
    }
    const point: MixedPoint = {
      step,
      keptOut: [...kept].sort((a, b) => rankOf.get(a[0])! - rankOf.get(b[0])!).map(([layer, precision]) => ({ layer, precision })),
      int8Layers: r.int8Layers,
      nonInt8Layers: layers.length - r.int8Layers,
      agreement: r.score.value,
      drop: r.score.drop,
      meanCosine: r.score.cosineMean,
      worstCosine: r.score.cosineMin,
      // A hair of tolerance: the drop is computed as (n - k) * 100 / n.
      meets: r.score.drop <= maxDrop + 1e-9,
      label,
    };
    memo.set(key, point);
    points.push(point);
    reporter.info(
      `  ${label.padEnd(28)} ${point.nonInt8Layers} of ${layers.length} out of INT8: ${METRIC_NAMES[metric]} ${(point.agreement * 100).toFixed(2)}%` +
        ` (drop ${point.drop.toFixed(2)} points), mean cosine ${point.meanCosine.toFixed(5)}${point.meets ? '  meets the budget' : ''}`,
    );
    return point;
  };
  const prefix = (k: number, precisionOf: (l: string) => 'fp16' | 'fp32'): Kept => new Map(ranking.slice(0, k).map((l) => [l, precisionOf(l)]));
  const staticPrecision = (l: string): 'fp16' | 'fp32' => (notEnough.has(l) ? 'fp32' : 'fp16');

  reporter.info(`mixed precision: budget ${maxDrop} points, at most ${cap} of ${layers.length} layers out of INT8`);
  const curve: MixedPoint[] = [];
  const allInt8 = await run(new Map(), 'all-int8', 'all INT8');
  curve.push(allInt8);
  const whole = ranking.length;

  /** The walk of step 2 with a precision rule; returns the first passing prefix length, if any. */
  const walk = async (precisionOf: (l: string) => 'fp16' | 'fp32', tag: string): Promise<number | undefined> => {
    let lastFail = 0;
    for (const k of prefixSchedule(whole)) {
      const p = await run(prefix(k, precisionOf), 'prefix', `${tag}top ${k} kept out`);
      curve.push(p);
      if (!p.meets) {
        lastFail = k;
        continue;
      }
      let lo = lastFail;
      let hi = k;
      while (hi - lo > 1) {
        const mid = Math.floor((lo + hi) / 2);
        const q = await run(prefix(mid, precisionOf), 'prefix', `${tag}top ${mid} kept out`);
        curve.push(q);
        if (q.meets) hi = mid;
        else lo = mid;
      }
      return hi;
    }
    return undefined;
  };

  let chosenKept: Kept = new Map();
  let met = allInt8.meets;
  /** A map that meets the budget but keeps more layers out than the cap allows. */
  let overCap: Kept | undefined;
  if (!met && whole > 0) {
    // The walk may go past the cap: the cap bounds the answer, not the search (pruning often brings a longer
    // prefix back under it when the ranking is not exactly the order that matters).
    let found = await walk(staticPrecision, '');
    let precisionOf = staticPrecision;
    if (found === undefined && ranking.some((l) => staticPrecision(l) === 'fp16')) {
      // FP16 not enough? The same layers in FP32.
      const p = await run(prefix(whole, () => 'fp32'), 'fp32-check', `top ${whole} kept out in FP32`);
      if (p.meets) {
        precisionOf = () => 'fp32';
        found = await walk(precisionOf, 'FP32: ');
      }
    }
    if (found !== undefined) {
      let kept = prefix(found, precisionOf);
      // 3. Pruning, least sensitive first.
      for (const layer of ranking.slice(0, found).reverse()) {
        const trial: Kept = new Map(kept);
        trial.delete(layer);
        const p = await run(trial, 'prune', `without ${layer}`);
        if (p.meets) kept = trial;
      }
      // 4. FP32 layers back to FP16 where the budget holds (not those FP16 cannot represent).
      for (const layer of ranking) {
        if (kept.get(layer) !== 'fp32' || notEnough.has(layer)) continue;
        const trial: Kept = new Map(kept);
        trial.set(layer, 'fp16');
        const p = await run(trial, 'precision', `${layer} in FP16`);
        if (p.meets) kept = trial;
      }
      if (kept.size <= cap) {
        met = true;
        chosenKept = kept;
      } else overCap = kept;
    }
  }

  // The far end of the curve: no layer in INT8.
  const ceiling = await run(new Map(layers.map((l) => [l, staticPrecision(l)])), 'ceiling', 'no layer in INT8');
  let reason: string | undefined;
  if (!met) {
    // The best reachable within the cap: highest value, then fewest layers out, then highest cosine.
    const within = points.filter((p) => p.keptOut.length <= cap);
    const best = within.reduce((a, b) =>
      b.agreement > a.agreement || (b.agreement === a.agreement && (b.nonInt8Layers < a.nonInt8Layers || (b.nonInt8Layers === a.nonInt8Layers && b.meanCosine > a.meanCosine))) ? b : a,
    );
    chosenKept = new Map(best.keptOut.map((k) => [k.layer, k.precision]));
    const pct = (v: number) => `${(v * 100).toFixed(2)}%`;
    const withinCap = `within the cap the best is ${pct(best.agreement)} with ${best.keptOut.length} layer(s) out`;
    if (overCap) {
      reason = `meeting the target ${pct(target)} needs ${overCap.size} layers out of INT8 (${[...overCap.keys()].join(', ')}), more than the cap of ${cap}; ${withinCap}: raise the cap (--max-layers) or the budget`;
    } else if (!ceiling.meets) {
      reason = `even with no layer in INT8 (FP16, FP32 where FP16 is not enough) the ${METRIC_NAMES[metric]} is ${pct(ceiling.agreement)}, below the target ${pct(target)}: the loss does not come from INT8 (FP16 itself, or layers the map does not control); ${withinCap}`;
    } else {
      reason = `keeping all ${whole} ranked layers out of INT8 does not meet the target ${pct(target)}, but no layer in INT8 does (${pct(ceiling.agreement)}): the layers that matter were not ranked (--layers); ${withinCap}`;
    }
  }

  const chosen = memo.get(keyOf(chosenKept))!;
  const map = mapOf(chosenKept);
  let written: string | undefined;
  if (met && options.out !== undefined) {
    await writePrecisionMap(options.out, map, layers);
    written = options.out;
  }

  // Curve: full INT8, the walk, the far end, and the chosen map; one point per distinct map.
  const curvePoints = [...new Set([...curve, ceiling, chosen])];
  const tradeoff: TradeoffCurve = {
    metric: METRIC_NAMES[metric],
    totalLayers: layers.length,
    points: curvePoints.map((p) => ({ int8Layers: p.int8Layers, value: p.agreement, label: p === chosen ? `chosen: ${p.label}` : p.label })),
    chosen: curvePoints.indexOf(chosen),
    target,
  };
  const result: MixedResult = {
    map,
    met,
    chosen,
    points,
    tradeoff,
    target,
    metric,
    evaluations: points.length,
    seconds: (performance.now() - started) / 1000,
  };
  if (reason !== undefined) result.reason = reason;
  if (written !== undefined) result.written = written;
  return result;
}
