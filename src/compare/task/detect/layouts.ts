/**
 * Which outputs hold the detections and how: from the flags (`--boxes NAME:FORMAT[:norm]` with `--scores NAME`, or
 * `--det-layout L` with `--det-output NAME`), or recognised from the outputs' names and shapes for `--task auto`.
 *
 * Recognition only answers where the shapes (and, given, the value ranges of one FP32 batch) leave one reading:
 * - four outputs named like EfficientNMS's (num_dets, boxes, scores, classes): 'efficient-nms' (named
 *   num_detections, detection_boxes, ...: the TF Object Detection API's postprocessed form, normalised yxyx);
 * - boxes [N, A, 1, 4] with scores [N, A, C] (the TensorFlow Object Detection API's signature, whose boxes are
 *   ymin, xmin, ymax, xmax, normalised unless the sample's values reach past 0..1.5): 'boxes-scores';
 *   C = 90 is COCO's 90-id space without background (column i = id i + 1, class offset 1);
 * - one rank-3 output [N, K, 6] with K <= 1000 (rows of x1, y1, x2, y2, score, class; NMS in the graph): 'nms';
 * - one rank-3 output [N, 4 + C, A] with 4 + C < A, or A dynamic (ultralytics YOLOv8/YOLO11): 'yolov8'.
 * Dynamic dims take their size from the sample batch where one is given.
 * [N, A, 5 + C] (YOLOv5) and [N, A, 4 + C] (YOLOv8 transposed) have the same shape, and boxes [N, A, 4] can be in any
 * format: those are refused with what to pass.
 */
import { UserError } from '../../../errors.js';
import type { Tensor } from '../../../tensor.js';
import { tensorValues } from './decode.js';
import { BOX_FORMATS, type BoxFormat, type DetectionSpec, type OutputInfo } from './types.js';

/** Values of --det-layout, with yolov8's transposed form spelled out. */
export const LAYOUT_FLAG_VALUES = ['yolov5', 'yolov8', 'yolov8-transposed', 'nms', 'efficient-nms', 'boxes-scores'] as const;

function describeOutputs(outputs: readonly OutputInfo[]): string {
  return outputs.map((o) => `${o.name} [${o.dims.join(', ')}]`).join(', ');
}

function findOutput(outputs: readonly OutputInfo[], name: string, flag: string): OutputInfo {
  const found = outputs.find((o) => o.name === name);
  if (!found) {
    throw new UserError(`${flag} names the output '${name}', which the model does not have.`, {
      hint: `The model's outputs: ${describeOutputs(outputs)}.`,
    });
  }
  return found;
}

/** Parses `NAME:FORMAT[:norm]`; output names may themselves contain ':' (TensorFlow's "name:0"), so it splits from the right. */
export function parseBoxesFlag(value: string): { name: string; format: BoxFormat; normalized: boolean } {
  const parts = value.split(':');
  let normalized = false;
  if (parts.length >= 3 && parts[parts.length - 1] === 'norm') {
    normalized = true;
    parts.pop();
  }
  const format = parts.pop();
  const name = parts.join(':');
  if (parts.length === 0 || name === '' || !BOX_FORMATS.includes(format as BoxFormat)) {
    throw new UserError(`--boxes ${JSON.stringify(value)} is not NAME:FORMAT or NAME:FORMAT:norm.`, {
      hint: `FORMAT is one of ${BOX_FORMATS.join(', ')}; add :norm when the boxes are normalised to 0..1, e.g. --boxes boxes:yxyx:norm.`,
    });
  }
  return { name, format: format as BoxFormat, normalized };
}

const dimIs = (d: number | string | undefined, v: number): boolean => d === v;
const sameDim = (a: number | string | undefined, b: number | string | undefined): boolean => a !== undefined && a === b;

function checkBoxes(o: OutputInfo, flag: string): void {
  const d = o.dims;
  const ok = (d.length === 3 && dimIs(d[2], 4)) || (d.length === 4 && dimIs(d[2], 1) && dimIs(d[3], 4));
  if (!ok) throw new UserError(`${flag}: output '${o.name}' has shape [${d.join(', ')}]; boxes must be [N, anchors, 4] or [N, anchors, 1, 4].`);
}

