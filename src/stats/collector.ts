/**
 * StatisticsCollector: per-tensor activation statistics over the native kernels (native/src/stats).
 *
 * Each tensor has one state (a 9-value header and a histogram of HISTOGRAM_BINS counts, both Float64Arrays owned
 * here), so memory is bounded by tensors x bins, never by the number of images. Large tensors are binned on a
 * libuv worker thread; different tensors proceed in parallel, while the updates of one tensor are chained so that
 * they never run at once. Because every count is an exact integer and bins are powers of two, the result is
 * bit-identical whatever the batch size, the order of the batches or the number of threads.
 */
import { invalidParameter } from '../errors.js';
import { loadNative, type NativeBinding } from '../native.js';
import type { Tensor } from '../tensor.js';
import { isPowerOfTwoInteger, mergeInto } from './histogram.js';
import { HISTOGRAM_BINS, type TensorStatistics } from './types.js';

/** Header layout shared with native/src/stats/histogram.h. */
const H = { count: 0, nan: 1, posInf: 2, negInf: 3, zeros: 4, min: 5, max: 6, absMax: 7, range: 8 } as const;
const HEADER_SIZE = 9;

/** Below this many values an update runs synchronously: a worker round trip costs more than the work. */
export const DEFAULT_ASYNC_THRESHOLD = 1 << 16;

export interface CollectorOptions {
  /** Histogram bins, a power of two (default HISTOGRAM_BINS). Statistics with different bins do not merge. */
  bins?: number;
  /** Values from which an update goes to a worker thread (default 65536). 0: always; Infinity: never. */
  asyncThreshold?: number;
}

interface State {
  header: Float64Array;
  hist: Float64Array;
  /** The tail of this tensor's chain of updates (never rejects); the next update starts after it. */
  tail: Promise<void> | undefined;
  /** Updates started and not settled. */
  inflight: number;
}

export class StatisticsCollector {
  readonly bins: number;
  readonly asyncThreshold: number;
  private readonly states = new Map<string, State>();
  private readonly native: NativeBinding;
  private failure: unknown;
  private failed = false;

  constructor(options: CollectorOptions = {}) {
    const bins = options.bins ?? HISTOGRAM_BINS;
    if (!isPowerOfTwoInteger(bins) || bins > 1 << 24) throw invalidParameter('bins', 'a power of two between 2 and 2^24', bins);
    const threshold = options.asyncThreshold ?? DEFAULT_ASYNC_THRESHOLD;
    if (typeof threshold !== 'number' || Number.isNaN(threshold) || threshold < 0) {
      throw invalidParameter('asyncThreshold', 'a number >= 0', threshold);
    }
    this.bins = bins;
    this.asyncThreshold = threshold;
    this.native = loadNative();
    if (this.native.statsHeaderSize !== HEADER_SIZE) {
      throw new Error(`native statistics header has ${this.native.statsHeaderSize} fields, expected ${HEADER_SIZE}: rebuild the addon`);
    }
  }

  /** Builds a collector holding existing statistics (e.g. loaded from a file), to add more data or merge. */
  static from(stats: readonly TensorStatistics[], options: Omit<CollectorOptions, 'bins'> = {}): StatisticsCollector {
    const bins = stats[0]?.hist.length ?? HISTOGRAM_BINS;
    const c = new StatisticsCollector({ ...options, bins });
    c.merge(stats);
    return c;
  }

  /**
   * Adds a tensor's values (float32, or float16 bits in a Uint16Array) to the statistics of `name`.
   * The promise settles when they are counted; `data` must not be modified before that.
   */
  add(name: string, data: Float32Array | Uint16Array, clamp?: { lo: number; hi: number }): Promise<void> {
    checkName(name);
    checkData(data);
    if (clamp && !(data instanceof Float32Array)) throw invalidParameter('data', 'a Float32Array when clamp bounds are given', data);
    const state = this.state(name);
    const sync = data.length < this.asyncThreshold;
    if (state.inflight === 0 && sync) {
      try {
        if (clamp) this.native.statsAccumulate(state.header, state.hist, data, clamp.lo, clamp.hi);
        else this.native.statsAccumulate(state.header, state.hist, data);
        return Promise.resolve();
      } catch (err) {
        this.fail(err);
        return Promise.reject(err);
      }
    }
    const previous = state.tail ?? Promise.resolve();
    const lohi: [] | [number, number] = clamp ? [clamp.lo, clamp.hi] : [];
    const run = (): void | Promise<void> =>
      sync ? this.native.statsAccumulate(state.header, state.hist, data, ...lohi) : this.native.statsAccumulateAsync(state.header, state.hist, data, ...lohi);
    state.inflight++;
    // `done` settles after the counter drops, so the state is idle once every returned promise has settled.
    const done = previous.then(run).finally(() => {
      state.inflight--;
    });
    state.tail = done.catch((err: unknown) => this.fail(err));
    return done;
  }

