import { Command, Option } from 'commander';
import path from 'node:path';
import {
  assertCacheableNames,
  cacheToRangeTable,
  describeCacheVersion,
  diffCaches,
  formatCalibrationCache,
  parseCalibrationCache,
  rangeTableFromJson,
  scaleFromAmax,
  TRT_CACHE_ALGORITHMS,
  type CalibrationCache,
} from '../cache/trt-cache.js';
import { encodeTrtVersion, formatTrtVersion, resolveTrtVersion } from '../cache/trt-version.js';
import { UserError } from '../errors.js';
import { READ_LIMITS, readUserFile, writeFileAtomic } from '../util/fs.js';
import { prepareOutputs } from '../util/outputs.js';
import { addCommonOptions, emit, parseInteger, type CommonOptions } from './common.js';

async function readCache(file: string): Promise<CalibrationCache> {
  const bytes = await readUserFile(file, 'Calibration cache', READ_LIMITS.calibrationCache);
  return parseCalibrationCache(bytes, file);
}

function fmt(n: number | undefined, digits = 6): string {
  if (n === undefined) return '-';
  if (!Number.isFinite(n)) return String(n);
  return n === 0 ? '0' : Math.abs(n) >= 1e-3 && Math.abs(n) < 1e5 ? n.toPrecision(digits) : n.toExponential(digits - 1);
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')).join('\n');
}

export function register(program: Command): void {
  const cache = program.command('cache').description('inspect, compare and convert TensorRT calibration caches');

  addCommonOptions(
    cache
      .command('show')
      .description('list the tensors of a cache with their scale and amax')
      .argument('<file>', 'calibration cache')
      .addHelpText('after', '\nExample:\n  trt-calib cache show calib-cache/model.entropy2.cache\n  trt-calib cache show model.cache --json'),
  ).action(async (file: string, opts: CommonOptions) => {
    const c = await readCache(file);
    const choices = await autoChoicesFor(file);
    const took = (name: string) => (choices ? { algorithm: choices[name] ?? '-' } : {});
    emit(
      opts,
      { file, trtVersion: c.trtVersion, algorithm: c.algorithm, tensors: c.entries.map((e) => ({ name: e.name, scale: e.scale, amax: e.amax, ...took(e.name) })) },
      () =>
        [
          `${file}: ${c.algorithm}, ${describeCacheVersion(c)}, ${c.entries.length} tensors${choices ? ' (--algo auto: the algorithm each tensor took, from the statistics file)' : ''}`,
          table([['tensor', 'scale', 'amax', ...(choices ? ['algorithm'] : [])], ...c.entries.map((e) => [e.name, fmt(e.scale), fmt(e.amax), ...(choices ? [choices[e.name] ?? '-'] : [])])]),
        ].join('\n'),
    );
  });

  addCommonOptions(
    cache
      .command('diff')
      .description('compare two caches tensor by tensor, largest disagreement first')
      .argument('<a>', 'first cache')
      .argument('<b>', 'second cache')
      .option('-n, --top <n>', 'rows to print (all with --json)', parseInteger(1), 30)
      .addHelpText('after', '\nExample:\n  trt-calib cache diff calib-cache/m.entropy2.cache calib-cache/m.minmax.cache'),
  ).action(async (a: string, b: string, opts: CommonOptions & { top: number }) => {
    const [ca, cb] = await Promise.all([readCache(a), readCache(b)]);
    const rows = diffCaches(ca, cb);
    const common = rows.filter((r) => r.ratio !== undefined);
    const onlyA = rows.filter((r) => r.scaleB === undefined).length;
    const onlyB = rows.filter((r) => r.scaleA === undefined).length;
    emit(
      opts,
      { a, b, algorithms: [ca.algorithm, cb.algorithm], common: common.length, onlyInA: onlyA, onlyInB: onlyB, rows: rows.map((r) => ({ ...r, disagreement: Number.isFinite(r.disagreement) ? r.disagreement : null })) },
      () =>
        [
          `${a} (${ca.algorithm}) vs ${b} (${cb.algorithm}): ${common.length} tensors in both, ${onlyA} only in the first, ${onlyB} only in the second`,
          table([
            ['tensor', 'scale A', 'scale B', 'A/B'],
            ...rows.slice(0, opts.top).map((r) => [r.name, fmt(r.scaleA), fmt(r.scaleB), r.ratio === undefined ? 'missing' : fmt(r.ratio, 4)]),
          ]),
          rows.length > opts.top ? `(${rows.length - opts.top} more rows; --top N or --json for all)` : '',
        ]
          .filter(Boolean)
          .join('\n'),
    );
  });

  addCommonOptions(
    cache
      .command('convert')
      .description('convert between a TensorRT cache and a JSON range table {tensor: amax}, or rewrite a cache for another TensorRT version')
      .argument('<input>', 'a .cache file or a .json range table')
      .requiredOption('-o, --out <file>', 'output: .json for a range table, anything else for a cache')
      .option('--trt-version <version>', 'TensorRT version of the output cache header, e.g. 10.3.0 (default: the input cache\'s, or the installed TensorRT)')
      .addOption(
        new Option('--algorithm <name>', 'algorithm in the output cache header (default: the input cache\'s, else EntropyCalibration2, the one trtexec --calib reads)').choices([
          ...TRT_CACHE_ALGORITHMS,
        ]),
      )
      .addHelpText(
        'after',
        '\nExamples:\n  trt-calib cache convert m.cache --out m.ranges.json\n  trt-calib cache convert m.ranges.json --out m.cache --trt-version 10.3.0\n  trt-calib cache convert m.cache --out m.trt86.cache --trt-version 8.6.1',
      ),
  ).action(async (input: string, opts: CommonOptions & { out: string; trtVersion?: string; algorithm?: string }) => {
    const isJson = (f: string) => path.extname(f).toLowerCase() === '.json';
    const outputs = prepareOutputs([{ path: opts.out, option: '--out' }], [{ path: input, what: 'the input' }]);
    try {
      await convert(input, opts, isJson);
    } finally {
      outputs.release();
    }
  });
}