/** The spec the flags describe, checked against the model's outputs. */
export function detectionSpecFromFlags(
  flags: { boxes?: string; scores?: string; layout?: string; output?: string },
  outputs: readonly OutputInfo[],
): DetectionSpec {
  if (flags.boxes !== undefined || flags.scores !== undefined) {
    if (flags.boxes === undefined || flags.scores === undefined) {
      throw new UserError(`${flags.boxes === undefined ? '--scores' : '--boxes'} needs ${flags.boxes === undefined ? '--boxes NAME:FORMAT[:norm]' : '--scores NAME'} too.`, {
        hint: 'Separate box and score outputs are named together, e.g. --boxes boxes:yxyx:norm --scores scores.',
      });
    }
    if (flags.layout !== undefined && flags.layout !== 'boxes-scores') {
      throw new UserError(`--det-layout ${flags.layout} cannot be combined with --boxes/--scores, which describe the 'boxes-scores' layout.`);
    }
    const parsed = parseBoxesFlag(flags.boxes);
    const boxes = findOutput(outputs, parsed.name, '--boxes');
    const scores = findOutput(outputs, flags.scores, '--scores');
    checkBoxes(boxes, '--boxes');
    if (scores.dims.length !== 3) throw new UserError(`--scores: output '${scores.name}' has shape [${scores.dims.join(', ')}]; scores must be [N, anchors, classes].`);
    const a = boxes.dims[1];
    const b = scores.dims[1];
    if (typeof a === 'number' && typeof b === 'number' && a !== b) {
      throw new UserError(`--boxes '${boxes.name}' has ${a} boxes per image but --scores '${scores.name}' has ${b} rows; they must be one row per box.`);
    }
    return { layout: 'boxes-scores', boxes: boxes.name, format: parsed.format, normalized: parsed.normalized, scores: scores.name };
  }
  if (flags.layout === undefined) {
    throw new UserError('Detection needs to know where the boxes are: give --det-layout or --boxes NAME:FORMAT[:norm] with --scores NAME.', {
      hint: `The model's outputs: ${describeOutputs(outputs)}.`,
    });
  }
  const layout = flags.layout;
  if (!(LAYOUT_FLAG_VALUES as readonly string[]).includes(layout)) {
    throw new UserError(`--det-layout ${JSON.stringify(layout)} is not one of ${LAYOUT_FLAG_VALUES.join(', ')}.`);
  }
  if (layout === 'boxes-scores') throw new UserError('--det-layout boxes-scores needs --boxes NAME:FORMAT[:norm] and --scores NAME.');
  if (layout === 'efficient-nms') {
    const spec = efficientNmsOutputs(outputs);
    if (!spec) {
      throw new UserError(`--det-layout efficient-nms: cannot find EfficientNMS's four outputs (num_dets, boxes, scores, classes) among ${describeOutputs(outputs)}.`);
    }
    return spec;
  }
  let single: OutputInfo;
  if (flags.output !== undefined) {
    single = findOutput(outputs, flags.output, '--det-output');
  } else {
    const rank3 = outputs.filter((o) => o.dims.length === 3);
    if (rank3.length !== 1) {
      throw new UserError(`--det-layout ${layout}: the model has ${rank3.length === 0 ? 'no' : rank3.length} outputs of rank 3; name the one to read with --det-output NAME.`, {
        hint: `The model's outputs: ${describeOutputs(outputs)}.`,
      });
    }
    single = rank3[0]!;
  }
  if (single.dims.length !== 3) throw new UserError(`--det-layout ${layout}: output '${single.name}' has shape [${single.dims.join(', ')}]; it must have rank 3.`);
  if (layout === 'nms') {
    if (typeof single.dims[2] === 'number' && single.dims[2] !== 6) throw new UserError(`--det-layout nms: output '${single.name}' has shape [${single.dims.join(', ')}]; expected [N, K, 6].`);
    return { layout: 'nms', output: single.name };
  }
  if (layout === 'yolov5') return { layout: 'yolov5', output: single.name };
  return { layout: 'yolov8', output: single.name, transposed: layout === 'yolov8-transposed' };
}