  /**
   * Adds `count` zeros (a constant-0 Pad's padding, counted without the padded tensor). Uses the same kernel on a
   * shared, read-only buffer of zeros, so the result is exactly that of counting the zeros.
   */
  addZeros(name: string, count: number): Promise<void> {
    if (!Number.isSafeInteger(count) || count < 0) throw invalidParameter('count', 'a whole number >= 0', count);
    if (count === 0) return Promise.resolve();
    if (StatisticsCollector.zeros.length < count) StatisticsCollector.zeros = new Float32Array(Math.max(count, 2 * StatisticsCollector.zeros.length));
    return this.add(name, StatisticsCollector.zeros.subarray(0, count));
  }

  private static zeros = new Float32Array(0);

  /** Synchronous add, on the calling thread. Not allowed while an asynchronous update of `name` is pending. */
  addSync(name: string, data: Float32Array | Uint16Array): void {
    checkName(name);
    checkData(data);
    const state = this.state(name);
    if (state.inflight !== 0) throw new Error(`addSync(${JSON.stringify(name)}) while an asynchronous update of it is pending`);
    this.native.statsAccumulate(state.header, state.hist, data);
  }

  /** Adds a Tensor: float32 and float16 as they are; float64 rounded to float32 (TensorRT has no float64). */
  addTensor(name: string, tensor: Tensor): Promise<void> {
    switch (tensor.dtype) {
      case 'float32':
        return this.add(name, tensor.data as Float32Array);
      case 'float16':
        return this.add(name, tensor.data as Uint16Array);
      case 'float64':
        return this.add(name, Float32Array.from(tensor.data as Float64Array));
      default:
        return Promise.reject(invalidParameter(`tensor ${name}`, 'a float32, float16 or float64 tensor', tensor.dtype));
    }
  }

  /** Waits for every pending update; rejects with the first failure, if any. */
  async flush(): Promise<void> {
    for (;;) {
      const busy = [...this.states.values()].filter((s) => s.inflight > 0).map((s) => s.tail);
      if (busy.length === 0) break;
      await Promise.all(busy);
    }
    if (this.failed) throw this.failure;
  }

  get pending(): boolean {
    for (const s of this.states.values()) if (s.inflight > 0) return true;
    return false;
  }

  /** Names of the tensors seen so far, sorted. */
  names(): string[] {
    return [...this.states.keys()].sort(compareNames);
  }

  get size(): number {
    return this.states.size;
  }

  /** Bytes held by the states. */
  get memoryBytes(): number {
    return this.states.size * (HEADER_SIZE + this.bins) * 8;
  }

  /** One tensor's statistics (a copy), or undefined if it was never added. */
  get(name: string): TensorStatistics | undefined {
    this.assertIdle('get');
    const s = this.states.get(name);
    return s ? toStatistics(name, s) : undefined;
  }

  /** Every tensor's statistics (copies), sorted by name. Call after the adds have settled (`await flush()`). */
  result(): TensorStatistics[] {
    this.assertIdle('result');
    return this.names().map((n) => toStatistics(n, this.states.get(n)!));
  }

  /** Adds other statistics (another collector's, or stored ones) tensor by tensor, exactly. */
  merge(other: StatisticsCollector | readonly TensorStatistics[]): void {
    this.assertIdle('merge');
    const list = other instanceof StatisticsCollector ? other.result() : other;
    for (const s of list) {
      if (s.hist.length !== this.bins) {
        throw new RangeError(`Cannot merge statistics of ${s.name} with ${s.hist.length} bins into a collector of ${this.bins}`);
      }
      const state = this.state(s.name);
      const mine = toStatistics(s.name, state);
      mergeInto(mine, s);
      writeState(state, mine);
    }
  }

