/**
 * The KL-divergence threshold search shared by `entropy2` and `entropy` (method: S. Migacz, "8-bit Inference with
 * TensorRT", GTC 2017; the two calibrators differ in the details fixed by a KlScanSpec, see their files).
 *
 * For every candidate i (number of bins kept, startBin..n) over a histogram h of n bins:
 *   P = h[0..i) with the mass beyond, sum(h[i..n)), added to P[i-1] (outliers folded into the last bin);
 *   Q = h[0..i) (NOT folded) merged into `levels` levels and expanded back: each level's mass is spread uniformly
 *       over its non-empty bins, empty bins stay 0 (which bins count as empty: see `emptyBins`);
 *   divergence = KL(P/|P| || Q/|Q|) = sum over P>0 of p log(p/q). Where q = 0 and p > 0 (the folded last bin when
 *       its level holds no unfolded mass) the spec decides (`emptyQ`): +Infinity, the candidate is never chosen
 *       (scipy.stats.entropy, pytorch-quantization), or Q is given `emptyQ` counts there (MXNet/TVM's
 *       _smooth_distribution uses eps = 1e-4 counts), a finite cost of about p log(p |Q| / eps).
 *       If Q is empty altogether (|Q| = 0) the divergence is +Infinity.
 *
 * Two implementations:
 *   klScanReference: the definition above, literally, O(n^2) (the tests' oracle);
 *   klScan: the same numbers in O(n * levels) or better, from prefix sums: with T = |P| and S_i = |Q| = sum(h[0..i)),
 *     KL = (1/T) sum_j P_j log(P_j/Q_j) + log(S_i/T), and inside a level Q_j is the constant M/k (mass M, k
 *     non-empty bins), so sum_{j in level} P_j log(P_j/Q_j) = sum P_j log P_j - (sum P_j) log(M/k): prefix sums of
 *     h log h and h give every level in O(1). The two agree to ~1e-13 (rounding order only), checked by the tests.
 */

export type LevelGrouping = 'remainder-last' | 'proportional';

export interface KlScanSpec {
  /**
   * How the i bins are merged into levels:
   * 'remainder-last': floor(i/levels) bins per level, the last level takes the remainder (TensorRT's description,
   *   the reference implementations of MXNet/TVM);
   * 'proportional': bin j goes to level floor(levels*j/i), i.e. np.digitize over linspace(0, i, levels+1)
   *   (pytorch-quantization).
   */
  grouping: LevelGrouping;
  /** Which bins are "empty" when expanding Q: those of the reference P (outliers folded) or of the raw histogram. */
  emptyBins: 'reference' | 'histogram';
  /** Among equal divergences (within KL_TIE_TOLERANCE), the smallest i or the largest i. */
  ties: 'smallest' | 'largest';
  /** Quantisation levels of the candidate distribution: 128 for int8 (|x| maps to 0..127). */
  levels: number;
  /** First candidate i. */
  startBin: number;
  /**
   * Counts given to a bin where Q is 0 and P is not, instead of an infinite divergence; undefined: +Infinity.
   * (Normalised with |Q| like the other bins: q = emptyQ / |Q|.)
   */
  emptyQ?: number;
}

export interface KlScanResult {
  /** The chosen i: the number of bins kept. */
  bins: number;
  divergence: number;
  /** divergences[i - startBin] for every candidate. */
  divergences: Float64Array;
}

/** Bounds b[0..levels] of the levels of i bins: level l is [b[l], b[l+1]). */
export function levelBounds(i: number, levels: number, grouping: LevelGrouping): Int32Array {
  const b = new Int32Array(levels + 1);
  if (grouping === 'remainder-last') {
    const m = Math.floor(i / levels);
    for (let l = 0; l < levels; l++) b[l] = l * m;
  } else {
    for (let l = 0; l < levels; l++) b[l] = Math.floor((l * i + levels - 1) / levels); // ceil(l*i/levels)
  }
  b[levels] = i;
  return b;
}

/**
 * Merges `counts` into `levels` levels and expands them back: bin j of level l gets (mass of l) / (non-empty bins
 * of l) if nonEmpty[j] != 0, else 0. nonEmpty defaults to counts itself.
 * Example (Migacz): [1,0,2,3,5,3,1,7] in 2 levels -> [2,0,2,2,4,4,4,4].
 */
export function expandLevels(
  counts: ArrayLike<number>,
  levels: number,
  grouping: LevelGrouping = 'remainder-last',
  nonEmpty: ArrayLike<number> = counts,
): Float64Array {
  const n = counts.length;
  if (!Number.isInteger(levels) || levels < 1 || levels > n) throw new RangeError(`levels must be in [1, ${n}], got ${levels}`);
  const b = levelBounds(n, levels, grouping);
  const q = new Float64Array(n);
  for (let l = 0; l < levels; l++) {
    let mass = 0;
    let k = 0;
    for (let j = b[l]!; j < b[l + 1]!; j++) {
      mass += counts[j]!;
      if (nonEmpty[j] !== 0) k++;
    }
    if (k === 0) continue;
    const v = mass / k;
    for (let j = b[l]!; j < b[l + 1]!; j++) if (nonEmpty[j] !== 0) q[j] = v;
  }
  return q;
}

