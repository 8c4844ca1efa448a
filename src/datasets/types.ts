/**
 * Dataset contracts. A Dataset knows its input metadata and size; batches() returns a fresh async
 * iterator on each call (two passes must be possible), decodes ahead with bounded concurrency, and
 * says which files made each batch.
 */
export type Layout = 'NCHW' | 'NHWC';
export type ChannelOrder = 'RGB' | 'BGR';
export type ResizeMode = 'stretch' | 'center-crop' | 'letterbox' | 'fit-multiple-of';
export type Interpolation = 'bilinear' | 'bicubic' | 'lanczos3' | 'nearest';

/** Every preprocessing choice, resolved (presets expanded, defaults filled). Echoed back to the user and stored with the statistics. */
export interface PreprocessConfig {
  preset?: string;
  /** Output height and width of one image. For fit-multiple-of, the bound on the long side (height = width = bound). */
  height: number;
  width: number;
  channels: 1 | 3;
  resize: ResizeMode;
  /** center-crop: the shorter side is resized to this before the crop (e.g. 256 for a 224 crop). */
  shorterSide?: number;
  /** fit-multiple-of: both output sides are multiples of this (e.g. 32). */
  multipleOf?: number;
  interpolation: Interpolation;
  /** letterbox / fit-multiple-of padding value, 0-255 per channel in the image's colour space. */
  padValue: number;
  channelOrder: ChannelOrder;
  /** Pixel values are first multiplied by `scale` (e.g. 1/255), then (v - mean[c]) / std[c]; mean/std in the channel order of the output. */
  scale: number;
  mean: number[];
  std: number[];
  layout: Layout;
  autoOrient: boolean;
  /** Background colour (0-255 RGB) that alpha is flattened onto. */
  background: [number, number, number];
}

export interface SkippedFile {
  file: string;
  reason: string;
  /** 'link': a folder entry discovery did not follow (a link loop, a dangling link), not an image. */
  kind?: 'link';
}

export interface Batch {
  /** Position of this batch in the pass, from 0. */
  index: number;
  /** Float32 data of `dims` (N first). */
  data: Float32Array;
  dims: number[];
  /** The files that made this batch, in order; files.length === dims[0]. */
  files: string[];
  /** True for the last batch when it holds fewer images than the batch size. */
  partial: boolean;
}

export interface BatchOptions {
  /** Called for each file that cannot be decoded (unless strict, which throws a UserError instead). */
  onSkip?: (skipped: SkippedFile) => void;
  /** Called after each image is decoded (for progress). */
  onImage?: (file: string) => void;
  signal?: AbortSignal;
  /**
   * 'files' (default): images in file order, so batches are the same every pass. 'any': each image as soon as it
   * is decoded, for consumers whose result does not depend on the order (statistics are sums of exact counts):
   * one large file at the head of the list then does not hold the others up. Batches are then made of whichever
   * images finished first, so only use it where batch composition does not matter either.
   */
  order?: 'files' | 'any';
  /**
   * The consumer is done with a batch's data when it asks for the next one: the same buffer is filled again
   * instead of a new one per batch (less allocation and garbage collection on long passes). Not for consumers
   * that keep, transfer or hand the data to work still running.
   */
  reuseBuffer?: boolean;
}

export interface Dataset {
  /** The model input this dataset feeds. */
  readonly inputName: string;
  readonly preprocess: PreprocessConfig;
  /** The selected files, sorted (or the seeded subset, sorted). */
  readonly files: readonly string[];
  readonly size: number;
  readonly batchSize: number;
  /** Shape of one image tensor ([C,H,W] or [H,W,C]). */
  readonly imageDims: number[];
  batches(options?: BatchOptions): AsyncIterable<Batch>;
}
