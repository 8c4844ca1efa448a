/**
 * The segmentation task: each variant's per-pixel classes against FP32's (at the output's resolution, pixel for
 * pixel) and, when masks are given, against the masks (at the original image's resolution, through ImageGeometry).
 * See class-counts.ts for the IoU rules and docs/segmentation-ocr.md for the whole.
 *
 * Streaming: the reference's class maps of the current batch are kept until the next batch; per variant only the
 * class counts (and a bounded list of the worst images) are kept.
 */
import path from 'node:path';
import { UserError } from '../../../errors.js';
import { DEFAULT_DENSE_THRESHOLD, DEFAULT_WORST_COUNT, WorstK } from '../../metrics.js';
import type { BatchOutputs, ClassIou, ImageGeometry, SegmentationMetrics, TaskEvaluator, TaskMetrics } from '../types.js';
import { ClassCounts } from './class-counts.js';
import { classMapLayout, classMapOf, originalSampling, tensorValues, type ClassMapLayout } from './class-map.js';
import { addMaskCounts, readMask, type LabelMask } from './masks.js';

export interface SegmentationOptions {
  output: string;
  /** Default: argmax when C > 1, binary when C == 1 (PP-OCR det: [N, 1, H, W]). Integer outputs are class ids. */
  mode?: 'argmax' | 'binary';
  /** Where the classes are: [N, C, H, W] (default) or [N, H, W, C] (TensorFlow/Keras exports). */
  layout?: 'NCHW' | 'NHWC';
  /** Binary maps: foreground where v >= threshold (default 0.3, the project's dense threshold). */
  threshold?: number;
  classNames?: ReadonlyMap<number, string>;
  /** Mask value that is skipped (default 255, as Cityscapes and VOC). */
  ignoreIndex?: number;
  /** Dataset file (path.resolve'd) -> mask PNG (class index per pixel, the original image's size). */
  labels?: ReadonlyMap<string, string>;
  /** Worst images kept per variant (default 8). */
  worstCount?: number;
}

export const DEFAULT_IGNORE_INDEX = 255;

interface WorstImage {
  file: string;
  index: number;
  iou: number;
  /** Small copies of both class maps, for the report's overlays (maskOverlayDataUri in src/compare/thumbnails.ts). */
  view: WorstMapView;
}

/** The worst images' maps, FP32's and the variant's, nearest-downsampled to at most VIEW_SIDE on the long side. */
export interface WorstMapView {
  file: string;
  index: number;
  iou: number;
  mode: ClassMapLayout['mode'];
  geometry: ImageGeometry;
  width: number;
  height: number;
  reference: Uint16Array;
  variant: Uint16Array;
}

/** Long side of the maps kept for overlays: 2 x 160 x 160 x 2 bytes = 100 KiB per worst image at most. */
export const VIEW_SIDE = 160;

function downsample(map: Uint16Array, width: number, height: number, w: number, h: number): Uint16Array {
  if (w === width && h === height) return map.slice();
  const out = new Uint16Array(w * h);
  for (let y = 0; y < h; y++) {
    const sy = Math.min(height - 1, Math.floor(((y + 0.5) * height) / h));
    for (let x = 0; x < w; x++) out[y * w + x] = map[sy * width + Math.min(width - 1, Math.floor(((x + 0.5) * width) / w))]!;
  }
  return out;
}

function worseImage(a: WorstImage, b: WorstImage): boolean {
  if (a.iou !== b.iou) return a.iou < b.iou;
  return a.index < b.index;
}

interface VariantState {
  counts: ClassCounts;
  labelCounts: ClassCounts;
  labelledImages: number;
  ignoredPixels: number;
  outsidePixels: number;
  worst: WorstK<WorstImage>;
  images: number;
}

export class SegmentationEvaluator implements TaskEvaluator {
  readonly kind = 'segment' as const;
  readonly outputs: readonly string[];
  private readonly threshold: number;
  private readonly ignoreIndex: number;
  private readonly worstCount: number;
  private layout: ClassMapLayout | undefined;
  private readonly variants = new Map<string, VariantState>();
  /** The current batch: FP32's class maps, its images, the index of its first image in the pass, its masks. */
  private referenceMaps: Uint16Array[] = [];
  private batchImages: readonly ImageGeometry[] = [];
  private batchLayout: ClassMapLayout | undefined;
  private batchStart = 0;
  private imagesSeen = 0;
  private masks = new Map<string, LabelMask>();
  private preparedFor: readonly ImageGeometry[] | undefined;
  private unlabelledImages = 0;

