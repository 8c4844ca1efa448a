/**
 * The user's task, judged in its own terms (issue 13): detection mAP, segmentation IoU, OCR text, classification
 * top-1. These are the contracts between the comparison pass (src/compare/run.ts, which feeds every batch's outputs
 * to a TaskEvaluator) and the task modules (src/compare/task/<kind>/), which decode outputs and compute the metric.
 *
 * Every value here is plain data: the report (src/compare/types.ts, VariantReport.task) carries TaskMetrics as they
 * are, and the renderers only format them. Fractions are in [0, 1]; higher is better for every `value`.
 */
import type { Tensor } from '../../tensor.js';

export type TaskKind = 'classify' | 'detect' | 'segment' | 'ocr' | 'raw';
export const TASK_KINDS: readonly TaskKind[] = ['classify', 'detect', 'segment', 'ocr', 'raw'];

/**
 * How preprocessing mapped one original image into the model input, so that predictions made in input pixels can be
 * mapped back to the original photo: input = original * scale + offset, per axis (stretch: offsets 0; letterbox: one
 * scale and the padding as offset; center-crop: one scale and a negative offset).
 */
export interface ImageGeometry {
  /** The image file as the dataset names it. */
  file: string;
  /** Original size in pixels, after EXIF auto-orientation when preprocessing applies it. */
  width: number;
  height: number;
  /** The model input's spatial size for this image. */
  inputWidth: number;
  inputHeight: number;
  scaleX: number;
  scaleY: number;
  offsetX: number;
  offsetY: number;
}

/** The outputs of one batch by output name, each with the batch first (N = images.length). */
export type BatchOutputs = Readonly<Record<string, Tensor>>;

/**
 * Consumes a comparison pass. The pass calls, for each batch in image order: addReference once (FP32), then
 * addVariant once per variant (FP32's own row included, as variant 'fp32', when the report has one). After the pass,
 * finish() returns one TaskMetrics per variant. Implementations keep only what the metric needs (e.g. each image's
 * detections after NMS), never whole output tensors.
 */
export interface TaskEvaluator {
  readonly kind: TaskKind;
  /** The model outputs this task reads; every session must return them. */
  readonly outputs: readonly string[];
  /**
   * Optional: asynchronous work for one batch (reading that batch's label files, e.g. segmentation masks), awaited
   * before addReference of the same batch; what it loads is let go at the next batch.
   */
  prepareBatch?(images: readonly ImageGeometry[]): Promise<void>;
  addReference(outputs: BatchOutputs, images: readonly ImageGeometry[]): void;
  addVariant(variant: string, outputs: BatchOutputs, images: readonly ImageGeometry[]): void;
  /** Per variant name (the names passed to addVariant), in that order. */
  finish(): Map<string, TaskMetrics>;
  /**
   * compare --shard: what the pass accumulated, as plain data (before finish); `addState` adds a shard's state as if
   * its images came next (shards in image order), so that finish() gives the metrics of one pass over all of them.
   * Tasks without them cannot be sharded.
   */
  toState?(): unknown;
  addState?(state: unknown): void;
}

/** One detection in the original image's pixels (x1, y1) top-left, (x2, y2) bottom-right. */
export interface DetectionBox {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  score: number;
  /** The category id (after --class-offset), as COCO's category_id. */
  classId: number;
}

export interface ClassAp {
  classId: number;
  name?: string;
  /** AP@[.5:.95] and AP@.5 for this category (NaN-free: a category without ground truth is left out). */
  ap: number;
  ap50: number;
  /** Ground-truth boxes of this category. */
  groundTruth: number;
}

/** A precision-recall curve at one IoU threshold, on COCO's 101 recall points (precision -1 where unreached is 0 here). */
export interface PrCurve {
  iou: number;
  recall: number[];
  precision: number[];
}

export interface DetectionImageRecord {
  file: string;
  index: number;
  /** FP32 detections (ground truth for the FP32-relative metrics) without a match in the variant. */
  lost: number;
  gained: number;
  moved: number;
  reference: DetectionBox[];
  variant: DetectionBox[];
}