function efficientNmsOutputs(outputs: readonly OutputInfo[]): Extract<DetectionSpec, { layout: 'efficient-nms' }> | undefined {
  const pick = (re: RegExp): OutputInfo | undefined => {
    const hits = outputs.filter((o) => re.test(o.name));
    return hits.length === 1 ? hits[0] : undefined;
  };
  const numDets = pick(/num_?det/i);
  const boxes = pick(/box/i);
  const scores = pick(/score/i);
  const classes = pick(/class|label/i);
  if (!numDets || !boxes || !scores || !classes) return undefined;
  if (boxes.dims.length !== 3 || !dimIs(boxes.dims[2], 4)) return undefined;
  if (scores.dims.length !== 2 || classes.dims.length !== 2) return undefined;
  const spec = { layout: 'efficient-nms' as const, numDets: numDets.name, boxes: boxes.name, scores: scores.name, classes: classes.name };
  // The TF Object Detection API's postprocessed outputs: boxes as normalised ymin, xmin, ymax, xmax.
  if (/^detection_boxes/.test(boxes.name)) return { ...spec, format: 'yxyx', normalized: true };
  return spec;
}

function valueRange(t: Tensor | undefined): { min: number; max: number } | undefined {
  if (!t) return undefined;
  const v = tensorValues(t);
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    if (x < min) min = x;
    if (x > max) max = x;
  }
  return { min, max };
}

const WHAT_TO_PASS = 'pass --boxes NAME:FORMAT[:norm] --scores NAME (separate outputs) or --det-layout yolov5|yolov8|yolov8-transposed|nms|efficient-nms';

