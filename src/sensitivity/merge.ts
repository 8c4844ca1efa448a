/**
 * Sensitivity reports of `sensitivity --shard K/N` (each a slice of the selected layers, measured on the same
 * images against the same full-INT8 model) merged into the report one run over all the layers writes: the same
 * layers, numbers and ranking; only the fields that say how it was made differ (`seconds`, `variants` counts the
 * full-INT8 model once, `cuts` sums the shards' and `merged` lists the shards).
 */
import path from 'node:path';
import { UserError } from '../errors.js';
import { READ_LIMITS, readUserFile } from '../util/fs.js';
import type { LayerSensitivity, SensitivityReport } from './analyze.js';
import { rankLayers } from './rank.js';
import { canonicalText } from '../util/canonical.js';
import { checkSameAcrossShards, orderShards } from '../util/shard-set.js';

interface LoadedReport {
  file: string;
  report: SensitivityReport & { shard: NonNullable<SensitivityReport['shard']> };
}

/** True when the file holds a sensitivity report (the JSON `sensitivity --out` writes). */
export function isSensitivityReport(bytes: Uint8Array): boolean {
  const head = Buffer.from(bytes.subarray(0, 200)).toString('utf8');
  return /^\s*\{\s*"sensitivity"\s*:/.test(head);
}

/** `sensitivity --out` writes non-finite numbers as "Infinity"/"-Infinity" (JSON has none): read back as numbers. */
function parseReport(file: string, bytes: Uint8Array): LoadedReport {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'), (_k, v: unknown) => (v === 'Infinity' ? Infinity : v === '-Infinity' ? -Infinity : v));
  } catch (err) {
    throw new UserError(`${file} is not a sensitivity report (not JSON: ${(err as Error).message}).`, { hint: 'Pass the files that sensitivity --shard K/N --out wrote.' });
  }
  const report = (json as { sensitivity?: SensitivityReport }).sensitivity;
  if (!report || report.format !== 'trt-calib-sensitivity' || !Array.isArray(report.layers)) {
    throw new UserError(`${file} is not a trt-calib sensitivity report.`, { hint: 'Pass the files that sensitivity --shard K/N --out wrote.' });
  }
  if (!report.shard) {
    throw new UserError(`${file} is the report of a whole sensitivity run, not of a shard: there is nothing to merge it with.`, {
      hint: 'Merge the files that sensitivity --shard K/N wrote.',
    });
  }
  return { file, report: report as LoadedReport['report'] };
}

export async function loadSensitivityShard(file: string): Promise<LoadedReport> {
  return parseReport(file, await readUserFile(file, 'The sensitivity report', READ_LIMITS.report));
}

