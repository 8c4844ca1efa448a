/**
 * Runs one variant model over the kept batches and compares it with the kept FP32 outputs, with the comparison
 * machinery of src/compare (the same metrics `compare` reports): the primary output's agreement with FP32 (top-1
 * agreement for a classifier, IoU of the thresholded maps for a dense map; top-1 accuracy when labelled), its mean and
 * worst per-image cosine. For detection, segmentation and OCR (data.task), the verdict is the task metric instead: its
 * value against FP32 (or the labels) and its drop in points, as compare's gate counts them.
 *
 * With a float twin (one-at-a-time, VariantBuilder.build), the layer's output SNR and cosine against the twin and
 * the twin's range and FP16 rounding SNR come from per-image sums the graph computes (variants.ts twinSums),
 * added here in float64 in image order (TwinTotals): no layer tensor is copied out of onnxruntime.
 */
import { onnxruntimeBackend } from '../backends/onnxruntime.js';
import { cosineFromSums, denseAgreement, floatValues, snrFromSums } from '../compare/metrics.js';
import { VariantComparison, choosePrimaryOutput, gateMetricOf, taskGateMetric } from '../compare/report.js';
import type { TaskMetrics } from '../compare/task/types.js';
import type { GateMetric, VariantReport } from '../compare/types.js';
import { exposeTensors } from '../onnx/expose.js';
import { saveOnnxModel, type OnnxModel } from '../onnx/model.js';
import type { Tensor } from '../tensor.js';
import type { EvaluationData } from './data.js';
import type { TwinTensors } from './variants.js';

/** What one variant scored: everything the ranking and the search look at. */
export interface VariantScore {
  images: number;
  /**
   * The budget's metric: 'top1-agreement' (classifier), 'threshold-iou' (dense map), 'top1-accuracy' (labelled);
   * for detection, segmentation and OCR the task metric ('map', 'miou', 'cer', ... see GateMetric).
   */
  metric: GateMetric | 'cosine';
  /** That metric's value, a fraction (for 'cosine', the mean cosine). */
  value: number;
  /** Its drop against FP32, in points (fractions x 100). */
  drop: number;
  /** Classifier: images whose top-1 class equals FP32's. */
  agreeCount?: number;
  agreement?: number;
  cosineMean: number;
  cosineMin: number;
  /** The image with the worst cosine. */
  worstImage?: string;
}

export interface EvaluateOptions {
  threads?: number;
  /** File name for messages. */
  file?: string;
  /** The variant's float twin (VariantBuilder.build): the graph outputs that compare the layer with it per image. */
  twin?: TwinTensors;
  /** Label for the comparison (e.g. the layer). */
  name?: string;
  /** Name the model's primary output (default: the compare module's choice, the first classifier output). */
  primaryOutput?: string;
  /** How many of the worst images the report lists (default 1). */
  worstCount?: number;
  /** The feed of each kept batch, for a variant cut at its layer (src/sensitivity/cut.ts); default: the images. */
  feeds?: ReadonlyArray<Record<string, Tensor>>;
}

export interface Evaluation {
  score: VariantScore;
  report: VariantReport;
  /** With `twin`: SNR (dB) and cosine of the layer's output against its float twin, and the twin's values (the
   * layer's FP32 output): range and FP16 noise. */
  twin?: { snrDb: number; cosine: number; reference: TwinReference };
}

/** The layer's FP32 output (its float twin's), for the FP16 check. */
export interface TwinReference {
  /** Largest |value|; Infinity when the output holds an infinite or NaN value. */
  absMax: number;
  /** SNR of its float16 rounding, over every element; -Infinity when a value overflows float16 or is not finite. */
  fp16SnrDb: number;
}

