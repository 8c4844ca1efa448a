/**
 * Output and layer comparison metrics: a variant's tensors (FP16, INT8) against the FP32 reference.
 *
 * Definitions (the usual ones; Polygraphy's comparator and TensorRT's "layerwise SNR" debugging use the same):
 * - cosine similarity  dot(r, x) / (|r| |x|); 1 when both vectors are all zeros (identical), 0 when only one is.
 * - SNR in dB          10 * log10(sum r^2 / sum (r - x)^2); +Infinity when x equals r exactly (no noise),
 *                      -Infinity when r is all zeros but x is not.
 * - mean / max absolute error over elements.
 * - top-1 agreement    fraction of images whose argmax (first index on ties) is the same as the reference's.
 * - top-k accuracy     fraction of labelled images whose label is among the k highest scores
 *                      (ties broken towards the lower class index, so the result never depends on sort stability).
 * - same-side fraction for dense maps (a DB text detector's probability map): fraction of elements on the same
 *                      side of a threshold (>= t versus < t) in the reference and the variant.
 *
 * Each image's sums are float64, element by element; the sums over images are exact (ExactSum), so the results are
 * the same bytes whatever the batch size, the image order or the number of shards (compare --shard). Elements that are NaN or infinite in either tensor are counted (`nonFinite`) and left
 * out of the sums, so that one bad value is reported rather than turning every metric into NaN.
 */
import { UserError } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { ExactSum } from './exact-sum.js';
import type { ImageRecord, LayerMetrics, OutputKind, OutputMetrics } from './types.js';

type Values = ArrayLike<number>;

/** Running sums over pairs (reference, variant) of finite values. */
export class PairSums {
  dot = 0;
  ref2 = 0;
  var2 = 0;
  err2 = 0;
  absErr = 0;
  maxAbsErr = 0;
  count = 0;
  nonFinite = 0;

  /** Adds ref[offset..offset+length) against x[offset..offset+length). */
  add(ref: Values, x: Values, offset = 0, length = ref.length - offset): this {
    let dot = this.dot;
    let ref2 = this.ref2;
    let var2 = this.var2;
    let err2 = this.err2;
    let absErr = this.absErr;
    let maxAbsErr = this.maxAbsErr;
    let count = this.count;
    let nonFinite = this.nonFinite;
    const end = offset + length;
    for (let i = offset; i < end; i++) {
      const r = ref[i]!;
      const v = x[i]!;
      if (!Number.isFinite(r) || !Number.isFinite(v)) {
        nonFinite++;
        continue;
      }
      const d = r - v;
      const a = Math.abs(d);
      dot += r * v;
      ref2 += r * r;
      var2 += v * v;
      err2 += d * d;
      absErr += a;
      if (a > maxAbsErr) maxAbsErr = a;
      count++;
    }
    this.dot = dot;
    this.ref2 = ref2;
    this.var2 = var2;
    this.err2 = err2;
    this.absErr = absErr;
    this.maxAbsErr = maxAbsErr;
    this.count = count;
    this.nonFinite = nonFinite;
    return this;
  }

  /** Adds another accumulator's sums (used to fold per-image partials into totals, in image order). */
  merge(other: PairSums): this {
    this.dot += other.dot;
    this.ref2 += other.ref2;
    this.var2 += other.var2;
    this.err2 += other.err2;
    this.absErr += other.absErr;
    if (other.maxAbsErr > this.maxAbsErr) this.maxAbsErr = other.maxAbsErr;
    this.count += other.count;
    this.nonFinite += other.nonFinite;
    return this;
  }

  get cosine(): number {
    // Identical tensors: exactly 1 (the general formula can round to 0.9999999999999999).
    if (this.err2 === 0) return 1;
    return cosineFromSums(this.dot, this.ref2, this.var2);
  }
  get snrDb(): number {
    return snrFromSums(this.ref2, this.err2);
  }
  get meanAbsErr(): number {
    return this.count === 0 ? 0 : this.absErr / this.count;
  }
}

