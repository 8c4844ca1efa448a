/**
 * Typed results of a comparison (FP32 vs FP16 vs INT8). Everything a report shows is here as data; the
 * renderers (text, JSON, HTML) only format these values. The JSON form is documented in docs/report-schema.md.
 *
 * Fractions are in [0, 1]; "points" (drops, the gate) are percentage points, i.e. fractions x 100.
 * SNRs may be +Infinity (identical tensors) or -Infinity (the reference is all zeros, the variant is not).
 */

export type Precision = 'fp32' | 'fp16' | 'int8';

/** classifier: [N, C] with C > 1; dense: rank >= 3 (a probability map); other: everything else. */
export type OutputKind = 'classifier' | 'dense' | 'other';

export interface AccuracyMetrics {
  /** Images with a label. */
  labelled: number;
  top1: number;
  referenceTop1: number;
  top1Correct: number;
  referenceTop1Correct: number;
  /** Top-k, only when the output has more than k classes (otherwise it is trivially 1). */
  k?: number;
  topK?: number;
  referenceTopK?: number;
  topKCorrect?: number;
  referenceTopKCorrect?: number;
}

/** One model output of one variant against FP32. */
export interface OutputMetrics {
  name: string;
  kind: OutputKind;
  /** Dims of one image's output (batch removed); -1 where images differed (dense maps of varying size). */
  dims: number[];
  images: number;
  /** Finite element pairs compared. */
  elements: number;
  /** Element pairs left out because either value was NaN or infinite. */
  nonFinite: number;
  /** Mean over images of the per-image cosine (an image's row, or its whole map). */
  cosineMean: number;
  /** Worst per-image cosine. */
  cosineMin: number;
  /** Cosine over all elements of all images. */
  cosine: number;
  /** Over all elements of all images. */
  snrDb: number;
  meanAbsErr: number;
  maxAbsErr: number;
  /** classifier: fraction of images with the same top-1 class as FP32. */
  agreement?: number;
  agreeCount?: number;
  /** classifier with labels. */
  accuracy?: AccuracyMetrics;
  /** dense: fraction of elements on the same side of `threshold` as FP32. */
  sameSideFraction?: number;
  /** dense: intersection over union of the maps thresholded at `threshold` (FP32 vs variant), over all images; absent when no element reaches it. */
  iou?: number;
  /** dense: elements at or above `threshold` in FP32 or in the variant (the union the IoU is over). */
  aboveUnion?: number;
  threshold?: number;
}

/** One image of one output, kept when it is among the worst. */
export interface ImageRecord {
  /** The image file as the dataset named it. */
  file: string;
  /** Position of the image in the comparison order (0-based). */
  index: number;
  cosine: number;
  snrDb: number;
  meanAbsErr: number;
  maxAbsErr: number;
  referenceTop1?: number;
  variantTop1?: number;
  label?: number;
  sameSideFraction?: number;
  /** dense: this image's IoU of the thresholded maps (absent when neither map reaches the threshold). */
  iou?: number;
}

/** One quantized tensor of a variant against the same tensor in FP32, over all images. */
export interface LayerMetrics {
  name: string;
  snrDb: number;
  cosine: number;
  meanAbsErr: number;
  maxAbsErr: number;
  elements: number;
  nonFinite: number;
  /** The ONNX operator that produces the tensor, when the caller knows it. */
  opType?: string;
}

export interface VariantReport {
  /** Unique in the report: "fp32", "fp16", "int8-entropy2"... */
  name: string;
  precision: Precision;
  /** INT8: the calibration algorithm (or the cache) that gave the scales. */
  algorithm?: string;
  /** The model file this variant ran (e.g. the Q/DQ ONNX), when one was written. */
  modelFile?: string;
  /** INT8 from a cache: 'explicit' (Q/DQ where `quantize` puts them) or 'implicit' (on every tensor the cache names). */
  placement?: 'explicit' | 'implicit';
  /** INT8: tensors kept out of INT8 by the protection rules (src/precision/protect.ts). */
  protected?: string[];
  images: number;
  /** From the primary output, when labelled. */
  top1?: number;
  /** Top-5, when the primary output has more than 5 classes. */
  top5?: number;
  /** (FP32 top-1 - this top-1) x 100, in accuracy points. */
  top1Drop?: number;
  top5Drop?: number;
  /** The primary output's agreement with FP32: top-1 agreement (classifier) or IoU of the thresholded maps (dense map; 1 when both are empty). */
  agreement?: number;
  /** Per-image cosine of the primary output: mean and worst. */
  cosineMean: number;
  cosineMin: number;
  outputs: OutputMetrics[];
  /** Layerwise SNR, sorted ascending (worst first). */
  layers?: LayerMetrics[];
  /** The worst images of the primary output, worst first. */
  worst: ImageRecord[];
  /** The task's verdict (issue 13): detection mAP, segmentation IoU, OCR text, classification top-1. */
  task?: import('./task/types.js').TaskMetrics;
  /**
   * The verdict's drop in points of the task metric: with labels FP32's labelled value minus this one's, without
   * (1 - value) x 100 (classification: exactly top1Drop, or the disagreeing images x 100 / images). What the winner
   * is not, but what the gate holds to --max-drop.
   */
  taskDrop?: number;
  /**
   * INT8 from a calibration cache: how many of the activations its INT8 layers read the cache has a scale for
   * (`missing` ones leave their consumers in float). A cache covering none of them is refused before the pass.
   */
  cacheCoverage?: { cache: string; tensors: number; quantizable: number; covered: number; missing: string[] };
}

