/**
 * Builds the typed CompareReport from the accumulators: one VariantComparison per variant (FP32 against itself,
 * FP16, each INT8 algorithm), the winner among the INT8 variants, the --max-drop gate and the display histograms.
 *
 * The task metric is the verdict (VariantReport.task, from src/compare/task/): detection mAP@[.5:.95], segmentation
 * mIoU (a binary map's IoU), OCR 1 - CER, classification top-1; against the labels when given, else against FP32.
 *
 * Winner: the INT8 variant with the highest task metric; ties broken by the agreement with FP32 on the primary output
 * (top-1 agreement for a classifier, IoU of the thresholded maps for a dense map: see denseAgreement), then by the
 * higher mean per-image cosine, then the higher worst-image cosine, then the variant name (so there is always exactly
 * one). Without a task (library callers), the same order from the agreement on.
 *
 * Gate (--max-drop X, in points of the task metric): with labels, FP32's labelled value minus the variant's; without,
 * (1 - value) x 100 (classification: exactly the top-1 accuracy drop, or the disagreeing images x 100 / images, as
 * before tasks). It holds every FP16 variant and the INT8 winner (the variant one would ship) to the budget. The raw
 * task has no points to hold: --max-drop is refused there.
 */
import { UserError } from '../errors.js';
import type { Tensor } from '../tensor.js';
import type { TensorStatistics } from '../stats/types.js';
import { LayerComparison, OutputComparison, denseAgreement, type ExactPairSumsState, type OutputComparisonOptions, type OutputComparisonState } from './metrics.js';
import type { TaskMetrics } from './task/types.js';
import type {
  CompareReport,
  GateMetric,
  GateResult,
  HistogramThreshold,
  OutputMetrics,
  Precision,
  TensorHistogram,
  TradeoffCurve,
  VariantReport,
  Winner,
} from './types.js';

export interface VariantSpec {
  name: string;
  precision: Precision;
  algorithm?: string;
  modelFile?: string;
  /** INT8 from a cache: where the Q/DQ went (src/onnx/qdq.ts). */
  placement?: 'explicit' | 'implicit';
  /** INT8: tensors kept out of INT8 (src/precision/protect.ts). */
  protected?: string[];
}

/**
 * Everything compared for one variant: its model outputs against FP32's, and optionally its quantized
 * tensors against FP32's (layerwise). Feed it batch by batch, in image order.
 */
export class VariantComparison {
  readonly layers = new LayerComparison();
  private readonly outputs = new Map<string, OutputComparison>();

  constructor(
    readonly spec: VariantSpec,
    private readonly options: OutputComparisonOptions = {},
  ) {
    if (spec.precision !== 'fp32' && spec.precision !== 'fp16' && spec.precision !== 'int8') {
      throw new Error(`Unknown precision ${String(spec.precision)}`);
    }
  }

  /**
   * Compares the model outputs of one batch. `names` fixes which outputs and in what order (the model's
   * output order); by default every tensor of `reference`.
   */
  addOutputs(
    reference: Readonly<Record<string, Tensor>>,
    variant: Readonly<Record<string, Tensor>>,
    files: readonly string[],
    labels?: readonly (number | undefined)[],
    names: readonly string[] = Object.keys(reference),
  ): void {
    for (const name of names) {
      const r = reference[name];
      const v = variant[name];
      if (r === undefined) throw new Error(`The reference run did not return output ${JSON.stringify(name)}.`);
      if (v === undefined) throw new Error(`Variant ${this.spec.name} did not return output ${JSON.stringify(name)}.`);
      let cmp = this.outputs.get(name);
      if (cmp === undefined) {
        cmp = new OutputComparison(name, this.options);
        this.outputs.set(name, cmp);
      }
      cmp.add(r, v, files, labels);
    }
  }

  /** Layerwise: compares the named tensors of one batch (default: every tensor both runs returned). */
  addLayers(reference: Readonly<Record<string, Tensor>>, variant: Readonly<Record<string, Tensor>>, names?: readonly string[]): void {
    const list = names ?? Object.keys(variant).filter((n) => n in reference);
    for (const name of list) {
      const r = reference[name];
      const v = variant[name];
      if (r === undefined || v === undefined) throw new Error(`Tensor ${JSON.stringify(name)} is missing from the ${r === undefined ? 'reference' : 'variant'} run.`);
      this.layers.add(name, r, v);
    }
  }

