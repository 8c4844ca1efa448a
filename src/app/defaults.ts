/** The default output folder of caches, statistics, models, precision maps and reports. */
export const DEFAULT_OUT_DIR = 'calib-cache';

/** Images per batch of compare and sensitivity when neither --batch nor the model fixes it (here, so --help can say it). */
export const DEFAULT_BATCH = 8;
