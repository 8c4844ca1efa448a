/**
 * trt-calib's library API: everything the CLI does, with no console output and no process.exit. Progress and
 * warnings go to an optional Reporter; user errors are UserError (message + hint), accuracy gates GateError.
 *
 *   import { calibrate, quantize, compare, buildEngine } from 'trt-calib';
 *   const r = await calibrate({ model: 'm.onnx', data: { data: './images', preprocess: { preset: 'imagenet' } },
 *                               algorithms: ['entropy2'], trtVersion: '10.3.0' });
 */
export { calibrate, DEFAULT_OUT_DIR } from './app/calibrate.js';
export type { CalibrateOptions, CalibrateResult, CacheWritten } from './app/calibrate.js';
export { merge } from './app/merge.js';
export type { MergeOptions, MergeResult } from './app/merge.js';
export { parseShard } from './app/shard.js';
export type { ShardSpec } from './app/shard.js';
export type { DataOptions } from './app/data.js';
export { quantize } from './app/quantize.js';
export type { QuantizeOptions, QuantizeResult } from './app/quantize.js';
export { compare } from './app/compare.js';
export type { CompareOptions, CompareResult, ComparePlacement } from './app/compare.js';
export { searchMixedPrecision } from './app/mixed.js';
export { analyzeSensitivity, prepareSensitivity, measureSensitivity } from './sensitivity/analyze.js';
export { autoMixedPrecision } from './sensitivity/auto.js';
export { collectDoctorReport } from './app/doctor.js';
export { buildEngine, tensorrtBackend } from './backends/tensorrt.js';

// Data
export { createDataset, discoverImages, resolvePreprocess, PRESETS } from './datasets/index.js';
export type { Dataset, Batch, PreprocessConfig, PreprocessOptions } from './datasets/index.js';

// Statistics and calibrators
export { StatisticsCollector } from './stats/collector.js';
export { loadStatistics, saveStatistics } from './stats/store.js';
export type { TensorStatistics, StoredStatistics } from './stats/types.js';
export { CALIBRATORS, ALGORITHM_NAMES, computeAllAmaxes, getCalibrator } from './calibrators/registry.js';
export type { AlgorithmName, Calibrator, CalibratorOptions } from './calibrators/types.js';

// TensorRT calibration caches
export { formatCalibrationCache, parseCalibrationCache, scaleFromAmax, diffCaches, cacheToRangeTable, rangeTableFromJson } from './cache/trt-cache.js';
export type { CalibrationCache, CacheEntry } from './cache/trt-cache.js';
export { encodeTrtVersion, decodeTrtVersion, parseTrtVersion, detectTensorRt } from './cache/trt-version.js';

// ONNX and backends
export { loadOnnxModel, saveOnnxModel, writeOnnxModel } from './onnx/model.js';
export { listActivations } from './onnx/graph.js';
export { quantizeQdq } from './onnx/qdq.js';
export type { QdqPlacement } from './onnx/qdq.js';
export { convertToFp16 } from './onnx/fp16.js';
export { castRestToFp16, usesFloat16 } from './onnx/autocast.js';
export type { AutocastOptions, AutocastResult } from './onnx/autocast.js';
export { fp16RangeVerdict, tensorsUnsafeInFp16 } from './precision/fp16-safety.js';
export { onnxruntimeBackend } from './backends/onnxruntime.js';
export type { Backend, Session, TensorInfo } from './backends/types.js';

// Reports, precision maps
export { renderText as renderReportText } from './compare/render-text.js';
export { renderHtml as renderReportHtml } from './compare/render-html.js';
export type { CompareReport } from './compare/types.js';
export { readPrecisionMap, writePrecisionMap } from './precision/map.js';
export { findProtectedTensors, protectionPrecisionMap, MIXED_RANGE_FACTOR, OUTLIER_FACTOR } from './precision/protect.js';
export type { ProtectedTensor, ProtectionKind, ProtectOptions } from './precision/protect.js';

export { UserError, GateError } from './errors.js';
export type { Reporter } from './reporter.js';
export type { Tensor, DType } from './tensor.js';