/** For --task auto: the detection spec the outputs show, and why; or undefined and what to pass. */
export function recognizeDetection(
  outputs: readonly OutputInfo[],
  sample?: Readonly<Record<string, Tensor>>,
): { spec?: DetectionSpec; classOffset?: number; reason: string } {
  const declared = outputs;
  // Dynamic dims (ultralytics' dynamic export: [batch, 84, anchors]) take their size from the sample where it has them.
  outputs = outputs.map((o) => {
    const actual = sample?.[o.name]?.dims;
    return actual && actual.length === o.dims.length ? { name: o.name, dims: o.dims.map((d, i) => (typeof d === 'number' && d > 0 ? d : actual[i]!)) } : o;
  });
  const shapes = describeOutputs(outputs);
  const efficient = efficientNmsOutputs(outputs);
  if (efficient?.layout === 'efficient-nms' && outputs.length <= 5) {
    const tf = efficient.format === 'yxyx';
    return {
      spec: efficient,
      classOffset: 0,
      reason: tf
        ? `outputs ${shapes} are the TensorFlow Object Detection API's postprocessed detections (NMS in the graph): boxes as normalised ymin, xmin, ymax, xmax, classes as category ids`
        : `outputs ${shapes} are TensorRT EfficientNMS's num_dets, boxes, scores and classes (NMS in the graph; boxes x1, y1, x2, y2 in input pixels)`,
    };
  }

  // Separate boxes and scores.
  const boxLike = outputs.filter((o) => (o.dims.length === 3 && dimIs(o.dims[2], 4)) || (o.dims.length === 4 && dimIs(o.dims[2], 1) && dimIs(o.dims[3], 4)));
  const pairs: Array<{ boxes: OutputInfo; scores: OutputInfo }> = [];
  for (const b of boxLike) {
    for (const s of outputs) if (s !== b && s.dims.length === 3 && sameDim(s.dims[1], b.dims[1]) && !boxLike.includes(s)) pairs.push({ boxes: b, scores: s });
  }
  if (pairs.length > 0) {
    // Several candidates (the SSD fixture also exports raw_box_encodings and raw_class_logits): the names decide.
    const named = pairs.filter((p) => /box/i.test(p.boxes.name) && !/raw|encod/i.test(p.boxes.name) && /score|prob/i.test(p.scores.name) && !/raw|logit/i.test(p.scores.name));
    const chosen = pairs.length === 1 ? pairs[0]! : named.length === 1 ? named[0]! : undefined;
    if (!chosen) {
      return { reason: `outputs ${shapes} hold more than one possible pair of boxes and scores; ${WHAT_TO_PASS}` };
    }
    if (chosen.boxes.dims.length !== 4) {
      return { reason: `'${chosen.boxes.name}' [${chosen.boxes.dims.join(', ')}] looks like boxes for the scores '${chosen.scores.name}', but their format (xyxy, yxyx, xywh or cxcywh) cannot be told from the shape; ${WHAT_TO_PASS}` };
    }
    const range = valueRange(sample?.[chosen.boxes.name]);
    const normalized = range ? range.min >= -0.5 && range.max <= 1.5 : true;
    const classes = chosen.scores.dims[2];
    const classOffset = classes === 90 ? 1 : 0;
    const scoreRange = valueRange(sample?.[chosen.scores.name]);
    const scoreNote = scoreRange && (scoreRange.min < 0 || scoreRange.max > 1) ? ` (note: its scores range over ${scoreRange.min.toFixed(3)}..${scoreRange.max.toFixed(3)}, not 0..1)` : '';
    return {
      spec: { layout: 'boxes-scores', boxes: chosen.boxes.name, format: 'yxyx', normalized, scores: chosen.scores.name },
      classOffset,
      reason:
        `'${chosen.boxes.name}' [${chosen.boxes.dims.join(', ')}] and '${chosen.scores.name}' [${chosen.scores.dims.join(', ')}] have the TensorFlow Object Detection API's signature: ` +
        `boxes as ymin, xmin, ymax, xmax, ${range ? (normalized ? `normalised (the sample's values lie in ${range.min.toFixed(3)}..${range.max.toFixed(3)})` : `in pixels (the sample's values reach ${range.max.toFixed(1)})`) : 'normalised (its convention)'}` +
        (classOffset === 1 ? `; 90 score columns are COCO's ids 1..90 (class offset 1)` : '') +
        scoreNote +
        `. If that is wrong, pass --boxes NAME:FORMAT[:norm] --scores NAME`,
    };
  }

  const rank3 = outputs.filter((o) => o.dims.length === 3);
  if (rank3.length === 1) {
    const o = rank3[0]!;
    const [, d1, d2] = o.dims;
    if (d2 === 6 && typeof d1 === 'number' && d1 <= 1000) {
      const v = sample?.[o.name] ? tensorValues(sample[o.name]!) : undefined;
      if (v) {
        for (let i = 5; i < v.length; i += 6) {
          if (!Number.isInteger(v[i]!)) {
            return { reason: `'${o.name}' [${o.dims.join(', ')}] has the shape of NMS-in-graph rows (x1, y1, x2, y2, score, class), but its 6th column holds non-integer values; ${WHAT_TO_PASS}` };
          }
        }
      }
      // A dynamic row count (ONNX NonMaxSuppression's output) is the sample's, not a bound.
      const dims = declared.find((x) => x.name === o.name)?.dims ?? o.dims;
      const rows = typeof dims[1] === 'number' && dims[1] > 0 ? `at most ${d1} rows` : `as many rows as survive (${d1} in the sample)`;
      return { spec: { layout: 'nms', output: o.name }, classOffset: 0, reason: `'${o.name}' [${dims.join(', ')}] is NMS in the graph: ${rows} of x1, y1, x2, y2, score, class per image (ultralytics end2end, YOLOv10)` };
    }
    // [N, 4+C, A]; with a dynamic anchor count (an input of any size), a fixed 4+C in the middle says the same.
    if (typeof d1 === 'number' && d1 >= 5 && (typeof d2 === 'number' ? d1 < d2 : true)) {
      return { spec: { layout: 'yolov8', output: o.name, transposed: false }, classOffset: 0, reason: `'${o.name}' [${o.dims.join(', ')}] is ultralytics YOLOv8/YOLO11's layout: 4 box values (cx, cy, w, h in input pixels) and ${d1 - 4} class scores for each of ${typeof d2 === 'number' ? d2 : `the ${d2}`} anchors` };
    }
    if (typeof d2 === 'number' && d2 >= 6 && (typeof d1 === 'number' ? d1 > d2 : true)) {
      return { reason: `'${o.name}' [${o.dims.join(', ')}] is either YOLOv5's layout (cx, cy, w, h, objectness, ${d2 - 5} classes) or YOLOv8's transposed (cx, cy, w, h, ${d2 - 4} classes); the shape cannot tell them apart: pass --det-layout yolov5 or --det-layout yolov8-transposed${d2 === 6 ? ' (or --det-layout nms for rows of x1, y1, x2, y2, score, class)' : ''}` };
    }
  }
  return { reason: `no detection layout recognised in outputs ${shapes}; ${WHAT_TO_PASS}` };
}