/**
 * Running totals of the twin's per-image sums (variants.ts twinSums), added in float64 in image order, so that
 * the result does not depend on the batch size.
 *
 * SNR: snrFromSums(sum ref^2, sum (ref - out)^2), as PairSums. Cosine: dot / sqrt(ref2 var2) as PairSums
 * (cosineFromSums, 1 for identical tensors), with the dot product taken from the identity
 * 2 dot = ref2 + var2 - err2 in the form 1 - cos = (err2 - (sqrt(ref2) - sqrt(var2))^2) / (2 sqrt(ref2 var2)):
 * the float32 sums carry a relative error near 1e-6, which on a direct dot product would be as large as
 * 1 - cos itself near 1 (measured 2e-4 off on one 401408-value row); here it scales with err2 instead.
 *
 * Non-finite values: PairSums skips a pair with a non-finite value; the graph's sums cannot, and an image with
 * one gets a non-finite sum. Such a sum (also a float32 overflow of a sum of squares, |x| > ~1e19) makes the
 * comparison undefined and is reported on the unsafe side: output SNR -Infinity and cosine NaN for the pair;
 * for the reference, absMax Infinity and FP16 SNR -Infinity, so that the FP16 check says "not enough".
 */
export class TwinTotals {
  #ref2 = 0;
  #var2 = 0;
  #err2 = 0;
  #fp16Err2 = 0;
  #absMax = 0;
  #pairNonFinite = false;
  #referenceNonFinite = false;

  /** Adds one batch: `sums` are the graph outputs named in TwinTensors.sums, one value per image. */
  add(sums: Record<keyof TwinTensors['sums'], ArrayLike<number>>, images: number): void {
    for (const [name, v] of Object.entries(sums)) if (v.length !== images) throw new Error(`twin sum ${name}: ${v.length} values for ${images} images`);
    for (let j = 0; j < images; j++) {
      const ref2 = sums.ref2[j]!;
      const var2 = sums.var2[j]!;
      const err2 = sums.err2[j]!;
      const max = sums.max[j]!;
      const min = sums.min[j]!;
      // ref2 is not finite when the reference holds an inf or NaN (ReduceMax may skip a NaN; the sum does not).
      if (!Number.isFinite(ref2) || !Number.isFinite(max) || !Number.isFinite(min)) this.#referenceNonFinite = true;
      if (!Number.isFinite(ref2) || !Number.isFinite(var2) || !Number.isFinite(err2)) this.#pairNonFinite = true;
      this.#ref2 += ref2;
      this.#var2 += var2;
      this.#err2 += err2;
      this.#fp16Err2 += sums.fp16Err2[j]!;
      this.#absMax = Math.max(this.#absMax, Math.abs(max), Math.abs(min));
    }
  }

  get snrDb(): number {
    return this.#pairNonFinite ? Number.NEGATIVE_INFINITY : snrFromSums(this.#ref2, this.#err2);
  }

