/**
 * Adds sets of statistics of the same tensors (e.g. shards of one calibration) into one. Exact: counts are
 * integers and histograms of power-of-two ranges widen by merging whole bins (mergeInto), so the result is the
 * same bytes as one pass over all the data, whatever the order of the sets.
 */
import { compareNames } from './collector.js';
import { mergeInto } from './histogram.js';
import type { TensorStatistics } from './types.js';

/** The tensors, sorted by name; every set must hold the same names (Error otherwise: the caller checks first). */
export function mergeTensorStatistics(sets: ReadonlyArray<readonly TensorStatistics[]>): TensorStatistics[] {
  if (sets.length === 0) return [];
  const merged = new Map<string, TensorStatistics>();
  for (const t of sets[0]!) merged.set(t.name, { ...t, hist: new Float64Array(t.hist) });
  for (const set of sets.slice(1)) {
    if (set.length !== merged.size) throw new Error(`Cannot merge statistics of ${set.length} and ${merged.size} tensors`);
    for (const t of set) {
      const into = merged.get(t.name);
      if (!into) throw new Error(`Cannot merge statistics: tensor ${t.name} is not in every set`);
      mergeInto(into, t);
    }
  }
  return [...merged.values()].sort((a, b) => compareNames(a.name, b.name));
}

/** Names in one set and not in the other (the first few), for messages. */
export function tensorNameDifference(a: readonly TensorStatistics[], b: readonly TensorStatistics[]): string[] {
  const inB = new Set(b.map((t) => t.name));
  return a.filter((t) => !inB.has(t.name)).map((t) => t.name);
}
