/**
 * Test helper (no test in it): the real SSDLite-MobileNetV2 COCO detector of test/fixtures re-exported, by graph
 * edits through the project's ONNX code, with its detections in the layouts other detector families use. The
 * network is the same; only the head's layout changes, so every layout must give the same detections.
 *
 * The SSD's own outputs: `boxes` [1, 1917, 1, 4] (ymin, xmin, ymax, xmax normalised to 0..1) and `scores`
 * [1, 1917, 90] (sigmoid; column i is COCO category id i + 1). The input is 300x300, so pixel = normalised x 300.
 *
 * Layouts (one graph output each, named as the exporters name them):
 * - `yolov8`  `output0` [1, 4 + 90, 1917]: Concat(Transpose(pixel cx, cy, w, h), Transpose(scores)) on axis 1, as
 *   ultralytics exports YOLOv8/YOLO11: the concatenated head whose one INT8 scale (amax ~300) zeroes the scores.
 * - `yolov8t` `output0` [1, 1917, 4 + 90]: the same tensor transposed (a Transpose after the Concat).
 * - `yolov5`  `output0` [1, 1917, 5 + 90]: cx, cy, w, h, objectness (a column of ones), class scores.
 * - `nms`     `output0` [1, K, 6]: x1, y1, x2, y2 (pixels), score, class column (0-based, as end2end exports),
 *   from ONNX NonMaxSuppression in the graph (per class, IoU > 0.7 suppressed, scores > 0.25 kept, at most 100 per
 *   class; these are parameters).
 *
 * `relayout()` computes each layout's values from the original outputs in plain JS: the reference the tests hold
 * the re-exported graphs to.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { makeNode, makeValueInfo, type AttributeValue } from '../../src/onnx/build.js';
import type { Tensor } from '../../src/tensor.js';
import { ELEM, graphOf, loadOnnxModel, makeTensor, tensorToProto, withGraph, writeOnnxModel, type OnnxModel, type OnnxNode, type OnnxTensorProto } from '../../src/onnx/model.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const SSD_MODEL = path.resolve(here, '../fixtures/models/ssdlite_mobilenet_v2_coco_300.onnx');
export const SSD_LABELS = path.resolve(here, '../fixtures/models/coco_labels.txt');
export const STREET = path.resolve(here, '../fixtures/street');

export const SSD_ANCHORS = 1917;
export const SSD_CLASSES = 90;
export const SSD_INPUT_SIZE = 300;

export type SsdLayout = 'yolov8' | 'yolov8t' | 'yolov5' | 'nms';
export const SSD_LAYOUTS: readonly SsdLayout[] = ['yolov8', 'yolov8t', 'yolov5', 'nms'];

export interface NmsParameters {
  /** Boxes with IoU above this with a higher-scoring box of the same class are suppressed (default 0.7). */
  iouThreshold?: number;
  /** Only scores above this are kept (default 0.25). */
  scoreThreshold?: number;
  /** At most this many boxes per class and image (default 100). */
  maxPerClass?: number;
}

const DEFAULT_NMS: Required<NmsParameters> = { iouThreshold: 0.7, scoreThreshold: 0.25, maxPerClass: 100 };

/** Tensor names of the head the layouts build on (the SSD's own graph outputs). */
const BOXES = 'boxes';
const SCORES = 'scores';

