/**
 * Which task a model is judged as (--task auto|classify|detect|segment|ocr|raw), and which flags go with it.
 *
 * auto decides from the outputs' names and shapes (and, where the task modules need them, one FP32 batch's values),
 * trying in this order and taking the first that is sure:
 *   1. ocr: a CTC-like sequence [N, T, C], taken only with evidence (each step a softmax over C in the sample, or a
 *      text-line input): it comes first because the shape alone is also a YOLO layout's, and the evidence is not;
 *   2. detect: a detector the detection module recognises (YOLO layouts, NMS in the graph, EfficientNMS, separate
 *      box and score outputs); outputs that look like a detector's (boxes [N, A, 4] or [N, A, 1, 4], a YOLO-like
 *      [N, A, 6+]) that it cannot read with certainty are refused, naming --boxes, --scores and --det-layout;
 *   3. classify: an output [N, C] with C > 1 (the first one, as the report's primary output);
 *   4. segment: maps [N, 1, H, W] (binary, e.g. PP-OCR det) or [N, C, H, W] (per-pixel classes);
 *   5. raw: anything else, compared as numbers only (cosine, SNR), as the report says.
 * A flag that belongs to another task than the one chosen is an error naming it, so that a typo in --task or a
 * detector recognised as something else never silently ignores what the user asked for.
 */
import { UserError } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import { detectionSpecFromFlags, recognizeDetection, type DetectionSpec } from './detect/index.js';
import { recognizeOcr, type OcrOptions } from './ocr/index.js';
import { recognizeSegmentation } from './segment/index.js';
import { TASK_KINDS, type TaskKind } from './types.js';

export type TaskRequest = TaskKind | 'auto';
export const TASK_REQUESTS: readonly TaskRequest[] = ['auto', ...TASK_KINDS];

export interface OutputInfo {
  name: string;
  dims: readonly (number | string)[];
}

/** The task flags as the CLI (or the library) gives them; undefined = not given. */
export interface TaskFlags {
  task?: TaskRequest;
  /** --det-layout and --det-output. */
  layout?: string;
  output?: string;
  boxes?: string;
  scores?: string;
  classOffset?: number;
  gtScore?: number;
  nmsIou?: number;
  maxDet?: number;
  scoreFloor?: number;
  saveDetections?: string;
  keys?: string;
  labels?: string;
  classes?: string;
}

/** The flags each task takes, by their CLI names (labels and classes are checked by source: see labelSourceOf). */
const TASK_ONLY_FLAGS: ReadonlyArray<{ key: keyof TaskFlags; flag: string; tasks: readonly TaskKind[] }> = [
  { key: 'layout', flag: '--det-layout', tasks: ['detect'] },
  { key: 'output', flag: '--det-output', tasks: ['detect'] },
  { key: 'boxes', flag: '--boxes', tasks: ['detect'] },
  { key: 'scores', flag: '--scores', tasks: ['detect'] },
  { key: 'classOffset', flag: '--class-offset', tasks: ['detect'] },
  { key: 'gtScore', flag: '--gt-score', tasks: ['detect'] },
  { key: 'nmsIou', flag: '--nms-iou', tasks: ['detect'] },
  { key: 'maxDet', flag: '--max-det', tasks: ['detect'] },
  { key: 'scoreFloor', flag: '--score-floor', tasks: ['detect'] },
  { key: 'saveDetections', flag: '--save-detections', tasks: ['detect'] },
  { key: 'keys', flag: '--keys', tasks: ['ocr'] },
  { key: 'classes', flag: '--classes', tasks: ['classify', 'detect', 'segment'] },
];

/** The task chosen, why, and what it reads. The per-task settings are filled by the task modules' rules. */
export interface TaskSelection {
  kind: TaskKind;
  /** What was asked: a task, or 'auto'. */
  requested: TaskRequest;
  /** Why this task (auto: what was recognised; explicit: "--task X"). */
  reason: string;
  /** classify and raw: the output the verdict is about. */
  output?: string;
  /** Module-specific settings (detection spec, segmentation or OCR options), as the module's rule resolved them. */
  settings?: unknown;
}

