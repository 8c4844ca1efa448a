/**
 * `calibrate --algo auto`: the five algorithms' scales from one statistics pass, then one probe pass choosing each
 * tensor's amax among them by the error of what the tensor feeds (src/calibrators/auto.ts).
 *
 * The cache header stays EntropyCalibration2: TensorRT compares a cache's header with the calibrator's algorithm
 * only when it reads the cache through a calibrator (readCalibrationCache of an IInt8EntropyCalibrator2, the one
 * trtexec --calib uses) and recalibrates on a mismatch; the scales themselves carry no algorithm.
 * The statistics file records which candidate each tensor took (`algorithmChoices`); `cache show` prints it.
 */
import path from 'node:path';
import { formatCalibrationCache, scaleFromAmax } from '../cache/trt-cache.js';
import { resolveTrtVersion } from '../cache/trt-version.js';
import { candidatesOf, chooseAmaxes, type AutoCandidate } from '../calibrators/auto.js';
import { ALGORITHM_NAMES } from '../calibrators/registry.js';
import type { AlgorithmName } from '../calibrators/types.js';
import { UserError } from '../errors.js';
import { loadOnnxModel, writeOnnxModel } from '../onnx/model.js';
import { silentReporter } from '../reporter.js';
import { loadStatistics, saveStatistics } from '../stats/store.js';
import { writeFileAtomic } from '../util/fs.js';
import { correctModelBiases } from './bias-correction.js';
import { calibrate, type CalibrateOptions, type CalibrateResult } from './calibrate.js';
import { datasetForModel } from './data.js';

export interface AutoResult extends CalibrateResult {
  auto: { file: string; header: string; chosen: Record<string, number>; seconds: number };
}

export async function calibrateAuto(options: Omit<CalibrateOptions, 'algorithms'> & { midpoints?: boolean }): Promise<AutoResult> {
  if (!options.data) throw new UserError('--algo auto measures each candidate on images: pass --data DIR (the calibration images).');
  const reporter = options.reporter ?? silentReporter;
  const writeCaches = options.writeCaches ?? true;
  const trt = writeCaches ? resolveTrtVersion(options.trtVersion) : undefined; // fails now, before any pass
  const r = await calibrate({ ...options, algorithms: [...ALGORITHM_NAMES], biasCorrection: false, out: undefined });
  const started = performance.now();
  const model = await loadOnnxModel(options.model);
  const candidates = new Map<string, AutoCandidate[]>();
  const names = Object.keys(r.amax[ALGORITHM_NAMES[0]!]!);
  for (const name of names) {
    const amaxes = new Map<AlgorithmName, number>(ALGORITHM_NAMES.map((a) => [a, r.amax[a]![name]!]));
    candidates.set(name, candidatesOf(amaxes, ALGORITHM_NAMES, options.midpoints ?? true));
  }
  const { dataset } = await datasetForModel(options.model, model, { ...options.data, batch: 1, prefetchImages: 8 }, 'auto calibration', 1);
  const choices = await chooseAmaxes({ model, file: options.model, candidates, dataset, threads: options.threads, reporter });
  const amax: Record<string, number> = {};
  for (const name of names) amax[name] = choices.get(name)?.amax ?? r.amax.entropy2![name]!;
  const chosen: Record<string, number> = {};
  const algorithmChoices: Record<string, string> = {};
  for (const [name, c] of choices) {
    chosen[c.source] = (chosen[c.source] ?? 0) + 1;
    algorithmChoices[name] = c.source;
  }
  // The choices go into the statistics file, beside the statistics they were derived from.
  const stats = await loadStatistics(r.statsFile);
  await saveStatistics(r.statsFile, { ...stats, algorithmChoices });
  const base = path.basename(options.model).replace(/\.onnx$/i, '');
  const outDir = options.outDir ?? 'calib-cache';
  const file = options.out ?? path.join(outDir, `${base}.auto.cache`);
  let header = '';
  if (trt) {
    const text = formatCalibrationCache({ trtVersion: trt.version, algorithm: 'EntropyCalibration2', entries: names.map((name) => ({ name, scale: scaleFromAmax(amax[name]!) })) });
    await writeFileAtomic(file, text);
    header = text.slice(0, text.indexOf('\n'));
  }
  r.amax.auto = amax;
  if (options.biasCorrection) {
    const scales = new Map(names.map((n) => [n, scaleFromAmax(amax[n]!)]));
    const { result, summary } = await correctModelBiases({ modelFile: options.model, model, scales, data: options.data, mode: options.biasCorrectionMode, threads: options.threads, reporter });
    const bcFile = path.join(outDir, `${base}.auto.bc.onnx`);
    await writeOnnxModel(bcFile, result.model);
    r.biasCorrected = [{ algorithm: 'auto' as AlgorithmName, file: bcFile, ...summary, model: bcFile }];
  }
  return { ...r, auto: { file, header, chosen, seconds: (performance.now() - started) / 1000 } };
}