/** The SSD re-exported in `layout`; `source` defaults to the fixture (loaded once per call). */
export async function ssdLayoutModel(layout: SsdLayout, options: { source?: OnnxModel; nms?: NmsParameters } = {}): Promise<OnnxModel> {
  const source = options.source ?? (await loadOnnxModel(SSD_MODEL));
  const g = graphOf(source);
  const nodes: OnnxNode[] = [];
  const inits: OnnxTensorProto[] = [];
  const constant = (name: string, dtype: 'float32' | 'int64', dims: number[], values: number[] | bigint[]) => {
    inits.push(tensorToProto(name, makeTensor(dtype, dims, values as never)));
    return name;
  };
  const node = (op: string, inputs: string[], outputs: string[], attributes?: Record<string, AttributeValue>) => {
    nodes.push(makeNode(op, inputs, outputs, { name: outputs[0]!.startsWith('layout_') ? outputs[0]! : `layout_${outputs[0]}`, ...(attributes ? { attributes } : {}) }));
    return outputs[0]!;
  };

  // Pixel corners: boxes [1, 1917, 1, 4] -> [1, 1917, 4] x 300, split into ymin, xmin, ymax, xmax [1, 1917, 1].
  const flat = node('Reshape', [BOXES, constant('layout_boxes_shape', 'int64', [3], [1n, BigInt(SSD_ANCHORS), 4n])], ['layout_boxes_flat']);
  const pixels = node('Mul', [flat, constant('layout_input_size', 'float32', [], [SSD_INPUT_SIZE])], ['layout_boxes_pixels']);
  node('Split', [pixels], ['layout_y1', 'layout_x1', 'layout_y2', 'layout_x2'], { axis: { int: 2 } });
  const half = constant('layout_half', 'float32', [], [0.5]);
  const cx = node('Mul', [node('Add', ['layout_x1', 'layout_x2'], ['layout_x_sum']), half], ['layout_cx']);
  const cy = node('Mul', [node('Add', ['layout_y1', 'layout_y2'], ['layout_y_sum']), half], ['layout_cy']);
  const w = node('Sub', ['layout_x2', 'layout_x1'], ['layout_w']);
  const h = node('Sub', ['layout_y2', 'layout_y1'], ['layout_h']);
  const xywh = () => node('Concat', [cx, cy, w, h], ['layout_xywh'], { axis: { int: 2 } }); // [1, 1917, 4]

  let output: { name: string; dims: Array<number | string> };
  if (layout === 'yolov8' || layout === 'yolov8t') {
    const boxesT = node('Transpose', [xywh()], ['layout_xywh_t'], { perm: { ints: [0, 2, 1] } }); // [1, 4, 1917]
    const scoresT = node('Transpose', [SCORES], ['layout_scores_t'], { perm: { ints: [0, 2, 1] } }); // [1, 90, 1917]
    if (layout === 'yolov8') {
      node('Concat', [boxesT, scoresT], ['output0'], { axis: { int: 1 } });
      output = { name: 'output0', dims: [1, 4 + SSD_CLASSES, SSD_ANCHORS] };
    } else {
      const cat = node('Concat', [boxesT, scoresT], ['layout_head'], { axis: { int: 1 } });
      node('Transpose', [cat], ['output0'], { perm: { ints: [0, 2, 1] } });
      output = { name: 'output0', dims: [1, SSD_ANCHORS, 4 + SSD_CLASSES] };
    }
  } else if (layout === 'yolov5') {
    const ones = constant('layout_objectness', 'float32', [1, SSD_ANCHORS, 1], new Array<number>(SSD_ANCHORS).fill(1));
    node('Concat', [xywh(), ones, SCORES], ['output0'], { axis: { int: 2 } });
    output = { name: 'output0', dims: [1, SSD_ANCHORS, 5 + SSD_CLASSES] };
  } else {
    const p = { ...DEFAULT_NMS, ...options.nms };
    // NonMaxSuppression takes [N, A, 4] boxes as y1, x1, y2, x2 (center_point_box 0) and [N, C, A] scores.
    const scoresT = node('Transpose', [SCORES], ['layout_scores_t'], { perm: { ints: [0, 2, 1] } });
    const selected = node(
      'NonMaxSuppression',
      [
        pixels,
        scoresT,
        constant('layout_nms_max', 'int64', [1], [BigInt(p.maxPerClass)]),
        constant('layout_nms_iou', 'float32', [1], [p.iouThreshold]),
        constant('layout_nms_score', 'float32', [1], [p.scoreThreshold]),
      ],
      ['layout_nms_selected'],
    ); // [K, 3]: batch, class, anchor
    const column = (i: number, name: string) =>
      node('Gather', [selected, constant(`${name}_index`, 'int64', [], [BigInt(i)])], [name], { axis: { int: 1 } }); // [K]
    const anchor = column(2, 'layout_nms_anchor');
    const cls = column(1, 'layout_nms_class');
    // Boxes as x1, y1, x2, y2: the pixel corners re-ordered, gathered by anchor.
    const xyxy = node('Concat', ['layout_x1', 'layout_y1', 'layout_x2', 'layout_y2'], ['layout_xyxy'], { axis: { int: 2 } });
    const xyxy2d = node('Reshape', [xyxy, constant('layout_xyxy_shape', 'int64', [2], [BigInt(SSD_ANCHORS), 4n])], ['layout_xyxy_2d']);
    const picked = node('Gather', [xyxy2d, anchor], ['layout_nms_boxes'], { axis: { int: 0 } }); // [K, 4]
    const score = node('GatherND', [scoresT, selected], ['layout_nms_scores']); // [K]
    const score2d = node('Unsqueeze', [score, constant('layout_axes_1', 'int64', [1], [1n])], ['layout_nms_scores_2d']);
    const clsFloat = node('Cast', [cls], ['layout_nms_class_float'], { to: { int: ELEM.FLOAT } });
    const cls2d = node('Unsqueeze', [clsFloat, 'layout_axes_1'], ['layout_nms_class_2d']);
    const rows = node('Concat', [picked, score2d, cls2d], ['layout_nms_rows'], { axis: { int: 1 } }); // [K, 6]
    node('Unsqueeze', [rows, constant('layout_axes_0', 'int64', [1], [0n])], ['output0']);
    output = { name: 'output0', dims: [1, 'K', 6] };
  }

  const graph = {
    ...g,
    node: [...g.node, ...nodes],
    initializer: [...g.initializer, ...inits],
    output: [makeValueInfo(output.name, ELEM.FLOAT, output.dims)],
    valueInfo: [],
  };
  return withGraph(source, pruneToOutputs(graph));
}