/** A rule of auto (and of an explicit --task): sure (selection), refusing (UserError), or not this task (reason). */
/** The model's image input, for rules that look at it (a text-line input says OCR). */
export interface InputInfo {
  dims: readonly (number | string)[];
  layout?: 'NCHW' | 'NHWC';
}

export type TaskRule = (outputs: readonly OutputInfo[], sample: Readonly<Record<string, Tensor>> | undefined, flags: TaskFlags, input?: InputInfo) => { selection?: Omit<TaskSelection, 'requested'>; reason?: string };

const numeric = (d: number | string | undefined): number | undefined => (typeof d === 'number' && d > 0 ? d : undefined);

/** An [N, C] output with C > 1: the first one. */
export const classifyRule: TaskRule = (outputs) => {
  const o = outputs.find((x) => x.dims.length === 2 && (numeric(x.dims[1]) ?? 0) > 1);
  if (o === undefined) return { reason: 'no output is [N, C] scores with C > 1' };
  return { selection: { kind: 'classify', output: o.name, reason: `output ${JSON.stringify(o.name)} is [N, ${o.dims[1]}] class scores` } };
};

export const rawRule: TaskRule = (outputs) => {
  const o = outputs[0];
  if (o === undefined) return { reason: 'the model has no outputs' };
  return { selection: { kind: 'raw', output: o.name, reason: `judged by the mean cosine of ${JSON.stringify(o.name)} against FP32 (numbers only: no task metric)` } };
};

/** What the detection rule settles: the layout and the class offset it implies. */
export interface DetectSettings {
  spec: DetectionSpec;
  classOffset: number;
}

/** --boxes/--scores/--layout say it; else the detection module recognises the outputs. */
export const detectRule: TaskRule = (outputs, sample, flags) => {
  if (flags.boxes !== undefined || flags.scores !== undefined || flags.layout !== undefined) {
    const spec = detectionSpecFromFlags({ ...(flags.boxes !== undefined ? { boxes: flags.boxes } : {}), ...(flags.scores !== undefined ? { scores: flags.scores } : {}), ...(flags.layout !== undefined ? { layout: flags.layout } : {}), ...(flags.output !== undefined ? { output: flags.output } : {}) }, outputs);
    const settings: DetectSettings = { spec, classOffset: flags.classOffset ?? 0 };
    return { selection: { kind: 'detect', reason: `detection layout ${spec.layout} as the flags give it`, settings } };
  }
  const r = recognizeDetection(outputs, sample);
  if (r.spec === undefined) return { reason: r.reason };
  const settings: DetectSettings = { spec: r.spec, classOffset: flags.classOffset ?? r.classOffset ?? 0 };
  return { selection: { kind: 'detect', reason: r.reason, settings } };
};

/** A CTC sequence output, with evidence; an explicit --task ocr takes the one [N, T, C] output without it. */
export const ocrRule: TaskRule = (outputs, sample, flags, input) => {
  const r = recognizeOcr(outputs, { ...(sample ? { sample } : {}), ...(input ? { input } : {}) });
  if (r.options !== undefined) return { selection: { kind: 'ocr', reason: r.reason, settings: r.options } };
  const rank3 = outputs.filter((o) => o.dims.length === 3);
  if (flags.task === 'ocr' && rank3.length === 1) {
    const o = rank3[0]!;
    return { selection: { kind: 'ocr', reason: `${o.name} [${o.dims.join(', ')}] read as a CTC sequence (blank 0)`, settings: { output: o.name, blank: 0 } satisfies OcrOptions } };
  }
  return { reason: r.reason };
};

export const segmentRule: TaskRule = (outputs, sample) => {
  const r = recognizeSegmentation(outputs, sample);
  if (r.options === undefined) return { reason: r.reason };
  return { selection: { kind: 'segment', reason: r.reason, settings: r.options } };
};

