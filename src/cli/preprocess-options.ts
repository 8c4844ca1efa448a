/**
 * The dataset and preprocessing flags, declared once and shared by every command that reads images
 * (preview, calibrate, compare...): addPreprocessOptions(cmd) declares them, preprocessOptionsFrom(opts)
 * turns commander's values into library options, datasetFromOptions() builds the Dataset, and
 * trackSkips() reports skipped files through the reporter and summarises them at the end.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { summarizeSkipped } from '../datasets/skipped.js';
import { INTERPOLATIONS, RESIZE_MODES, presetNames, resolveBatchSize, resolvePreprocess } from '../datasets/presets.js';
import type { ModelInputInfo, PreprocessOptions } from '../datasets/presets.js';
import { parseSize } from '../datasets/shapes.js';
import type { ChannelOrder, Dataset, Layout, PreprocessConfig, SkippedFile } from '../datasets/types.js';
import type { Reporter } from '../reporter.js';
import { parseInteger } from './common.js';

/** commander's values for the flags declared by addPreprocessOptions. */
export interface PreprocessCliValues {
  data: string;
  preset?: string;
  size?: string;
  shapes?: string;
  channels?: 1 | 3;
  resize?: PreprocessOptions['resize'];
  shorterSide?: number;
  multipleOf?: number;
  interpolation?: PreprocessOptions['interpolation'];
  padValue?: number;
  channelOrder?: ChannelOrder;
  scale?: number;
  mean?: number[];
  std?: number[];
  layout?: Layout;
  autoOrient?: boolean;
  background?: [number, number, number];
  batch?: number;
  maxImages?: number;
  seed?: number;
  strict?: boolean;
  concurrency?: number;
}

/** What the library needs, from those values. */
export interface DatasetCliOptions {
  data: string;
  preprocess: PreprocessOptions;
  batch?: number;
  maxImages?: number;
  seed?: number;
  strict: boolean;
  concurrency?: number;
}

function numberList(count: number[], what: string) {
  return (value: string): number[] => {
    const parts = value.split(',').map((s) => s.trim());
    const nums = parts.map(parseFraction);
    if (parts.some((p) => p === '') || nums.some((n) => !Number.isFinite(n)) || !count.includes(nums.length)) {
      throw new InvalidArgumentError(`Expected ${count.join(' or ')} comma-separated numbers (${what}).`);
    }
    return nums;
  };
}

/** "0.5", "1/255" or "2e-3". */
function parseFraction(text: string): number {
  const m = /^\s*([^/]+?)\s*\/\s*([^/]+?)\s*$/.exec(text);
  if (m) return Number(m[1]) / Number(m[2]);
  return text.trim() === '' ? Number.NaN : Number(text);
}

function caseInsensitive<T extends string>(choices: readonly T[]) {
  return (value: string): T => {
    const found = choices.find((c) => c.toLowerCase() === value.toLowerCase());
    if (!found) throw new InvalidArgumentError(`Allowed choices are ${choices.map((c) => c.toLowerCase()).join(', ')}.`);
    return found;
  };
}

function sizeParser(value: string): string {
  try {
    parseSize(value);
  } catch {
    throw new InvalidArgumentError('Expected N or HxW (height x width), e.g. 224 or 480x640.');
  }
  return value;
}

/**
 * Declares --data and the preprocessing, batching and selection flags on `cmd`. Preset fields are not
 * defaulted here, so that an unset flag means "the preset's value".
 */
export function addPreprocessOptions(cmd: Command, options: { batch?: boolean; dataRequired?: boolean; defaultBatch?: number } = {}): Command {
  const dataHelp = 'images: a folder (searched recursively), a quoted glob, or a text file listing paths';
  if (options.dataRequired === false) cmd.option('--data <path>', dataHelp);
  else cmd.requiredOption('--data <path>', dataHelp);
  cmd
    .addOption(new Option('--preset <name>', 'preprocessing preset; every field can be overridden by the flags below').choices(presetNames()).default('imagenet'))
    .option('--size <N|HxW>', 'output size when the model input has a dynamic one (height x width)', sizeParser)
    .option('--shapes <spec>', 'trtexec-style input shape, e.g. input:1x3x640x640')
    .addOption(new Option('--resize <mode>', 'resize mode').choices(RESIZE_MODES as string[]))
    .option('--shorter-side <n>', 'center-crop: resize the shorter side to n first (default floor(size / 0.875): 224 -> 256)', parseInteger(1, 16384))
    .option('--multiple-of <k>', 'fit-multiple-of: both sides multiples of k (default 32)', parseInteger(1, 16384))
    .addOption(new Option('--interpolation <kernel>', 'resize kernel (default bilinear)').choices(INTERPOLATIONS as string[]))
    .option('--pad-value <v>', 'letterbox / fit-multiple-of padding, 0-255 (yolo: 114)', parseInteger(0, 255))
    .option('--channel-order <order>', 'rgb or bgr', caseInsensitive<ChannelOrder>(['RGB', 'BGR']))
    .option('--scale <s>', 'pixel values (0-255) are multiplied by this first, e.g. 1/255', (v: string) => {
      const n = parseFraction(v);
      if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('Expected a positive number, e.g. 0.00392 or 1/255.');
      return n;
    })
    .option('--mean <a,b,c>', 'per-channel mean subtracted after scaling, in the output channel order', numberList([1, 3], 'one per channel'))
    .option('--std <a,b,c>', 'per-channel std divided by, in the output channel order', numberList([1, 3], 'one per channel'))
    .option('--layout <layout>', 'nchw or nhwc (default: from the model input, else nchw)', caseInsensitive<Layout>(['NCHW', 'NHWC']))
    .option('--channels <n>', '1 (gray: colour reduced to luma) or 3 (gray expanded); default: from the model input, else 3', (v: string) => {
      if (v !== '1' && v !== '3') throw new InvalidArgumentError('Expected 1 or 3.');
      return Number(v) as 1 | 3;
    })
    .option('--no-auto-orient', 'ignore the EXIF orientation tag')
    .option('--background <r,g,b>', 'colour that transparent pixels are flattened onto (default 255,255,255)', (v: string) => {
      const nums = numberList([3], 'r,g,b from 0 to 255')(v);
      if (nums.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) throw new InvalidArgumentError('Expected three integers from 0 to 255.');
      return nums as [number, number, number];
    });
  if (options.batch !== false) cmd.option('--batch <n>', `images per batch (default: the model's, else ${options.defaultBatch ?? 1})`, parseInteger(1, 65536));
  return cmd
    .option('--max-images <n>', 'use a reproducible subset of n images (see --seed)', parseInteger(1))
    .option('--seed <s>', 'seed of the --max-images pick (default 0)', parseInteger(0, 0xffffffff))
    .option('--strict', 'stop at the first image that cannot be decoded (default: report it and skip it)')
    .option('--concurrency <n>', 'images decoded at once (default: the number of CPU cores)', parseInteger(1, 1024));
}