  get cosine(): number {
    if (this.#pairNonFinite) return Number.NaN;
    const [ref2, var2, err2] = [this.#ref2, this.#var2, this.#err2];
    // PairSums's edge cases: identical tensors 1; both all zero 1, one all zero 0.
    if (err2 === 0) return 1;
    if (ref2 === 0 || var2 === 0) return cosineFromSums(0, ref2, var2);
    const r = Math.sqrt(ref2);
    const v = Math.sqrt(var2);
    const c = 1 - (err2 - (r - v) * (r - v)) / (2 * r * v);
    return c > 1 ? 1 : c < -1 ? -1 : c;
  }

  get reference(): TwinReference {
    if (this.#referenceNonFinite) return { absMax: Number.POSITIVE_INFINITY, fp16SnrDb: Number.NEGATIVE_INFINITY };
    // Finite values beyond float16's range make fp16Err2 infinite: snrFromSums gives -Infinity.
    return { absMax: this.#absMax, fp16SnrDb: snrFromSums(this.#ref2, this.#fp16Err2) };
  }
}

/**
 * Score of a VariantReport (see VariantScore). With the variant's task metrics (and FP32's, for labelled drops), the
 * value and drop are the task metric's.
 */
export function scoreOf(report: VariantReport, primaryOutput: string, task?: { variant: TaskMetrics; reference: TaskMetrics }): VariantScore {
  const primary = report.outputs.find((o) => o.name === primaryOutput) ?? report.outputs[0]!;
  const taskMetric = task === undefined ? undefined : taskGateMetric(task.variant);
  const metric = taskMetric ?? gateMetricOf(primary) ?? 'cosine';
  let value: number;
  let drop: number;
  if (taskMetric !== undefined && task !== undefined) {
    const labelled = task.variant.valueLabels !== undefined;
    value = labelled ? task.variant.valueLabels! : task.variant.value;
    drop = labelled ? (task.reference.valueLabels! - value) * 100 : (1 - value) * 100;
  } else if (metric === 'top1-accuracy') {
    value = report.top1!;
    drop = report.top1Drop!;
  } else if (metric === 'top1-agreement') {
    value = primary.agreement!;
    drop = ((primary.images - primary.agreeCount!) * 100) / primary.images;
  } else if (metric === 'threshold-iou') {
    value = denseAgreement(primary);
    drop = (1 - value) * 100;
  } else {
    value = primary.cosineMean;
    drop = (1 - value) * 100;
  }
  const score: VariantScore = {
    images: primary.images,
    metric,
    value,
    drop,
    cosineMean: primary.cosineMean,
    cosineMin: primary.cosineMin,
  };
  if (primary.agreeCount !== undefined) {
    score.agreeCount = primary.agreeCount;
    score.agreement = primary.agreement!;
  }
  const worst = report.worst[0];
  if (worst) score.worstImage = worst.file;
  return score;
}

/** Runs `model` on every kept batch and compares it with FP32 (see the file comment). */
export async function evaluateModel(model: OnnxModel, data: EvaluationData, options: EvaluateOptions = {}): Promise<Evaluation> {
  const file = options.file ?? 'variant.onnx';
  const fetch = [...data.outputs];
  let m = model;
  if (options.twin) {
    // The twin's per-image sums only (VariantBuilder.build makes them graph outputs): a few numbers per image.
    const sums = Object.values(options.twin.sums);
    m = exposeTensors(model, sums, { file });
    fetch.push(...sums);
  }
  return evaluateBytes(saveOnnxModel(m), data, { ...options, file }, fetch);
}

/** The same, for serialized ONNX whose graph outputs already include everything fetched. */
export async function evaluateBytes(bytes: Uint8Array, data: EvaluationData, options: EvaluateOptions = {}, fetch: readonly string[] = data.outputs): Promise<Evaluation> {
  const session = await onnxruntimeBackend.open({ path: options.file ?? 'variant.onnx', bytes }, { ...(options.threads ? { threads: options.threads } : {}) });
  const cmp = new VariantComparison({ name: options.name ?? 'variant', precision: 'int8' }, { worstCount: options.worstCount ?? 1 });
  const twin = options.twin ? new TwinTotals() : undefined;
  const task = data.task?.create();
  let start = 0;
  try {
    for (let b = 0; b < data.batches.length; b++) {
      const batch = data.batches[b]!;
      const feed = options.feeds ? options.feeds[b]! : { [data.inputName]: { dtype: 'float32' as const, dims: batch.dims, data: batch.data } };
      const out = await session.run(feed, fetch);
      const labels = data.labels?.slice(start, start + batch.files.length);
      cmp.addOutputs(data.fp32Outputs[b]!, out, batch.files, labels, data.outputs);
      if (task) {
        const geometries = data.geometries![b]!;
        await task.prepareBatch?.(geometries);
        task.addReference(data.fp32Outputs[b]!, geometries);
        task.addVariant('fp32', data.fp32Outputs[b]!, geometries);
        task.addVariant('variant', out, geometries);
      }
      if (twin && options.twin) {
        const names = options.twin.sums;
        const sums = Object.fromEntries(Object.entries(names).map(([k, name]) => [k, floatValues(out[name]!, name)])) as Record<keyof TwinTensors['sums'], Float32Array | Float64Array>;
        twin.add(sums, batch.files.length);
      }
      start += batch.files.length;
    }
  } finally {
    await session.release();
  }
  const report = cmp.result(options.primaryOutput);
  const primary = options.primaryOutput ?? choosePrimaryOutput(report.outputs);
  let taskScores: { variant: TaskMetrics; reference: TaskMetrics } | undefined;
  if (task) {
    const metrics = task.finish();
    taskScores = { variant: metrics.get('variant')!, reference: metrics.get('fp32')! };
    report.task = taskScores.variant;
  }
  const result: Evaluation = { score: scoreOf(report, primary, taskScores), report };
  if (twin) result.twin = { snrDb: twin.snrDb, cosine: twin.cosine, reference: twin.reference };
  return result;
}
