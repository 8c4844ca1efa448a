/**
 * Preprocessing presets for common model families, and resolution of a PreprocessConfig from a preset,
 * flag-by-flag overrides and the model's input shape.
 *
 * Sources of each preset:
 * - imagenet: torchvision's ImageNet eval transform (Resize(256), CenterCrop(224), ToTensor, Normalize).
 * - imagenet-caffe: the original Caffe / Keras "caffe" mode (BGR, 0-255, per-channel mean subtraction).
 * - inception: Keras/TF "tf" mode (x/127.5 - 1) with timm's eval crop (shorter side floor(size/0.875)).
 * - yolo: ultralytics LetterBox (640, pad 114, x/255).
 * - raw01: plain stretch to the input size, x/255.
 * - paddleocr-det: PaddleOCR DetResizeForTest (limit_type max, multiples of 32) + NormalizeImage, BGR (cv2).
 *
 * Default interpolation: bilinear. Most ImageNet classifiers were trained and evaluated with torchvision's
 * Resize on PIL images, whose default is BILINEAR (antialiased when reducing); TensorFlow's tf.image.resize
 * and OpenCV's cv2.resize (YOLO, PaddleOCR) also default to bilinear. sharp's `linear` kernel is an
 * antialiased triangle filter when reducing, the closest match to PIL's. Calibration statistics should
 * come from the same pixels the deployed model sees, so the default follows the training pipelines.
 */
import { UserError, invalidParameter } from '../errors.js';
import { MAX_SIDE, parseShapes, parseSize } from './shapes.js';
import type { ChannelOrder, Interpolation, Layout, PreprocessConfig, ResizeMode } from './types.js';

export const RESIZE_MODES: readonly ResizeMode[] = ['stretch', 'center-crop', 'letterbox', 'fit-multiple-of'];
export const INTERPOLATIONS: readonly Interpolation[] = ['bilinear', 'bicubic', 'lanczos3', 'nearest'];
export const LAYOUTS: readonly Layout[] = ['NCHW', 'NHWC'];
export const CHANNEL_ORDERS: readonly ChannelOrder[] = ['RGB', 'BGR'];

/** The center-crop fraction of torchvision/timm evaluation: shorter side = floor(crop / 0.875) (224 -> 256). */
export const DEFAULT_CROP_FRACTION = 0.875;

/** A preset: the preprocessing fields it fixes (each overridable by a flag), a description and a default size. */
export type PresetDefinition = Pick<
  PreprocessConfig,
  'resize' | 'multipleOf' | 'interpolation' | 'padValue' | 'channelOrder' | 'scale' | 'mean' | 'std' | 'layout'
> & {
  description: string;
  /** Output size used when no model input fixes it (e.g. `preview` without a model). */
  size: number;
};

const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];

