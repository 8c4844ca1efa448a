/**
 * Per-class pixel counts and the IoU computed from them.
 *
 * IoU of class c = |R_c ∩ P_c| / |R_c ∪ P_c|, where R_c are the pixels the reference (FP32, or the mask) gives c and
 * P_c those the prediction gives c. The counts are summed over all pixels of all images before dividing (the
 * "dataset" IoU of mmsegmentation's IoUMetric and torchmetrics' JaccardIndex, not a mean of per-image IoUs), so a
 * small image weighs what its pixels weigh. mIoU is the mean over the classes whose union is not empty: a class
 * absent from both the reference and the prediction says nothing and is left out (mmseg's nanmean); a class present
 * only in the prediction counts with IoU 0.
 *
 * Counts are integers held in float64 (exact to 2^53), so the result never depends on the order of images.
 */

/** A class map's value for "no class": a non-finite value in a thresholded map; such pixels are left out. */
export const NO_CLASS = 0xffff;
/** Largest class index a map can hold (one below NO_CLASS). */
export const MAX_CLASS = NO_CLASS - 1;

export class ClassCounts {
  /** Pixels given class c by both. */
  intersection: Float64Array;
  /** Pixels given class c by the reference, and by the prediction. */
  reference: Float64Array;
  prediction: Float64Array;
  /** Pixels compared, and those with the same class in both. */
  total = 0;
  same = 0;

  constructor(classes = 0) {
    this.intersection = new Float64Array(classes);
    this.reference = new Float64Array(classes);
    this.prediction = new Float64Array(classes);
  }

  get classes(): number {
    return this.reference.length;
  }

  /** Makes room for class indices below `classes` (class maps read from integer outputs or masks can grow). */
  ensure(classes: number): void {
    if (classes <= this.reference.length) return;
    const grow = (a: Float64Array): Float64Array => {
      const b = new Float64Array(classes);
      b.set(a);
      return b;
    };
    this.intersection = grow(this.intersection);
    this.reference = grow(this.reference);
    this.prediction = grow(this.prediction);
  }

  /**
   * Counts a reference map against a prediction map of the same pixels. Pairs where either is NO_CLASS are left
   * out (as thresholdIou in src/compare/metrics.ts leaves out non-finite pairs).
   */
  addMaps(reference: Uint16Array, prediction: Uint16Array, offset = 0, length = reference.length - offset): this {
    const inter = this.intersection;
    const ref = this.reference;
    const pred = this.prediction;
    let total = 0;
    let same = 0;
    const end = offset + length;
    for (let i = offset; i < end; i++) {
      const r = reference[i]!;
      const p = prediction[i]!;
      if (r === NO_CLASS || p === NO_CLASS) continue;
      total++;
      ref[r]!++;
      pred[p]!++;
      if (r === p) {
        inter[r]!++;
        same++;
      }
    }
    this.total += total;
    this.same += same;
    return this;
  }

  /** Adds another accumulator's counts. */
  merge(other: ClassCounts): this {
    this.ensure(other.classes);
    for (let c = 0; c < other.classes; c++) {
      this.intersection[c]! += other.intersection[c]!;
      this.reference[c]! += other.reference[c]!;
      this.prediction[c]! += other.prediction[c]!;
    }
    this.total += other.total;
    this.same += other.same;
    return this;
  }

  reset(): void {
    this.intersection.fill(0);
    this.reference.fill(0);
    this.prediction.fill(0);
    this.total = 0;
    this.same = 0;
  }

  union(c: number): number {
    return this.reference[c]! + this.prediction[c]! - this.intersection[c]!;
  }

  /** IoU of class c; undefined when neither side has a pixel of c. */
  iou(c: number): number | undefined {
    if (c >= this.classes) return undefined;
    const u = this.union(c);
    return u === 0 ? undefined : this.intersection[c]! / u;
  }

  /** Mean IoU over the classes with a non-empty union; undefined when there is none. */
  meanIou(): number | undefined {
    let sum = 0;
    let n = 0;
    for (let c = 0; c < this.classes; c++) {
      const v = this.iou(c);
      if (v === undefined) continue;
      sum += v;
      n++;
    }
    return n === 0 ? undefined : sum / n;
  }

  /** Fraction of compared pixels with the same class; undefined when none were compared. */
  agreement(): number | undefined {
    return this.total === 0 ? undefined : this.same / this.total;
  }
}
