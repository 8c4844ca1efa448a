/**
 * The calibrators by name (`--algo`), and the helpers that run them over every tensor.
 */
import { UserError } from '../errors.js';
import type { TensorStatistics } from '../stats/types.js';
import { entropy } from './entropy.js';
import { entropy2 } from './entropy2.js';
import { minmax } from './minmax.js';
import { mse } from './mse.js';
import { checkPercentile, percentile } from './percentile.js';
import type { AlgorithmName, Calibrator, CalibratorOptions } from './types.js';

/** In the order `--algo all` runs them. */
export const ALGORITHM_NAMES: readonly AlgorithmName[] = Object.freeze(['entropy2', 'entropy', 'minmax', 'percentile', 'mse']);

export const CALIBRATORS: Readonly<Record<AlgorithmName, Calibrator>> = Object.freeze({
  entropy2,
  entropy,
  minmax,
  percentile,
  mse,
});

export function isAlgorithmName(name: unknown): name is AlgorithmName {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(CALIBRATORS, name);
}

/** The calibrator called `name`; a UserError naming the choices otherwise. */
export function getCalibrator(name: string, option: string = '--algo'): Calibrator {
  if (!isAlgorithmName(name)) {
    throw new UserError(`Expected one of ${ALGORITHM_NAMES.join(', ')} (or all) for ${option} but received ${JSON.stringify(name)}`);
  }
  return CALIBRATORS[name];
}

/** Parses an `--algo` value: a name, a comma-separated list, or `all`. */
export function parseAlgorithms(value: string, option: string = '--algo'): AlgorithmName[] {
  if (value.trim() === 'all') return [...ALGORITHM_NAMES];
  const names = value.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (names.length === 0) return [getCalibrator(value, option).name];
  const out: AlgorithmName[] = [];
  for (const n of names) {
    const c = getCalibrator(n, option);
    if (!out.includes(c.name)) out.push(c.name);
  }
  return out;
}

export function checkCalibratorOptions(options: CalibratorOptions = {}): CalibratorOptions {
  if (options.percentile !== undefined) checkPercentile(options.percentile);
  return options;
}

/** amax per tensor for one algorithm, in the order of `stats`. */
export function computeAmaxes(
  algorithm: AlgorithmName,
  stats: readonly TensorStatistics[],
  options: CalibratorOptions = {},
): Map<string, number> {
  checkCalibratorOptions(options);
  const calibrator = CALIBRATORS[algorithm];
  const out = new Map<string, number>();
  for (const s of stats) out.set(s.name, calibrator.compute(s, options));
  return out;
}

/**
 * amax per tensor for several algorithms. Asynchronous so that long runs can yield to the event loop between
 * tensors (a progress bar keeps moving); the results do not depend on that.
 */
export async function computeAllAmaxes(
  algorithms: readonly AlgorithmName[],
  stats: readonly TensorStatistics[],
  options: CalibratorOptions = {},
  onTensor?: (done: number, total: number) => void,
): Promise<Map<AlgorithmName, Map<string, number>>> {
  checkCalibratorOptions(options);
  const out = new Map<AlgorithmName, Map<string, number>>();
  for (const a of algorithms) out.set(a, new Map());
  for (let t = 0; t < stats.length; t++) {
    const s = stats[t]!;
    for (const a of algorithms) out.get(a)!.set(s.name, CALIBRATORS[a].compute(s, options));
    onTensor?.(t + 1, stats.length);
    if ((t & 15) === 15) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return out;
}