const RULES = new Map<TaskKind, TaskRule>([
  ['detect', detectRule],
  ['classify', classifyRule],
  ['ocr', ocrRule],
  ['segment', segmentRule],
  ['raw', rawRule],
]);

/** The order auto tries the tasks in (see the file comment). */
const AUTO_ORDER: readonly TaskKind[] = ['ocr', 'detect', 'classify', 'segment', 'raw'];

/** The flags that name task settings and were given. */
function givenFlags(flags: TaskFlags): typeof TASK_ONLY_FLAGS {
  return TASK_ONLY_FLAGS.filter((f) => flags[f.key] !== undefined);
}

/**
 * Resolves --task against the model's outputs (and, for auto, one FP32 batch). Throws a UserError naming the flags
 * to pass when auto cannot be sure, or when an explicit task does not fit the model.
 */
export function selectTask(flags: TaskFlags, outputs: readonly OutputInfo[], sample?: Readonly<Record<string, Tensor>>, input?: InputInfo): TaskSelection {
  const requested = flags.task ?? 'auto';
  if (!TASK_REQUESTS.includes(requested)) throw new UserError(`--task ${String(requested)} is not a task; expected one of ${TASK_REQUESTS.join(', ')}.`);
  let selection: TaskSelection;
  if (requested !== 'auto') {
    const rule = RULES.get(requested);
    if (rule === undefined) throw new UserError(`--task ${requested} is not available in this build.`);
    const r = rule(outputs, sample, flags, input);
    if (r.selection === undefined) {
      throw new UserError(`--task ${requested} does not fit this model: ${r.reason ?? 'not recognised'}.`, { hint: hintFor(requested, outputs) });
    }
    selection = { ...r.selection, requested, reason: `--task ${requested}: ${r.selection.reason}` };
  } else {
    // Flags that describe where a detector's boxes are name the task themselves.
    const detectFlags = flags.boxes !== undefined || flags.scores !== undefined || flags.layout !== undefined;
    const order: readonly TaskKind[] = detectFlags ? ['detect'] : AUTO_ORDER;
    const tried: string[] = [];
    let found: TaskSelection | undefined;
    for (const kind of order) {
      const rule = RULES.get(kind);
      if (rule === undefined) continue;
      const r = rule(outputs, sample, flags, input);
      if (r.selection !== undefined) {
        found = { ...r.selection, requested, reason: `auto: ${r.selection.reason}` };
        break;
      }
      tried.push(`not ${kind}: ${r.reason ?? 'not recognised'}`);
      // Outputs shaped like a detector's that the detection rule could not read: guessing another task would judge
      // a detector by the wrong metric.
      if (kind === 'detect' && looksLikeDetector(outputs)) {
        throw new UserError(`--task auto: the outputs look like a detector's, but ${r.reason ?? 'their layout is not certain'}.`, { hint: hintFor('detect', outputs) });
      }
    }
    if (found === undefined) {
      throw new UserError(`--task auto cannot tell what this model does (${tried.join('; ')}).`, { hint: hintFor(undefined, outputs) });
    }
    selection = found;
  }
  checkFlagsApply(selection, flags);
  return selection;
}

/** Every task-only flag given must belong to the chosen task. */
export function checkFlagsApply(selection: Pick<TaskSelection, 'kind' | 'reason'>, flags: TaskFlags): void {
  for (const f of givenFlags(flags)) {
    if (!f.tasks.includes(selection.kind)) {
      throw new UserError(`${f.flag} applies to --task ${f.tasks.join(' or ')}, but this model is judged as ${selection.kind} (${selection.reason}).`, {
        hint: `Drop ${f.flag}, or pass --task ${f.tasks[0]} if that is what the model does.`,
      });
    }
  }
  if (flags.labels !== undefined) labelSourceOf(flags.labels, selection.kind);
}