/** Writes the layout model to `file` (for the CLI tests) and returns the file. */
export async function writeSsdLayout(layout: SsdLayout, file: string, options: { source?: OnnxModel; nms?: NmsParameters } = {}): Promise<string> {
  await writeOnnxModel(file, await ssdLayoutModel(layout, options));
  return file;
}

/** Drops the nodes and initializers no graph output depends on (the SSD's four original outputs' tails). */
function pruneToOutputs<G extends { node: OnnxNode[]; initializer: Array<{ name: string }>; output: Array<{ name: string }> }>(g: G): G {
  const needed = new Set(g.output.map((o) => o.name));
  const kept: OnnxNode[] = [];
  for (let i = g.node.length - 1; i >= 0; i--) {
    const n = g.node[i]!;
    if (!n.output.some((o) => needed.has(o))) continue;
    kept.push(n);
    for (const input of n.input) if (input) needed.add(input);
  }
  kept.reverse();
  return { ...g, node: kept, initializer: g.initializer.filter((t) => needed.has(t.name)) };
}

/**
 * The values each layout's `output0` holds for one image, computed from the SSD's original `boxes` (1917 x 4,
 * normalised ymin, xmin, ymax, xmax) and `scores` (1917 x 90). For `nms`: a greedy per-class NMS with the same
 * rules as ONNX NonMaxSuppression, rows sorted by class then descending score (onnxruntime's order).
 */