/** PairSums over images: each image's float sums added exactly (order-independent), counts and the max as they are. */
export class ExactPairSums {
  dot = new ExactSum();
  ref2 = new ExactSum();
  var2 = new ExactSum();
  err2 = new ExactSum();
  absErr = new ExactSum();
  maxAbsErr = 0;
  count = 0;
  nonFinite = 0;

  add(p: PairSums): this {
    this.dot.add(p.dot);
    this.ref2.add(p.ref2);
    this.var2.add(p.var2);
    this.err2.add(p.err2);
    this.absErr.add(p.absErr);
    if (p.maxAbsErr > this.maxAbsErr) this.maxAbsErr = p.maxAbsErr;
    this.count += p.count;
    this.nonFinite += p.nonFinite;
    return this;
  }

  merge(o: ExactPairSums): this {
    this.dot.merge(o.dot);
    this.ref2.merge(o.ref2);
    this.var2.merge(o.var2);
    this.err2.merge(o.err2);
    this.absErr.merge(o.absErr);
    if (o.maxAbsErr > this.maxAbsErr) this.maxAbsErr = o.maxAbsErr;
    this.count += o.count;
    this.nonFinite += o.nonFinite;
    return this;
  }

  /** The totals, rounded once each. */
  rounded(): PairSums {
    const p = new PairSums();
    p.dot = this.dot.value;
    p.ref2 = this.ref2.value;
    p.var2 = this.var2.value;
    p.err2 = this.err2.value;
    p.absErr = this.absErr.value;
    p.maxAbsErr = this.maxAbsErr;
    p.count = this.count;
    p.nonFinite = this.nonFinite;
    return p;
  }

  toState(): ExactPairSumsState {
    return { dot: this.dot.toState(), ref2: this.ref2.toState(), var2: this.var2.toState(), err2: this.err2.toState(), absErr: this.absErr.toState(), maxAbsErr: this.maxAbsErr, count: this.count, nonFinite: this.nonFinite };
  }

  static fromState(s: ExactPairSumsState): ExactPairSums {
    const e = new ExactPairSums();
    e.dot = ExactSum.fromState(s.dot);
    e.ref2 = ExactSum.fromState(s.ref2);
    e.var2 = ExactSum.fromState(s.var2);
    e.err2 = ExactSum.fromState(s.err2);
    e.absErr = ExactSum.fromState(s.absErr);
    e.maxAbsErr = s.maxAbsErr;
    e.count = s.count;
    e.nonFinite = s.nonFinite;
    return e;
  }
}

type ExactSumState = ReturnType<ExactSum['toState']>;
export interface ExactPairSumsState {
  dot: ExactSumState;
  ref2: ExactSumState;
  var2: ExactSumState;
  err2: ExactSumState;
  absErr: ExactSumState;
  maxAbsErr: number;
  count: number;
  nonFinite: number;
}

export function cosineFromSums(dot: number, ref2: number, var2: number): number {
  if (ref2 === 0 && var2 === 0) return 1;
  if (ref2 === 0 || var2 === 0) return 0;
  const c = dot / (Math.sqrt(ref2) * Math.sqrt(var2));
  // Rounding can push |c| a hair over 1; a cosine is never outside [-1, 1].
  return c > 1 ? 1 : c < -1 ? -1 : c;
}

export function snrFromSums(ref2: number, err2: number): number {
  if (err2 === 0) return Number.POSITIVE_INFINITY;
  if (ref2 === 0) return Number.NEGATIVE_INFINITY;
  return 10 * Math.log10(ref2 / err2);
}

function checkLengths(ref: Values, x: Values): void {
  if (ref.length !== x.length) throw new Error(`Cannot compare tensors of ${ref.length} and ${x.length} elements.`);
}

/** Cosine similarity of two vectors (1 for two all-zero vectors, 0 when only one is all zeros). */
export function cosineSimilarity(ref: Values, x: Values): number {
  checkLengths(ref, x);
  return new PairSums().add(ref, x).cosine;
}

