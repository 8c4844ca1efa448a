/**
 * The calibrators by name (`--algo`), and the helpers that run them over every tensor.
 */
import { UserError } from '../errors.js';
import type { TensorStatistics } from '../stats/types.js';
import { loadNative, type NativeBinding } from '../native.js';
import { HistogramDensity } from './density.js';
import { entropy, entropyAmaxFromBins, entropyHistogram, ENTROPY_SPEC } from './entropy.js';
import { entropy2, entropy2AmaxFromBins, entropy2Histogram, ENTROPY2_SPEC } from './entropy2.js';
import type { RebinnedHistogram } from './histogram.js';
import { klScan, type KlScanSpec } from './kl.js';
import { klScanMany } from './kl-native.js';
import { minmax, minmaxAmax } from './minmax.js';
import { mse, mseAmax, MSE_SEARCH } from './mse.js';
import { checkPercentile, DEFAULT_PERCENTILE, percentile, percentileAmax } from './percentile.js';
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
 * amax per tensor for several algorithms, the same numbers as each calibrator's compute(). The KL scans (entropy2,
 * entropy) and percentile/mse run on libuv worker threads through the native addon (native/src/stats/kl.cc and
 * density.cc: the same arithmetic as the TypeScript), the scans split across the cores; minmax runs here. Without
 * the addon everything runs here. `onTensor` reports the tensors done. Maps are in the order of `stats`.
 */
export async function computeAllAmaxes(
  algorithms: readonly AlgorithmName[],
  stats: readonly TensorStatistics[],
  options: CalibratorOptions = {},
  onTensor?: (done: number, total: number) => void,
): Promise<Map<AlgorithmName, Map<string, number>>> {
  checkCalibratorOptions(options);
  const wanted = new Set(algorithms);
  const results = new Map<AlgorithmName, Float64Array>();
  for (const a of wanted) results.set(a, new Float64Array(stats.length));

  const scans: Array<Promise<void>> = [];
  if (wanted.has('entropy2') || wanted.has('entropy')) {
    const base = stats.map((s) => entropy2Histogram(s));
    const scan = (name: AlgorithmName, spec: KlScanSpec, hists: Array<RebinnedHistogram | undefined>, toAmax: (bins: number, width: number) => number) => {
      const present = hists.map((h, i) => [h, i] as const).filter((x): x is readonly [RebinnedHistogram, number] => x[0] !== undefined);
      const out = results.get(name)!;
      scans.push(
        scanMany(
          present.map(([h]) => h.counts),
          spec,
        ).then((bins) => {
          present.forEach(([h, i], k) => (out[i] = toAmax(bins[k]!, h.width)));
        }),
      );
    };
    // Each algorithm's scans start as soon as its histograms are ready (the others are prepared meanwhile).
    if (wanted.has('entropy2')) scan('entropy2', ENTROPY2_SPEC, base, entropy2AmaxFromBins);
    if (wanted.has('entropy')) scan('entropy', ENTROPY_SPEC, stats.map((s, i) => (base[i] ? entropyHistogram(s, base[i]) : undefined)), entropyAmaxFromBins);
  }
  let here = algorithms.filter((a) => a !== 'entropy2' && a !== 'entropy');
  const native = nativeOrUndefined();
  if (native && (wanted.has('percentile') || wanted.has('mse'))) {
    const fields = new Float64Array(stats.length * 4);
    stats.forEach((s, i) => fields.set([s.count, s.zeroCount, s.absMax, s.range], i * 4));
    const p = wanted.has('percentile') ? checkPercentile(options.percentile ?? DEFAULT_PERCENTILE) : undefined;
    const search = wanted.has('mse') ? [MSE_SEARCH.qmax, MSE_SEARCH.candidates, MSE_SEARCH.startBin] : undefined;
    scans.push(
      native.densityAmaxAsync(fields, stats.map((s) => s.hist), p, search).then((r) => {
        if (r.percentile) results.get('percentile')!.set(r.percentile);
        if (r.mse) results.get('mse')!.set(r.mse);
      }),
    );
    here = here.filter((a) => a !== 'percentile' && a !== 'mse');
  }
  for (let t = 0; t < stats.length; t++) {
    const s = stats[t]!;
    const density = here.includes('percentile') || here.includes('mse') ? new HistogramDensity(s) : undefined;
    for (const a of here) {
      const out = results.get(a)!;
      if (a === 'minmax') out[t] = minmaxAmax(s);
      else if (a === 'percentile') out[t] = percentileAmax(s, options.percentile ?? DEFAULT_PERCENTILE, density);
      else if (a === 'mse') out[t] = mseAmax(s, density);
    }
    onTensor?.(t + 1, stats.length);
  }
  await Promise.all(scans);
  const out = new Map<AlgorithmName, Map<string, number>>();
  for (const a of algorithms) {
    if (out.has(a)) continue;
    const values = results.get(a)!;
    out.set(a, new Map(stats.map((s, i) => [s.name, values[i]!])));
  }
  return out;
}

function nativeOrUndefined(): NativeBinding | undefined {
  try {
    return loadNative();
  } catch {
    return undefined;
  }
}

/** Chosen bins for each histogram: native worker threads when the addon loads, else the TypeScript scan. */
async function scanMany(hists: Float64Array[], spec: KlScanSpec): Promise<Int32Array> {
  try {
    loadNative();
  } catch {
    return Int32Array.from(hists, (h) => klScan(h, spec).bins);
  }
  return klScanMany(hists, spec);
}
