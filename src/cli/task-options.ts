/**
 * The --task flags, shared by compare, sensitivity and quantize --mixed auto. No commander defaults: a flag given
 * is a flag the task must use (the task modules state and apply the defaults), so that one that does not apply to
 * the task is an error rather than silently ignored (src/compare/task/select.ts).
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { LAYOUT_FLAG_VALUES } from '../compare/task/detect/index.js';
import { TASK_REQUESTS, type TaskFlags, type TaskRequest } from '../compare/task/index.js';
import { parseInteger, parseNumber } from './common.js';

export interface TaskCliValues {
  task: TaskRequest;
  detLayout?: string;
  detOutput?: string;
  boxes?: string;
  scores?: string;
  classOffset?: number;
  gtScore?: number;
  nmsIou?: number;
  maxDet?: number;
  scoreFloor?: number;
  keys?: string;
  saveDetections?: string;
}

function boxesFlag(value: string): string {
  if (!/^[^:]+:(xyxy|yxyx|xywh|cxcywh)(:norm)?$/.test(value)) {
    throw new InvalidArgumentError('Expected NAME:FORMAT or NAME:FORMAT:norm, FORMAT one of xyxy, yxyx, xywh, cxcywh (e.g. boxes:yxyx:norm).');
  }
  return value;
}

export function addTaskOptions(cmd: Command, options: { saveDetections?: boolean; what?: string } = {}): Command {
  const what = options.what ?? 'the verdict (winner, --max-drop)';
  cmd
    .addOption(new Option('--task <kind>', `what the model does, for ${what}: auto decides from the outputs and says why`).choices(TASK_REQUESTS as string[]).default('auto'))
    .addOption(new Option('--det-layout <name>', 'detect: the head\'s layout when auto cannot tell (yolov5 [N,A,5+C], yolov8 [N,4+C,A], yolov8-transposed, nms [N,K,6], efficient-nms)').choices([...LAYOUT_FLAG_VALUES]))
    .option('--det-output <name>', 'detect: with --det-layout, the output to read when the model has several of rank 3')
    .option('--boxes <name:format[:norm]>', 'detect: the boxes output and its layout (xyxy, yxyx, xywh, cxcywh; :norm when 0..1), with --scores', boxesFlag)
    .option('--scores <name>', 'detect: the [N, anchors, classes] scores output, with --boxes')
    .option('--class-offset <k>', 'detect: score column i is category id i + k (SSD/TF: 1) (default 0)', parseInteger(-1_000_000, 1_000_000))
    .option('--gt-score <s>', 'detect: FP32 detections at or above this score are the ground truth (default 0.25)', parseNumber(0, 1))
    .option('--nms-iou <iou>', 'detect: class-aware NMS IoU where the graph has no NMS (default 0.7)', parseNumber(0, 1))
    .option('--max-det <n>', 'detect: detections kept per image after NMS (default 300)', parseInteger(1, 100_000))
    .option('--score-floor <s>', 'detect: lowest prediction score kept for mAP (default 0.001)', parseNumber(0, 1))
    .option('--keys <file>', 'ocr: the recogniser\'s characters, one a line (class i = line i, blank 0)');
  if (options.saveDetections) cmd.option('--save-detections <dir>', 'detect: write each variant\'s detections as <dir>/<variant>.json (COCO results format)');
  return cmd;
}

export function taskFlagsFrom(opts: TaskCliValues): Omit<TaskFlags, 'labels' | 'classes'> {
  const flags: Omit<TaskFlags, 'labels' | 'classes'> = { task: opts.task };
  if (opts.detLayout !== undefined) flags.layout = opts.detLayout;
  if (opts.detOutput !== undefined) flags.output = opts.detOutput;
  for (const key of ['boxes', 'scores', 'classOffset', 'gtScore', 'nmsIou', 'maxDet', 'scoreFloor', 'keys', 'saveDetections'] as const) {
    if (opts[key] !== undefined) (flags as Record<string, unknown>)[key] = opts[key];
  }
  return flags;
}