export function relayout(layout: SsdLayout, boxes: Float32Array, scores: Float32Array, nms: NmsParameters = {}): { dims: number[]; data: Float32Array } {
  const A = SSD_ANCHORS;
  const C = SSD_CLASSES;
  // Float32 arithmetic step by step, as the graph computes it.
  const f = Math.fround;
  const px = (a: number, k: number) => f(boxes[a * 4 + k]! * SSD_INPUT_SIZE);
  const xywh = (a: number): number[] => {
    const [y1, x1, y2, x2] = [px(a, 0), px(a, 1), px(a, 2), px(a, 3)];
    return [f(f(x1 + x2) * 0.5), f(f(y1 + y2) * 0.5), f(x2 - x1), f(y2 - y1)];
  };
  if (layout === 'yolov8' || layout === 'yolov8t') {
    const rows = 4 + C;
    const out = new Float32Array(rows * A);
    for (let a = 0; a < A; a++) {
      const b = xywh(a);
      for (let r = 0; r < rows; r++) {
        const v = r < 4 ? b[r]! : scores[a * C + (r - 4)]!;
        if (layout === 'yolov8') out[r * A + a] = v;
        else out[a * rows + r] = v;
      }
    }
    return { dims: layout === 'yolov8' ? [1, rows, A] : [1, A, rows], data: out };
  }
  if (layout === 'yolov5') {
    const cols = 5 + C;
    const out = new Float32Array(cols * A);
    for (let a = 0; a < A; a++) {
      const b = xywh(a);
      for (let c = 0; c < cols; c++) out[a * cols + c] = c < 4 ? b[c]! : c === 4 ? 1 : scores[a * C + (c - 5)]!;
    }
    return { dims: [1, A, cols], data: out };
  }
  const p = { ...DEFAULT_NMS, ...nms };
  const rows: number[][] = [];
  for (let c = 0; c < C; c++) {
    const order: number[] = [];
    for (let a = 0; a < A; a++) if (scores[a * C + c]! > f(p.scoreThreshold)) order.push(a);
    order.sort((i, j) => scores[j * C + c]! - scores[i * C + c]! || i - j);
    const kept: number[] = [];
    for (const a of order) {
      if (kept.length >= p.maxPerClass) break;
      if (kept.every((k) => iou(boxes, k, a) <= p.iouThreshold)) kept.push(a);
    }
    for (const a of kept) rows.push([px(a, 1), px(a, 0), px(a, 3), px(a, 2), scores[a * C + c]!, c]);
  }
  return { dims: [1, rows.length, 6], data: Float32Array.from(rows.flat()) };
}

/** IoU of two normalised yxyx boxes (scale does not change IoU). */
function iou(boxes: Float32Array, i: number, j: number): number {
  const [ay1, ax1, ay2, ax2] = [0, 1, 2, 3].map((k) => boxes[i * 4 + k]!);
  const [by1, bx1, by2, bx2] = [0, 1, 2, 3].map((k) => boxes[j * 4 + k]!);
  const areaA = Math.max(0, ay2! - ay1!) * Math.max(0, ax2! - ax1!);
  const areaB = Math.max(0, by2! - by1!) * Math.max(0, bx2! - bx1!);
  const ih = Math.max(0, Math.min(ay2!, by2!) - Math.max(ay1!, by1!));
  const iw = Math.max(0, Math.min(ax2!, bx2!) - Math.max(ax1!, bx1!));
  const inter = ih * iw;
  return inter <= 0 ? 0 : inter / (areaA + areaB - inter);
}

/** The SSD's preprocessing: RGB stretched to 300x300, x * 2 / 255 - 1. */
export async function ssdInput(file: string): Promise<Tensor> {
  const { data } = await sharp(file).removeAlpha().resize(300, 300, { fit: 'fill' }).raw().toBuffer({ resolveWithObject: true });
  const out = new Float32Array(3 * 300 * 300);
  for (let i = 0; i < 300 * 300; i++) for (let c = 0; c < 3; c++) out[c * 300 * 300 + i] = (data[i * 3 + c]! * 2) / 255 - 1;
  return { dtype: 'float32', dims: [1, 3, 300, 300], data: out };
}
