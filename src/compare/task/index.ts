/**
 * From options to a TaskEvaluator: resolves --task (./select.ts), reads the task's labels and name files, checks
 * every flag and output location, all before the long pass; then `create()` makes a fresh evaluator for each pass
 * (compare makes one; sensitivity and the mixed-precision search one per variant they run).
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { imageGeometries } from '../../datasets/geometry.js';
import type { PreprocessConfig } from '../../datasets/types.js';
import { UserError } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import { loadLabels, type LabelAssignment } from '../labels.js';
import { createClassifyEvaluator } from './classify.js';
import { createDetectionEvaluator, DETECTION_DEFAULTS, loadCocoLabels, loadYoloLabels, readClassNames, writeCocoResults, type DetectionEvaluator, type GroundTruthBox } from './detect/index.js';
import { createOcrEvaluator, readKeys, readTextLabels, type OcrOptions } from './ocr/index.js';
import { createRawEvaluator } from './raw.js';
import { createSegmentationEvaluator, findMaskLabels, type SegmentationOptions } from './segment/index.js';
import { labelSourceOf, selectTask, type DetectSettings, type InputInfo, type OutputInfo, type TaskFlags, type TaskSelection } from './select.js';
import type { TaskEvaluator, TaskKind } from './types.js';
import type { TaskHtmlOptions } from '../render-task-html.js';
import { maskOverlayDataUri, type Photo } from '../thumbnails.js';
import type { SegmentationEvaluator } from './segment/index.js';

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
  /** The model's image input (OCR's evidence: a text-line input). */
  input?: InputInfo;
  /** The preprocessing (YOLO labels are normalised to each image's size, read from the headers). */
  preprocess?: PreprocessConfig;
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
  /** After the pass: what report.html draws beside the report (class names, segmentation's mask overlays). */
  htmlOptions?: (evaluator: TaskEvaluator, variants: readonly string[]) => Promise<TaskHtmlOptions>;
  /** After the pass: files the task writes (--save-detections), written atomically; returns their paths. */
  writeOutputs?: (evaluator: TaskEvaluator, variants: readonly string[]) => Promise<string[]>;
}

export async function prepareTask(options: PrepareTaskOptions): Promise<PreparedTask> {
  const { flags } = options;
  const selection = selectTask(flags, options.outputs, options.sample, options.input);
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
    case 'detect':
      return prepareDetection(selection, options, notes);
    case 'segment':
      return prepareSegmentation(selection, options, notes);
    case 'ocr':
      return prepareOcr(selection, options, notes);
  }
}

async function prepareDetection(selection: TaskSelection, options: PrepareTaskOptions, notes: string[]): Promise<PreparedTask> {
  const { flags, datasetFiles, dataRoot } = options;
  const { spec, classOffset } = selection.settings as DetectSettings;
  const saveDir = flags.saveDetections;
  if (saveDir !== undefined) await checkOutputFolder(saveDir, '--save-detections');
  let classNames = flags.classes !== undefined ? await readClassNames(flags.classes) : undefined;
  let labels: Map<string, GroundTruthBox[]> | undefined;
  let info: TaskLabelsInfo | undefined;
  if (flags.labels !== undefined) {
    const source = labelSourceOf(flags.labels, 'detect');
    let unmatched: string[];
    let warnings: string[];
    if (source.kind === 'coco') {
      const coco = await loadCocoLabels(source.file, datasetFiles, dataRoot);
      ({ labels, unmatchedImages: unmatched, warnings } = coco);
      // The annotations name their categories; --classes, when given, names them instead.
      classNames ??= coco.classNames;
    } else if (source.kind === 'yolo') {
      const sizes = new Map((await imageGeometries(datasetFiles, requirePreprocess(options))).map((g) => [path.resolve(g.file), { width: g.width, height: g.height }]));
      ({ labels, unmatchedImages: unmatched, warnings } = await loadYoloLabels(source.dir, datasetFiles, dataRoot, sizes, classNames));
    } else {
      throw new Error(`unexpected label source ${source.kind}`);
    }
    notes.push(...warnings);
    const labelled = datasetFiles.filter((f) => labels!.has(path.resolve(f))).length;
    info = { source: flags.labels, labelled, unlabelled: datasetFiles.length - labelled, unmatched: unmatched.length };
    if (classNames !== undefined) info.classes = [...classNames.values()];
  }
  const detectionOptions = {
    spec,
    classOffset,
    nmsIou: flags.nmsIou ?? DETECTION_DEFAULTS.nmsIou,
    maxDetections: flags.maxDet ?? DETECTION_DEFAULTS.maxDetections,
    scoreFloor: flags.scoreFloor ?? DETECTION_DEFAULTS.scoreFloor,
    gtScore: flags.gtScore ?? DETECTION_DEFAULTS.gtScore,
    worstCount: options.worstCount ?? DETECTION_DEFAULTS.worstCount,
    ...(classNames ? { classNames } : {}),
    ...(labels ? { labels } : {}),
    keepDetections: saveDir !== undefined,
  };
  const { classNames: _names, labels: _labels, ...settings } = detectionOptions;
  return {
    selection,
    kind: 'detect',
    create: () => createDetectionEvaluator(detectionOptions),
    ...(classNames ? { htmlOptions: async () => ({ classNames: classNames! }) } : {}),
    ...(info ? { labels: info } : {}),
    notes,
    settings: { ...settings, ...(saveDir !== undefined ? { saveDetections: saveDir } : {}) },
    ...(saveDir !== undefined
      ? {
          writeOutputs: async (evaluator: TaskEvaluator, variants: readonly string[]) => {
            const ev = evaluator as DetectionEvaluator;
            const written: string[] = [];
            for (const v of variants) {
              const detections = ev.detections(v);
              if (detections === undefined) throw new Error(`No detections were kept for ${v}.`);
              const file = path.join(saveDir, `${v}.json`);
              await writeCocoResults(file, ev.files(), detections, dataRoot);
              written.push(file);
            }
            return written;
          },
        }
      : {}),
  };
}

