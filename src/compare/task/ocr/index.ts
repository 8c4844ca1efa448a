/** OCR: CTC recognisers' [N, T, C] outputs decoded greedily, texts compared by exact match and character error rate. */
export { createOcrEvaluator, OcrEvaluator, type OcrOptions } from './evaluator.js';
export { ctcGreedyDecode, editDistance, textLength } from './ctc.js';
export { parseKeys, readKeys, resolveKeys } from './keys.js';
export { parseTextLabels, readTextLabels, type TextLabels } from './labels.js';
export { recognizeOcr, type OcrEvidence } from './recognize.js';
export { alignmentCost, alignTexts, type TextEdit } from './align.js';