export const PRESETS: Readonly<Record<string, PresetDefinition>> = {
  imagenet: {
    description: 'RGB, shorter side 256 then 224 center crop, x/255, ImageNet mean/std (torchvision)',
    size: 224,
    resize: 'center-crop',
    interpolation: 'bilinear',
    padValue: 0,
    channelOrder: 'RGB',
    scale: 1 / 255,
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
    layout: 'NCHW',
  },
  'imagenet-caffe': {
    description: 'BGR, 0-255, minus mean (103.939, 116.779, 123.68) in BGR order, 256/224 center crop (Caffe, Keras "caffe")',
    size: 224,
    resize: 'center-crop',
    interpolation: 'bilinear',
    padValue: 0,
    channelOrder: 'BGR',
    scale: 1,
    mean: [103.939, 116.779, 123.68],
    std: [1, 1, 1],
    layout: 'NCHW',
  },
  inception: {
    description: 'RGB, x/127.5 - 1, center crop after shorter side floor(size/0.875) (Inception, Keras "tf" mode)',
    size: 299,
    resize: 'center-crop',
    interpolation: 'bilinear',
    padValue: 0,
    channelOrder: 'RGB',
    scale: 1 / 255,
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
    layout: 'NCHW',
  },
  yolo: {
    description: 'RGB, letterbox 640 with pad 114, x/255 (ultralytics)',
    size: 640,
    resize: 'letterbox',
    interpolation: 'bilinear',
    padValue: 114,
    channelOrder: 'RGB',
    scale: 1 / 255,
    mean: [0, 0, 0],
    std: [1, 1, 1],
    layout: 'NCHW',
  },
  raw01: {
    description: 'RGB, stretch to the input size, x/255',
    size: 224,
    resize: 'stretch',
    interpolation: 'bilinear',
    padValue: 0,
    channelOrder: 'RGB',
    scale: 1 / 255,
    mean: [0, 0, 0],
    std: [1, 1, 1],
    layout: 'NCHW',
  },
  'paddleocr-det': {
    description: 'BGR, long side at most 960, sides multiples of 32, padded to the bound, x/255 then ImageNet mean/std (PaddleOCR)',
    size: 960,
    resize: 'fit-multiple-of',
    multipleOf: 32,
    interpolation: 'bilinear',
    padValue: 0,
    channelOrder: 'BGR',
    scale: 1 / 255,
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
    layout: 'NCHW',
  },
};

export const DEFAULT_PRESET = 'imagenet';

/** Everything a user may set, each field overriding the preset's. */
export interface PreprocessOptions {
  preset?: string;
  /** `N`, `HxW` (height x width) or [height, width]. */
  size?: string | number | readonly [number, number];
  /** trtexec style `name:1x3xHxW[,...]`. */
  shapes?: string;
  channels?: 1 | 3;
  resize?: ResizeMode;
  shorterSide?: number;
  multipleOf?: number;
  interpolation?: Interpolation;
  padValue?: number;
  channelOrder?: ChannelOrder;
  scale?: number;
  mean?: readonly number[];
  std?: readonly number[];
  layout?: Layout;
  autoOrient?: boolean;
  background?: readonly [number, number, number] | readonly number[];
}

/** The model input the data feeds: its name and dims (numbers when static; a string or -1 when dynamic). */
export interface ModelInputInfo {
  name: string;
  dims: ReadonlyArray<number | string>;
}

const DEFAULT_BACKGROUND: [number, number, number] = [255, 255, 255];

export function presetNames(): string[] {
  return Object.keys(PRESETS);
}

export function getPreset(name: string): PresetDefinition {
  const preset = PRESETS[name];
  if (!preset) throw invalidParameter('preset', `one of ${presetNames().join(', ')}`, name);
  return preset;
}

/**
 * Fills a PreprocessConfig from a preset (default `imagenet`), the user's overrides and the model input.
 * H and W come from the model's static dims, else from `shapes` (for this input's name), else from `size`;
 * with no model at all (preview), from `size` or the preset's usual size. Throws a UserError for anything
 * that cannot be satisfied.
 */