  private state(name: string): State {
    let s = this.states.get(name);
    if (!s) {
      s = { header: new Float64Array(HEADER_SIZE), hist: new Float64Array(this.bins), tail: undefined, inflight: 0 };
      s.header[H.min] = Infinity;
      s.header[H.max] = -Infinity;
      this.states.set(name, s);
    }
    return s;
  }

  private fail(err: unknown): void {
    if (!this.failed) {
      this.failed = true;
      this.failure = err;
    }
  }

  private assertIdle(what: string): void {
    if (this.pending) throw new Error(`StatisticsCollector.${what}() called while updates are pending; await flush() first`);
    if (this.failed) throw this.failure;
  }
}

/** Sort order of tensor names everywhere (stored statistics, caches): UTF-16 code units, locale-independent. */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function toStatistics(name: string, s: State): TensorStatistics {
  const h = s.header;
  return {
    name,
    count: h[H.count]!,
    nanCount: h[H.nan]!,
    posInfCount: h[H.posInf]!,
    negInfCount: h[H.negInf]!,
    zeroCount: h[H.zeros]!,
    min: h[H.min]!,
    max: h[H.max]!,
    absMax: h[H.absMax]!,
    range: h[H.range]!,
    hist: new Float64Array(s.hist),
  };
}

function writeState(state: State, s: TensorStatistics): void {
  const h = state.header;
  h[H.count] = s.count;
  h[H.nan] = s.nanCount;
  h[H.posInf] = s.posInfCount;
  h[H.negInf] = s.negInfCount;
  h[H.zeros] = s.zeroCount;
  h[H.min] = s.min;
  h[H.max] = s.max;
  h[H.absMax] = s.absMax;
  h[H.range] = s.range;
  state.hist.set(s.hist);
}

function checkName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0) throw invalidParameter('name', 'a non-empty tensor name', name);
}

function checkData(data: unknown): void {
  if (!(data instanceof Float32Array) && !(data instanceof Uint16Array)) {
    const got = data && typeof data === 'object' ? (data.constructor?.name ?? 'object') : data;
    throw invalidParameter('data', 'a Float32Array (or Uint16Array of float16 bits)', got);
  }
}

/**
 * The states a native counter hands back (native/src/ort/collector.cc, and any backend that counts next to its
 * own output buffers): one 9-value header per state (the layout of native/src/stats/histogram.h) and `bins`
 * counts per state, state i belonging to names[i]. The narrow handle between a backend's session and the
 * statistics: plain buffers, no session or model type.
 */
export interface CountedStates {
  headers: Float64Array;
  hists: Float64Array;
}

/**
 * Every state's statistics, sorted by name. `merges` are [into, from] name pairs: `from`'s statistics are added to
 * `into`'s after decoding (a Pad counted as its zeros only, plus the values of the tensor it pads; exact).
 */
export function statisticsFromStates(
  names: readonly string[],
  states: CountedStates,
  bins = HISTOGRAM_BINS,
  merges: ReadonlyArray<readonly [into: string, from: string]> = [],
): TensorStatistics[] {
  const { headers, hists } = states;
  if (headers.length !== names.length * HEADER_SIZE || hists.length !== names.length * bins) {
    throw new Error(`counted states do not match their ${names.length} names: ${headers.length} header values, ${hists.length} counts for ${bins} bins`);
  }
  const byName = new Map<string, TensorStatistics>();
  names.forEach((name, i) => {
    const state: State = { header: headers.subarray(i * HEADER_SIZE, (i + 1) * HEADER_SIZE), hist: hists.subarray(i * bins, (i + 1) * bins), tail: undefined, inflight: 0 };
    byName.set(name, toStatistics(name, state));
  });
  for (const [into, from] of merges) {
    const a = byName.get(into);
    const b = byName.get(from);
    if (!a || !b) throw new Error(`cannot merge the statistics of ${from} into ${into}: not among the counted states`);
    mergeInto(a, b);
  }
  return [...byName.values()].sort((a, b) => compareNames(a.name, b.name));
}