/** The merged report; refuses, naming the files, shards of different runs, duplicates, gaps and overlaps. */
export function mergeSensitivityReports(shards: readonly LoadedReport[]): SensitivityReport {
  if (shards.length === 0) throw new UserError('No sensitivity reports to merge.');
  const first = shards[0]!;
  const same: Array<[what: string, value: (r: LoadedReport['report']) => unknown, hint: string]> = [
    ['models', (r) => path.basename(r.model), 'Merge the shards of one model.'],
    ['caches', (r) => r.cache, 'Run every shard with the same --cache.'],
    ['images', (r) => r.data, 'Run every shard on the same --data, --max-images, --seed and preprocessing.'],
    ['measures', (r) => [r.measure, r.metric, r.budgetMetric], 'Run every shard with the same --measure and --metric.'],
    ['layer selections', (r) => [r.quantizableLayers, r.shard.selectedLayers, r.notQuantized], 'Run every shard with the same --layers and trt-calib version.'],
    ['full-INT8 results', (r) => r.fullInt8, 'Run every shard with the same trt-calib version and --threads.'],
    ['shard counts', (r) => `N = ${r.shard.count}`, 'Merge the shards of one --shard K/N split: all with the same N.'],
  ];
  checkSameAcrossShards(
    shards,
    'sensitivity shards',
    same.map(([what, value, hint]) => [what, (s: LoadedReport) => canonicalText(value(s.report)), hint] as const),
    false,
  );
  const count = first.report.shard.count;
  const ordered = orderShards(
    shards,
    (s) => s.report.shard.index,
    count,
    (absent) => ({
      message: `Sensitivity shard${absent.length > 1 ? 's' : ''} ${absent.map((k) => `${k}of${count}`).join(', ')} of ${count} absent: given ${shards.map((s) => s.file).join(', ')}.`,
      hint: `Run the missing shard(s) with sensitivity --shard K/${count}, then merge all ${count}.`,
    }),
  );
  const seen = new Map<string, string>();
  let next = 0;
  for (const s of ordered) {
    for (const l of s.report.layers) {
      const other = seen.get(l.name);
      if (other) throw new UserError(`${other} and ${s.file} overlap: both measured layer ${l.name}.`);
      seen.set(l.name, s.file);
    }
    const { start, end } = s.report.shard;
    if (start !== next || s.report.layers.length !== end - start) {
      throw new UserError(`${s.file} measured layers ${start}..${end - 1} of the selection, not from ${next}: the shards do not tile the selected layers.`);
    }
    next = end;
  }
  if (next !== first.report.shard.selectedLayers.length) throw new UserError(`The sensitivity shards cover ${next} of ${first.report.shard.selectedLayers.length} selected layers.`);

  // Rows in the order one run measures them (the selection's), then ranked as one run ranks them.
  const position = new Map(first.report.shard.selectedLayers.map((name, i) => [name, i]));
  const rows = ordered
    .flatMap((s) => s.report.layers)
    .map(({ sensitivity: _s, rank: _r, rankedBy: _b, ...row }) => row as Omit<LayerSensitivity, 'sensitivity' | 'rank' | 'rankedBy'>)
    .sort((a, b) => position.get(a.name)! - position.get(b.name)!);
  const r0 = first.report;
  const variants = ordered.reduce((n, s) => n + s.report.variants, 0) - (count - 1); // full INT8 once
  const measureSeconds = ordered.reduce((n, s) => n + s.report.seconds.measure, 0);
  const prepareSeconds = Math.max(...ordered.map((s) => s.report.seconds.prepare));
  return {
    format: r0.format,
    formatVersion: r0.formatVersion,
    model: r0.model,
    cache: r0.cache,
    data: r0.data,
    measure: r0.measure,
    metric: r0.metric,
    budgetMetric: r0.budgetMetric,
    fullInt8: r0.fullInt8,
    quantizableLayers: r0.quantizableLayers,
    layers: rankLayers(rows, r0.measure, r0.metric, r0.fullInt8).map((l) => ({ ...l, rankedBy: 'measured' as const })),
    notQuantized: r0.notQuantized,
    memoryBytes: r0.memoryBytes,
    // Each shard's own times, summed over the measuring (the work); preparation ran on every shard at once.
    seconds: { prepare: prepareSeconds, measure: measureSeconds, total: prepareSeconds + measureSeconds, perVariant: measureSeconds / variants },
    variants,
    // How the shards ran their variants (each cut its own slice): summed, the largest group's memory.
    ...(ordered.some((s) => s.report.cuts)
      ? {
          cuts: {
            cut: ordered.reduce((n, s) => n + (s.report.cuts?.cut ?? 0), 0),
            whole: ordered.reduce((n, s) => n + (s.report.cuts?.whole ?? 0), 0),
            fp32Passes: ordered.reduce((n, s) => n + (s.report.cuts?.fp32Passes ?? 0), 0),
            peakBytes: Math.max(...ordered.map((s) => s.report.cuts?.peakBytes ?? 0)),
          },
        }
      : {}),
    // A shard measures its slice whole (the proxy ranks against every layer), so the merge is the exhaustive report.
    search: { method: 'exhaustive', measured: rows.map((r) => r.name), proxyRanked: [] },
    merged: { shards: ordered.map((s) => ({ file: s.file, index: s.report.shard.index, count, seconds: s.report.seconds.total })) },
  };
}