  constructor(private readonly options: SegmentationOptions) {
    this.outputs = [options.output];
    this.threshold = options.threshold ?? DEFAULT_DENSE_THRESHOLD;
    this.ignoreIndex = options.ignoreIndex ?? DEFAULT_IGNORE_INDEX;
    this.worstCount = options.worstCount ?? DEFAULT_WORST_COUNT;
    if (typeof options.output !== 'string' || options.output === '') throw new UserError('The segmentation task needs the name of the output to read.');
    if (!Number.isFinite(this.threshold)) throw new UserError(`The segmentation threshold must be a finite number, got ${this.threshold}.`);
    if (!Number.isInteger(this.ignoreIndex) || this.ignoreIndex < 0 || this.ignoreIndex > 0xfffe) {
      throw new UserError(`The ignore index must be an integer from 0 to 65534, got ${this.ignoreIndex}.`);
    }
    if (!Number.isInteger(this.worstCount) || this.worstCount < 0) throw new UserError(`worstCount must be a non-negative integer, got ${this.worstCount}.`);
    if (options.layout !== undefined && options.layout !== 'NCHW' && options.layout !== 'NHWC') {
      throw new UserError(`Unknown segmentation layout ${JSON.stringify(options.layout)}; expected NCHW or NHWC.`);
    }
    if (options.mode !== undefined && options.mode !== 'argmax' && options.mode !== 'binary') {
      throw new UserError(`Unknown segmentation mode ${JSON.stringify(options.mode)}; expected argmax or binary.`);
    }
  }

  /**
   * Reads the masks of the batch's labelled images (sharp is asynchronous; the add* calls are not). Call it, and
   * wait for it, before addReference of every batch when labels are given; the previous batch's masks are let go.
   */
  async prepareBatch(images: readonly ImageGeometry[]): Promise<void> {
    this.masks = new Map();
    this.preparedFor = images;
    const labels = this.options.labels;
    if (labels === undefined) return;
    for (const g of images) {
      const maskFile = labels.get(path.resolve(g.file));
      if (maskFile === undefined) continue;
      const mask = await readMask(maskFile);
      if (mask.width !== g.width || mask.height !== g.height) {
        throw new UserError(`The mask ${maskFile} is ${mask.width}x${mask.height} pixels but its image ${g.file} is ${g.width}x${g.height}.`, {
          hint: 'A mask has its image\'s size (after EXIF orientation): check that it belongs to this image.',
        });
      }
      this.masks.set(g.file, mask);
    }
  }

  addReference(outputs: BatchOutputs, images: readonly ImageGeometry[]): void {
    if (this.options.labels !== undefined && !sameFiles(this.preparedFor, images)) {
      throw new Error('SegmentationEvaluator: prepareBatch() must be awaited before addReference() of each batch when masks are given.');
    }
    const { layout, maps } = this.classMaps('FP32', outputs, images);
    this.referenceMaps = maps;
    this.batchLayout = layout;
    this.batchImages = images;
    this.batchStart = this.imagesSeen;
    this.imagesSeen += images.length;
    if (this.options.labels !== undefined) for (const g of images) if (!this.masks.has(g.file)) this.unlabelledImages++;
  }

  addVariant(variant: string, outputs: BatchOutputs, images: readonly ImageGeometry[]): void {
    if (!sameFiles(this.batchImages, images)) {
      throw new Error(`SegmentationEvaluator: variant ${variant} was given other images than the reference's batch.`);
    }
    const { layout, maps } = this.classMaps(variant, outputs, images);
    const ref = this.batchLayout!;
    if (layout.height !== ref.height || layout.width !== ref.width) {
      throw new Error(`SegmentationEvaluator: output '${this.options.output}' of ${variant} is ${layout.height}x${layout.width} per image, FP32's ${ref.height}x${ref.width}.`);
    }
    // Binary maps have two classes (background 0, foreground 1) in one channel.
    const classes = layout.mode === 'binary' ? 2 : layout.channels;
    let state = this.variants.get(variant);
    if (state === undefined) {
      state = {
        counts: new ClassCounts(classes),
        labelCounts: new ClassCounts(classes),
        labelledImages: 0,
        ignoredPixels: 0,
        outsidePixels: 0,
        worst: new WorstK<WorstImage>(this.worstCount, worseImage),
        images: 0,
      };
      this.variants.set(variant, state);
    }
    const image = new ClassCounts(classes);
    for (let i = 0; i < images.length; i++) {
      const ref = this.referenceMaps[i]!;
      const map = maps[i]!;
      if (layout.mode === 'ids') image.ensure(Math.max(maxClass(ref), maxClass(map)) + 1);
      image.reset();
      image.addMaps(ref, map);
      const iou = this.imageIou(image);
      const side = Math.min(1, VIEW_SIDE / Math.max(layout.width, layout.height));
      const w = Math.max(1, Math.round(layout.width * side));
      const h = Math.max(1, Math.round(layout.height * side));
      const view: WorstMapView = {
        file: images[i]!.file,
        index: this.batchStart + i,
        iou,
        mode: layout.mode,
        geometry: images[i]!,
        width: w,
        height: h,
        reference: downsample(ref, layout.width, layout.height, w, h),
        variant: downsample(map, layout.width, layout.height, w, h),
      };
      state.worst.push({ file: view.file, index: view.index, iou, view });
      state.counts.merge(image);
      state.images++;
      const mask = this.masks.get(images[i]!.file);
      if (mask !== undefined) {
        const g = images[i]!;
        const sampling = originalSampling(g, layout.width, layout.height);
        const r = addMaskCounts(state.labelCounts, mask, map, layout.width, sampling, this.ignoreIndex, layout.mode === 'ids' ? undefined : classes);
        state.ignoredPixels += r.ignored;
        state.outsidePixels += r.outside;
        state.labelledImages++;
      }
    }
  }