/** 10*log10(sum ref^2 / sum (ref-x)^2) in dB; +Infinity when x === ref element for element. */
export function snrDb(ref: Values, x: Values): number {
  checkLengths(ref, x);
  return new PairSums().add(ref, x).snrDb;
}

export function meanAbsError(ref: Values, x: Values): number {
  checkLengths(ref, x);
  return new PairSums().add(ref, x).meanAbsErr;
}

export function maxAbsError(ref: Values, x: Values): number {
  checkLengths(ref, x);
  return new PairSums().add(ref, x).maxAbsErr;
}

/** Index of the largest value in row[offset..offset+length); the first on ties; NaN never wins unless all are NaN. */
export function argmax(row: Values, offset = 0, length = row.length - offset): number {
  let best = -1;
  let bestValue = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < length; i++) {
    const v = row[offset + i]!;
    if (v > bestValue || (best < 0 && !Number.isNaN(v))) {
      best = i;
      bestValue = v;
    }
  }
  return best < 0 ? 0 : best;
}

/**
 * Indices of the k largest values in row[offset..offset+length), largest first; on ties the lower index comes first.
 * NaN ranks below every number.
 */
export function topKIndices(row: Values, k: number, offset = 0, length = row.length - offset): number[] {
  const kk = Math.min(k, length);
  const top: number[] = [];
  const better = (i: number, j: number): boolean => {
    const a = row[offset + i]!;
    const b = row[offset + j]!;
    if (Number.isNaN(b)) return !Number.isNaN(a) || i < j;
    if (Number.isNaN(a)) return false;
    return a > b || (a === b && i < j);
  };
  for (let i = 0; i < length; i++) {
    if (top.length === kk && !better(i, top[kk - 1]!)) continue;
    let pos = top.length === kk ? kk - 1 : top.length;
    top[pos] = i;
    while (pos > 0 && better(top[pos]!, top[pos - 1]!)) {
      const t = top[pos - 1]!;
      top[pos - 1] = top[pos]!;
      top[pos] = t;
      pos--;
    }
  }
  return top;
}

/** Top-1 agreement of two [N, classes] score matrices stored row-major. */
export function top1Agreement(ref: Values, x: Values, classes: number): { agree: number; total: number; fraction: number } {
  checkLengths(ref, x);
  if (!Number.isInteger(classes) || classes < 1 || ref.length % classes !== 0) {
    throw new Error(`${ref.length} scores are not a whole number of rows of ${classes} classes.`);
  }
  const total = ref.length / classes;
  let agree = 0;
  for (let n = 0; n < total; n++) if (argmax(ref, n * classes, classes) === argmax(x, n * classes, classes)) agree++;
  return { agree, total, fraction: total === 0 ? 0 : agree / total };
}

/** Top-k accuracy of [N, classes] scores against labels (undefined = unlabelled, not counted). */
export function topKAccuracy(
  scores: Values,
  classes: number,
  labels: readonly (number | undefined)[],
  k: number,
): { correct: number; labelled: number; accuracy: number } {
  const n = scores.length / classes;
  if (labels.length !== n) throw new Error(`${labels.length} labels for ${n} rows of scores.`);
  let correct = 0;
  let labelled = 0;
  for (let i = 0; i < n; i++) {
    const label = labels[i];
    if (label === undefined) continue;
    labelled++;
    if (topKIndices(scores, k, i * classes, classes).includes(label)) correct++;
  }
  return { correct, labelled, accuracy: labelled === 0 ? 0 : correct / labelled };
}

/** Fraction of finite element pairs on the same side of `threshold` (v >= threshold counts as above). */
export function sameSideFraction(ref: Values, x: Values, threshold: number): number {
  checkLengths(ref, x);
  const { same, total } = countSameSide(ref, x, threshold, 0, ref.length);
  return total === 0 ? 1 : same / total;
}

