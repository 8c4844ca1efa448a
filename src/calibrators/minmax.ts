/**
 * minmax: amax = max |x| over all the data (TensorRT's IInt8MinMaxCalibrator, cache header MinMaxCalibration).
 * Keeps every outlier: the whole observed range maps to [-127, 127].
 */
import type { TensorStatistics } from '../stats/types.js';
import type { Calibrator } from './types.js';

export function minmaxAmax(stats: TensorStatistics): number {
  return stats.count > 0 && stats.absMax > 0 ? stats.absMax : 0;
}

export const minmax: Calibrator = {
  name: 'minmax',
  cacheName: 'MinMaxCalibration',
  trtNative: true,
  description: 'max |x| over the calibration data (TensorRT MinMax calibrator); keeps outliers',
  compute: (stats) => minmaxAmax(stats),
};
