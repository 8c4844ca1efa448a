/**
 * The OCR task for CTC recognisers ([N, T, C] outputs, PP-OCR rec style; [T, N, C] with timeMajor): each image's text by greedy CTC decoding,
 * each variant's text against FP32's and, when labels are given, against the labels.
 *
 * CER = (sum over images of the edit distance) / (sum over images of the reference's length), the corpus-level rate
 * (as jiwer's cer and torchmetrics' CharErrorRate compute it); 0/0 is 0. The verdict is 1 - CER, floored at 0 (CER
 * exceeds 1 when a variant inserts more characters than the reference has). Exact match: the fraction of images
 * whose text equals the reference's. Streaming: only the current batch's FP32 texts and per-variant sums are kept.
 */
import path from 'node:path';
import { UserError } from '../../../errors.js';
import { DEFAULT_WORST_COUNT, floatValues, WorstK } from '../../metrics.js';
import type { BatchOutputs, ImageGeometry, OcrMetrics, TaskEvaluator, TaskMetrics } from '../types.js';
import { ctcGreedyDecode, editDistance, textLength } from './ctc.js';
import { resolveKeys } from './keys.js';

export interface OcrOptions {
  /** [N, T, C] probabilities or logits (the argmax is the same). */
  output: string;
  /** [T, N, C] instead of [N, T, C] (PyTorch CRNN exports, whose CTC loss takes time first). */
  timeMajor?: boolean;
  /** The blank class (default 0, PaddleOCR's). */
  blank?: number;
  /** Class i (i != blank) -> keys[i - 1] when blank is 0 (keys[i] for classes below the blank); see keys.ts. Without keys, a text is its class ids joined by spaces, compared id by id. */
  keys?: readonly string[];
  /** Where the keys came from, for messages. */
  keysFile?: string;
  /** Dataset file (path.resolve'd) -> expected text. */
  labels?: ReadonlyMap<string, string>;
  /** Text pairs kept per variant (default 8). */
  worstCount?: number;
}

type Sample = OcrMetrics['samples'][number] & { index: number; labelDistance?: number };

/** Worse sample first: larger distance to FP32, then larger distance to the label, then file, then image index. */
function worseSample(a: Sample, b: Sample): boolean {
  if (a.distance !== b.distance) return a.distance > b.distance;
  const la = a.labelDistance ?? 0;
  const lb = b.labelDistance ?? 0;
  if (la !== lb) return la > lb;
  if (a.file !== b.file) return a.file < b.file;
  return a.index < b.index;
}

interface Decoded {
  /** What the edit distance compares: the text (with keys) or the class ids (without). */
  units: string | number[];
  text: string;
}

interface VariantState {
  images: number;
  exact: number;
  distance: number;
  referenceLength: number;
  labelled: number;
  exactLabels: number;
  distanceLabels: number;
  labelLength: number;
  samples: WorstK<Sample>;
}

export class OcrEvaluator implements TaskEvaluator {
  readonly kind = 'ocr' as const;
  readonly outputs: readonly string[];
  private readonly blank: number;
  private readonly worstCount: number;
  private table: string[] | undefined;
  private classes: number | undefined;
  private reference: Decoded[] = [];
  private batchImages: readonly ImageGeometry[] = [];
  private batchStart = 0;
  private imagesSeen = 0;
  private unlabelledImages = 0;
  private readonly variants = new Map<string, VariantState>();

  constructor(private readonly options: OcrOptions) {
    this.outputs = [options.output];
    this.blank = options.blank ?? 0;
    this.worstCount = options.worstCount ?? DEFAULT_WORST_COUNT;
    if (typeof options.output !== 'string' || options.output === '') throw new UserError('The OCR task needs the name of the output to read.');
    if (!Number.isInteger(this.blank) || this.blank < 0) throw new UserError(`The CTC blank must be a class index (an integer from 0), got ${this.blank}.`);
    if (!Number.isInteger(this.worstCount) || this.worstCount < 0) throw new UserError(`worstCount must be a non-negative integer, got ${this.worstCount}.`);
    if (options.labels !== undefined && options.keys === undefined) {
      throw new UserError('Text labels need the recogniser\'s character dictionary (--keys FILE) to compare texts.', { hint: 'Pass --keys FILE (one character a line, as PaddleOCR\'s ppocr_keys_v1.txt).' });
    }
  }

  addReference(outputs: BatchOutputs, images: readonly ImageGeometry[]): void {
    this.reference = this.decode('FP32', outputs, images);
    this.batchImages = images;
    this.batchStart = this.imagesSeen;
    this.imagesSeen += images.length;
    if (this.options.labels !== undefined) for (const g of images) if (!this.options.labels.has(path.resolve(g.file))) this.unlabelledImages++;
  }