  /** Everything accumulated, as plain data (a compare shard's file). */
  toState(): VariantComparisonState {
    return { spec: this.spec, outputs: [...this.outputs.values()].map((o) => o.toState()), layers: this.layers.toState() };
  }

  /** Adds a shard's state as if its images came next (shards in image order). */
  addState(state: VariantComparisonState): void {
    for (const o of state.outputs) {
      let cmp = this.outputs.get(o.name);
      if (cmp === undefined) {
        cmp = new OutputComparison(o.name, this.options);
        this.outputs.set(o.name, cmp);
      }
      cmp.addState(o);
    }
    this.layers.addState(state.layers);
  }

  /** The variant's typed results. `opTypes` annotates layers with the operator that produces them. */
  result(primaryOutput?: string, opTypes?: ReadonlyMap<string, string>): VariantReport {
    const results = [...this.outputs.values()].map((c) => c.result());
    const outputs = results.map((r) => r.metrics);
    if (outputs.length === 0) throw new Error(`Variant ${this.spec.name} has no compared outputs.`);
    const primaryName = primaryOutput ?? choosePrimaryOutput(outputs);
    const index = outputs.findIndex((o) => o.name === primaryName);
    if (index < 0) throw new Error(`Primary output ${JSON.stringify(primaryName)} was not compared for ${this.spec.name}.`);
    const primary = outputs[index]!;
    const report: VariantReport = {
      name: this.spec.name,
      precision: this.spec.precision,
      ...(this.spec.algorithm !== undefined ? { algorithm: this.spec.algorithm } : {}),
      ...(this.spec.modelFile !== undefined ? { modelFile: this.spec.modelFile } : {}),
      ...(this.spec.placement !== undefined ? { placement: this.spec.placement } : {}),
      ...(this.spec.protected !== undefined ? { protected: this.spec.protected } : {}),
      images: primary.images,
      cosineMean: primary.cosineMean,
      cosineMin: primary.cosineMin,
      outputs,
      worst: results[index]!.worst,
    };
    const agreement = agreementOf(primary);
    if (agreement !== undefined) report.agreement = agreement;
    const acc = primary.accuracy;
    if (acc !== undefined) {
      report.top1 = acc.top1;
      report.top1Drop = ((acc.referenceTop1Correct - acc.top1Correct) * 100) / acc.labelled;
      if (acc.k === 5 && acc.topK !== undefined && acc.topKCorrect !== undefined && acc.referenceTopKCorrect !== undefined) {
        report.top5 = acc.topK;
        report.top5Drop = ((acc.referenceTopKCorrect - acc.topKCorrect) * 100) / acc.labelled;
      }
    }
    if (this.layers.size > 0) {
      report.layers = this.layers.result().map((l) => {
        const op = opTypes?.get(l.name);
        return op === undefined ? l : { ...l, opType: op };
      });
    }
    return report;
  }
}

export interface VariantComparisonState {
  spec: VariantSpec;
  outputs: OutputComparisonState[];
  layers: Array<[string, ExactPairSumsState]>;
}

/** The output the summary is about: the first classifier output, else the first dense map, else the first. */
export function choosePrimaryOutput(outputs: readonly OutputMetrics[]): string {
  const pick = outputs.find((o) => o.kind === 'classifier') ?? outputs.find((o) => o.kind === 'dense') ?? outputs[0];
  if (pick === undefined) throw new Error('No outputs were compared.');
  return pick.name;
}

function agreementOf(o: OutputMetrics): number | undefined {
  return o.kind === 'classifier' ? o.agreement : o.kind === 'dense' ? denseAgreement(o) : undefined;
}

/** The verdict's value of a variant: against the labels when it has them, else against FP32. */
export function taskVerdict(v: VariantReport): { value: number; against: 'fp32' | 'labels' } | undefined {
  const t = v.task;
  if (t === undefined) return undefined;
  return t.valueLabels !== undefined ? { value: t.valueLabels, against: 'labels' } : { value: t.value, against: 'fp32' };
}