export interface DetectionMetrics {
  /** mAP@[.5:.95] and mAP@.5 with FP32's detections (score >= gtScore) as ground truth. */
  map: number;
  map50: number;
  /** Against labels, when given. */
  mapLabels?: number;
  map50Labels?: number;
  perClass: ClassAp[];
  perClassLabels?: ClassAp[];
  /** FP32-as-truth curves (at IoU 0.5 and 0.75 at least), summed over categories as COCO's evaluator does per area 'all'. */
  prCurves: PrCurve[];
  /** FP32 detections (score >= gtScore) without a match (IoU >= 0.5, same class) among this variant's detections (score >= gtScore). */
  lost: number;
  gained: number;
  /** Matched, but IoU < 0.9 with the match. */
  moved: number;
  /** Mean of (variant score - FP32 score) over matched pairs. */
  meanScoreChange: number;
  /** FP32 detections used as ground truth, and this variant's detections at or above gtScore. */
  referenceDetections: number;
  detections: number;
  /** The worst images (most lost + moved), worst first. */
  worst: DetectionImageRecord[];
}

export interface ClassIou {
  classId: number;
  name?: string;
  iou: number;
  /** Pixels of this class in the reference (FP32 or the labels). */
  pixels: number;
}

export interface SegmentationMetrics {
  /** 'argmax' over [N, C, H, W] or 'binary' (a map thresholded at `threshold`). */
  mode: 'argmax' | 'binary';
  threshold?: number;
  /** Mean IoU over classes present in FP32 or the variant (binary: the IoU of the foreground). */
  miou: number;
  perClass: ClassIou[];
  miouLabels?: number;
  perClassLabels?: ClassIou[];
  /** Against masks: fraction of labelled pixels (ignore index left out) given the mask's class. */
  pixelAccuracyLabels?: number;
  /** Against masks: images with a mask, images of the pass without one, mask pixels skipped as the ignore index,
   * and mask pixels outside the model's input (cut away by a center-crop; absent when none). */
  labelledImages?: number;
  unlabelledImages?: number;
  ignoredPixels?: number;
  outsidePixels?: number;
  /** Fraction of pixels with the same class as FP32. */
  pixelAgreement: number;
  /** The worst images by their own IoU against FP32 (mIoU of the classes in that image; 1 when both are empty), worst first. */
  worst: Array<{ file: string; index: number; iou: number }>;
}

export interface OcrMetrics {
  /** Fraction of images whose decoded text equals FP32's. */
  exactMatch: number;
  /** Character error rate against FP32's text: edit distance / reference length, summed over images. */
  cer: number;
  exactMatchLabels?: number;
  cerLabels?: number;
  /** Images decoded; with labels, those with a label and those of the pass without one. */
  images?: number;
  labelledImages?: number;
  unlabelledImages?: number;
  /**
   * Text pairs for the report, worst first (distance to FP32, then to the label, then file); only pairs that differ
   * from FP32 or from the label. `labelDistance`: edit distance of the variant's text to the label.
   */
  samples: Array<{ file: string; reference: string; variant: string; label?: string; labelDistance?: number; distance: number }>;
}

export interface ClassifyMetrics {
  top1Agreement: number;
  top1?: number;
  top1Labels?: number;
}

/**
 * A variant's verdict in the task's terms. `value` is the metric the winner, `--max-drop`, `sensitivity` and
 * `--mixed auto` use, against FP32 (FP32 itself scores 1 where FP32 is the truth); `valueLabels` the same metric
 * against labels, when given (then the drop is FP32's valueLabels minus this one's). CER-like metrics are stated as
 * 1 - CER so that higher is always better.
 */
export interface TaskMetrics {
  kind: TaskKind;
  /** The verdict metric's name, e.g. "mAP@[.5:.95]", "mIoU", "1 - CER", "top-1 agreement". */
  metric: string;
  value: number;
  valueLabels?: number;
  /** Detection: mirrored from `detection` for the report schema. */
  map?: number;
  map50?: number;
  mapLabels?: number;
  map50Labels?: number;
  detection?: DetectionMetrics;
  segmentation?: SegmentationMetrics;
  ocr?: OcrMetrics;
  classify?: ClassifyMetrics;
}
