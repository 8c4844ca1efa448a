/**
 * Per-layer sensitivity analysis: which quantizable layers hurt the model's outputs most when quantized.
 *
 * Method. The images are decoded once and FP32 runs once (src/sensitivity/data.ts). The fully quantized Q/DQ
 * model is built once (src/onnx/qdq.ts placement); each variant is that model with the Q/DQ of some layers
 * taken out (src/sensitivity/variants.ts), opened in onnxruntime from bytes and run over the kept batches:
 * - one-at-a-time: only this layer INT8, every other layer float. Measures the damage a layer does alone, free of
 *   interactions; its float twin also gives the layer's own output SNR.
 * - leave-one-out: every layer INT8 but this one. Measures what taking the layer out of INT8 recovers from the
 *   fully quantized model: the question the mixed-precision search asks at each step.
 * Both report the primary output's agreement with FP32 (top-1 agreement, or IoU of the thresholded maps for dense maps,
 * or top-1 accuracy with labels) and its mean and worst per-image cosine, and every layer gets its own SNR: the
 * INT8 noise of its quantized input(s) against their FP32 values (measured in the FP32 pass), of its weights, and
 * (one-at-a-time) of its output.
 *
 * Default measure: one-at-a-time. It ranks a layer by what its own quantization does, so one badly calibrated
 * layer stands out clearly even when the fully quantized model is so damaged that removing any single layer
 * changes little (leave-one-out's gains are then small and noisy: on the MobileNetV2 fixture with entropy2
 * scales, see docs/mixed-precision.md). Leave-one-out is the better choice when the full INT8 model is close to
 * the budget and interactions matter; `both` adds the two.
 *
 * Which layers run a one-at-a-time variant (docs/mixed-precision.md, "Which layers are measured"): by default,
 * proxy then measure. One proxy pass (src/sensitivity/proxy.ts) gives every layer's own output SNR; the layers
 * it cannot rule out (rank.ts: the lowest 20%, at least 8, and any within 0.1 dB of the last) run the variant the
 * exhaustive search runs (the same score, bit for bit; their own output SNR stays the proxy's) and are ranked
 * first; the others follow by their SNR (`rankedBy: 'proxy'`), and the report lists both and where the proxy's
 * order and the measured one disagree. `exhaustive` measures every layer; leave-one-out, both and shards always do.
 * One-at-a-time variants run from their layer on, fed the FP32 activations at the cut (cut.ts).
 *
 * This is the layer-wise sensitivity analysis of NVIDIA's pytorch-quantization / TensorRT Model Optimizer and of
 * onnxruntime's qdq_loss_debug, done on the exported ONNX with onnxruntime's INT8 kernels.
 */
import path from 'node:path';
import { onnxruntimeBackend } from '../backends/onnxruntime.js';
import { weightScales, quantizeWeights } from '../onnx/qdq.js';
import { snrFromSums } from '../compare/metrics.js';
import { labelMap } from '../compare/run.js';
import { datasetForModel, type DataOptions } from '../app/data.js';
import { resolveTask } from '../app/task.js';
import type { PreparedTask, TaskFlags } from '../compare/task/index.js';
import { imageGeometries } from '../datasets/geometry.js';
import { shardRange, type ShardSpec } from '../app/shard.js';
import { loadCacheFor } from '../app/variants.js';
import type { PreprocessConfig } from '../datasets/types.js';
import { UserError } from '../errors.js';
import { listActivations } from '../onnx/graph.js';
import { graphOf, loadOnnxModel, tensorFromProto, type OnnxModel, type OnnxTensorProto } from '../onnx/model.js';
import { quantizeQdq, type QdqResult } from '../onnx/qdq.js';
import { silentReporter, type Reporter } from '../reporter.js';
import { measureTensorNoise, prepareEvaluationData, subsetEvaluationData, type EvaluationData } from './data.js';
import { evaluateModel, type VariantScore } from './evaluate.js';
import { VariantCuts, planCuts, type CutPlan, type CutSummary } from './cut.js';
import { FP16_MAX, TensorNoise } from './noise.js';
import {
  PROXY_CANDIDATE_SHARE,
  PROXY_MARGIN_DB,
  PROXY_MIN_CANDIDATES,
  candidateCount,
  proxyAgreement,
  proxyCandidates,
  proxyOrder,
  rankLayers,
  type CandidateRule,
  type Disagreement,
  type MeasureChoice,
  type RankMetric,
} from './rank.js';
import { proxyPass } from './proxy.js';
import { VariantBuilder, type BuiltVariant, type LayerPlan } from './variants.js';

import { DEFAULT_MEASURE, DEFAULT_RANK_METRIC } from './rank.js';

export { DEFAULT_MEASURE, DEFAULT_RANK_METRIC };
/**
 * FP16 is "not enough" for a layer when a value it reads, holds or writes passes the float16 range (65504: it
 * would become infinite), or when float16 rounding alone costs its input or output more than this SNR: float16
 * keeps 11 significant bits (about 70 dB on normal-range data); below 45 dB a tensor has a large share of its
 * energy under 6.1e-5, where float16 turns subnormal and loses bits.
 */