export function resolvePreprocess(options: PreprocessOptions = {}, input?: ModelInputInfo): PreprocessConfig {
  const presetName = options.preset ?? DEFAULT_PRESET;
  const preset = getPreset(presetName);
  const geometry = resolveGeometry(options, input, preset);
  const channels = geometry.channels;

  const resize = options.resize ?? preset.resize;
  if (!RESIZE_MODES.includes(resize)) throw invalidParameter('resize', `one of ${RESIZE_MODES.join(', ')}`, resize);
  const interpolation = options.interpolation ?? preset.interpolation;
  if (!INTERPOLATIONS.includes(interpolation)) throw invalidParameter('interpolation', `one of ${INTERPOLATIONS.join(', ')}`, interpolation);
  const channelOrder = options.channelOrder ?? preset.channelOrder;
  if (!CHANNEL_ORDERS.includes(channelOrder)) throw invalidParameter('channelOrder', 'RGB or BGR', channelOrder);

  const { height, width } = geometry;
  const config: PreprocessConfig = {
    preset: presetName,
    height,
    width,
    channels,
    resize,
    interpolation,
    padValue: options.padValue ?? preset.padValue,
    channelOrder,
    scale: options.scale ?? preset.scale,
    mean: perChannel('mean', options.mean ?? preset.mean, channels, options.mean === undefined ? presetName : undefined),
    std: perChannel('std', options.std ?? preset.std, channels, options.std === undefined ? presetName : undefined),
    layout: geometry.layout,
    autoOrient: options.autoOrient ?? true,
    background: background(options.background),
  };

  if (!Number.isFinite(config.scale) || config.scale <= 0) throw invalidParameter('scale', 'a positive number', config.scale);
  if (config.std.some((s) => s === 0)) throw invalidParameter('std', 'non-zero values', list(config.std));
  if (!Number.isInteger(config.padValue) || config.padValue < 0 || config.padValue > 255) {
    throw invalidParameter('padValue', 'an integer from 0 to 255', config.padValue);
  }

  if (resize === 'center-crop') {
    const shorterSide = options.shorterSide ?? Math.floor(Math.max(height, width) / DEFAULT_CROP_FRACTION);
    if (!Number.isInteger(shorterSide) || shorterSide < 1 || shorterSide > MAX_SIDE) {
      throw invalidParameter('shorterSide', `an integer from 1 to ${MAX_SIDE}`, shorterSide);
    }
    if (shorterSide < Math.max(height, width)) {
      throw new UserError(
        `The center crop ${height}x${width} is bigger than the resized image: shorter side ${shorterSide} < ${Math.max(height, width)}.`,
        { hint: `Give --shorter-side ${Math.floor(Math.max(height, width) / DEFAULT_CROP_FRACTION)} or more, or another --resize mode.` },
      );
    }
    config.shorterSide = shorterSide;
  } else if (options.shorterSide !== undefined) {
    throw new UserError(`--shorter-side only applies to --resize center-crop (the resize mode is ${resize}).`);
  }

  if (resize === 'fit-multiple-of') {
    const multipleOf = options.multipleOf ?? preset.multipleOf ?? 32;
    if (!Number.isInteger(multipleOf) || multipleOf < 1 || multipleOf > MAX_SIDE) {
      throw invalidParameter('multipleOf', `an integer from 1 to ${MAX_SIDE}`, multipleOf);
    }
    if (height % multipleOf !== 0 || width % multipleOf !== 0) {
      throw new UserError(`The input size ${height}x${width} is not a multiple of ${multipleOf}, as --resize fit-multiple-of needs.`, {
        hint: `Use a size whose sides are multiples of ${multipleOf} (e.g. --size ${Math.max(multipleOf, Math.round(height / multipleOf) * multipleOf)}).`,
      });
    }
    config.multipleOf = multipleOf;
  } else if (options.multipleOf !== undefined) {
    throw new UserError(`--multiple-of only applies to --resize fit-multiple-of (the resize mode is ${resize}).`);
  }
  return config;
}

interface Geometry {
  height: number;
  width: number;
  channels: 1 | 3;
  layout: Layout;
}

function isStatic(d: number | string | undefined): d is number {
  return typeof d === 'number' && Number.isInteger(d) && d > 0;
}