/** Turns commander's values into library options (no validation beyond the flag parsers; the library validates). */
export function preprocessOptionsFrom(opts: PreprocessCliValues): DatasetCliOptions {
  const preprocess: PreprocessOptions = {
    preset: opts.preset,
    size: opts.size,
    shapes: opts.shapes,
    channels: opts.channels,
    resize: opts.resize,
    shorterSide: opts.shorterSide,
    multipleOf: opts.multipleOf,
    interpolation: opts.interpolation,
    padValue: opts.padValue,
    channelOrder: opts.channelOrder,
    scale: opts.scale,
    mean: opts.mean,
    std: opts.std,
    layout: opts.layout,
    autoOrient: opts.autoOrient,
    background: opts.background,
  };
  for (const key of Object.keys(preprocess) as Array<keyof PreprocessOptions>) if (preprocess[key] === undefined) delete preprocess[key];
  return {
    data: opts.data,
    preprocess,
    batch: opts.batch,
    maxImages: opts.maxImages,
    seed: opts.seed,
    strict: opts.strict ?? false,
    concurrency: opts.concurrency,
  };
}

/**
 * Resolves the preprocessing against the model input (or none, for preview) and builds the Dataset.
 * `defaultBatch` applies when neither --batch, --shapes nor a static model batch says otherwise.
 */
export async function datasetFromOptions(
  options: DatasetCliOptions,
  input?: ModelInputInfo,
  defaultBatch = 1,
): Promise<{ dataset: Dataset; config: PreprocessConfig }> {
  const config = resolvePreprocess(options.preprocess, input);
  const batchSize = resolveBatchSize({ batch: options.batch, shapes: options.preprocess.shapes }, input, defaultBatch);
  // Loaded here, not at start-up: it brings sharp (about 100 ms), which --help and --version do not need.
  const { createDataset } = await import('../datasets/dataset.js');
  const dataset = await createDataset({
    data: options.data,
    preprocess: config,
    inputName: input?.name,
    batchSize,
    maxImages: options.maxImages,
    seed: options.seed,
    strict: options.strict,
    concurrency: options.concurrency,
  });
  return { dataset, config };
}

/** Collects skipped files, warns about each through the reporter, and summarises them after the pass. */
export interface SkipTracker {
  readonly skipped: SkippedFile[];
  onSkip: (skipped: SkippedFile) => void;
  /** "N of M image(s) skipped:" with one line per file, or "M image(s) used, none skipped." */
  summary(used: number): string;
}

export function trackSkips(reporter: Reporter): SkipTracker {
  const skipped: SkippedFile[] = [];
  return {
    skipped,
    onSkip(s) {
      skipped.push(s);
      reporter.warn(`skipped ${s.file}: ${s.reason}`);
    },
    summary(used) {
      return summarizeSkipped(skipped, used);
    },
  };
}

/** One line echoing the effective preprocessing, e.g. for the start of a run. */
export function describePreprocess(config: PreprocessConfig): string {
  const geometry =
    config.resize === 'center-crop'
      ? `shorter side ${config.shorterSide} then center crop ${config.height}x${config.width}`
      : config.resize === 'letterbox'
        ? `letterbox ${config.height}x${config.width} (pad ${config.padValue})`
        : config.resize === 'fit-multiple-of'
          ? `fit within ${config.height}x${config.width}, sides multiples of ${config.multipleOf}, padded (pad ${config.padValue})`
          : `stretch to ${config.height}x${config.width}`;
  const fmt = (xs: number[]) => xs.map((x) => Number(x.toPrecision(6))).join(',');
  const colour = config.channels === 1 ? 'gray' : config.channelOrder;
  return (
    `preprocess: ${config.preset ?? 'custom'}: ${colour}, ${geometry}, ${config.interpolation}, ` +
    `x*${Number(config.scale.toPrecision(6))} mean ${fmt(config.mean)} std ${fmt(config.std)}, ${config.layout}` +
    `${config.autoOrient ? '' : ', EXIF orientation ignored'}`
  );
}