/**
 * Counts over finite element pairs: on the same side of `threshold`; above it in both (intersection); above it in
 * either (union). Intersection over union of the thresholded maps is what a detector's user looks at: the
 * same-side fraction is dominated by background pixels (99.8% can hide tens of thousands of flipped text pixels).
 */
function countSameSide(ref: Values, x: Values, threshold: number, offset: number, length: number): { same: number; total: number; both: number; either: number } {
  let same = 0;
  let total = 0;
  let both = 0;
  let either = 0;
  for (let i = offset; i < offset + length; i++) {
    const r = ref[i]!;
    const v = x[i]!;
    if (!Number.isFinite(r) || !Number.isFinite(v)) continue;
    total++;
    const ra = r >= threshold;
    const va = v >= threshold;
    if (ra === va) same++;
    if (ra && va) both++;
    if (ra || va) either++;
  }
  return { same, total, both, either };
}

/**
 * A dense map's agreement with FP32, the one used for the winner, the --max-drop gate and the mixed-precision
 * budget: the IoU of the thresholded maps, 1 when neither map reaches the threshold anywhere (both empty agree).
 */
export function denseAgreement(o: { iou?: number }): number {
  return o.iou ?? 1;
}

/** IoU of the maps thresholded at `threshold` (v >= threshold); undefined when neither has an element above it. */
export function thresholdIou(ref: Values, x: Values, threshold: number): number | undefined {
  checkLengths(ref, x);
  const { both, either } = countSameSide(ref, x, threshold, 0, ref.length);
  return either === 0 ? undefined : both / either;
}

// ---------------------------------------------------------------------------------------------------------------
// Tensor helpers

const F16_EXP = new Float64Array(32).map((_, e) => 2 ** (e - 15));

/** IEEE 754 binary16 bits to a number. */
export function float16ToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + frac / 1024) * F16_EXP[exp]!;
}

/** The values of a floating-point tensor as numbers (float16 bit patterns decoded). */
export function floatValues(t: Tensor, what: string): Float32Array | Float64Array {
  switch (t.dtype) {
    case 'float32':
      return t.data as Float32Array;
    case 'float64':
      return t.data as Float64Array;
    case 'float16': {
      const bits = t.data as Uint16Array;
      const out = new Float32Array(bits.length);
      for (let i = 0; i < bits.length; i++) out[i] = float16ToNumber(bits[i]!);
      return out;
    }
    default:
      throw new Error(`${what} is a ${t.dtype} tensor; only float32, float16 and float64 tensors can be compared.`);
  }
}

/**
 * What an output is, from its dims (batch first): [N, C] with C > 1 is a classifier (top-1 agreement,
 * accuracy); rank 3 and more is a dense map (same-side fraction); anything else ([N], [N, 1]) is compared
 * numerically only.
 */
export function outputKind(dims: readonly number[]): OutputKind {
  if (dims.length === 2 && dims[1]! > 1) return 'classifier';
  if (dims.length >= 3) return 'dense';
  return 'other';
}

/** `values` of shape `from` placed at the origin of a zero tensor of shape `to` (every to[i] >= from[i]). */
function zeroPadded(values: ArrayLike<number>, from: readonly number[], to: readonly number[]): Tensor {
  const out = new Float64Array(to.reduce((a, b) => a * b, 1));
  const rank = from.length;
  const index = new Array<number>(rank).fill(0);
  for (let k = 0; k < values.length; k++) {
    let at = 0;
    for (let i = 0; i < rank; i++) at = at * to[i]! + index[i]!;
    out[at] = values[k]!;
    for (let i = rank - 1; i >= 0 && ++index[i]! === from[i]!; i--) index[i] = 0;
  }
  return { dtype: 'float64', dims: [...to], data: out };
}

function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

// ---------------------------------------------------------------------------------------------------------------
// Bounded worst-K selection

/**
 * Keeps the K worst items seen, in O(log K) per item: a binary heap whose root is the least bad of those kept,
 * so a new item replaces the root when it is worse. `worse(a, b)` must be a strict total order (break ties by
 * image index) so that the selection never depends on the order of insertion.
 */