export type LabelSource =
  | { kind: 'folders' }
  | { kind: 'csv'; file: string }
  | { kind: 'coco'; file: string }
  | { kind: 'yolo'; dir: string }
  | { kind: 'masks'; dir: string }
  | { kind: 'text'; file: string };

/**
 * What --labels names, for a task: "folders" or a path,label CSV (classify), a COCO annotations .json or yolo:DIR
 * (detect), masks:DIR (segment), a path<TAB>text file (ocr). A source of another task is an error naming both.
 */
export function labelSourceOf(labels: string, kind: TaskKind): LabelSource {
  const prefixed = /^(yolo|masks):(.+)$/.exec(labels);
  const source: LabelSource =
    labels === 'folders'
      ? { kind: 'folders' }
      : prefixed
        ? prefixed[1] === 'yolo'
          ? { kind: 'yolo', dir: prefixed[2]! }
          : { kind: 'masks', dir: prefixed[2]! }
        : /\.json$/i.test(labels)
          ? { kind: 'coco', file: labels }
          : kind === 'ocr'
            ? { kind: 'text', file: labels }
            : { kind: 'csv', file: labels };
  const fits: Record<LabelSource['kind'], TaskKind> = { folders: 'classify', csv: 'classify', coco: 'detect', yolo: 'detect', masks: 'segment', text: 'ocr' };
  if (fits[source.kind] !== kind) {
    const what = { folders: 'class folders', csv: 'a path,label CSV', coco: 'COCO annotations', yolo: 'YOLO txt labels', masks: 'PNG masks', text: 'path<TAB>text lines' }[source.kind];
    throw new UserError(`--labels ${labels} is ${what}, labels for --task ${fits[source.kind]}, but this model is judged as ${kind}.`, {
      hint: `For ${kind}, --labels takes ${labelFormsFor(kind)}.`,
    });
  }
  return source;
}

function labelFormsFor(kind: TaskKind): string {
  switch (kind) {
    case 'classify':
      return '"folders" or a CSV of path,label';
    case 'detect':
      return 'a COCO annotations file (.json) or yolo:DIR (with --classes)';
    case 'segment':
      return 'masks:DIR (PNG masks, one per image, pixel value = class index)';
    case 'ocr':
      return 'a text file of path<TAB>text lines (with --keys)';
    case 'raw':
      return 'nothing: raw outputs have no labels (pick a --task)';
  }
}

/** Boxes [N, A, 4] / [N, A, 1, 4], or one YOLO/NMS-like [N, A, K] with K >= 6 and A > K. */
function looksLikeDetector(outputs: readonly OutputInfo[]): boolean {
  const boxLike = outputs.some((o) => (o.dims.length === 3 && o.dims[2] === 4) || (o.dims.length === 4 && o.dims[2] === 1 && o.dims[3] === 4));
  const rank3 = outputs.filter((o) => o.dims.length === 3);
  const yoloLike = rank3.length === 1 && typeof rank3[0]!.dims[2] === 'number' && (rank3[0]!.dims[2] as number) >= 6 && typeof rank3[0]!.dims[1] === 'number' && (rank3[0]!.dims[1] as number) > (rank3[0]!.dims[2] as number);
  return boxLike || yoloLike;
}

function hintFor(kind: TaskKind | undefined, outputs: readonly OutputInfo[]): string {
  const list = outputs.map((o) => `${o.name} [${o.dims.join(', ')}]`).join(', ');
  const detect =
    'a detector: --task detect with --boxes NAME:FORMAT[:norm] (FORMAT xyxy, yxyx, xywh or cxcywh) and --scores NAME for separate outputs, or --det-layout yolov5|yolov8|yolov8-transposed|nms|efficient-nms';
  if (kind === 'detect') return `The outputs are ${list}. For ${detect}.`;
  return `The outputs are ${list}. Say what the model does: ${detect}; --task classify, segment or ocr; or --task raw to compare the numbers only.`;
}