  finish(): Map<string, TaskMetrics> {
    const result = new Map<string, TaskMetrics>();
    const mode = this.layout?.mode === 'binary' ? 'binary' : 'argmax';
    for (const [name, s] of this.variants) {
      const miou = this.summary(s.counts) ?? 1;
      const segmentation: SegmentationMetrics = {
        mode,
        ...(mode === 'binary' ? { threshold: this.threshold } : {}),
        miou,
        perClass: this.perClass(s.counts),
        pixelAgreement: s.counts.agreement() ?? 1,
        worst: s.worst.sorted().map(({ file, index, iou }) => ({ file, index, iou })),
      };
      let valueLabels: number | undefined;
      if (this.options.labels !== undefined) {
        segmentation.labelledImages = s.labelledImages;
        segmentation.unlabelledImages = this.unlabelledImages;
        segmentation.ignoredPixels = s.ignoredPixels;
        if (s.outsidePixels > 0) segmentation.outsidePixels = s.outsidePixels;
        valueLabels = this.summary(s.labelCounts);
        if (valueLabels !== undefined) {
          segmentation.miouLabels = valueLabels;
          segmentation.perClassLabels = this.perClass(s.labelCounts);
          segmentation.pixelAccuracyLabels = s.labelCounts.agreement()!;
        }
      }
      result.set(name, {
        kind: 'segment',
        metric: mode === 'binary' ? 'IoU' : 'mIoU',
        value: miou,
        ...(valueLabels !== undefined ? { valueLabels } : {}),
        segmentation,
      });
    }
    return result;
  }

  /** The worst images of a variant with small copies of both maps (worst first), for maskOverlayDataUris. */
  worstViews(variant: string): WorstMapView[] {
    return this.variants.get(variant)?.worst.sorted().map((w) => w.view) ?? [];
  }

  /** Binary: the foreground's IoU; otherwise the mean IoU. Undefined when there is nothing to measure. */
  private summary(counts: ClassCounts): number | undefined {
    return this.layout?.mode === 'binary' ? counts.iou(1) : counts.meanIou();
  }

  /** One image's score for the worst list: as `summary`, 1 when the image has nothing to measure (both empty agree). */
  private imageIou(counts: ClassCounts): number {
    return this.summary(counts) ?? 1;
  }

  private perClass(counts: ClassCounts): ClassIou[] {
    const rows: ClassIou[] = [];
    const binary = this.layout?.mode === 'binary';
    for (let c = 0; c < counts.classes; c++) {
      const iou = counts.iou(c);
      if (iou === undefined) continue;
      const name = this.options.classNames?.get(c) ?? (binary ? (c === 1 ? 'foreground' : 'background') : undefined);
      rows.push({ classId: c, ...(name !== undefined ? { name } : {}), iou, pixels: counts.reference[c]! });
    }
    return rows;
  }

  /** The batch's class maps; mode and channels must stay the same through the pass (the map size may change by batch). */
  private classMaps(who: string, outputs: BatchOutputs, images: readonly ImageGeometry[]): { layout: ClassMapLayout; maps: Uint16Array[] } {
    const name = this.options.output;
    const t = outputs[name];
    if (t === undefined) throw new Error(`SegmentationEvaluator: ${who}'s outputs lack '${name}'.`);
    if (t.dims[0] !== images.length) {
      throw new Error(`SegmentationEvaluator: output '${name}' of ${who} has dims [${t.dims.join(', ')}] for a batch of ${images.length} images.`);
    }
    const layout = classMapLayout(name, t.dims, t.dtype, this.options.mode, this.options.layout);
    if (this.layout === undefined) this.layout = layout;
    else if (layout.mode !== this.layout.mode || layout.channels !== this.layout.channels) {
      throw new UserError(`The segmentation output '${name}' of ${who} has ${layout.channels} channel(s) (${layout.mode}), but it had ${this.layout.channels} (${this.layout.mode}) before.`);
    }
    const values = tensorValues(t, `The output '${name}' of ${who}`);
    return { layout, maps: images.map((_, i) => classMapOf(values, layout, i, this.threshold, name)) };
  }
}

function sameFiles(a: readonly ImageGeometry[] | undefined, b: readonly ImageGeometry[]): boolean {
  return a !== undefined && a.length === b.length && a.every((g, i) => g.file === b[i]!.file);
}

function maxClass(map: Uint16Array): number {
  let m = 0;
  for (let i = 0; i < map.length; i++) if (map[i]! > m) m = map[i]!;
  return m;
}

export function createSegmentationEvaluator(options: SegmentationOptions): SegmentationEvaluator {
  return new SegmentationEvaluator(options);
}