export class WorstK<T> {
  private readonly heap: T[] = [];
  constructor(
    readonly capacity: number,
    private readonly worse: (a: T, b: T) => boolean,
  ) {}

  push(item: T): void {
    if (this.capacity <= 0) return;
    const h = this.heap;
    if (h.length < this.capacity) {
      h.push(item);
      this.siftUp(h.length - 1);
    } else if (this.worse(item, h[0]!)) {
      h[0] = item;
      this.siftDown(0);
    }
  }

  /** The kept items, worst first. */
  sorted(): T[] {
    return this.heap.slice().sort((a, b) => (this.worse(a, b) ? -1 : this.worse(b, a) ? 1 : 0));
  }

  get size(): number {
    return this.heap.length;
  }

  // The root is the least bad: parent is "less bad" than (not worse than) its children.
  private siftUp(i: number): void {
    const h = this.heap;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.worse(h[p]!, h[i]!)) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
  }

  private siftDown(i: number): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.worse(h[m]!, h[l]!)) m = l;
      if (r < h.length && this.worse(h[m]!, h[r]!)) m = r;
      if (m === i) return;
      [h[m], h[i]] = [h[i]!, h[m]!];
      i = m;
    }
  }
}

/** An OutputComparison as plain data (OutputComparison.toState). */
export interface OutputComparisonState {
  name: string;
  kind?: OutputKind;
  imageDims?: number[];
  images: number;
  totals: ExactPairSumsState;
  cosineSum: ExactSumState;
  cosineMin: number;
  /** agree, sameSide, sameSideTotal, aboveBoth, aboveEither, labelled, refTop1, varTop1, refTopK, varTopK. */
  counts: number[];
  worst: ImageRecord[];
}

/** Worse image first: lower cosine, then higher mean absolute error, then earlier image (a strict total order). */
export function worseImage(a: ImageRecord, b: ImageRecord): boolean {
  if (a.cosine !== b.cosine) return a.cosine < b.cosine;
  if (a.meanAbsErr !== b.meanAbsErr) return a.meanAbsErr > b.meanAbsErr;
  return a.index < b.index;
}

// ---------------------------------------------------------------------------------------------------------------
// Accumulators

export interface OutputComparisonOptions {
  /** Override the kind detected from the dims (see outputKind). */
  kind?: OutputKind;
  /** Dense maps: the threshold of the same-side fraction (default 0.3, PP-OCR's DB binarisation threshold). */
  threshold?: number;
  /** How many worst images to keep (default 8). */
  worstCount?: number;
  /** The k of top-k accuracy (default 5). Only reported when the output has more than k classes. */
  topK?: number;
}

export const DEFAULT_DENSE_THRESHOLD = 0.3;
export const DEFAULT_WORST_COUNT = 8;

/**
 * Compares one model output of a variant against the FP32 reference, batch after batch.
 * Memory is constant in the number of images, except the bounded list of worst images.
 */
export class OutputComparison {
  readonly threshold: number;
  readonly worstCount: number;
  readonly topK: number;
  private kind: OutputKind | undefined;
  private imageDims: number[] | undefined;
  private images = 0;
  private totals = new ExactPairSums();
  private cosineSum = new ExactSum();
  private cosineMin = Number.POSITIVE_INFINITY;
  private agree = 0;
  private sameSide = 0;
  private sameSideTotal = 0;
  private aboveBoth = 0;
  private aboveEither = 0;
  private labelled = 0;
  private refTop1 = 0;
  private varTop1 = 0;
  private refTopK = 0;
  private varTopK = 0;
  private readonly worst: WorstK<ImageRecord>;

