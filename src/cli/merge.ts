import { Command, Option } from 'commander';
import path from 'node:path';
import { DEFAULT_OUT_DIR } from '../app/defaults.js';
import { TRT_CACHE_ALGORITHMS } from '../cache/trt-cache.js';
import { ALGORITHM_NAMES, parseAlgorithms } from '../calibrators/registry.js';
import { UserError } from '../errors.js';
import { jsonSummary, textSummary } from './calibrate.js';
import { addCommonOptions, emit, parseNumber, reporterFor, type CommonOptions } from './common.js';

interface MergeCliValues extends CommonOptions {
  model?: string;
  algo: string;
  percentile?: number;
  trtVersion?: string;
  cacheAlgorithm?: string;
  out?: string;
  outDir: string;
  statsOut?: string;
  reportDir?: string;
}

const EXAMPLES = `
Examples:
  # four shards, on four machines or as four processes (each writes calib-cache/model.stats.<K>of4.msgpack) ...
  trt-calib calibrate --model model.onnx --data ./images --shard 1/4
  # ... then the caches and the statistics, byte for byte those of one run over all the images
  trt-calib merge calib-cache/model.stats.*of4.msgpack --model model.onnx --algo entropy2 --trt-version 10.3.0

  # sensitivity in 3 shards, then the report one run writes
  trt-calib sensitivity --model model.onnx --cache calib-cache/model.entropy2.cache --data ./images --shard 2/3
  trt-calib merge calib-cache/model.sensitivity.*of3.json --out calib-cache/model.sensitivity.json

  # compare in 2 shards (each writes calib-cache/model.report/report.<K>of2.msgpack), then the report one run writes
  trt-calib compare --model model.onnx --data ./val --cache calib-cache/model.entropy2.cache --max-drop 1 --shard 1/2
  trt-calib merge calib-cache/model.report/report.*of2.msgpack     # report.json, report.html; exit 2 if the gate fails

Outputs: ${DEFAULT_OUT_DIR}/<model>.<algo>.cache (one per algorithm) and ${DEFAULT_OUT_DIR}/<model>.stats.msgpack, as calibrate writes.
--model is the model the shards ran: it gives the caches their order (the graph's) and is checked against the shards.
Sensitivity reports (.json) merge into --out (default ${DEFAULT_OUT_DIR}/<model>.sensitivity.json); --model, --algo and the
cache options do not apply to them.`;

