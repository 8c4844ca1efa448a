/** Segmentation: per-pixel class maps (argmax) and binary maps (threshold), IoU against FP32 and against PNG masks. */
export { createSegmentationEvaluator, DEFAULT_IGNORE_INDEX, SegmentationEvaluator, type SegmentationOptions } from './evaluator.js';
export { recognizeSegmentation } from './recognize.js';
export { addMaskCounts, findMaskLabels, pngPalette, readMask, type LabelMask, type MaskMatch, type MaskNaming } from './masks.js';
export { ClassCounts, NO_CLASS } from './class-counts.js';
export { classMapLayout, classMapOf, originalSampling, originalToMapIndex, type ClassMapLayout } from './class-map.js';
export { VIEW_SIDE, type WorstMapView } from './evaluator.js';