  constructor(
    readonly name: string,
    options: OutputComparisonOptions = {},
  ) {
    this.kind = options.kind;
    this.threshold = options.threshold ?? DEFAULT_DENSE_THRESHOLD;
    this.worstCount = options.worstCount ?? DEFAULT_WORST_COUNT;
    this.topK = options.topK ?? 5;
    if (!Number.isFinite(this.threshold)) throw new Error(`threshold must be a finite number, got ${this.threshold}`);
    if (!Number.isInteger(this.worstCount) || this.worstCount < 0) throw new Error(`worstCount must be a non-negative integer, got ${this.worstCount}`);
    if (!Number.isInteger(this.topK) || this.topK < 1) throw new Error(`topK must be a positive integer, got ${this.topK}`);
    this.worst = new WorstK<ImageRecord>(this.worstCount, worseImage);
  }

  get imageCount(): number {
    return this.images;
  }

  /**
   * Adds one batch. `reference` and `variant` have the same dims, batch first; `files[i]` made image i;
   * `labels[i]` is its class index (undefined when unlabelled).
   */
  add(reference: Tensor, variant: Tensor, files: readonly string[], labels?: readonly (number | undefined)[]): void {
    const what = `output ${JSON.stringify(this.name)}`;
    if (!sameDims(reference.dims, variant.dims)) {
      // A data-dependent shape (NMS in the graph: as many rows as detections survive) differs between runs of one
      // image: both are compared zero-padded to the larger, the form fixed-size NMS outputs (EfficientNMS) have.
      const r = reference.dims;
      const v = variant.dims;
      if (r.length !== v.length || r[0] !== v[0] || outputKind(r) === 'classifier') {
        throw new Error(`The variant's ${what} has dims [${v.join(', ')}] but the reference's has [${r.join(', ')}].`);
      }
      const dims = r.map((d, i) => Math.max(d, v[i]!));
      reference = zeroPadded(floatValues(reference, `The reference's ${what}`), r, dims);
      variant = zeroPadded(floatValues(variant, `The variant's ${what}`), v, dims);
    }
    const dims = reference.dims;
    const n = files.length;
    if (dims.length === 0 || dims[0] !== n) {
      throw new Error(`The ${what} has dims [${dims.join(', ')}]; expected the batch of ${n} images first.`);
    }
    if (labels !== undefined && labels.length !== n) throw new Error(`${labels.length} labels for a batch of ${n} images.`);
    const ref = floatValues(reference, `The reference's ${what}`);
    const x = floatValues(variant, `The variant's ${what}`);
    const per = n === 0 ? 0 : ref.length / n;
    const imageDims = dims.slice(1);
    this.kind ??= outputKind(dims);
    if (this.imageDims === undefined) this.imageDims = imageDims;
    else if (!sameDims(this.imageDims, imageDims)) {
      if (this.kind === 'classifier') {
        throw new Error(`The ${what} changed from [${this.imageDims.join(', ')}] to [${imageDims.join(', ')}] per image between batches.`);
      }
      // Dense maps of images of different sizes: keep the axes that agree, mark the others -1.
      this.imageDims = this.imageDims.map((d, i) => (d === imageDims[i] ? d : -1));
    }
    const classes = this.kind === 'classifier' ? per : 0;

    for (let i = 0; i < n; i++) {
      const offset = i * per;
      const sums = new PairSums().add(ref, x, offset, per);
      const record: ImageRecord = {
        file: files[i]!,
        index: this.images,
        cosine: sums.cosine,
        snrDb: sums.snrDb,
        meanAbsErr: sums.meanAbsErr,
        maxAbsErr: sums.maxAbsErr,
      };
      if (this.kind === 'classifier') {
        const r1 = argmax(ref, offset, classes);
        const v1 = argmax(x, offset, classes);
        record.referenceTop1 = r1;
        record.variantTop1 = v1;
        if (r1 === v1) this.agree++;
        const label = labels?.[i];
        if (label !== undefined) {
          if (!Number.isInteger(label) || label < 0 || label >= classes) {
            throw new UserError(
              `The label of ${files[i]} is class ${label}, but the ${what} has ${classes} classes (0 to ${classes - 1}).`,
              { hint: 'Check the labels and the class list against the model.' },
            );
          }
          record.label = label;
          this.labelled++;
          if (r1 === label) this.refTop1++;
          if (v1 === label) this.varTop1++;
          if (classes > this.topK) {
            if (topKIndices(ref, this.topK, offset, classes).includes(label)) this.refTopK++;
            if (topKIndices(x, this.topK, offset, classes).includes(label)) this.varTopK++;
          }
        }
      } else if (this.kind === 'dense') {
        const { same, total, both, either } = countSameSide(ref, x, this.threshold, offset, per);
        record.sameSideFraction = total === 0 ? 1 : same / total;
        if (either > 0) record.iou = both / either;
        this.sameSide += same;
        this.sameSideTotal += total;
        this.aboveBoth += both;
        this.aboveEither += either;
      }
      this.totals.add(sums);
      this.cosineSum.add(record.cosine);
      if (record.cosine < this.cosineMin) this.cosineMin = record.cosine;
      this.worst.push(record);
      this.images++;
    }
  }