/**
 * KL(p || q) of two non-negative vectors, each normalised to sum 1. Where q = 0 and p > 0: +Infinity, or, given
 * `emptyQ`, q = emptyQ / sum(q) there.
 */
export function klDivergence(p: ArrayLike<number>, q: ArrayLike<number>, emptyQ?: number): number {
  let sp = 0;
  let sq = 0;
  for (let j = 0; j < p.length; j++) {
    sp += p[j]!;
    sq += q[j]!;
  }
  if (sp === 0) return 0;
  if (sq === 0) return Infinity;
  let kl = 0;
  for (let j = 0; j < p.length; j++) {
    const pj = p[j]!;
    if (pj <= 0) continue;
    let qj = q[j]!;
    if (qj <= 0) {
      if (emptyQ === undefined) return Infinity;
      qj = emptyQ;
    }
    kl += (pj / sp) * Math.log(pj / sp / (qj / sq));
  }
  return kl;
}

function checkSpec(n: number, spec: KlScanSpec): void {
  const { levels, startBin } = spec;
  if (!Number.isInteger(levels) || levels < 1) throw new RangeError(`levels must be a positive integer, got ${levels}`);
  if (!Number.isInteger(startBin) || startBin < levels || startBin > n) {
    throw new RangeError(`startBin must be in [levels, bins] = [${levels}, ${n}], got ${startBin}`);
  }
}

/**
 * Divergences within this of the minimum are ties. Sums of the same numbers in another order differ by ~1e-14
 * here, and exact ties are common (KL = 0 whenever every level is flat, e.g. a histogram of a few spikes such as
 * an 8-bit input image), so an exact comparison would let rounding noise pick among equal candidates.
 */
export const KL_TIE_TOLERANCE = 1e-12;

/** Index of the chosen candidate: among divergences within KL_TIE_TOLERANCE of the minimum, the first or last. */
export function pickCandidate(divergences: Float64Array, spec: Pick<KlScanSpec, 'ties'>): number {
  let min = Infinity;
  for (let k = 0; k < divergences.length; k++) if (divergences[k]! < min) min = divergences[k]!;
  if (min === Infinity) return divergences.length - 1;
  const limit = min + KL_TIE_TOLERANCE;
  if (spec.ties === 'smallest') {
    for (let k = 0; k < divergences.length; k++) if (divergences[k]! <= limit) return k;
  } else {
    for (let k = divergences.length - 1; k >= 0; k--) if (divergences[k]! <= limit) return k;
  }
  return divergences.length - 1;
}

/** The definition, literally (O(n^2)); the tests' oracle for klScan and the native scan. */
export function klScanReference(hist: ArrayLike<number>, spec: KlScanSpec): KlScanResult {
  const n = hist.length;
  checkSpec(n, spec);
  const divergences = new Float64Array(n - spec.startBin + 1);
  for (let i = spec.startBin; i <= n; i++) {
    const p = new Float64Array(i);
    const raw = new Float64Array(i);
    for (let j = 0; j < i; j++) p[j] = raw[j] = hist[j]!;
    let outliers = 0;
    for (let j = n - 1; j >= i; j--) outliers += hist[j]!;
    p[i - 1]! += outliers;
    const q = expandLevels(raw, spec.levels, spec.grouping, spec.emptyBins === 'reference' ? p : raw);
    divergences[i - spec.startBin] = klDivergence(p, q, spec.emptyQ);
  }
  const k = pickCandidate(divergences, spec);
  return { bins: k + spec.startBin, divergence: divergences[k]!, divergences };
}

