/**
 * The protection decision (src/precision/protect.ts) for commands that start from a calibration cache (`quantize`,
 * `compare`): from the stored statistics when they are there (the ranges every rule needs), else from the cache's
 * own amax (scale x 127), with which the outlier rule cannot run and a calibrator's clipping stands in for a range.
 */
import { existsSync } from 'node:fs';
import type { OnnxModel } from '../onnx/model.js';
import { findProtectedTensors, type ProtectedTensor } from '../precision/protect.js';
import type { Reporter } from '../reporter.js';
import { loadStatistics } from '../stats/store.js';
import type { TensorStatistics } from '../stats/types.js';

export interface ProtectionSource {
  /** The statistics file used, when one was. */
  statistics?: string;
  tensors?: readonly TensorStatistics[];
}

/**
 * Reads the statistics for the decision. Named explicitly (`explicit`): a missing or foreign file is an error.
 * Found by default: left out with a note (the caches' ranges are used instead).
 */
export async function protectionStatistics(file: string, explicit: boolean, modelSha256: string, modelFile: string, reporter: Reporter): Promise<ProtectionSource> {
  if (!explicit && !existsSync(file)) return {};
  try {
    const stored = await loadStatistics(file, { expectModelSha256: modelSha256, modelFile });
    return { statistics: file, tensors: stored.tensors };
  } catch (err) {
    if (explicit) throw err;
    reporter.warn(`${file} not used for the protection decisions: ${(err as Error).message}`);
    return {};
  }
}

/** The tensors to keep out of INT8 for one cache's scales. */
export function protectedForCache(model: OnnxModel, scales: ReadonlyMap<string, number>, source: ProtectionSource, file: string): ProtectedTensor[] {
  const amax = new Map([...scales].map(([name, scale]) => [name, scale * 127]));
  return findProtectedTensors(model, source.tensors, { amax, file });
}
