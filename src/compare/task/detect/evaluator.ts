/**
 * The detection task of a comparison pass: decodes every batch of FP32 and of each variant into detections (kept,
 * whole tensors never are), then scores each variant in finish():
 * - against FP32: FP32's detections scoring at least gtScore are the ground truth; the variant's detections (all
 *   those above the score floor) are the predictions; mAP@[.5:.95], mAP@.5, per-class AP and PR curves as COCOeval
 *   computes them (coco-eval.ts). FP32 scored against itself is exactly 1 (its ground truth is its own top
 *   detections, each matched by itself at IoU 1, ranked before its lower-scored ones), unless an image has more
 *   than 100 ground-truth boxes of one class (COCO's cap); the value is -1 (COCOeval's) when FP32 detects nothing
 *   at or above gtScore on any image;
 * - against labels, when given: the same on the images that have a labels entry (mapLabels, map50Labels);
 * - box by box (match.ts), both sides cut at gtScore: FP32 detections lost, detections gained, boxes moved, the mean
 *   score change, and the worst images (most lost + moved, then gained; ties: dataset order).
 */
import path from 'node:path';
import type { BatchOutputs, DetectionBox, DetectionImageRecord, ImageGeometry, TaskEvaluator, TaskMetrics } from '../types.js';
import { evaluateCoco } from './coco-eval.js';
import { decodeDetections, specOutputs } from './decode.js';
import { matchDetections } from './match.js';
import { DETECTION_DEFAULTS, type DetectionOptions, type GroundTruthBox } from './types.js';

export interface DetectionEvaluator extends TaskEvaluator {
  /** Every image's detections of a variant (original pixels, score floor applied), when keepDetections was set. */
  detections(variant: string): DetectionBox[][] | undefined;
  /** The images, in pass order (as the dataset names them). */
  files(): string[];
}

const asGroundTruth = (d: DetectionBox): GroundTruthBox => ({ x1: d.x1, y1: d.y1, x2: d.x2, y2: d.y2, classId: d.classId });

/**
 * One image's detections kept between the pass and finish() as 6 float64 per box (x1, y1, x2, y2, score, class):
 * a third of the memory of objects, for hundreds of boxes per image and variant. Exact: nothing is rounded.
 */
type PackedImage = Float64Array;
function pack(boxes: readonly DetectionBox[]): PackedImage {
  const out = new Float64Array(boxes.length * 6);
  let k = 0;
  for (const b of boxes) {
    out[k++] = b.x1;
    out[k++] = b.y1;
    out[k++] = b.x2;
    out[k++] = b.y2;
    out[k++] = b.score;
    out[k++] = b.classId;
  }
  return out;
}
function unpack(p: PackedImage): DetectionBox[] {
  const out: DetectionBox[] = new Array(p.length / 6);
  for (let i = 0, k = 0; k < p.length; i++, k += 6) out[i] = { x1: p[k]!, y1: p[k + 1]!, x2: p[k + 2]!, y2: p[k + 3]!, score: p[k + 4]!, classId: p[k + 5]! };
  return out;
}