/** Fast scan (see the file header): the same divergences as klScanReference to ~1e-13. */
export function klScan(hist: ArrayLike<number>, spec: KlScanSpec): KlScanResult {
  const n = hist.length;
  checkSpec(n, spec);
  const L = spec.levels;
  const S = new Float64Array(n + 1); // sum h[0..k)
  const C = new Float64Array(n + 1); // sum h log h over h[0..k)
  const Z = new Int32Array(n + 1); // non-empty bins in h[0..k)
  const R = new Float64Array(n + 1); // sum h[k..n)
  for (let j = 0; j < n; j++) {
    const h = hist[j]!;
    S[j + 1] = S[j]! + h;
    C[j + 1] = C[j]! + (h > 0 ? h * Math.log(h) : 0);
    Z[j + 1] = Z[j]! + (h > 0 ? 1 : 0);
  }
  for (let j = n - 1; j >= 0; j--) R[j] = R[j + 1]! + hist[j]!;
  const divergences = new Float64Array(n - spec.startBin + 1);
  const T = S[n]!;
  if (T === 0) return { bins: n, divergence: 0, divergences };

  // g(s, e) = M log(M/k) for the level [s, e): M its mass, k its non-empty bins (0 for an empty level)
  const g = (s: number, e: number): number => {
    const M = S[e]! - S[s]!;
    return M > 0 ? M * Math.log(M / (Z[e]! - Z[s]!)) : 0;
  };
  // Sum of g over the levels before the last one.
  let nonLastSum: (i: number) => number;
  if (spec.grouping === 'remainder-last') {
    const byWidth = new Map<number, number>(); // depends only on m = floor(i/L)
    nonLastSum = (i) => {
      const m = Math.floor(i / L);
      let v = byWidth.get(m);
      if (v === undefined) {
        v = 0;
        for (let l = 0; l < L - 1; l++) v += g(l * m, (l + 1) * m);
        byWidth.set(m, v);
      }
      return v;
    };
  } else {
    // g tabulated by (length, start): for candidate i the level lengths are floor(i/L) and floor(i/L) + 1, so a
    // level of length len starts below min(n, (len + 1) * L); only those entries are computed.
    const maxLen = Math.floor(n / L) + 1;
    const table = new Float64Array((maxLen + 1) * (n + 1));
    for (let len = 1; len <= maxLen; len++) {
      const end = Math.min(n, (len + 1) * L);
      const row = len * (n + 1);
      for (let st = 0; st + len <= end; st++) table[row + st] = g(st, st + len);
    }
    // every candidate's sum at once, level by level (consecutive candidates read neighbouring entries); each
    // candidate's sum runs over the levels in order, as in native/src/stats/kl.cc
    const count = n - spec.startBin + 1;
    const nonLast = new Float64Array(count);
    for (let l = 1; l < L; l++) {
      // bounds ceil(l'*i/L) for l' = l-1 (start) and l (end), stepped along i without division
      const ns = (l - 1) * spec.startBin + L - 1;
      const ne = l * spec.startBin + L - 1;
      let sq = Math.floor(ns / L);
      let sr = ns - sq * L;
      let eq = Math.floor(ne / L);
      let er = ne - eq * L;
      for (let k = 0; k < count; k++) {
        nonLast[k]! += table[(eq - sq) * (n + 1) + sq]!;
        sr += l - 1;
        if (sr >= L) {
          sq++;
          sr -= L;
        }
        er += l;
        if (er >= L) {
          eq++;
          er -= L;
        }
      }
    }
    nonLastSum = (i) => nonLast[i - spec.startBin]!;
  }

  for (let i = spec.startBin; i <= n; i++) {
    const sL =
      spec.grouping === 'remainder-last' ? (L - 1) * Math.floor(i / L) : Math.floor(((L - 1) * i + L - 1) / L);
    const outliers = R[i]!;
    const hLast = hist[i - 1]!;
    const pLast = hLast + outliers; // the folded last bin of P
    const massLast = S[i]! - S[sL]!; // Q's mass in the last level (not folded)
    let divergence: number;
    if (S[i] === 0) {
      divergence = Infinity; // nothing kept below i: Q is empty
    } else {
      // the last level [sL, i): P_j = h_j for j < i-1, P_{i-1} = pLast; Q_j = massLast / kLast on its non-empty bins
      const kLast = spec.emptyBins === 'histogram' ? Z[i]! - Z[sL]! : Z[i - 1]! - Z[sL]! + (pLast > 0 ? 1 : 0);
      const logQ = massLast > 0 && kLast > 0 ? Math.log(massLast / kLast) : 0;
      const inner = S[i - 1]! - S[sL]!; // mass of the bins before i-1 (each has Q = massLast/kLast where non-empty)
      let lastTerm = inner > 0 ? C[i - 1]! - C[sL]! - inner * logQ : 0;
      if (pLast > 0) {
        const lastQEmpty = spec.emptyBins === 'histogram' ? hLast === 0 : massLast === 0;
        if (!lastQEmpty) lastTerm += pLast * (Math.log(pLast) - logQ);
        else if (spec.emptyQ !== undefined) lastTerm += pLast * Math.log(pLast / spec.emptyQ);
        else lastTerm = Infinity;
      }
      // levels before the last: sum P log P telescopes to C[sL]
      const sumPLogPOverQ = C[sL]! - nonLastSum(i) + lastTerm;
      divergence = sumPLogPOverQ / T + Math.log(S[i]! / T);
    }
    divergences[i - spec.startBin] = divergence;
  }
  const k = pickCandidate(divergences, spec);
  return { bins: k + spec.startBin, divergence: divergences[k]!, divergences };
}
