/**
 * Runs one variant model over the kept batches and compares it with the kept FP32 outputs, with the comparison
 * machinery of src/compare (the same metrics `compare` reports): the primary output's agreement with FP32 (top-1
 * agreement for a classifier, IoU of the thresholded maps for a dense map; top-1 accuracy when labelled), its mean and
 * worst per-image cosine. For detection, segmentation and OCR (data.task), the verdict is the task metric instead: its
 * value against FP32 (or the labels) and its drop in points, as compare's gate counts them.
 */
import { onnxruntimeBackend } from '../backends/onnxruntime.js';
import { PairSums, denseAgreement, floatValues } from '../compare/metrics.js';
import { VariantComparison, choosePrimaryOutput, gateMetricOf, taskGateMetric } from '../compare/report.js';
import type { TaskMetrics } from '../compare/task/types.js';
import type { GateMetric, VariantReport } from '../compare/types.js';
import { exposeTensors } from '../onnx/expose.js';
import { saveOnnxModel, type OnnxModel } from '../onnx/model.js';
import type { EvaluationData } from './data.js';
import { TensorNoise } from './noise.js';

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
  /** A pair of tensors of the variant to compare with each other over all images (the layer and its float twin). */
  twin?: { output: string; reference: string };
  /** Label for the comparison (e.g. the layer). */
  name?: string;
  /** Name the model's primary output (default: the compare module's choice, the first classifier output). */
  primaryOutput?: string;
  /** How many of the worst images the report lists (default 1). */
  worstCount?: number;
}

export interface Evaluation {
  score: VariantScore;
  report: VariantReport;
  /** With `twin`: SNR (dB) and cosine of the layer's output against its float twin, and the twin's values (the
   * layer's FP32 output): range and FP16 noise. */
  twin?: { snrDb: number; cosine: number; reference: TensorNoise };
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
    m = exposeTensors(model, [options.twin.output, options.twin.reference], { file });
    fetch.push(options.twin.output, options.twin.reference);
  }
  return evaluateBytes(saveOnnxModel(m), data, { ...options, file }, fetch);
}

/** The same, for serialized ONNX whose graph outputs already include everything fetched. */
export async function evaluateBytes(bytes: Uint8Array, data: EvaluationData, options: EvaluateOptions = {}, fetch: readonly string[] = data.outputs): Promise<Evaluation> {
  const session = await onnxruntimeBackend.open({ path: options.file ?? 'variant.onnx', bytes }, { ...(options.threads ? { threads: options.threads } : {}) });
  const cmp = new VariantComparison({ name: options.name ?? 'variant', precision: 'int8' }, { worstCount: options.worstCount ?? 1 });
  const twinSums = options.twin ? new PairSums() : undefined;
  const twinNoise = options.twin ? new TensorNoise() : undefined;
  const task = data.task?.create();
  let start = 0;
  try {
    for (let b = 0; b < data.batches.length; b++) {
      const batch = data.batches[b]!;
      const out = await session.run({ [data.inputName]: { dtype: 'float32', dims: batch.dims, data: batch.data } }, fetch);
      const labels = data.labels?.slice(start, start + batch.files.length);
      cmp.addOutputs(data.fp32Outputs[b]!, out, batch.files, labels, data.outputs);
      if (task) {
        const geometries = data.geometries![b]!;
        await task.prepareBatch?.(geometries);
        task.addReference(data.fp32Outputs[b]!, geometries);
        task.addVariant('fp32', data.fp32Outputs[b]!, geometries);
        task.addVariant('variant', out, geometries);
      }
      if (twinSums && options.twin) {
        const reference = floatValues(out[options.twin.reference]!, 'twin');
        twinSums.add(reference, floatValues(out[options.twin.output]!, 'layer'));
        twinNoise!.addImages(reference, batch.files.length);
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
  if (twinSums) result.twin = { snrDb: twinSums.snrDb, cosine: twinSums.cosine, reference: twinNoise! };
  return result;
}