  /** Everything accumulated, as plain data (a compare shard's file); image indices are this pass's. */
  toState(): OutputComparisonState {
    return {
      name: this.name,
      ...(this.kind !== undefined ? { kind: this.kind } : {}),
      ...(this.imageDims !== undefined ? { imageDims: [...this.imageDims] } : {}),
      images: this.images,
      totals: this.totals.toState(),
      cosineSum: this.cosineSum.toState(),
      cosineMin: this.cosineMin,
      counts: [this.agree, this.sameSide, this.sameSideTotal, this.aboveBoth, this.aboveEither, this.labelled, this.refTop1, this.varTop1, this.refTopK, this.varTopK],
      worst: this.worst.sorted(),
    };
  }

  /**
   * Adds a shard's state, as if its images had come next: the shards must be added in image order (their worst
   * images are re-indexed after the images already added).
   */
  addState(s: OutputComparisonState): void {
    if (s.name !== this.name) throw new Error(`output state ${s.name} added to ${this.name}`);
    if (s.kind !== undefined) {
      if (this.kind !== undefined && this.kind !== s.kind) throw new Error(`output ${JSON.stringify(this.name)} is a ${this.kind} output in one shard and a ${s.kind} output in another`);
      this.kind ??= s.kind;
    }
    if (s.imageDims !== undefined) {
      if (this.imageDims === undefined) this.imageDims = [...s.imageDims];
      else if (!sameDims(this.imageDims, s.imageDims)) {
        if (this.kind === 'classifier') throw new Error(`The output ${JSON.stringify(this.name)} changed from [${this.imageDims.join(', ')}] to [${s.imageDims.join(', ')}] per image between shards.`);
        this.imageDims = this.imageDims.map((d, i) => (d === s.imageDims![i] ? d : -1));
      }
    }
    const offset = this.images;
    this.totals.merge(ExactPairSums.fromState(s.totals));
    this.cosineSum.merge(ExactSum.fromState(s.cosineSum));
    if (s.cosineMin < this.cosineMin) this.cosineMin = s.cosineMin;
    const c = s.counts;
    this.agree += c[0]!;
    this.sameSide += c[1]!;
    this.sameSideTotal += c[2]!;
    this.aboveBoth += c[3]!;
    this.aboveEither += c[4]!;
    this.labelled += c[5]!;
    this.refTop1 += c[6]!;
    this.varTop1 += c[7]!;
    this.refTopK += c[8]!;
    this.varTopK += c[9]!;
    for (const r of s.worst) this.worst.push({ ...r, index: r.index + offset });
    this.images += s.images;
  }