/** The gate metric of a task's verdict (undefined for raw: no points to hold). */
export function taskGateMetric(t: TaskMetrics): GateMetric | undefined {
  const labels = t.valueLabels !== undefined;
  switch (t.kind) {
    case 'classify':
      return labels ? 'top1-accuracy' : 'top1-agreement';
    case 'detect':
      return labels ? 'map-labels' : 'map';
    case 'segment':
      return t.segmentation?.mode === 'binary' ? (labels ? 'iou-labels' : 'threshold-iou') : labels ? 'miou-labels' : 'miou';
    case 'ocr':
      return labels ? 'cer-labels' : 'cer';
    case 'raw':
      return undefined;
  }
}

/**
 * The drop in points of the task metric (see the file comment); `reference` is FP32's own task metrics (for the
 * labelled value). Classification keeps the exact count formulas of the output comparison.
 */
export function taskDropOf(v: VariantReport, reference: TaskMetrics | undefined, primaryOutput?: string): number | undefined {
  const t = v.task;
  if (t === undefined || t.kind === 'raw') return undefined;
  if (t.kind === 'classify') {
    if (t.valueLabels !== undefined && v.top1Drop !== undefined) return v.top1Drop;
    const p = v.outputs.find((o) => o.name === primaryOutput);
    if (t.valueLabels === undefined && p?.kind === 'classifier' && p.agreeCount !== undefined && p.images > 0) return ((p.images - p.agreeCount) * 100) / p.images;
  }
  if (t.valueLabels !== undefined) {
    const ref = reference?.valueLabels;
    if (ref === undefined) throw new Error(`FP32's labelled ${t.metric} is unknown: the drop of ${v.name} cannot be computed.`);
    return (ref - t.valueLabels) * 100;
  }
  return (1 - t.value) * 100;
}

/** Strict order: true when a beats b (see the header of this file). */
function beats(a: VariantReport, b: VariantReport): boolean {
  const ta = taskVerdict(a)?.value ?? Number.NEGATIVE_INFINITY;
  const tb = taskVerdict(b)?.value ?? Number.NEGATIVE_INFINITY;
  if (ta !== tb) return ta > tb;
  const aa = a.agreement ?? Number.NEGATIVE_INFINITY;
  const ba = b.agreement ?? Number.NEGATIVE_INFINITY;
  if (aa !== ba) return aa > ba;
  if (a.cosineMean !== b.cosineMean) return a.cosineMean > b.cosineMean;
  if (a.cosineMin !== b.cosineMin) return a.cosineMin > b.cosineMin;
  return a.name < b.name;
}

/** The best INT8 variant, or undefined when there is none. */
export function pickWinner(variants: readonly VariantReport[]): Winner | undefined {
  // Implicit-placement variants are bounds, not deployable models: they win only when nothing else is INT8.
  const int8 = variants.filter((v) => v.precision === 'int8');
  const explicit = int8.filter((v) => v.placement !== 'implicit');
  const ranked = (explicit.length > 0 ? explicit : int8).sort((a, b) => (beats(a, b) ? -1 : beats(b, a) ? 1 : 0));
  const best = ranked[0];
  if (best === undefined) return undefined;
  const second = ranked[1];
  let reason: string;
  const verdict = taskVerdict(best);
  const against = verdict?.against === 'labels' ? 'against the labels' : 'against FP32';
  if (second === undefined) reason = 'the only INT8 variant';
  else if (verdict !== undefined && verdict.value !== taskVerdict(second)?.value) reason = `highest ${best.task!.metric} ${against}; next best ${second.name}`;
  else if (best.agreement !== second.agreement) reason = `${verdict ? `tied on ${best.task!.metric} with ${second.name}; ` : ''}highest agreement with FP32${verdict ? '' : `; next best ${second.name}`}`;
  else if (best.cosineMean !== second.cosineMean) reason = `tied on ${verdict ? `${best.task!.metric} and ` : ''}agreement with ${second.name}; higher mean cosine`;
  else if (best.cosineMin !== second.cosineMin) reason = `tied on ${verdict ? `${best.task!.metric}, ` : ''}agreement and mean cosine with ${second.name}; higher worst cosine`;
  else reason = `tied with ${second.name} on every measure; first by name`;
  return {
    name: best.name,
    ...(best.algorithm !== undefined ? { algorithm: best.algorithm } : {}),
    ...(best.agreement !== undefined ? { agreement: best.agreement } : {}),
    ...(verdict !== undefined ? { task: { kind: best.task!.kind, metric: best.task!.metric, value: verdict.value, against: verdict.against } } : {}),
    cosineMean: best.cosineMean,
    cosineMin: best.cosineMin,
    reason,
  };
}