export const FP16_MIN_SNR_DB = 45;

export interface Fp16Check {
  /** False when FP16 is not enough for this layer (see FP16_MIN_SNR_DB): keep it in FP32 instead. */
  enough: boolean;
  reason?: string;
  inputAbsMax: number;
  weightAbsMax: number;
  inputFp16SnrDb: number;
  /** The output's, when one-at-a-time saw it (through the layer's float twin) or the fast search's proxy pass. */
  outputAbsMax?: number;
  outputFp16SnrDb?: number;
}

export interface LayerSensitivity {
  /** The precision map's key (node name, or 'Op:firstOutput'). */
  name: string;
  op: string;
  kind: 'weighted' | 'residual-add';
  /** Quantized activation inputs and weights. */
  inputs: string[];
  weights: string[];
  /** INT8 noise of the quantized input(s) against FP32 (dB), over every image. */
  inputSnrDb: number;
  /** Values of the input(s) that INT8 saturates (beyond the scale's range), a fraction. */
  inputSaturated: number;
  /** INT8 per-channel noise of the weights (dB); absent for residual Adds. */
  weightSnrDb?: number;
  /** One-at-a-time: the layer's output against its float twin's (dB). */
  outputSnrDb?: number;
  fp16: Fp16Check;
  oneAtATime?: VariantScore;
  leaveOneOut?: VariantScore;
  /**
   * The ranking key (see src/sensitivity/rank.ts); larger is more sensitive. Absent for a layer the fast search
   * ranked by its proxy (outputSnrDb) without measuring it.
   */
  sensitivity?: number;
  /** 'measured' (its variant was run) or 'proxy' (fast search: placed after the measured ones by outputSnrDb). */
  rankedBy: 'measured' | 'proxy';
  /** 1 = most sensitive. */
  rank: number;
}

/** How the layers were ranked: every one measured, or proxy-then-measure (the default; docs/mixed-precision.md). */
export interface SensitivitySearch {
  method: 'exhaustive' | 'proxy-then-measure';
  /** Why exhaustive, when it was not asked for (leave-one-out, --shard). */
  why?: string;
  /** proxy-then-measure: the rule that chose the measured layers, in words, and its numbers. */
  rule?: { share: number; min: number; marginDb: number; taken: number; lastSnrDb: number };
  /** Layers measured (in proxy order) and those ranked by the proxy alone. */
  measured: string[];
  proxyRanked: string[];
  /** Among the measured layers: where the proxy's order differs from the measured one. */
  disagreements?: Disagreement[];
  kendallTau?: number;
  /** The proxy pass: one run over the kept batches. */
  proxySeconds?: number;
  /** --hardest: the images the one-at-a-time variants ran on (the rest of the report is over every image). */
  hardest?: { images: number; of: number; by: string; files: string[] };
}

export interface SensitivityReport {
  format: 'trt-calib-sensitivity';
  formatVersion: 1;
  model: string;
  cache: { file: string; algorithm: string };
  data: { source: string; images: number; skipped: number; batchSize: number; preprocess: PreprocessConfig };
  measure: MeasureChoice;
  metric: RankMetric;
  /** What `agreement`/`value` means for this model: top1-agreement, threshold-iou, top1-accuracy (or cosine). */
  budgetMetric: VariantScore['metric'];
  /** The fully quantized model against FP32. */
  fullInt8: VariantScore;
  quantizableLayers: number;
  /** Layers ranked, most sensitive first (all, or those --layers selected). */
  layers: LayerSensitivity[];
  /** Layers the Q/DQ writer leaves in float, and why (no scale in the cache...). */
  notQuantized: Array<{ node: string; op: string; reason: string }>;
  memoryBytes: number;
  seconds: { prepare: number; measure: number; total: number; perVariant: number };
  variants: number;
  search: SensitivitySearch;
  /** One-at-a-time variants run from their cut (cut.ts): how many, the FP32 runs that gave the cuts' activations. */
  cuts?: CutSummary;
  /** With --shard: the slice [start, end) of the selected layers (in graph order) this report measured. */
  shard?: { index: number; count: number; start: number; end: number; selectedLayers: string[] };
  /** Set by `trt-calib merge`: the shard reports this one was merged from. */
  merged?: { shards: Array<{ file: string; index: number; count: number; seconds: number }> };
}

export interface SensitivityOptions {
  model: string;
  cache: string;
  data: DataOptions;
  measure?: MeasureChoice;
  /** Measure every layer instead of proxy-then-measure (see measureSensitivity). */
  exhaustive?: boolean;
  /** The variants on the N hardest images only (MeasureOptions.hardest). */
  hardest?: number;
  metric?: RankMetric;
  /** Only these layers (names or globs with * and ?). */
  layers?: readonly string[];
  threads?: number;
  /** Memory limit for the kept images and FP32 outputs (bytes). */
  maxMemoryBytes?: number;
  /** Class per image file (the library form)... */
  labels?: ReadonlyMap<string, number>;
  /** ...or where to read them, as compare's --labels and --classes ("folders" or a path,label CSV). */
  labelSource?: { labels: string; classes?: string };
  /** --task and its flags (default auto); variants are scored in points of its metric. */
  task?: TaskFlags;
  /** Only the shard's slice of the selected layers (see MeasureOptions). */
  shard?: ShardSpec;
  /**
   * --bias-correction: the INT8 variants are built from the model with biases corrected for the cache's scales,
   * measured on `calibData` (the calibration images; src/app/bias-correction.ts); FP32 stays the input model.
   */
  biasCorrection?: { mode: 'weights' | 'full'; calibData: DataOptions };
  reporter?: Reporter;
  signal?: AbortSignal;
}

