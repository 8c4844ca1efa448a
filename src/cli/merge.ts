import { Command, Option } from 'commander';
import { DEFAULT_OUT_DIR } from '../app/defaults.js';
import { TRT_CACHE_ALGORITHMS } from '../cache/trt-cache.js';
import { ALGORITHM_NAMES, parseAlgorithms } from '../calibrators/registry.js';
import { jsonSummary, textSummary } from './calibrate.js';
import { addCommonOptions, emit, parseNumber, reporterFor, type CommonOptions } from './common.js';

interface MergeCliValues extends CommonOptions {
  model: string;
  algo: string;
  percentile?: number;
  trtVersion?: string;
  cacheAlgorithm?: string;
  out?: string;
  outDir: string;
  statsOut?: string;
}

const EXAMPLES = `
Examples:
  # four shards, on four machines or as four processes (each writes calib-cache/model.stats.<K>of4.msgpack) ...
  trt-calib calibrate --model model.onnx --data ./images --shard 1/4
  # ... then the caches and the statistics, byte for byte those of one run over all the images
  trt-calib merge calib-cache/model.stats.*of4.msgpack --model model.onnx --algo entropy2 --trt-version 10.3.0

Outputs: ${DEFAULT_OUT_DIR}/<model>.<algo>.cache (one per algorithm) and ${DEFAULT_OUT_DIR}/<model>.stats.msgpack, as calibrate writes.
--model is the model the shards ran: it gives the caches their order (the graph's) and is checked against the shards.`;

export function register(program: Command): void {
  const cmd = program
    .command('merge')
    .description('merge the statistics of calibrate --shard K/N runs and write the caches of one run over all the images')
    .argument('<stats...>', 'the shards\' statistics files, <model>.stats.<K>of<N>.msgpack, all N of them')
    .requiredOption('--model <file>', 'the ONNX model the shards ran')
    .option('--algo <names>', `calibration algorithm(s), comma-separated, or "all": ${ALGORITHM_NAMES.join(', ')}`, 'entropy2')
    .option('--percentile <p>', 'percentile algorithm: the percentile of |x| kept', parseNumber(50, 100), 99.99)
    .option('--trt-version <version>', 'TensorRT version that will read the cache, e.g. 10.3.0 or 8.6.1 (default: the installed TensorRT)')
    .addOption(new Option('--cache-algorithm <name>', 'algorithm name in the cache header instead of the algorithm\'s own').choices([...TRT_CACHE_ALGORITHMS]))
    .option('-o, --out <file>', 'cache file (one algorithm only)')
    .option('--out-dir <dir>', 'folder for the caches and the merged statistics', DEFAULT_OUT_DIR)
    .option('--stats-out <file>', 'merged statistics file (default <out-dir>/<model>.stats.msgpack)');
  addCommonOptions(cmd).addHelpText('after', EXAMPLES);
  cmd.action(async (stats: string[], opts: MergeCliValues) => {
    const reporter = reporterFor(opts);
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