  addVariant(variant: string, outputs: BatchOutputs, images: readonly ImageGeometry[]): void {
    if (images.length !== this.batchImages.length || images.some((g, i) => g.file !== this.batchImages[i]!.file)) {
      throw new Error(`OcrEvaluator: variant ${variant} was given other images than the reference's batch.`);
    }
    const decoded = this.decode(variant, outputs, images);
    let s = this.variants.get(variant);
    if (s === undefined) {
      s = { images: 0, exact: 0, distance: 0, referenceLength: 0, labelled: 0, exactLabels: 0, distanceLabels: 0, labelLength: 0, samples: new WorstK<Sample>(this.worstCount, worseSample) };
      this.variants.set(variant, s);
    }
    for (let i = 0; i < images.length; i++) {
      const ref = this.reference[i]!;
      const got = decoded[i]!;
      const distance = editDistance(ref.units, got.units);
      s.images++;
      s.distance += distance;
      s.referenceLength += textLength(ref.units);
      if (distance === 0) s.exact++;
      const label = this.options.labels?.get(path.resolve(images[i]!.file));
      let labelDistance: number | undefined;
      if (label !== undefined) {
        labelDistance = editDistance(label, got.text);
        s.labelled++;
        s.distanceLabels += labelDistance;
        s.labelLength += textLength(label);
        if (labelDistance === 0) s.exactLabels++;
      }
      if (distance > 0 || (labelDistance ?? 0) > 0) {
        s.samples.push({
          file: images[i]!.file,
          index: this.batchStart + i,
          reference: ref.text,
          variant: got.text,
          ...(label !== undefined ? { label, labelDistance } : {}),
          distance,
        });
      }
    }
  }

  finish(): Map<string, TaskMetrics> {
    const result = new Map<string, TaskMetrics>();
    for (const [name, s] of this.variants) {
      const cer = s.referenceLength === 0 ? (s.distance === 0 ? 0 : 1) : s.distance / s.referenceLength;
      const ocr: OcrMetrics = {
        exactMatch: s.images === 0 ? 1 : s.exact / s.images,
        cer,
        samples: s.samples.sorted().map(({ index: _index, ...sample }) => sample),
      };
      ocr.images = s.images;
      let valueLabels: number | undefined;
      if (this.options.labels !== undefined) {
        ocr.labelledImages = s.labelled;
        ocr.unlabelledImages = this.unlabelledImages;
        if (s.labelled > 0) {
          ocr.cerLabels = s.labelLength === 0 ? (s.distanceLabels === 0 ? 0 : 1) : s.distanceLabels / s.labelLength;
          ocr.exactMatchLabels = s.exactLabels / s.labelled;
          valueLabels = Math.max(0, 1 - ocr.cerLabels);
        }
      }
      result.set(name, { kind: 'ocr', metric: '1 - CER', value: Math.max(0, 1 - cer), ...(valueLabels !== undefined ? { valueLabels } : {}), ocr });
    }
    return result;
  }

  private decode(who: string, outputs: BatchOutputs, images: readonly ImageGeometry[]): Decoded[] {
    const name = this.options.output;
    const t = outputs[name];
    if (t === undefined) throw new Error(`OcrEvaluator: ${who}'s outputs lack '${name}'.`);
    const dims = t.dims;
    const timeMajor = this.options.timeMajor === true;
    if (dims.length !== 3 || dims[timeMajor ? 1 : 0] !== images.length) {
      const expected = timeMajor ? '[T, N, C] (time steps, batch, classes)' : '[N, T, C] (batch, time steps, classes)';
      throw new UserError(`The OCR output '${name}' of ${who} has dims [${dims.join(', ')}]; expected ${expected} for a batch of ${images.length}.`, {
        hint: 'CTC recognisers (PP-OCR rec, CRNN) output [N, T, C] (or [T, N, C]: time-major); pass the sequence output, or another --task.',
      });
    }
    const steps = dims[timeMajor ? 0 : 1]!;
    const classes = dims[2]!;
    if (this.blank >= classes) throw new UserError(`The CTC blank is class ${this.blank}, but the output '${name}' has ${classes} classes.`);
    if (this.classes === undefined) {
      this.classes = classes;
      if (this.options.keys !== undefined) this.table = resolveKeys(this.options.keys, classes, this.blank, { file: this.options.keysFile, output: name });
    } else if (classes !== this.classes) {
      throw new UserError(`The OCR output '${name}' of ${who} has ${classes} classes, but it had ${this.classes} before.`);
    }
    const values = floatValues(t, `The output '${name}' of ${who}`);
    const out: Decoded[] = [];
    const n = images.length;
    for (let i = 0; i < n; i++) {
      let ids: number[];
      if (timeMajor) {
        // Image i's steps are strided by N rows: gather them into one [T, C] sequence.
        const sequence = new Float32Array(steps * classes);
        for (let step = 0; step < steps; step++) sequence.set(values.subarray((step * n + i) * classes, (step * n + i + 1) * classes), step * classes);
        ids = ctcGreedyDecode(sequence, steps, classes, this.blank);
      } else ids = ctcGreedyDecode(values, steps, classes, this.blank, i * steps * classes);
      if (this.table !== undefined) {
        const text = ids.map((k) => this.table![k]!).join('');
        out.push({ units: text, text });
      } else out.push({ units: ids, text: ids.join(' ') });
    }
    return out;
  }
}

export function createOcrEvaluator(options: OcrOptions): OcrEvaluator {
  return new OcrEvaluator(options);
}
