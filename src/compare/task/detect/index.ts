/** The detection library: layouts, decoding, NMS, COCO mAP, box matching, labels, results files, the evaluator. */
export type { BoxFormat, DetectionLayout, DetectionOptions, DetectionSpec, GroundTruthBox, OutputInfo } from './types.js';
export { BOX_FORMATS, DETECTION_DEFAULTS, DETECTION_LAYOUTS } from './types.js';
export { detectionSpecFromFlags, LAYOUT_FLAG_VALUES, parseBoxesFlag, recognizeDetection } from './layouts.js';
export { decodeDetections, decodeInputDetections, specOutputs, tensorValues, toOriginalPixels } from './decode.js';
export { boxIou, nonMaxSuppression } from './nms.js';
export { COCO_IOU_THRESHOLDS, COCO_MAX_DETECTIONS, COCO_RECALL_POINTS, evaluateCoco, type CocoEvaluation } from './coco-eval.js';
export { matchDetections, type DetectionMatch } from './match.js';
export { loadCocoLabels, loadYoloLabels, readClassNames, type CocoLabels, type YoloLabels } from './labels.js';
export { cocoResults, writeCocoResults, type CocoResult } from './results.js';
export { createDetectionEvaluator, type DetectionEvaluator } from './evaluator.js';