export interface Winner {
  /** Variant name. */
  name: string;
  algorithm?: string;
  agreement?: number;
  cosineMean: number;
  cosineMin: number;
  /** The task metric it won on: its name, value (a fraction) and what it was measured against. */
  task?: { kind: import('./task/types.js').TaskKind; metric: string; value: number; against: 'fp32' | 'labels' };
  /** Why it won, in words. */
  reason: string;
}

/**
 * What --max-drop is in points of: classification top-1 accuracy (labels) or agreement; a binary map's IoU (against
 * FP32, as before tasks) or against masks; detection mAP@[.5:.95] against FP32 or labels; segmentation mIoU; OCR
 * 1 - CER (points of CER).
 */
export type GateMetric =
  | 'top1-accuracy'
  | 'top1-agreement'
  | 'threshold-iou'
  | 'iou-labels'
  | 'map'
  | 'map-labels'
  | 'miou'
  | 'miou-labels'
  | 'cer'
  | 'cer-labels';

export interface GateVariant {
  name: string;
  /** Drop in points (see GateMetric). */
  drop: number;
  passed: boolean;
}

export interface GateResult {
  /** --max-drop, in points. */
  maxDrop: number;
  metric: GateMetric;
  /** The task metric's name (e.g. "mAP@[.5:.95]"), when the gate is on a task's verdict. */
  taskMetric?: string;
  /** The variants held to the gate: every FP16 variant and the INT8 winner. */
  variants: GateVariant[];
  passed: boolean;
}

export interface HistogramThreshold {
  algorithm: string;
  amax: number;
}

/** A tensor's |x| histogram prepared for display: at most ~128 bins covering [0, upper). */
export interface TensorHistogram {
  name: string;
  /** Values counted (finite). */
  count: number;
  absMax: number;
  /** Display bins: counts[i] covers [i * binWidth, (i + 1) * binWidth), the last bin ending at `upper`. */
  binWidth: number;
  upper: number;
  counts: number[];
  /** The amax each algorithm picks for this tensor. */
  thresholds: HistogramThreshold[];
  /** Layerwise SNR of the winner for this tensor, when known (to order and annotate). */
  snrDb?: number;
}

/** Issue 5 (mixed precision) fills this: accuracy against the number of layers kept in INT8. */
export interface TradeoffPoint {
  int8Layers: number;
  /** The metric's value, a fraction (agreement or accuracy). */
  value: number;
  label?: string;
}

export interface TradeoffCurve {
  /** What `value` measures, e.g. "top-1 agreement". */
  metric: string;
  totalLayers: number;
  points: TradeoffPoint[];
  /** Index in `points` of the chosen precision map. */
  chosen?: number;
  /** The target value (e.g. 1 - maxDrop/100), drawn as a line. */
  target?: number;
  /** The type of everything not in INT8 in the measured models: FP16 with --high-precision fp16, else FP32. */
  rest?: 'fp16' | 'fp32';
}

export interface ReportTensorInfo {
  name: string;
  dims: Array<number | string>;
}

export interface CompareReport {
  format: 'trt-calib-report';
  formatVersion: 1;
  tool: { name: string; version: string };
  model: { file: string; sha256?: string; inputs: ReportTensorInfo[]; outputs: ReportTensorInfo[] };
  data: {
    /** The --data argument. */
    source: string;
    images: number;
    skipped: number;
    /** Where labels came from, when any. */
    /** `unmatched`: label entries naming images that are not in --data (left out, reported). */
    labels?: { source: string; classes?: string[]; labelled: number; unlabelled: number; unmatched?: number };
  };
  settings: {
    backend: string;
    batchSize: number;
    threads?: number;
    precisions: Precision[];
    algorithms: string[];
    /** Dense maps: the same-side threshold. */
    threshold: number;
    /** The task the verdict is about, as resolved (--task, or what auto decided and why). */
    task?: { kind: import('./task/types.js').TaskKind; requested: string; reason: string; outputs: string[]; options?: Record<string, unknown> };
    worstCount: number;
    maxDrop?: number;
    /** The preprocessing as resolved (echoed back). */
    preprocess?: unknown;
  };
  /** The output used for agreement, winner and gate: the first classifier output, else the first dense one, else the first. */
  primaryOutput: string;
  variants: VariantReport[];
  winner?: Winner;
  histograms?: TensorHistogram[];
  tradeoff?: TradeoffCurve;
  gate?: GateResult;
  /** Things the reader should know (images without labels, NaN outputs...). */
  notes: string[];
  /** Set when the report was merged (trt-calib merge) from the shards of compare --shard K/N: how many, and their files. */
  shards?: { count: number; files: string[] };
}
