/**
 * `trt-calib merge` of compare shards (`compare --shard K/N`): the shards' accumulators added in shard order into
 * the run of one `compare` over all the images, then the very report that run writes (report.json, report.html,
 * the text summary and the --max-drop verdict), with `shards: {count, files}` saying how it was made. Every check
 * on the shards is done before anything is written.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { modelSha256 } from '../onnx/model.js';
import { comparisonFromStates } from '../compare/run.js';
import { checkCompareShards, loadCompareShard } from '../compare/shard.js';
import { createClassifyEvaluator } from '../compare/task/classify.js';
import { createDetectionEvaluator } from '../compare/task/detect/index.js';
import type { DetectionOptions } from '../compare/task/detect/index.js';
import { createRawEvaluator } from '../compare/task/raw.js';
import type { TaskEvaluator } from '../compare/task/types.js';
import type { CompareReport } from '../compare/types.js';
import { UserError } from '../errors.js';
import { silentReporter, type Reporter } from '../reporter.js';
import { prepareOutputs } from '../util/outputs.js';
import { compareReportFrom, histogramsFor } from './compare.js';

export interface CompareMergeOptions {
  /** The shards' files (report.<K>of<N>.msgpack), all N, in any order. */
  shards: readonly string[];
  /** Folder of report.json and report.html (default: the folder of the shards, where a single run would write them). */
  reportDir?: string;
  reporter?: Reporter;
}

export interface CompareMergeResult {
  report: CompareReport;
  files: string[];
}

export async function mergeCompareShards(options: CompareMergeOptions): Promise<CompareMergeResult> {
  const reporter = options.reporter ?? silentReporter;
  const shards = checkCompareShards(await Promise.all(options.shards.map(loadCompareShard)));
  const first = shards[0]!.body;
  const reportDir = options.reportDir ?? path.dirname(shards[0]!.file);
  const outputs = prepareOutputs(
    [
      { path: path.join(reportDir, 'report.json'), option: options.reportDir !== undefined ? '--report-dir' : 'the shards\' folder' },
      { path: path.join(reportDir, 'report.html'), option: options.reportDir !== undefined ? '--report-dir' : 'the shards\' folder' },
    ],
    shards.map((s) => ({ path: s.file, what: 'a compare shard' })),
  );
  try {
    const settings = first.context.settings;
    const classNames = first.classNames ? new Map(first.classNames) : undefined;
    const task = settings.task ? evaluatorFor(settings.task.kind, settings.task.options ?? {}, classNames) : undefined;
    const run = comparisonFromStates(
      shards.map((s) => s.body.state),
      { metrics: { threshold: settings.threshold, worstCount: settings.worstCount }, ...(task ? { task } : {}), opTypes: new Map(first.opTypes) },
    );
    const { stats } = first;
    await checkStatistics(stats.file, first.inputs, shards[0]!.file);
    const histograms = await histogramsFor(stats.file, stats.explicit, first.context.model.sha256 ?? '', first.context.model.file, run.variants, reporter, stats.maxTensors);
    const report = compareReportFrom(first.context, run, histograms ? { histograms } : {});
    report.shards = { count: shards.length, files: shards.map((s) => s.file) };
    const { writeReportFiles } = await import('../compare/write.js');
    const files = await writeReportFiles(report, { json: path.join(reportDir, 'report.json'), html: path.join(reportDir, 'report.html'), reporter, ...(classNames ? { htmlOptions: { classNames } } : {}) });
    return { report, files };
  } finally {
    outputs.release();
  }
}

/** The statistics the histograms come from must be the ones the shards saw (their sha256), or absent as there. */
async function checkStatistics(file: string, inputs: ReadonlyArray<readonly [string, string]>, shardFile: string): Promise<void> {
  const recorded = inputs.find(([what]) => what.startsWith('statistics '))?.[1];
  const present = existsSync(file);
  if (recorded === undefined && present) {
    throw new UserError(`${shardFile} was compared without statistics, but ${file} exists here: the merged report would have histograms one run did not.`, {
      hint: `Merge where ${file} is absent (or move it away), as the shards ran.`,
    });
  }
  if (recorded !== undefined && present && (await modelSha256(file)) !== recorded) {
    throw new UserError(`${file} is not the statistics file the shards read (${shardFile}: sha256 ${recorded.slice(0, 12)}...).`, {
      hint: 'Merge where the shards\' statistics file is (the same --stats or <out-dir>/<model>.stats.msgpack), or run the shards again.',
    });
  }
}

/** A fresh evaluator of the shards' task, from the options the report echoes (src/compare/task/index.ts). */
function evaluatorFor(kind: string, options: Record<string, unknown>, classNames: Map<number, string> | undefined): TaskEvaluator {
  switch (kind) {
    case 'classify':
      return createClassifyEvaluator({ output: String(options.output) });
    case 'raw':
      return createRawEvaluator({ output: String(options.output) });
    case 'detect': {
      const { saveDetections: _save, ...detection } = options;
      return createDetectionEvaluator({ ...(detection as unknown as DetectionOptions), keepDetections: false, ...(classNames ? { classNames } : {}) });
    }
    default:
      throw new UserError(`The shards are of a ${kind} comparison, which cannot be merged from shards.`, { hint: 'Run that comparison without --shard.' });
  }
}
