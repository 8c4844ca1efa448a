/**
 * A calibrator is a pure function of one tensor's statistics: (statistics, options) => amax.
 * Its name (`--algo`), the algorithm name TensorRT writes in a cache header and its options live beside it.
 */
import type { TensorStatistics } from '../stats/types.js';

export type AlgorithmName = 'entropy2' | 'entropy' | 'minmax' | 'percentile' | 'mse';

export interface CalibratorOptions {
  /** percentile: the percentile of |x| kept, e.g. 99.99. */
  percentile?: number;
}

export interface Calibrator {
  name: AlgorithmName;
  /** Algorithm as written in a TensorRT cache header: EntropyCalibration2, EntropyCalibration, MinMaxCalibration, ... */
  cacheName: string;
  /**
   * Whether TensorRT has a calibrator class of this name (IInt8EntropyCalibrator2, IInt8EntropyCalibrator,
   * IInt8MinMaxCalibrator). false for percentile and mse: their `cacheName` is ours, and the cache writer must put a
   * header in the file that the TensorRT calibrator reading it accepts.
   */
  trtNative: boolean;
  /** One line for --help and reports. */
  description: string;
  /** amax >= 0 for the tensor (scale = amax / 127). 0 means no data / all zeros. */
  compute(stats: TensorStatistics, options?: CalibratorOptions): number;
}