/** Resolves layout, channels, height and width from the model dims, --shapes and --size. */
function resolveGeometry(options: PreprocessOptions, input: ModelInputInfo | undefined, preset: PresetDefinition): Geometry {
  if (options.layout !== undefined && !LAYOUTS.includes(options.layout)) throw invalidParameter('layout', 'NCHW or NHWC', options.layout);
  if (options.channels !== undefined && options.channels !== 1 && options.channels !== 3) {
    throw invalidParameter('channels', '1 or 3', options.channels);
  }
  const size = options.size !== undefined ? parseSize(options.size) : undefined;
  const shapeDims = options.shapes !== undefined ? shapesFor(options.shapes, input) : undefined;
  const name = input ? JSON.stringify(input.name) : 'the input';

  let dims: Array<number | string> | undefined;
  if (input) {
    if (input.dims.length !== 4) {
      throw new UserError(`The model input ${name} has ${input.dims.length} dims [${input.dims.join(', ')}]; an image input has 4 ([N,C,H,W] or [N,H,W,C]).`);
    }
    dims = [...input.dims];
  }
  if (shapeDims) {
    if (shapeDims.length !== 4) throw new UserError(`--shapes gives ${name} ${shapeDims.length} dims (${shapeDims.join('x')}); an image input has 4.`);
    if (dims) {
      for (let i = 0; i < 4; i++) {
        if (isStatic(dims[i]) && dims[i] !== shapeDims[i]) {
          throw new UserError(
            `--shapes ${shapeDims.join('x')} does not match the model input ${name}, whose dim ${i} is fixed at ${dims[i]} ([${dims.join(', ')}]).`,
          );
        }
      }
    }
    dims = shapeDims.slice();
  }

  const layout: Layout = options.layout ?? (dims ? inferLayout(dims) : undefined) ?? preset.layout;
  const [ci, hi, wi] = layout === 'NCHW' ? [1, 2, 3] : [3, 1, 2];

  let channels: 1 | 3 = options.channels ?? 3;
  if (dims && isStatic(dims[ci])) {
    const c = dims[ci] as number;
    if (c !== 1 && c !== 3) {
      throw new UserError(`The ${layout} input ${name} [${dims.join(', ')}] has ${c} channels; only 1 (gray) or 3 (colour) are supported.`, {
        hint: layout === 'NCHW' ? 'If the model is channels-last, give --layout nhwc.' : 'If the model is channels-first, give --layout nchw.',
      });
    }
    if (options.channels !== undefined && options.channels !== c) {
      throw new UserError(`${options.channels} channels were requested but the input ${name} [${dims.join(', ')}] has ${c}.`);
    }
    channels = c;
  }

  let height: number | undefined;
  let width: number | undefined;
  if (dims) {
    const h = dims[hi];
    const w = dims[wi];
    if (isStatic(h)) height = h;
    if (isStatic(w)) width = w;
    if (size && ((height !== undefined && height !== size.height) || (width !== undefined && width !== size.width))) {
      throw new UserError(
        `--size ${size.height}x${size.width} cannot be satisfied: the input ${name} [${dims.join(', ')}] is fixed at ${height ?? size.height}x${width ?? size.width} (HxW, ${layout}).`,
      );
    }
    height ??= size?.height;
    width ??= size?.width;
    if (height === undefined || width === undefined) {
      const example = layout === 'NCHW' ? `1x${channels}x${preset.size}x${preset.size}` : `1x${preset.size}x${preset.size}x${channels}`;
      throw new UserError(`The input ${name} [${dims.join(', ')}] has a dynamic height or width; the size to feed must be given.`, {
        hint: `Give --size ${preset.size} (HxW also works) or --shapes ${input?.name ?? 'input'}:${example}.`,
      });
    }
  } else {
    height = size?.height ?? preset.size;
    width = size?.width ?? preset.size;
  }
  if (height > MAX_SIDE || width > MAX_SIDE) throw invalidParameter('size', `sides up to ${MAX_SIDE}`, `${height}x${width}`);
  return { height, width, channels, layout };
}

/** The --shapes entry for this input (or the only entry when there is no model to name one). */
function shapesFor(spec: string, input: ModelInputInfo | undefined): number[] | undefined {
  const shapes = parseShapes(spec);
  if (input) {
    const dims = shapes.get(input.name);
    if (!dims) {
      throw new UserError(`--shapes names ${[...shapes.keys()].map((k) => JSON.stringify(k)).join(', ')} but the model's image input is ${JSON.stringify(input.name)}.`);
    }
    return dims;
  }
  if (shapes.size !== 1) throw new UserError('--shapes names several inputs; without a model, give one entry or use --size.');
  return [...shapes.values()][0];
}