async function convert(input: string, opts: CommonOptions & { out: string; trtVersion?: string; algorithm?: string }, isJson: (f: string) => boolean): Promise<void> {
  let result: { out: string; tensors: number; format: string; header?: string };
  if (isJson(input)) {
    if (isJson(opts.out)) throw new UserError(`Both ${input} and --out ${opts.out} are JSON range tables; one side must be a cache.`);
    const ranges = rangeTableFromJson((await readUserFile(input, 'Range table', READ_LIMITS.rangeTable)).toString('utf8'), input);
    assertCacheableNames(Object.keys(ranges), input);
    const { version, source, warning } = resolveTrtVersion(opts.trtVersion);
    const algorithm = opts.algorithm ?? 'EntropyCalibration2';
    const text = formatCalibrationCache({
      trtVersion: version,
      algorithm,
      entries: Object.entries(ranges).map(([name, amax]) => ({ name, scale: scaleFromAmax(amax) })),
    });
    await writeFileAtomic(opts.out, text);
    result = { out: opts.out, tensors: Object.keys(ranges).length, format: 'cache', header: text.slice(0, text.indexOf('\n')) };
    if (!opts.json && !opts.quiet) process.stderr.write(`TensorRT version ${formatTrtVersion(version)} (${source})\n`);
    if (warning && !opts.quiet) process.stderr.write(`warning: ${warning}\n`);
  } else {
    const c = await readCache(input);
    if (isJson(opts.out)) {
      const ranges = cacheToRangeTable(c);
      await writeFileAtomic(opts.out, `${JSON.stringify(ranges, null, 2)}\n`);
      result = { out: opts.out, tensors: c.entries.length, format: 'json' };
    } else {
      const resolved = opts.trtVersion !== undefined ? resolveTrtVersion(opts.trtVersion) : undefined;
      if (resolved?.warning && !opts.quiet) process.stderr.write(`warning: ${resolved.warning}\n`);
      const version = resolved ? encodeTrtVersion(resolved.version) : c.trtVersion;
      const text = formatCalibrationCache({ trtVersion: version, algorithm: opts.algorithm ?? c.algorithm, entries: c.entries });
      await writeFileAtomic(opts.out, text);
      result = { out: opts.out, tensors: c.entries.length, format: 'cache', header: text.slice(0, text.indexOf('\n')) };
    }
  }
  emit(opts, result, () => `wrote ${result.out} (${result.tensors} tensors${result.header ? `, header ${result.header}` : ''})`);
}

/** For `<model>.auto.cache`: the choices recorded in `<model>.stats.msgpack` beside it, when that file has them. */
async function autoChoicesFor(file: string): Promise<Record<string, string> | undefined> {
  const base = path.basename(file);
  if (!/\.auto\.cache$/i.test(base)) return undefined;
  const stats = path.join(path.dirname(file), base.replace(/\.auto\.cache$/i, '.stats.msgpack'));
  try {
    const { loadStatistics } = await import('../stats/store.js');
    return (await loadStatistics(stats)).algorithmChoices;
  } catch {
    return undefined; // no statistics beside the cache: the scales alone
  }
}
