/**
 * From options to a TaskEvaluator: resolves --task (./select.ts), reads the task's labels and name files, checks
 * every flag and output location, all before the long pass; then `create()` makes a fresh evaluator for each pass
 * (compare makes one; sensitivity and the mixed-precision search one per variant they run).
 */
import path from 'node:path';
import { loadLabels, type LabelAssignment } from '../labels.js';
import { UserError } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import { createClassifyEvaluator } from './classify.js';
import { createRawEvaluator } from './raw.js';
import { labelSourceOf, selectTask, type OutputInfo, type TaskFlags, type TaskSelection } from './select.js';
import type { TaskEvaluator, TaskKind } from './types.js';

export { TASK_REQUESTS, labelSourceOf, selectTask, type TaskFlags, type TaskRequest, type TaskSelection } from './select.js';

export interface PrepareTaskOptions {
  flags: TaskFlags;
  /** The model's outputs (names and declared dims). */
  outputs: readonly OutputInfo[];
  /** One FP32 batch's outputs, for auto's value checks (optional). */
  sample?: Readonly<Record<string, Tensor>>;
  /** The dataset's files, in pass order, and the --data argument (labels are matched against them). */
  datasetFiles: readonly string[];
  dataRoot: string;
  worstCount?: number;
  /** Binary maps: the threshold (compare's --threshold). */
  threshold?: number;
}

/** What the report says about the labels (CompareReport.data.labels). */
export interface TaskLabelsInfo {
  source: string;
  classes?: string[];
  labelled: number;
  unlabelled: number;
  unmatched?: number;
}

export interface PreparedTask {
  selection: TaskSelection;
  kind: TaskKind;
  /** A fresh evaluator (one per pass). */
  create(): TaskEvaluator;
  /** Classification labels, as the output comparison also takes them (top-1/top-5 per output). */
  classifyLabels?: LabelAssignment;
  labels?: TaskLabelsInfo;
  /** Things the reader should know (label entries for images not in --data, unknown classes...), counted. */
  notes: string[];
  /** The settings as resolved, echoed in the report. */
  settings: Record<string, unknown>;
  /** After the pass: files the task writes (--save-detections), written atomically; returns their paths. */
  writeOutputs?: (evaluator: TaskEvaluator, variants: readonly string[]) => Promise<string[]>;
}

export async function prepareTask(options: PrepareTaskOptions): Promise<PreparedTask> {
  const { flags } = options;
  const selection = selectTask(flags, options.outputs, options.sample);
  const notes: string[] = [];
  switch (selection.kind) {
    case 'classify': {
      const output = selection.output!;
      let assignment: LabelAssignment | undefined;
      if (flags.labels !== undefined) {
        labelSourceOf(flags.labels, 'classify');
        assignment = await loadLabels(options.datasetFiles, { labels: flags.labels, classes: flags.classes, dataRoot: options.dataRoot });
      }
      const labels = assignment === undefined ? undefined : labelsByFile(options.datasetFiles, assignment.labels);
      return {
        selection,
        kind: 'classify',
        create: () => createClassifyEvaluator({ output, ...(labels ? { labels } : {}) }),
        ...(assignment
          ? {
              classifyLabels: assignment,
              labels: { source: assignment.source, ...(assignment.classes ? { classes: assignment.classes } : {}), labelled: assignment.labelled, unlabelled: assignment.unlabelled.length },
            }
          : {}),
        notes,
        settings: { output },
      };
    }
    case 'raw': {
      const output = selection.output!;
      if (flags.labels !== undefined) labelSourceOf(flags.labels, 'raw');
      return { selection, kind: 'raw', create: () => createRawEvaluator({ output }), notes, settings: { output } };
    }
    default:
      throw new UserError(`--task ${selection.kind} is not available in this build.`);
  }
}

function labelsByFile(files: readonly string[], labels: readonly (number | undefined)[]): Map<string, number> {
  const map = new Map<string, number>();
  files.forEach((f, i) => {
    const l = labels[i];
    if (l !== undefined) map.set(path.resolve(f), l);
  });
  return map;
}