async function prepareSegmentation(selection: TaskSelection, options: PrepareTaskOptions, notes: string[]): Promise<PreparedTask> {
  const { flags, datasetFiles, dataRoot } = options;
  const recognised = selection.settings as SegmentationOptions;
  const seg: SegmentationOptions = { ...recognised };
  if (seg.mode === 'binary' && options.threshold !== undefined) seg.threshold = options.threshold;
  if (options.worstCount !== undefined) seg.worstCount = options.worstCount;
  if (flags.classes !== undefined) seg.classNames = await readClassNames(flags.classes);
  let info: TaskLabelsInfo | undefined;
  if (flags.labels !== undefined) {
    const source = labelSourceOf(flags.labels, 'segment');
    if (source.kind !== 'masks') throw new Error(`unexpected label source ${source.kind}`);
    const match = await findMaskLabels(source.dir, datasetFiles, dataRoot);
    seg.labels = match.labels;
    if (match.missing.length > 0) notes.push(`${match.missing.length} mask(s) in ${source.dir} belong to no image of --data (e.g. ${match.missing.slice(0, 3).join(', ')}); not scored.`);
    info = { source: flags.labels, labelled: match.labels.size, unlabelled: match.unmatchedImages.length, unmatched: match.missing.length };
  }
  const { labels: _labels, classNames: _names, ...settings } = seg;
  return {
    selection,
    kind: 'segment',
    create: () => createSegmentationEvaluator(seg),
    htmlOptions: async (evaluator, variants) => ({ ...(seg.classNames ? { classNames: seg.classNames } : {}), maskOverlays: await maskOverlays(evaluator as SegmentationEvaluator, variants) }),
    ...(info ? { labels: info } : {}),
    notes,
    settings,
  };
}

async function prepareOcr(selection: TaskSelection, options: PrepareTaskOptions, notes: string[]): Promise<PreparedTask> {
  const { flags, datasetFiles, dataRoot } = options;
  const ocr: OcrOptions = { ...(selection.settings as OcrOptions) };
  if (options.worstCount !== undefined) ocr.worstCount = options.worstCount;
  if (flags.keys !== undefined) {
    ocr.keys = await readKeys(flags.keys);
    ocr.keysFile = flags.keys;
  }
  let info: TaskLabelsInfo | undefined;
  if (flags.labels !== undefined) {
    const source = labelSourceOf(flags.labels, 'ocr');
    if (source.kind !== 'text') throw new Error(`unexpected label source ${source.kind}`);
    const text = await readTextLabels(source.file, datasetFiles, dataRoot);
    ocr.labels = text.labels;
    if (text.unmatched.length > 0) notes.push(`${text.unmatched.length} line(s) of ${source.file} name images that are not in --data (e.g. ${text.unmatched.slice(0, 3).join(', ')}); not scored.`);
    info = { source: flags.labels, labelled: text.labels.size, unlabelled: datasetFiles.length - text.labels.size, unmatched: text.unmatched.length };
  }
  const { labels: _labels, keys: _keys, ...settings } = ocr;
  return { selection, kind: 'ocr', create: () => createOcrEvaluator(ocr), ...(info ? { labels: info } : {}), notes, settings };
}

/** The worst images of each variant with FP32's and its masks painted over the photo (FP32 itself has none to show). */
async function maskOverlays(evaluator: SegmentationEvaluator, variants: readonly string[]): Promise<Map<string, Map<string, Photo>>> {
  const out = new Map<string, Map<string, Photo>>();
  for (const v of variants) {
    if (v === 'fp32') continue;
    const photos = new Map<string, Photo>();
    for (const view of evaluator.worstViews(v)) {
      const mask = (data: Uint16Array) => ({ width: view.width, height: view.height, data });
      photos.set(view.file, await maskOverlayDataUri(view.file, mask(view.reference), mask(view.variant), { geometry: view.geometry }));
    }
    out.set(v, photos);
  }
  return out;
}

function requirePreprocess(options: PrepareTaskOptions): PreprocessConfig {
  if (options.preprocess === undefined) throw new Error('YOLO labels need the preprocessing (image sizes).');
  return options.preprocess;
}

/** An output folder: absent (made when written) or a folder; never an existing file. Checked before the pass. */
async function checkOutputFolder(dir: string, flag: string): Promise<void> {
  const st = await stat(dir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
  if (st !== undefined && !st.isDirectory()) throw new UserError(`${flag} ${dir} is a file, not a folder.`, { hint: `Name a folder (it is created when missing); each variant is written there as <variant>.json.` });
  if (st === undefined) {
    // The nearest existing parent must be a folder.
    let parent = path.dirname(path.resolve(dir));
    for (;;) {
      const p = await stat(parent).catch(() => undefined);
      if (p !== undefined) {
        if (!p.isDirectory()) throw new UserError(`${flag} ${dir} cannot be created: ${parent} is a file.`);
        break;
      }
      const up = path.dirname(parent);
      if (up === parent) break;
      parent = up;
    }
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