/** Everything loaded once and shared by the analysis and the mixed-precision search. */
export interface SensitivityContext {
  modelFile: string;
  model: OnnxModel;
  scales: Map<string, number>;
  cache: { file: string; algorithm: string };
  full: QdqResult;
  builder: VariantBuilder;
  data: EvaluationData;
  preprocess: PreprocessConfig;
  batchSize: number;
  source: string;
  threads?: number;
  /** Weight SNR (dB) and |w| max per weight tensor. */
  weightStats: Map<string, { snrDb: number; absMax: number }>;
  /** The task the variants are judged as. */
  task: PreparedTask;
  /**
   * The layers' quantized inputs whose noise ensureInputNoise measures (INT8 scale; undefined: FP16 and range), on
   * `model`, the FP32 model as given (not bias-corrected). `inProxy`: the proxy pass's graph computes these very
   * tensors (no bias correction), so it can count them.
   */
  inputNoise: { model: OnnxModel; targets: ReadonlyMap<string, number | undefined>; measured: boolean; inProxy: boolean };
  /** Loading, quantizing, decoding and FP32 (the inputs' noise is counted in the search's seconds). */
  seconds: number;
}

/** Loads the model and the cache, builds the full Q/DQ model, decodes the images and runs FP32 once. */
export async function prepareSensitivity(options: Omit<SensitivityOptions, 'measure' | 'metric'>): Promise<SensitivityContext> {
  const started = performance.now();
  const reporter = options.reporter ?? silentReporter;
  let model = await loadOnnxModel(options.model);
  const original = model;
  const activations = listActivations(model, { file: options.model }).map((a) => a.name);
  const cache = await loadCacheFor(options.cache, activations, options.model);
  if (options.biasCorrection) {
    // A bad --layers fails before the correction's passes (the corrected model has the same layers).
    selectLayers(new VariantBuilder(model, quantizeQdq(model, { activationScales: cache.scales, file: options.model })).layers, options.layers);
    const { correctModelBiases } = await import('../app/bias-correction.js');
    const bc = await correctModelBiases({ modelFile: options.model, model, scales: cache.scales, data: options.biasCorrection.calibData, mode: options.biasCorrection.mode, ...(options.threads ? { threads: options.threads } : {}), reporter });
    reporter.info(`bias correction (${options.biasCorrection.mode}) on ${bc.summary.images} calibration images (${options.biasCorrection.calibData.data}): ${bc.summary.layers} layers; the INT8 variants carry the corrected biases`);
    model = bc.result.model;
  }
  const full = quantizeQdq(model, { activationScales: cache.scales, file: options.model });
  const builder = new VariantBuilder(model, full);
  if (builder.layers.length === 0) {
    throw new UserError(`No layer of ${options.model} can be quantized with ${options.cache}.`, {
      hint: full.skipped.length > 0 ? `e.g. ${full.skipped[0]!.node}: ${full.skipped[0]!.reason}` : 'The model has no Conv, ConvTranspose, Gemm or MatMul with constant weights.',
    });
  }
  // A bad --layers (or a --shard with no layer left) fails now, before the images are decoded.
  const selectedLayers = selectLayers(builder.layers, options.layers);
  if (options.shard) shardRange(selectedLayers.length, options.shard, 1, 'layers');

  const { input, preprocess, batchSize, dataset } = await datasetForModel(options.model, model, options.data, 'sensitivity analysis');
  let labels = options.labels;
  const flags: TaskFlags = {
    ...(options.task ?? {}),
    ...(options.labelSource && !labels ? { labels: options.labelSource.labels, ...(options.labelSource.classes !== undefined ? { classes: options.labelSource.classes } : {}) } : {}),
  };
  // With no task flag, the task is recognised from FP32's outputs on a batch: the first kept batch's, after the
  // FP32 pass below, instead of a batch decoded and run for it alone (0.3 s on MobileNetV2's 43 photos). Flags
  // are checked before the images are decoded.
  const autoOnly = Object.entries(flags).every(([k, v]) => v === undefined || (k === 'task' && v === 'auto'));
  const taskOptions = { ...(options.threads ? { threads: options.threads } : {}), reporter };
  let task: PreparedTask | undefined;
  const assignLabels = (t: PreparedTask) => {
    if (!labels && t.classifyLabels) {
      const assigned = t.classifyLabels;
      labels = labelMap(dataset.files, assigned.labels);
      reporter.info(`labels: ${assigned.labelled} of ${dataset.files.length} images (${assigned.source})`);
    }
  };
  if (!autoOnly) {
    task = await resolveTask(options.model, model, dataset, options.data.data, flags, taskOptions);
    assignLabels(task);
  }

  // The FP32 outputs come from the plain model; each layer's quantized inputs (INT8 noise with their scale, FP16
  // noise, range) are measured after it, over the kept batches (measureTensorNoise). Only inputs are measured: a
  // layer's output is seen by its float twin instead (one-at-a-time), or by the proxy pass.
  const measure = new Map<string, number | undefined>();
  for (const l of builder.layers) for (const a of l.activations) measure.set(a, cache.scales.get(a));
  const session = await onnxruntimeBackend.open({ path: options.model }, { ...(options.threads ? { threads: options.threads } : {}) });
  let data: EvaluationData;
  try {
    reporter.info(`${builder.layers.length} quantizable layers; keeping ${dataset.size} images of ${dataset.imageDims.join('x')} in memory`);
    data = await prepareEvaluationData({
      dataset,
      session,
      outputs: session.outputs.map((o) => o.name),
      ...(options.maxMemoryBytes !== undefined ? { maxBytes: options.maxMemoryBytes } : {}),
      ...(labels ? { labels } : {}),
      reporter,
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } finally {
    await session.release();
  }
  if (!task) {
    const first = data.fp32Outputs[0];
    task = await resolveTask(options.model, model, dataset, options.data.data, flags, { ...taskOptions, ...(first ? { sample: first } : {}) });
    assignLabels(task);
    const byFile = labels;
    if (byFile) data.labels = data.files.map((f) => byFile.get(path.resolve(f)));
  }
  // The inputs' noise is measured later, once (ensureInputNoise): by the default search inside its proxy pass,
  // which runs the same FP32 graph, so that the FP32 model is not run a second time.
  // Detection, segmentation and OCR map predictions back to the photos: each kept batch's geometries, read once.
  if (task.kind !== 'classify' && task.kind !== 'raw') {
    data.task = task;
    data.geometries = [];
    for (const b of data.batches) data.geometries.push(await imageGeometries(b.files, preprocess));
  }

  return {
    modelFile: options.model,
    model,
    scales: cache.scales,
    cache: { file: cache.file, algorithm: cache.algorithm },
    full,
    builder,
    data,
    preprocess,
    batchSize,
    source: options.data.data,
    ...(options.threads ? { threads: options.threads } : {}),
    weightStats: weightStatistics(model, full),
    task,
    inputNoise: { model: original, targets: measure, measured: false, inProxy: model === original },
    seconds: (performance.now() - started) / 1000,
  };
}

/**
 * Measures the layers' quantized inputs (INT8 noise with their scale, FP16 noise, range) over the kept images,
 * through the FP32 model's counting nodes (measureTensorNoise), unless done already (by the proxy pass, or an
 * earlier search on this context). The search and the mixed-precision search call it; so must a caller of
 * fp16Check.
 */
export async function ensureInputNoise(ctx: SensitivityContext, options: { reporter?: Reporter; signal?: AbortSignal } = {}): Promise<void> {
  if (ctx.inputNoise.measured) return;
  const noise = await measureTensorNoise(ctx.data, {
    modelFile: ctx.modelFile,
    model: ctx.inputNoise.model,
    measure: ctx.inputNoise.targets,
    ...(ctx.threads ? { threads: ctx.threads } : {}),
    ...(options.reporter ? { reporter: options.reporter } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  setInputNoise(ctx, noise.noise, noise.seconds);
}

function setInputNoise(ctx: SensitivityContext, noise: Map<string, TensorNoise>, seconds: number): void {
  ctx.data.noise = noise;
  ctx.data.seconds.noise = seconds;
  ctx.inputNoise.measured = true;
}

/** Per-channel INT8 noise and range of each quantized weight, from the weights themselves. */
function weightStatistics(model: OnnxModel, full: QdqResult): Map<string, { snrDb: number; absMax: number }> {
  const g = graphOf(model);
  const sources = new Map<string, OnnxTensorProto>(g.initializer.map((t) => [t.name, t]));
  for (const n of g.node) {
    const v = n.opType === 'Constant' ? n.attribute.find((a) => a.name === 'value')?.t : undefined;
    if (v && n.output[0]) sources.set(n.output[0], v as OnnxTensorProto);
  }
  const out = new Map<string, { snrDb: number; absMax: number }>();
  for (const w of full.weights) {
    if (out.has(w.tensor)) continue;
    const proto = sources.get(w.tensor);
    if (!proto) continue;
    const t = tensorFromProto(proto);
    const data = t.data as Float32Array;
    const scales = weightScales(data, t.dims, w.axis);
    const q = quantizeWeights(data, t.dims, w.axis, scales);
    // Element i belongs to channel (i / inner) % channels, as in the Q/DQ writer's layout: runs of `inner` values
    // of one channel, in order (the same additions as one loop over i).
    const channels = w.axis === null ? 1 : t.dims[w.axis]!;
    const inner = w.axis === null ? data.length : t.dims.slice(w.axis + 1).reduce((a, b) => a * b, 1);
    let signal = 0;
    let noise = 0;
    let absMax = 0;
    for (let base = 0, c = 0; base < data.length; base += inner, c = c + 1 === channels ? 0 : c + 1) {
      const s = scales[c]!;
      const end = Math.min(base + inner, data.length);
      for (let i = base; i < end; i++) {
        const x = data[i]!;
        const d = x - q[i]! * s;
        signal += x * x;
        noise += d * d;
        const a = Math.abs(x);
        if (a > absMax) absMax = a;
      }
    }
    out.set(w.tensor, { snrDb: snrFromSums(signal, noise), absMax });
  }
  return out;
}

/** Layers whose name matches one of the patterns (exact, or a glob with * and ?). Unmatched patterns are errors. */
export function selectLayers(layers: readonly LayerPlan[], patterns: readonly string[] | undefined): LayerPlan[] {
  if (!patterns || patterns.length === 0) return [...layers];
  const regexes = patterns.map((p) => ({ p, re: new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`) }));
  const unmatched = regexes.filter(({ re }) => !layers.some((l) => re.test(l.name))).map(({ p }) => p);
  if (unmatched.length > 0) {
    throw new UserError(`--layers: no quantizable layer matches ${unmatched.map((p) => JSON.stringify(p)).join(', ')}.`, {
      hint: `Quantizable layers are e.g. ${layers.slice(0, 4).map((l) => l.name).join(', ')}; run without --layers to list them all.`,
    });
  }
  return layers.filter((l) => regexes.some(({ re }) => re.test(l.name)));
}

/** FP16 check of a layer from its inputs (FP32 pass), weights and, when known, its output (the float twin). Exported for tests. */
export function fp16Check(ctx: SensitivityContext, l: LayerPlan, output?: { absMax: number; fp16SnrDb?: number }): Fp16Check {
  if (!ctx.inputNoise.measured) throw new Error('fp16Check before the inputs\' noise was measured (ensureInputNoise)');
  const ins = l.activations.map((a) => ctx.data.noise.get(a)).filter((n): n is TensorNoise => n !== undefined);
  const inputAbsMax = Math.max(0, ...ins.map((n) => n.absMax));
  const weightAbsMax = Math.max(0, ...l.weights.map((w) => ctx.weightStats.get(w)?.absMax ?? 0));
  const inputFp16SnrDb = snrFromSums(ins.reduce((s, n) => s + n.fp16SampleSignal, 0), ins.reduce((s, n) => s + n.fp16Noise, 0));
  const check: Fp16Check = { enough: true, inputAbsMax, weightAbsMax, inputFp16SnrDb };
  if (output) {
    check.outputAbsMax = output.absMax;
    if (output.fp16SnrDb !== undefined) check.outputFp16SnrDb = output.fp16SnrDb;
  }
  const fmt = (x: number) => x.toPrecision(4);
  if (inputAbsMax > FP16_MAX) check.reason = `its input reaches ${fmt(inputAbsMax)}, beyond the FP16 range (65504)`;
  // The output's tests are written so that NaN fails them (a NaN never makes FP16 "enough"); the float twin gives
  // absMax Infinity and SNR -Infinity for an output with non-finite values (evaluate.ts TwinTotals).
  else if (output && !Number.isFinite(output.absMax)) check.reason = 'its FP32 output holds infinite or NaN values';
  else if (output && !(output.absMax <= FP16_MAX)) check.reason = `its output reaches ${fmt(output.absMax)}, beyond the FP16 range (65504)`;
  else if (weightAbsMax > FP16_MAX) check.reason = `a weight reaches ${fmt(weightAbsMax)}, beyond the FP16 range (65504)`;
  else if (inputFp16SnrDb < FP16_MIN_SNR_DB) check.reason = `FP16 rounding costs its input ${inputFp16SnrDb.toFixed(1)} dB SNR (< ${FP16_MIN_SNR_DB})`;
  else if (output?.fp16SnrDb !== undefined && !(output.fp16SnrDb >= FP16_MIN_SNR_DB)) check.reason = `FP16 rounding costs its output ${output.fp16SnrDb.toFixed(1)} dB SNR (< ${FP16_MIN_SNR_DB})`;
  if (check.reason !== undefined) check.enough = false;
  return check;
}

/** The layers' own numbers (SNRs, FP16 check), before any variant runs. */
function layerBasics(ctx: SensitivityContext, l: LayerPlan): Omit<LayerSensitivity, 'sensitivity' | 'rank' | 'rankedBy'> {
  if (!ctx.inputNoise.measured) throw new Error('layerBasics before the inputs\' noise was measured (ensureInputNoise)');
  const ins = l.activations.map((a) => ctx.data.noise.get(a)!);
  const signal = ins.reduce((s, n) => s + n.signal, 0);
  const noise = ins.reduce((s, n) => s + n.int8Noise, 0);
  const count = ins.reduce((s, n) => s + n.count, 0);
  const saturated = ins.reduce((s, n) => s + n.saturated, 0);
  const w = l.weights.map((x) => ctx.weightStats.get(x)).filter((x) => x !== undefined);
  const out: Omit<LayerSensitivity, 'sensitivity' | 'rank' | 'rankedBy'> = {
    name: l.name,
    op: l.op,
    kind: l.kind,
    inputs: l.activations,
    weights: l.weights,
    inputSnrDb: snrFromSums(signal, noise),
    inputSaturated: count === 0 ? 0 : saturated / count,
    fp16: fp16Check(ctx, l),
  };
  if (w.length > 0) out.weightSnrDb = Math.min(...w.map((x) => x.snrDb));
  return out;
}

/**
 * FP16 checks of every quantizable layer (for the mixed-precision search): those of `report` where it measured
 * the layer (with its output, one-at-a-time), else from the inputs and weights alone.
 */
export function fp16Checks(ctx: SensitivityContext, report?: SensitivityReport): Map<string, Fp16Check> {
  if (!ctx.inputNoise.measured && ctx.builder.layers.some((l) => !(report?.layers ?? []).some((r) => r.name === l.name))) {
    throw new Error('fp16Checks before the inputs\' noise was measured (ensureInputNoise)');
  }
  const measured = new Map((report?.layers ?? []).map((l) => [l.name, l.fp16]));
  return new Map(ctx.builder.layers.map((l) => [l.name, measured.get(l.name) ?? fp16Check(ctx, l)]));
}

/**
 * One-at-a-time: only `l` in INT8, from its cut where it has one; with its float twin (the exhaustive search), which
 * gives the layer's own output SNR and the FP16 check of its output; written into `row`. The one measurement both
 * searches make, so their scores are the same.
 */
async function measureOneAtATime(
  ctx: SensitivityContext,
  l: LayerPlan,
  row: Omit<LayerSensitivity, 'sensitivity' | 'rank' | 'rankedBy'>,
  evalOptions: Parameters<typeof evaluateModel>[2],
  data: EvaluationData,
  cuts: OneAtATimeVariants,
): Promise<void> {
  const v = cuts.built.get(l.name)!;
  const cut = await cuts.cuts.prepared(l.name);
  const r = await evaluateModel(cut ? cut.model : v.model, data, { ...evalOptions, name: l.name, ...(v.twin ? { twin: v.twin } : {}), ...(cut ? { feeds: cut.feeds } : {}) });
  row.oneAtATime = r.score;
  if (r.twin) {
    row.outputSnrDb = r.twin.snrDb;
    row.fp16 = fp16Check(ctx, l, r.twin.reference);
  }
}

/** The one-at-a-time variants of `layers` (graph order), built once, and their cuts over `data` (cut.ts). */
interface OneAtATimeVariants {
  built: Map<string, BuiltVariant>;
  cuts: VariantCuts;
}

async function oneAtATimeVariants(ctx: SensitivityContext, layers: readonly LayerPlan[], data: EvaluationData, options: { twin: boolean; reporter: Reporter }): Promise<OneAtATimeVariants> {
  const built = new Map(layers.map((l) => [l.name, ctx.builder.build(new Set([l.name]), options.twin ? { twin: l.name } : {})]));
  let plan: CutPlan | undefined;
  try {
    plan = layers.length > 0 ? await cutPlanFor(ctx, data.files.length) : undefined;
  } catch (err) {
    // The cut is an optimisation: where onnxruntime refuses the FP32 model with the cut tensors exposed, every
    // variant runs whole (the same numbers up to float32 rounding).
    options.reporter.info(`every variant runs whole: the cut tensors could not be exposed (${(err as Error).message.split('\n')[0]})`);
  }
  const cuts = new VariantCuts(plan, layers.map((l) => ({ name: l.name, variant: built.get(l.name)!.model, output: l.output })), data);
  return { built, cuts };
}

/** The context's cut plan for a number of images (cut.ts CutPlan: over every layer, made once). */
const cutPlans = new WeakMap<SensitivityContext, Map<number, Promise<CutPlan>>>();
function cutPlanFor(ctx: SensitivityContext, images: number): Promise<CutPlan> {
  let plans = cutPlans.get(ctx);
  if (!plans) cutPlans.set(ctx, (plans = new Map()));
  let plan = plans.get(images);
  if (!plan) {
    plan = planCuts({
      model: ctx.model,
      file: ctx.modelFile,
      inputName: ctx.data.inputName,
      layers: ctx.builder.layers.map((l) => ({ name: l.name, output: l.output })),
      images,
      ...(ctx.threads ? { threads: ctx.threads } : {}),
    });
    plans.set(images, plan);
  }
  return plan;
}

export interface MeasureOptions {
  measure?: MeasureChoice;
  /** Measure every layer (today's search) instead of proxy-then-measure (one-at-a-time only; see the file comment). */
  exhaustive?: boolean;
  /**
   * --hardest N (proxy-then-measure only): the one-at-a-time variants run on the N images on which full INT8 is
   * furthest from FP32 (lowest per-image cosine of the primary output); the proxy pass, the layers' SNRs and FP16
   * checks, and full INT8's score stay over every image. The report's `search.hardest` lists the images.
   */
  hardest?: number;
  /** The candidate rule of proxy-then-measure (rank.ts: PROXY_CANDIDATE_SHARE...). */
  candidates?: CandidateRule;
  metric?: RankMetric;
  layers?: readonly string[];
  /** Only the shard's slice of the selected layers (merged into the whole report by `trt-calib merge`). */
  shard?: ShardSpec;
  reporter?: Reporter;
  signal?: AbortSignal;
}

/** Runs the variants and ranks the layers (see the file comment). */
export async function measureSensitivity(ctx: SensitivityContext, options: MeasureOptions = {}): Promise<SensitivityReport> {
  const reporter = options.reporter ?? silentReporter;
  const measure = options.measure ?? DEFAULT_MEASURE;
  // Detection, segmentation and OCR rank by the task metric's drop; classifiers keep the cosine default.
  const metric = options.metric ?? (ctx.task.kind === 'classify' || ctx.task.kind === 'raw' ? DEFAULT_RANK_METRIC : 'agreement');
  const chosen = selectLayers(ctx.builder.layers, options.layers);
  const slice = options.shard ? shardRange(chosen.length, options.shard, 1, 'layers') : { start: 0, end: chosen.length };
  const selected = chosen.slice(slice.start, slice.end);
  const all = new Set(ctx.builder.layers.map((l) => l.name));
  const started = performance.now();
  const evalOptions = { ...(ctx.threads ? { threads: ctx.threads } : {}), file: ctx.modelFile };

  let variants = 0;
  const hardest = options.hardest !== undefined && options.hardest < ctx.data.files.length ? options.hardest : undefined;
  const full = await evaluateModel(ctx.builder.build(all).model, ctx.data, { ...evalOptions, name: 'int8', ...(hardest !== undefined ? { worstCount: hardest } : {}) });
  const fullInt8 = full.score;
  variants++;
  const rule = { share: options.candidates?.share ?? PROXY_CANDIDATE_SHARE, min: options.candidates?.min ?? PROXY_MIN_CANDIDATES, marginDb: options.candidates?.marginDb ?? PROXY_MARGIN_DB };
  const why =
    measure !== 'one-at-a-time'
      ? `--measure ${measure}: the proxy stands in for one-at-a-time only`
      : options.shard
        ? '--shard measures its slice of the layers whole'
        : candidateCount(selected.length, rule) >= selected.length
          ? `the candidate rule takes all ${selected.length} selected layers: no proxy pass`
          : undefined;
  const fast = !options.exhaustive && why === undefined;
  if (options.hardest !== undefined && !fast) {
    throw new UserError(`--hardest works with the default search (proxy then measure), not with ${options.exhaustive ? '--exhaustive' : why}.`, {
      hint: 'Drop --hardest, or the option that makes the search exhaustive.',
    });
  }
  // --hardest: the variants' images (see MeasureOptions.hardest), in their original order.
  const hardestIndices = hardest !== undefined ? full.report.worst.map((w) => w.index).sort((a, b) => a - b) : undefined;
  const variantData = hardestIndices ? subsetEvaluationData(ctx.data, hardestIndices, ctx.batchSize) : ctx.data;
  const rows: Array<Omit<LayerSensitivity, 'sensitivity' | 'rank' | 'rankedBy'>> = [];
  let search: SensitivitySearch;
  let ranked: LayerSensitivity[];
  let cutSummary: CutSummary | undefined;
  if (fast) {
    // 1. The proxy pass: every selected layer's own output SNR, one run.
    reporter.info(`proxy pass: ${selected.length} layers beside their INT8 twins, one run over ${ctx.data.files.length} images`);
    const alsoInputs = !ctx.inputNoise.measured && ctx.inputNoise.inProxy ? ctx.inputNoise.targets : undefined;
    if (!alsoInputs) await ensureInputNoise(ctx, { reporter, ...(options.signal ? { signal: options.signal } : {}) });
    const proxy = await proxyPass(ctx.builder, selected, ctx.data, { ...evalOptions, ...(alsoInputs ? { inputs: alsoInputs } : {}), ...(options.signal ? { signal: options.signal } : {}) });
    if (proxy.inputs) setInputNoise(ctx, proxy.inputs, proxy.seconds);
    for (const l of selected) {
      const p = proxy.layers.get(l.name)!;
      rows.push({ ...layerBasics(ctx, l), outputSnrDb: p.outputSnrDb, fp16: fp16Check(ctx, l, { absMax: p.outputAbsMax, fp16SnrDb: p.outputFp16SnrDb }) });
    }
    // 2. The candidates the proxy cannot separate, measured exactly as one-at-a-time measures them (in graph order).
    const ordered = proxyOrder(rows);
    const byProxy = ordered.map((r) => r.name);
    const candidates = proxyCandidates(rows, rule);
    const chosenNames = new Set(candidates.map((c) => c.name));
    const toMeasure = rows.filter((r) => chosenNames.has(r.name));
    const variantsOf = await oneAtATimeVariants(ctx, toMeasure.map((r) => ctx.builder.layer(r.name)), variantData, { twin: false, reporter });
    cutSummary = variantsOf.cuts.summary;
    reporter.start('sensitivity (one-at-a-time, proxy candidates)', toMeasure.length, 'layers');
    try {
      for (const [i, row] of toMeasure.entries()) {
        options.signal?.throwIfAborted();
        // The variant the exhaustive search runs, from the same cut (the same score, bit for bit), without its
        // float twin: the proxy pass already compared this layer's INT8 output on FP32 input with its FP32 output,
        // the twin's very pair, so the row keeps the proxy's output SNR and FP16 check (the twin's sums cost an
        // early layer's variant 0.2 s of its 0.4). With --hardest they are over every image, the score over N.
        await measureOneAtATime(ctx, ctx.builder.layer(row.name), row, evalOptions, variantData, variantsOf);
        variants++;
        reporter.update({ done: i + 1, detail: row.name });
      }
    } finally {
      reporter.stop();
      variantsOf.cuts.release();
    }
    // 3. Measured layers first, by the measured key; the others after them, by the proxy.
    const measuredRanked = rankLayers(toMeasure, measure, metric, fullInt8);
    const rest = proxyOrder(rows.filter((r) => !chosenNames.has(r.name)));
    ranked = [
      ...measuredRanked.map((l) => ({ ...l, rankedBy: 'measured' as const })),
      ...rest.map((l, i) => ({ ...l, rankedBy: 'proxy' as const, rank: measuredRanked.length + i + 1 })),
    ];
    const agreement = proxyAgreement(measuredRanked.map((l) => l.name), byProxy);
    const taken = candidateCount(rows.length, rule);
    search = {
      method: 'proxy-then-measure',
      rule: { ...rule, taken, lastSnrDb: taken > 0 ? ordered[taken - 1]!.outputSnrDb! : Number.NaN },
      measured: candidates.map((c) => c.name),
      proxyRanked: rest.map((l) => l.name),
      disagreements: agreement.disagreements,
      kendallTau: agreement.kendallTau,
      proxySeconds: proxy.seconds,
      ...(hardestIndices
        ? { hardest: { images: hardestIndices.length, of: ctx.data.files.length, by: 'lowest per-image cosine of the primary output, full INT8 against FP32', files: hardestIndices.map((i) => ctx.data.files[i]!) } }
        : {}),
    };
  } else {
    await ensureInputNoise(ctx, { reporter, ...(options.signal ? { signal: options.signal } : {}) });
    const variantsOf = measure !== 'leave-one-out' ? await oneAtATimeVariants(ctx, selected, ctx.data, { twin: true, reporter }) : undefined;
    if (variantsOf) cutSummary = variantsOf.cuts.summary;
    reporter.start(`sensitivity (${measure})`, selected.length, 'layers');
    try {
      for (const [i, l] of selected.entries()) {
        options.signal?.throwIfAborted();
        const row = layerBasics(ctx, l);
        if (variantsOf) {
          await measureOneAtATime(ctx, l, row, evalOptions, ctx.data, variantsOf);
          variants++;
        }
        if (measure !== 'one-at-a-time') {
          const others = new Set(all);
          others.delete(l.name);
          const r = await evaluateModel(ctx.builder.build(others).model, ctx.data, { ...evalOptions, name: l.name });
          row.leaveOneOut = r.score;
          variants++;
        }
        rows.push(row);
        reporter.update({ done: i + 1, detail: l.name });
      }
    } finally {
      reporter.stop();
      variantsOf?.cuts.release();
    }
    ranked = rankLayers(rows, measure, metric, fullInt8).map((l) => ({ ...l, rankedBy: 'measured' as const }));
    search = { method: 'exhaustive', ...(why !== undefined && !options.exhaustive ? { why } : {}), measured: selected.map((l) => l.name), proxyRanked: [] };
  }
  const measureSeconds = (performance.now() - started) / 1000;
  return {
    format: 'trt-calib-sensitivity',
    formatVersion: 1,
    model: ctx.modelFile,
    cache: ctx.cache,
    data: { source: ctx.source, images: ctx.data.files.length, skipped: ctx.data.skipped.length, batchSize: ctx.batchSize, preprocess: ctx.preprocess },
    measure,
    metric,
    budgetMetric: fullInt8.metric,
    fullInt8,
    quantizableLayers: ctx.builder.layers.length,
    layers: ranked,
    notQuantized: ctx.full.skipped,
    memoryBytes: ctx.data.bytes,
    seconds: { prepare: ctx.seconds, measure: measureSeconds, total: ctx.seconds + measureSeconds, perVariant: measureSeconds / variants },
    variants,
    search,
    ...(cutSummary ? { cuts: cutSummary } : {}),
    ...(options.shard ? { shard: { index: options.shard.index, count: options.shard.count, ...slice, selectedLayers: chosen.map((l) => l.name) } } : {}),
  };
}

/** prepareSensitivity then measureSensitivity: the `sensitivity` command's work. */
export async function analyzeSensitivity(options: SensitivityOptions): Promise<{ report: SensitivityReport; context: SensitivityContext }> {
  const context = await prepareSensitivity(options);
  const report = await measureSensitivity(context, options);
  return { report, context };
}
