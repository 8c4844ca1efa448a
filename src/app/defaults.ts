/** The default output folder of caches, statistics, models, precision maps and reports. */
export const DEFAULT_OUT_DIR = 'calib-cache';
