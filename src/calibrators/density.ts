/**
 * The collected |x| histogram read as a density, for percentile and mse: values exactly 0 (zeroCount) are a
 * point mass at 0; the other values of a bin are uniform over the bin; the bin holding absMax ends at absMax
 * (a point at absMax if absMax is its lower edge). Cumulative count, sum of x and sum of x^2 below any t are
 * then exact closed forms, from prefix sums over the bins.
 */
import type { TensorStatistics } from '../stats/types.js';

export class HistogramDensity {
  /** Values > 0 (count - zeroCount). */
  readonly nonZero: number;
  readonly count: number;
  readonly absMax: number;
  private readonly width: number;
  private readonly top: number;
  private readonly n: Float64Array; // per-bin counts without the exact zeros
  private readonly p0: Float64Array; // prefix of counts
  private readonly p1: Float64Array; // prefix of sum x
  private readonly p2: Float64Array; // prefix of sum x^2

  constructor(stats: TensorStatistics) {
    this.count = stats.count;
    this.absMax = stats.absMax;
    const bins = stats.hist.length;
    this.width = stats.range / bins;
    this.top = stats.absMax > 0 ? Math.floor((stats.absMax * bins) / stats.range) : 0;
    const used = this.top + 1;
    this.n = new Float64Array(used);
    for (let b = 0; b < used; b++) this.n[b] = stats.hist[b]!;
    this.n[0]! -= stats.zeroCount;
    this.p0 = new Float64Array(used + 1);
    this.p1 = new Float64Array(used + 1);
    this.p2 = new Float64Array(used + 1);
    let nonZero = 0;
    for (let b = 0; b < used; b++) {
      const c = this.n[b]!;
      const lo = this.lo(b);
      const hi = this.hi(b);
      const mid = (lo + hi) / 2;
      const w = hi - lo;
      this.p0[b + 1] = this.p0[b]! + c;
      this.p1[b + 1] = this.p1[b]! + c * mid;
      this.p2[b + 1] = this.p2[b]! + c * (mid * mid + (w * w) / 12);
      nonZero += c;
    }
    this.nonZero = nonZero;
  }

  private lo(b: number): number {
    return b * this.width;
  }

  private hi(b: number): number {
    return b === this.top ? this.absMax : (b + 1) * this.width;
  }

  /**
   * [count, sum x, sum x^2] of the non-zero values below t (t >= 0), under the piecewise-uniform model, written
   * to out[0..2] (no allocation: the MSE search calls this thousands of times per tensor).
   */
  moments(t: number, out: Float64Array = new Float64Array(3)): Float64Array {
    if (!(this.absMax > 0) || t <= 0) {
      out[0] = out[1] = out[2] = 0;
      return out;
    }
    if (t >= this.absMax) {
      const u = this.top + 1;
      out[0] = this.p0[u]!;
      out[1] = this.p1[u]!;
      out[2] = this.p2[u]!;
      return out;
    }
    const b = Math.min(this.top, Math.floor(t / this.width)); // exact: width is a power of two
    let m0 = this.p0[b]!;
    let m1 = this.p1[b]!;
    let m2 = this.p2[b]!;
    const c = this.n[b]!;
    const lo = this.lo(b);
    const hi = this.hi(b);
    if (c > 0 && hi > lo && t > lo) {
      const f = (t - lo) / (hi - lo);
      const part = c * f;
      m0 += part;
      m1 += (part * (lo + t)) / 2;
      m2 += (part * (lo * lo + lo * t + t * t)) / 3;
    }
    out[0] = m0;
    out[1] = m1;
    out[2] = m2;
    return out;
  }

  /**
   * The value below which `rank` of the `count` values lie (0 <= rank <= count), interpolating linearly inside
   * a bin; exact zeros first.
   */
  quantile(rank: number, zeroCount: number): number {
    if (rank <= zeroCount || !(this.absMax > 0)) return 0;
    let cum = zeroCount;
    for (let b = 0; b <= this.top; b++) {
      const c = this.n[b]!;
      if (c > 0 && cum + c >= rank) {
        const lo = this.lo(b);
        const hi = this.hi(b);
        const f = (rank - cum) / c;
        return f >= 1 ? hi : lo + f * (hi - lo);
      }
      cum += c;
    }
    return this.absMax;
  }
}