export function register(program: Command): void {
  const cmd = program
    .command('merge')
    .description('merge the shards of calibrate --shard K/N (the caches and statistics of one run over all the images), of sensitivity --shard K/N or of compare --shard K/N (their report)')
    .argument('<files...>', 'the shards\' statistics files, <model>.stats.<K>of<N>.msgpack (or sensitivity reports), all N of them')
    .option('--model <file>', 'the ONNX model the shards ran (required for statistics)')
    .option('--algo <names>', `calibration algorithm(s), comma-separated, or "all": ${ALGORITHM_NAMES.join(', ')}`, 'entropy2')
    .option('--percentile <p>', 'percentile algorithm: the percentile of |x| kept', parseNumber(50, 100), 99.99)
    .option('--trt-version <version>', 'TensorRT version that will read the cache, e.g. 10.3.0 or 8.6.1 (default: the installed TensorRT)')
    .addOption(new Option('--cache-algorithm <name>', 'algorithm name in the cache header instead of the algorithm\'s own').choices([...TRT_CACHE_ALGORITHMS]))
    .option('-o, --out <file>', 'cache file (one algorithm only); for sensitivity reports, the merged report')
    .option('--out-dir <dir>', 'folder for the caches and the merged statistics', DEFAULT_OUT_DIR)
    .option('--stats-out <file>', 'merged statistics file (default <out-dir>/<model>.stats.msgpack)')
    .option('--report-dir <dir>', 'compare shards: folder of the merged report.json and report.html (default: the shards\' folder)');
  addCommonOptions(cmd).addHelpText('after', EXAMPLES);
  cmd.action(async (files: string[], opts: MergeCliValues) => {
    const reporter = reporterFor(opts);
    const { isSensitivityReport } = await import('../sensitivity/merge.js');
    const { READ_LIMITS, readUserFile } = await import('../util/fs.js');
    const { isCompareShard } = await import('../compare/shard.js');
    const kinds = await Promise.all(
      files.map(async (f) => {
        const bytes = await readUserFile(f, 'The file to merge', READ_LIMITS.binary);
        return isSensitivityReport(bytes) ? 'sensitivity' : isCompareShard(bytes) ? 'compare' : 'statistics';
      }),
    );
    const described = { sensitivity: 'is a sensitivity report', compare: 'is a compare shard', statistics: 'holds statistics' } as const;
    const other = kinds.findIndex((k) => k !== kinds[0]);
    if (other >= 0) {
      throw new UserError(`${files[0]} ${described[kinds[0]!]} and ${files[other]} ${described[kinds[other]!]}: merge one kind at a time.`, {
        hint: 'Pass the shards of one command: <model>.stats.<K>of<N>.msgpack (calibrate), <model>.sensitivity.<K>of<N>.json (sensitivity) or report.<K>of<N>.msgpack (compare).',
      });
    }
    if (kinds[0] === 'sensitivity') return mergeSensitivity(files, opts);
    if (kinds[0] === 'compare') return mergeCompare(files, opts);
    if (opts.model === undefined) throw new UserError('Merging statistics needs --model, the ONNX model the shards ran (for the order of the caches).');
    const stats = files;
    const algorithms = parseAlgorithms(opts.algo);
    const { merge } = await import('../app/merge.js');
    const result = await merge({
      shards: stats,
      model: opts.model,
      algorithms,
      calibrator: { percentile: opts.percentile },
      trtVersion: opts.trtVersion,
      cacheAlgorithm: opts.cacheAlgorithm,
      out: opts.out,
      outDir: opts.outDir,
      statsOut: opts.statsOut,
      reporter,
    });
    emit(opts, { ...jsonSummary(result), shards: result.shards }, () =>
      [`merged ${result.shards.length} shards (${result.shards.reduce((n, s) => n + s.images, 0)} images): ${result.shards.map((s) => s.file).join(', ')}`, textSummary(result)].join('\n'),
    );
  });
}

async function mergeCompare(files: string[], opts: MergeCliValues): Promise<void> {
  const { mergeCompareShards } = await import('../app/compare-merge.js');
  const { emitCompareReport } = await import('./compare.js');
  const { report, files: written } = await mergeCompareShards({ shards: files, ...(opts.reportDir !== undefined ? { reportDir: opts.reportDir } : {}), reporter: reporterFor(opts) });
  emitCompareReport(opts, report, written, undefined, `merged ${report.shards!.count} compare shards (${report.data.images} images): ${report.shards!.files.join(', ')}`);
}

async function mergeSensitivity(files: string[], opts: MergeCliValues): Promise<void> {
  const { loadSensitivityShard, mergeSensitivityReports } = await import('../sensitivity/merge.js');
  const { resultJson } = await import('./sensitivity.js');
  const { renderSensitivity } = await import('../sensitivity/render.js');
  const { writeFileAtomic } = await import('../util/fs.js');
  const report = mergeSensitivityReports(await Promise.all(files.map(loadSensitivityShard)));
  const out = opts.out ?? path.join(opts.outDir, `${path.basename(report.model).replace(/\.onnx$/i, '')}.sensitivity.json`);
  if (files.some((f) => path.resolve(f) === path.resolve(out))) throw new UserError(`The merged report would overwrite the shard ${out}.`, { hint: 'Pass another --out.' });
  const json = resultJson(report);
  await writeFileAtomic(out, `${JSON.stringify(json, null, 2)}\n`);
  emit(opts, json, () => `merged ${files.length} sensitivity shards\n${renderSensitivity(report)}\nwrote ${out}`);
}
