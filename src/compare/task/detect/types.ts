/**
 * The detection task's own types: how a model's outputs hold its detections (DetectionSpec), the options of a
 * detection comparison, and ground-truth boxes from label files. The box and metric types shared with the report
 * live in ../types.ts.
 */

/** How four numbers describe a box: corners (x first or y first), corner + size, or centre + size. */
export type BoxFormat = 'xyxy' | 'yxyx' | 'xywh' | 'cxcywh';
export const BOX_FORMATS: readonly BoxFormat[] = ['xyxy', 'yxyx', 'xywh', 'cxcywh'];

/**
 * Where the detections are among a model's outputs. Boxes are in model-input pixels unless `normalized` (then in
 * 0..1 of the input's width and height). Score column i is class i (before DetectionOptions.classOffset).
 */
export type DetectionSpec =
  /** [N, A, 5+C]: cx, cy, w, h, objectness, class probabilities; confidence = objectness x class probability. */
  | { layout: 'yolov5'; output: string }
  /** [N, 4+C, A] (transposed = false, ultralytics' export) or [N, A, 4+C] (transposed = true): cx, cy, w, h, class scores. */
  | { layout: 'yolov8'; output: string; transposed: boolean }
  /** boxes [N, A, 4] or [N, A, 1, 4] in `format`; scores [N, A, C]. */
  | { layout: 'boxes-scores'; boxes: string; format: BoxFormat; normalized: boolean; scores: string }
  /** NMS in the graph: [N, K, 6] rows of x1, y1, x2, y2, score, class. */
  | { layout: 'nms'; output: string; normalized?: boolean }
  /**
   * TensorRT's EfficientNMS plugin (and ONNX exports of it): num_dets [N, 1], boxes [N, K, 4], scores [N, K],
   * classes [N, K]. Boxes xyxy unless `format` says otherwise (the TF Object Detection API's postprocessed
   * num_detections/detection_boxes/... outputs have the same form with normalised yxyx boxes).
   */
  | { layout: 'efficient-nms'; numDets: string; boxes: string; scores: string; classes: string; format?: BoxFormat; normalized?: boolean };

export type DetectionLayout = DetectionSpec['layout'];
export const DETECTION_LAYOUTS: readonly DetectionLayout[] = ['yolov5', 'yolov8', 'boxes-scores', 'nms', 'efficient-nms'];

/** One ground-truth box in the original image's pixels. Crowd boxes (COCO's iscrowd) are ignored regions. */
export interface GroundTruthBox {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  classId: number;
  iscrowd?: boolean;
}

export interface DetectionOptions {
  spec: DetectionSpec;
  /** Score column i is category id i + classOffset (the SSD fixture: 1). Default 0. */
  classOffset?: number;
  /** IoU above which a lower-scored box of the same class is suppressed. Default 0.7 (ultralytics' validator). */
  nmsIou?: number;
  /** Detections kept per image after NMS. Default 300 (ultralytics' validator). */
  maxDetections?: number;
  /** Detections below this score are dropped before NMS and never scored. Default 0.001. */
  scoreFloor?: number;
  /** FP32 detections at or above this score are the ground truth of the FP32-relative metrics. Default 0.25. */
  gtScore?: number;
  classNames?: ReadonlyMap<number, string>;
  /** Ground truth by dataset file (path.resolve'd), in original pixels. Images without an entry are not scored against labels. */
  labels?: ReadonlyMap<string, GroundTruthBox[]>;
  /** Images kept for the report's worst list. Default 5. */
  worstCount?: number;
  /** Keep every image's detections per variant after finish(), for --save-detections. */
  keepDetections?: boolean;
}

export const DETECTION_DEFAULTS = {
  classOffset: 0,
  nmsIou: 0.7,
  maxDetections: 300,
  scoreFloor: 0.001,
  gtScore: 0.25,
  worstCount: 5,
} as const;

/** A model output's name and declared shape (symbolic dims as strings). */
export interface OutputInfo {
  name: string;
  dims: readonly (number | string)[];
}