/** The gate's metric for this primary output. */
export function gateMetricOf(primary: OutputMetrics): GateMetric | undefined {
  if (primary.accuracy !== undefined) return 'top1-accuracy';
  if (primary.kind === 'classifier') return 'top1-agreement';
  if (primary.kind === 'dense') return 'threshold-iou';
  return undefined;
}

/** Evaluates --max-drop (points) on the FP16 variants and the INT8 winner. */
export function evaluateGate(variants: readonly VariantReport[], maxDrop: number, primaryOutput: string, winner?: Winner): GateResult {
  if (!Number.isFinite(maxDrop) || maxDrop < 0) throw new UserError(`Expected a number of points >= 0 for --max-drop but received ${maxDrop}.`);
  const held = variants.filter((v) => v.precision === 'fp16' || (v.precision === 'int8' && v.name === winner?.name));
  const first = held[0] ?? variants[0];
  const task = first?.task;
  if (task !== undefined) {
    const metric = taskGateMetric(task);
    if (metric === undefined) {
      throw new UserError('--max-drop needs a task metric to count points of, and --task raw has none (only cosine and SNR).', {
        hint: 'Pass the --task the model does (classify, detect, segment, ocr), or drop --max-drop and read the cosine and SNR in the report.',
      });
    }
    const rows = held.map((v) => {
      const drop = v.taskDrop;
      if (drop === undefined) throw new Error(`Variant ${v.name} has no task drop.`);
      return { name: v.name, drop, passed: drop <= maxDrop };
    });
    return { maxDrop, metric, taskMetric: task.metric, variants: rows, passed: rows.every((r) => r.passed) };
  }
  const primary = first?.outputs.find((o) => o.name === primaryOutput);
  const metric = primary === undefined ? undefined : gateMetricOf(primary);
  if (metric === undefined) {
    throw new UserError(`--max-drop needs labels, a classifier output ([N, classes]) or a dense map output; output ${JSON.stringify(primaryOutput)} is none of these.`, {
      hint: 'Give --labels, or drop --max-drop and read the cosine and SNR in the report.',
    });
  }
  const rows = held.map((v) => {
    const o = v.outputs.find((x) => x.name === primaryOutput)!;
    let drop: number;
    if (metric === 'top1-accuracy') drop = v.top1Drop!;
    else if (metric === 'top1-agreement') drop = ((o.images - o.agreeCount!) * 100) / o.images;
    else drop = (1 - denseAgreement(o)) * 100;
    return { name: v.name, drop, passed: drop <= maxDrop };
  });
  return { maxDrop, metric, variants: rows, passed: rows.every((r) => r.passed) };
}

export const DISPLAY_BINS = 128;

/**
 * Downsamples a tensor's |x| histogram for display: trailing empty bins are cut (the data ends at absMax, the
 * stored range is the next power of two), then groups of ceil(used / maxBins) neighbouring bins are summed.
 */
export function histogramForDisplay(stats: TensorStatistics, thresholds: readonly HistogramThreshold[], maxBins = DISPLAY_BINS): TensorHistogram {
  const hist = stats.hist;
  let used = hist.length;
  while (used > 1 && hist[used - 1] === 0) used--;
  const base = {
    name: stats.name,
    count: stats.count,
    absMax: stats.absMax,
    thresholds: thresholds.map((t) => ({ algorithm: t.algorithm, amax: t.amax })),
  };
  if (stats.range === 0 || hist.length === 0) {
    return { ...base, binWidth: 0, upper: 0, counts: [hist.length === 0 ? stats.count : hist[0]!] };
  }
  const width = stats.range / hist.length;
  const group = Math.max(1, Math.ceil(used / maxBins));
  const bins = Math.ceil(used / group);
  const counts = new Array<number>(bins).fill(0);
  for (let i = 0; i < used; i++) counts[Math.floor(i / group)]! += hist[i]!;
  return { ...base, binWidth: width * group, upper: width * group * bins, counts };
}

/**
 * Display histograms for every tensor that has statistics. `thresholds` holds, per algorithm, the amax it picks
 * for each tensor. Ordered by the winner's layerwise SNR (worst first) when known, then by name.
 */
