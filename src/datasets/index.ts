/** The dataset pipeline's public surface: discovery, presets, preprocessing, batching. */
export type * from './types.js';
export { IMAGE_EXTENSIONS, discoverImages, isImagePath, mulberry32, seededPick, sortPaths } from './discovery.js';
export type { DiscoveryOptions } from './discovery.js';
export {
  DEFAULT_PRESET,
  PRESETS,
  getPreset,
  inferLayout,
  presetNames,
  resolveBatchSize,
  resolvePreprocess,
} from './presets.js';
export type { ModelInputInfo, PreprocessOptions, PresetDefinition } from './presets.js';
export { parseShapes, parseSize } from './shapes.js';
export {
  ImageDecodeError,
  computeGeometry,
  decodeImage,
  imageDims,
  imageElementCount,
  normalisationTables,
  preprocessImage,
  writeImageTensor,
} from './preprocess.js';
export type { DecodedImage, ImageGeometry } from './preprocess.js';
export { createDataset, summarizeSkipped } from './dataset.js';
export type { DatasetOptions } from './dataset.js';
export { mapOrdered } from './prefetch.js';