  /** The metrics so far, and the worst images (worst first). */
  result(): { metrics: OutputMetrics; worst: ImageRecord[] } {
    const kind = this.kind ?? 'other';
    const t = this.totals.rounded();
    const metrics: OutputMetrics = {
      name: this.name,
      kind,
      dims: this.imageDims ?? [],
      images: this.images,
      elements: t.count,
      nonFinite: t.nonFinite,
      cosineMean: this.images === 0 ? 0 : this.cosineSum.value / this.images,
      cosineMin: this.images === 0 ? 0 : this.cosineMin,
      cosine: t.cosine,
      snrDb: t.snrDb,
      meanAbsErr: t.meanAbsErr,
      maxAbsErr: t.maxAbsErr,
    };
    if (kind === 'classifier') {
      metrics.agreement = this.images === 0 ? 0 : this.agree / this.images;
      metrics.agreeCount = this.agree;
      if (this.labelled > 0) {
        const classes = this.imageDims?.[0] ?? 0;
        metrics.accuracy = {
          labelled: this.labelled,
          top1: this.varTop1 / this.labelled,
          referenceTop1: this.refTop1 / this.labelled,
          top1Correct: this.varTop1,
          referenceTop1Correct: this.refTop1,
          ...(classes > this.topK
            ? {
                k: this.topK,
                topK: this.varTopK / this.labelled,
                referenceTopK: this.refTopK / this.labelled,
                topKCorrect: this.varTopK,
                referenceTopKCorrect: this.refTopK,
              }
            : {}),
        };
      }
    } else if (kind === 'dense') {
      metrics.threshold = this.threshold;
      metrics.sameSideFraction = this.sameSideTotal === 0 ? 1 : this.sameSide / this.sameSideTotal;
      if (this.aboveEither > 0) metrics.iou = this.aboveBoth / this.aboveEither;
      metrics.aboveUnion = this.aboveEither;
    }
    return { metrics, worst: this.worst.sorted() };
  }
}

/**
 * Layerwise error: the SNR (and cosine, errors) of every quantized tensor of a variant against the same tensor
 * in FP32, accumulated over all images. Only running sums are kept per tensor.
 */
export class LayerComparison {
  private readonly sums = new Map<string, ExactPairSums>();

  /**
   * Adds one batch of one tensor (batch first): each image's sums, added exactly, so that the totals do not depend
   * on the batch size, the order of the images or how they were split into shards.
   */
  add(name: string, reference: Tensor, variant: Tensor): void {
    if (!sameDims(reference.dims, variant.dims)) {
      throw new Error(`Tensor ${JSON.stringify(name)}: the variant has dims [${variant.dims.join(', ')}], the reference [${reference.dims.join(', ')}].`);
    }
    const ref = floatValues(reference, `The reference's tensor ${JSON.stringify(name)}`);
    const x = floatValues(variant, `The variant's tensor ${JSON.stringify(name)}`);
    let s = this.sums.get(name);
    if (s === undefined) {
      s = new ExactPairSums();
      this.sums.set(name, s);
    }
    const n = reference.dims.length > 0 ? reference.dims[0]! : 1;
    const per = n > 0 && ref.length % n === 0 ? ref.length / n : ref.length;
    for (let offset = 0; offset < ref.length; offset += per) s.add(new PairSums().add(ref, x, offset, per));
    if (ref.length === 0) s.add(new PairSums());
  }

  get size(): number {
    return this.sums.size;
  }

  toState(): Array<[string, ExactPairSumsState]> {
    return [...this.sums].map(([name, s]) => [name, s.toState()]);
  }

  addState(state: ReadonlyArray<readonly [string, ExactPairSumsState]>): void {
    for (const [name, st] of state) {
      const s = this.sums.get(name);
      if (s === undefined) this.sums.set(name, ExactPairSums.fromState(st));
      else s.merge(ExactPairSums.fromState(st));
    }
  }

  /** One row per tensor, sorted by SNR ascending (worst first), ties by name. */
  result(): LayerMetrics[] {
    const rows: LayerMetrics[] = [...this.sums].map(([name, exact]) => [name, exact.rounded()] as const).map(([name, s]) => ({
      name,
      snrDb: s.snrDb,
      cosine: s.cosine,
      meanAbsErr: s.meanAbsErr,
      maxAbsErr: s.maxAbsErr,
      elements: s.count,
      nonFinite: s.nonFinite,
    }));
    return rows.sort((a, b) => (a.snrDb !== b.snrDb ? (a.snrDb < b.snrDb ? -1 : 1) : a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}
