/**
 * The accuracy methods applied to an INT8 Q/DQ model before it is built (compare's variants): --weight-search
 * (src/calibrators/weight-search.ts), then --bias-correction measured with the searched weights
 * (src/calibrators/bias-correction.ts), both on the calibration images only, never on the validation set.
 */
import type { OnnxModel } from '../onnx/model.js';
import type { PrecisionMap } from '../precision/map.js';
import type { Reporter } from '../reporter.js';
import { correctModelBiases, type BiasCorrectionMode, type BiasCorrectionSummary } from './bias-correction.js';
import type { DataOptions } from './data.js';
import { buildInt8Variant } from './variants.js';
import { searchModelWeightScales, type WeightSearchSummary } from './weight-search.js';

export interface Int8Methods {
  weightSearch?: boolean;
  biasCorrection?: BiasCorrectionMode;
}

/** `+ws`, `+bc` (weights mode), `+bc-full`, in the order they are applied; '' for none. */
export function methodsSuffix(m: Int8Methods): string {
  return `${m.weightSearch ? '+ws' : ''}${m.biasCorrection ? (m.biasCorrection === 'full' ? '+bc-full' : '+bc') : ''}`;
}

export async function buildInt8WithMethods(options: {
  modelFile: string;
  model: OnnxModel;
  scales: ReadonlyMap<string, number>;
  precisionMap?: PrecisionMap;
  methods: Int8Methods;
  /** The calibration images. */
  calibData: DataOptions;
  threads?: number;
  reporter: Reporter;
}): Promise<{ built: ReturnType<typeof buildInt8Variant>; weightSearch?: WeightSearchSummary; biasCorrection?: BiasCorrectionSummary }> {
  const { model, scales, precisionMap, methods } = options;
  let weightScales: ReadonlyMap<string, Float32Array> | undefined;
  let weightSearch: WeightSearchSummary | undefined;
  if (methods.weightSearch) {
    const ws = await searchModelWeightScales({ modelFile: options.modelFile, model, scales, data: options.calibData, precisionMap, threads: options.threads, reporter: options.reporter });
    weightScales = ws.result.weightScales;
    weightSearch = ws.summary;
  }
  let corrected = model;
  let biasCorrection: BiasCorrectionSummary | undefined;
  if (methods.biasCorrection) {
    const bc = await correctModelBiases({ modelFile: options.modelFile, model, scales, data: options.calibData, precisionMap, ...(weightScales ? { weightScales } : {}), mode: methods.biasCorrection, threads: options.threads, reporter: options.reporter });
    corrected = bc.result.model;
    biasCorrection = bc.summary;
  }
  const built = buildInt8Variant(corrected, scales, { precisionMap, file: options.modelFile, placement: 'explicit', ...(weightScales ? { weightScales } : {}) });
  return { built, ...(weightSearch ? { weightSearch } : {}), ...(biasCorrection ? { biasCorrection } : {}) };
}