/** Channels-first when dim 1 is 1 or 3 and dim 3 is not; channels-last in the mirror case; else unknown. */
export function inferLayout(dims: ReadonlyArray<number | string>): Layout | undefined {
  const isChannel = (d: number | string | undefined) => d === 1 || d === 3;
  const c1 = isChannel(dims[1]);
  const c3 = isChannel(dims[3]);
  if (c1 && !c3) return 'NCHW';
  if (c3 && !c1) return 'NHWC';
  return undefined;
}

/** One value per output channel. A preset's uniform 3-value list also serves a 1-channel input. */
function perChannel(name: string, values: readonly number[], channels: number, fromPreset?: string): number[] {
  if (!Array.isArray(values) || values.length === 0 || values.some((v) => typeof v !== 'number' || !Number.isFinite(v))) {
    throw invalidParameter(name, `${channels} finite numbers (one per channel)`, list(values));
  }
  if (values.length === channels) return values.slice();
  if (values.length === 1) return new Array<number>(channels).fill(values[0]!);
  if (values.every((v) => v === values[0])) return new Array<number>(channels).fill(values[0]!);
  if (fromPreset) {
    throw new UserError(`The preset ${fromPreset} has a ${values.length}-channel ${name} but the input has ${channels} channel(s).`, {
      hint: `Give --${name} with ${channels} value(s).`,
    });
  }
  throw invalidParameter(name, `${channels} value(s) (one per channel, in the output channel order)`, list(values));
}

/** Lists print as "1,2,3" in messages (the shared describe() spells out each element's type). */
function list(values: unknown): unknown {
  return Array.isArray(values) ? values.join(',') : values;
}

function background(value: PreprocessOptions['background']): [number, number, number] {
  if (value === undefined) return [...DEFAULT_BACKGROUND];
  const ok = Array.isArray(value) && value.length === 3 && value.every((v) => Number.isInteger(v) && v >= 0 && v <= 255);
  if (!ok) throw invalidParameter('background', 'three integers from 0 to 255 (r,g,b)', list(value));
  return [value[0]!, value[1]!, value[2]!];
}

/**
 * The batch size: the user's, else the batch of --shapes, else a static model batch, else `fallback`.
 * A static model batch that differs from the request is an error.
 */
export function resolveBatchSize(options: { batch?: number; shapes?: string }, input?: ModelInputInfo, fallback = 1): number {
  if (options.batch !== undefined && (!Number.isInteger(options.batch) || options.batch < 1)) {
    throw invalidParameter('batch', 'a positive integer', options.batch);
  }
  const modelBatch = input && isStatic(input.dims[0]) ? (input.dims[0] as number) : undefined;
  const shapesBatch = options.shapes !== undefined ? shapesFor(options.shapes, input)?.[0] : undefined;
  const name = input ? JSON.stringify(input.name) : 'the input';
  if (modelBatch !== undefined) {
    const asked = options.batch ?? shapesBatch;
    if (asked !== undefined && asked !== modelBatch) {
      throw new UserError(`Batch ${asked} was requested but the input ${name} has a fixed batch of ${modelBatch} ([${input!.dims.join(', ')}]).`, {
        hint: `Use --batch ${modelBatch}, or export the model with a dynamic batch dimension.`,
      });
    }
    return modelBatch;
  }
  if (options.batch !== undefined && shapesBatch !== undefined && options.batch !== shapesBatch) {
    throw new UserError(`--batch ${options.batch} disagrees with the batch of --shapes (${shapesBatch}).`);
  }
  return options.batch ?? shapesBatch ?? fallback;
}
