/**
 * Activation statistics of one tensor: everything the calibrators need, nothing they compute.
 *
 * The histogram is of |x| over [0, range) with a fixed number of equal bins, where `range` is a power of two:
 * the smallest power of two strictly greater than absMax. When later data raises absMax, the range doubles and
 * neighbouring bins are merged in pairs; because bin widths are powers of two, floor(|x| * bins / range) is
 * computed exactly and merging is exact, so the histogram is bit-identical whatever the batch size, file order
 * or thread count (integer counts commute).
 */
/**
 * Bins of the collected |x| histogram: 8192 = 2^13 (a power of two, so that bin widths are powers of two).
 *
 * Why 8192: the entropy calibrators re-bin to TensorRT's 2048 bins over [0, absMax]. absMax lies in
 * [range/2, range), so [0, absMax] spans 4096..8191 of our bins: every target bin is fed by 2 to 4 whole
 * source bins plus at most two partial ones, which keeps the proportional re-binning error small; MSE and
 * percentile read this histogram directly (its width is at most absMax/4096). Memory: tensors x 8192 x 8 bytes,
 * 64 KiB per tensor, about 10 MB for the ~150 activations of MobileNetV2, whatever the number of images.
 */
export const HISTOGRAM_BINS = 8192;

export interface TensorStatistics {
  name: string;
  /** Number of finite values seen. */
  count: number;
  nanCount: number;
  posInfCount: number;
  negInfCount: number;
  /** Values exactly 0 (also counted in hist[0]). */
  zeroCount: number;
  /** Over finite values only; +Infinity / -Infinity when count is 0. */
  min: number;
  max: number;
  /** max |x| over finite values; 0 when there were none or all were 0. */
  absMax: number;
  /** Power of two > absMax, or 0 when absMax is 0 (then hist[0] holds every value). */
  range: number;
  /** Counts (integers stored as float64, exact up to 2^53) of |x| in [i*range/bins, (i+1)*range/bins). */
  hist: Float64Array;
}

/** What produced a set of statistics; stored with them so that a mismatched model is refused. */
export interface StatisticsProvenance {
  tool: string;
  toolVersion: string;
  modelFile: string;
  modelSha256: string;
  /** Input name -> dims used for calibration. */
  shapes: Record<string, number[]>;
  preprocess: unknown;
  imageCount: number;
  skippedCount: number;
  /** sha256 over the sorted list of image paths (relative to the data root) and their sizes. */
  imageListSha256: string;
  histogramBins: number;
  createdBy: string;
  /** Only in the statistics of one shard (`calibrate --shard K/N`); absent once merged. */
  shard?: ShardRecord;
}

/** Which slice of the selected images a shard's statistics cover (src/app/shard.ts). */
export interface ShardRecord {
  index: number;
  count: number;
  /** Images selected over all shards, and sha256 over their paths (relative to their common folder). */
  selectedCount: number;
  selectionSha256: string;
  /** This shard's slice of the selection: [start, end). */
  start: number;
  end: number;
  /** The images used (not skipped), in selection order: [path relative to the selection's common folder, size]. */
  images: Array<[string, number]>;
}

export interface StoredStatistics {
  format: 'trt-calib-stats';
  formatVersion: number;
  provenance: StatisticsProvenance;
  /** Sorted by name. */
  tensors: TensorStatistics[];
  /** `--algo auto`: the candidate each tensor took (an algorithm, or "a~b" for a point between two). */
  algorithmChoices?: Record<string, string>;
}