export function createDetectionEvaluator(options: DetectionOptions): DetectionEvaluator {
  const gtScore = options.gtScore ?? DETECTION_DEFAULTS.gtScore;
  const worstCount = options.worstCount ?? DETECTION_DEFAULTS.worstCount;
  const files: string[] = [];
  const reference: PackedImage[] = [];
  const variants = new Map<string, PackedImage[]>();
  let finished = false;
  // FP32's own row gets the very outputs of addReference: decoded once.
  let lastReference: { outputs: BatchOutputs; detections: PackedImage[] } | undefined;

  return {
    kind: 'detect',
    outputs: specOutputs(options.spec),
    addReference(outputs: BatchOutputs, images: readonly ImageGeometry[]): void {
      if (finished) throw new Error('detection evaluator: addReference after finish()');
      const detections = decodeDetections(outputs, images, options).map(pack);
      lastReference = { outputs, detections };
      reference.push(...detections);
      files.push(...images.map((g) => g.file));
    },
    addVariant(variant: string, outputs: BatchOutputs, images: readonly ImageGeometry[]): void {
      if (finished) throw new Error('detection evaluator: addVariant after finish()');
      let list = variants.get(variant);
      if (!list) variants.set(variant, (list = []));
      images.forEach((g, i) => {
        if (files[list!.length + i] !== g.file) throw new Error(`detection evaluator: variant ${variant} got ${g.file} where FP32 had ${files[list!.length + i] ?? 'no image'}`);
      });
      const same = lastReference?.outputs === outputs && lastReference.detections.length === images.length;
      list.push(...(same ? lastReference!.detections : decodeDetections(outputs, images, options).map(pack)));
    },
    toState(): unknown {
      const bytes = (p: PackedImage) => new Uint8Array(p.buffer.slice(p.byteOffset, p.byteOffset + p.byteLength));
      return { files: [...files], reference: reference.map(bytes), variants: [...variants].map(([name, list]) => [name, list.map(bytes)]) };
    },
    addState(state: unknown): void {
      if (finished) throw new Error('detection evaluator: addState after finish()');
      const s = state as { files: string[]; reference: Uint8Array[]; variants: Array<[string, Uint8Array[]]> };
      const packed = (b: Uint8Array): PackedImage => {
        if (b.byteLength % 48 !== 0) throw new Error('detection evaluator: a shard\'s detections are not whole boxes');
        const out = new Float64Array(b.byteLength / 8);
        new Uint8Array(out.buffer).set(b);
        return out;
      };
      const before = files.length;
      if (s.reference.length !== s.files.length) throw new Error('detection evaluator: a shard has detections for another number of images');
      files.push(...s.files);
      reference.push(...s.reference.map(packed));
      for (const [name, list] of s.variants) {
        let mine = variants.get(name);
        if (!mine) variants.set(name, (mine = []));
        if (mine.length !== before || list.length !== s.files.length) throw new Error(`detection evaluator: shard detections of ${name} do not line up with FP32's`);
        mine.push(...list.map(packed));
      }
    },
    finish(): Map<string, TaskMetrics> {
      finished = true;
      lastReference = undefined;
      const referenceKept = reference.map((p) => unpack(p).filter((d) => d.score >= gtScore));
      const groundTruth = referenceKept.map((dets) => dets.map(asGroundTruth));
      const labelled: number[] = [];
      const labelBoxes: GroundTruthBox[][] = [];
      if (options.labels) {
        files.forEach((f, i) => {
          const boxes = options.labels!.get(path.resolve(f));
          if (boxes) {
            labelled.push(i);
            labelBoxes.push(boxes);
          }
        });
      }
      const results = new Map<string, TaskMetrics>();
      for (const [variant, packed] of variants) {
        // One variant's boxes as objects at a time.
        const dets = packed.map(unpack);
        if (dets.length !== reference.length) throw new Error(`detection evaluator: variant ${variant} has ${dets.length} images, FP32 ${reference.length}`);
        const vsFp32 = evaluateCoco(groundTruth, dets, { classNames: options.classNames });
        const vsLabels = options.labels ? evaluateCoco(labelBoxes, labelled.map((i) => dets[i]!), { classNames: options.classNames }) : undefined;

        let lost = 0;
        let gained = 0;
        let moved = 0;
        let changeSum = 0;
        let changes = 0;
        let kept = 0;
        const records: DetectionImageRecord[] = [];
        dets.forEach((imageDets, i) => {
          const variantKept = imageDets.filter((d) => d.score >= gtScore);
          kept += variantKept.length;
          const m = matchDetections(referenceKept[i]!, variantKept);
          lost += m.lost;
          gained += m.gained;
          moved += m.moved;
          for (const c of m.scoreChanges) changeSum += c;
          changes += m.scoreChanges.length;
          if (m.lost + m.gained + m.moved > 0) {
            records.push({ file: files[i]!, index: i, lost: m.lost, gained: m.gained, moved: m.moved, reference: referenceKept[i]!, variant: variantKept });
          }
        });
        records.sort((a, b) => b.lost + b.moved - (a.lost + a.moved) || b.gained - a.gained || a.index - b.index);

        const metrics: TaskMetrics = {
          kind: 'detect',
          metric: 'mAP@[.5:.95]',
          value: vsFp32.map,
          map: vsFp32.map,
          map50: vsFp32.map50,
          detection: {
            map: vsFp32.map,
            map50: vsFp32.map50,
            perClass: vsFp32.perClass,
            prCurves: vsFp32.prCurves,
            lost,
            gained,
            moved,
            meanScoreChange: changes > 0 ? changeSum / changes : 0,
            referenceDetections: groundTruth.reduce((s, g) => s + g.length, 0),
            detections: kept,
            worst: records.slice(0, worstCount),
          },
        };
        if (vsLabels) {
          Object.assign(metrics, { valueLabels: vsLabels.map, mapLabels: vsLabels.map, map50Labels: vsLabels.map50 });
          Object.assign(metrics.detection!, { mapLabels: vsLabels.map, map50Labels: vsLabels.map50, perClassLabels: vsLabels.perClass });
        }
        results.set(variant, metrics);
      }
      if (!options.keepDetections) {
        variants.forEach((_, k) => variants.set(k, []));
        reference.length = 0;
      }
      return results;
    },
    detections(variant: string): DetectionBox[][] | undefined {
      if (!options.keepDetections) return undefined;
      const list = variants.get(variant) ?? (variant === 'fp32' ? reference : undefined);
      return list?.map(unpack);
    },
    files(): string[] {
      return [...files];
    },
  };
}