export function buildHistograms(
  stats: readonly TensorStatistics[],
  thresholds: ReadonlyArray<{ algorithm: string; amax: ReadonlyMap<string, number> | Readonly<Record<string, number>> }>,
  layerSnr?: ReadonlyMap<string, number>,
  maxBins = DISPLAY_BINS,
): TensorHistogram[] {
  const lookup = (t: (typeof thresholds)[number], name: string): number | undefined =>
    t.amax instanceof Map ? t.amax.get(name) : Object.prototype.hasOwnProperty.call(t.amax, name) ? (t.amax as Record<string, number>)[name] : undefined;
  const out = stats.map((s) => {
    const th: HistogramThreshold[] = [];
    for (const t of thresholds) {
      const amax = lookup(t, s.name);
      if (amax !== undefined) th.push({ algorithm: t.algorithm, amax });
    }
    const h = histogramForDisplay(s, th, maxBins);
    const snr = layerSnr?.get(s.name);
    return snr === undefined ? h : { ...h, snrDb: snr };
  });
  return out.sort((a, b) => {
    const sa = a.snrDb ?? Number.POSITIVE_INFINITY;
    const sb = b.snrDb ?? Number.POSITIVE_INFINITY;
    if (sa !== sb) return sa < sb ? -1 : 1;
    return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
  });
}

export interface BuildReportInput {
  tool: CompareReport['tool'];
  model: CompareReport['model'];
  data: CompareReport['data'];
  settings: CompareReport['settings'];
  variants: VariantReport[];
  /** Forces the primary output (default: choosePrimaryOutput on the first variant's outputs). */
  primaryOutput?: string;
  histograms?: TensorHistogram[];
  tradeoff?: TradeoffCurve;
  notes?: string[];
  /** FP32's own task metrics (ComparisonRun.referenceTask), for labelled drops. */
  referenceTask?: TaskMetrics;
}

/** Assembles the report: winner, gate (when settings.maxDrop is set) and notes derived from the results. */
export function buildCompareReport(input: BuildReportInput): CompareReport {
  const first = input.variants[0];
  if (first === undefined) throw new Error('A report needs at least one variant.');
  const names = new Set<string>();
  for (const v of input.variants) {
    if (names.has(v.name)) throw new Error(`Two variants are named ${JSON.stringify(v.name)}.`);
    names.add(v.name);
  }
  const primaryOutput = input.primaryOutput ?? choosePrimaryOutput(first.outputs);
  const reference = input.referenceTask ?? input.variants.find((v) => v.name === 'fp32' && v.precision === 'fp32')?.task;
  for (const v of input.variants) {
    const drop = taskDropOf(v, reference, primaryOutput);
    if (drop !== undefined) v.taskDrop = drop;
  }
  const winner = pickWinner(input.variants);
  const notes = [...(input.notes ?? [])];
  for (const v of input.variants) {
    for (const o of v.outputs) {
      if (o.nonFinite > 0) notes.push(`${v.name}: output ${o.name} had ${o.nonFinite} NaN or infinite values (left out of the metrics).`);
    }
  }
  const labels = input.data.labels;
  if (labels !== undefined && labels.unlabelled > 0) {
    notes.push(`${labels.unlabelled} of ${labels.labelled + labels.unlabelled} images had no label; accuracy counts only the ${labels.labelled} labelled.`);
  }
  const report: CompareReport = {
    format: 'trt-calib-report',
    formatVersion: 1,
    tool: input.tool,
    model: input.model,
    data: input.data,
    settings: input.settings,
    primaryOutput,
    variants: input.variants,
    notes,
  };
  if (winner !== undefined) report.winner = winner;
  if (input.histograms !== undefined && input.histograms.length > 0) report.histograms = input.histograms;
  if (input.tradeoff !== undefined) report.tradeoff = input.tradeoff;
  if (input.settings.maxDrop !== undefined) report.gate = evaluateGate(input.variants, input.settings.maxDrop, primaryOutput, winner);
  return report;
}

/** The distinct image files named in the worst lists, in report order (for thumbnails). */
export function worstFiles(report: CompareReport): string[] {
  const seen = new Set<string>();
  for (const v of report.variants) for (const w of v.worst) seen.add(w.file);
  return [...seen];
}

/** The variant whose layers and worst images are shown: the winner, else the first non-FP32 variant. */
export function focusVariant(report: CompareReport): VariantReport | undefined {
  if (report.winner !== undefined) return report.variants.find((v) => v.name === report.winner!.name);
  return report.variants.find((v) => v.precision !== 'fp32') ?? report.variants[0];
}
