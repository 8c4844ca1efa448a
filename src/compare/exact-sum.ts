/**
 * Exact, order-independent summation of float64 values (Shewchuk's adaptive partials, "Adaptive Precision
 * Floating-Point Arithmetic and Fast Robust Geometric Predicates", 1997; the algorithm of Python's math.fsum):
 * the sum is kept as non-overlapping partials whose exact total is the exact sum of every value added, and `value`
 * rounds that total once. So a sum over images gives the same bits whatever the order the images were added in,
 * and sums of shards added together (`merge`) give the bits of one run over all the images (compare --shard).
 * Non-finite values (an overflowed per-image sum) are added apart, as plain float addition would.
 */
export class ExactSum {
  private partials: number[] = [];
  private special = 0;

  add(x: number): this {
    if (!Number.isFinite(x)) {
      this.special += x;
      return this;
    }
    const p = this.partials;
    let i = 0;
    for (let j = 0; j < p.length; j++) {
      let y = p[j]!;
      if (Math.abs(x) < Math.abs(y)) [x, y] = [y, x];
      const hi = x + y;
      const lo = y - (hi - x);
      if (lo !== 0) p[i++] = lo;
      x = hi;
    }
    p.length = i;
    p.push(x);
    return this;
  }

  merge(other: ExactSum): this {
    for (const x of other.partials) this.add(x);
    if (other.special !== 0) this.special += other.special;
    return this;
  }

  /** The exact sum rounded to the nearest float64 (ties to even), as math.fsum. */
  get value(): number {
    if (this.special !== 0 || Number.isNaN(this.special)) return this.special;
    const p = this.partials;
    let n = p.length;
    if (n === 0) return 0;
    let hi = p[--n]!;
    let lo = 0;
    while (n > 0) {
      const x = hi;
      const y = p[--n]!;
      hi = x + y;
      const yr = hi - x;
      lo = y - yr;
      if (lo !== 0) break;
    }
    // Half-way cases: the rest of the partials decide which way to round.
    if (n > 0 && ((lo < 0 && p[n - 1]! < 0) || (lo > 0 && p[n - 1]! > 0))) {
      const y = lo * 2;
      const x = hi + y;
      if (y === x - hi) hi = x;
    }
    return hi;
  }

  /** Plain data for a shard file: the partials and the non-finite part. */
  toState(): { partials: number[]; special: number } {
    return { partials: [...this.partials], special: this.special };
  }

  static fromState(state: { partials: readonly number[]; special: number }): ExactSum {
    const s = new ExactSum();
    for (const x of state.partials) {
      if (typeof x !== 'number' || !Number.isFinite(x)) throw new Error('an exact sum holds a non-finite partial');
      s.add(x);
    }
    s.special = state.special;
    return s;
  }
}
