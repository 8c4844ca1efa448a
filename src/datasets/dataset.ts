/**
 * An image Dataset: discovered files, decoded and preprocessed ahead of the consumer with bounded
 * concurrency (mapOrdered), assembled in file order into float32 batches (or in the order decodes finish, with
 * batches({order: 'any'}), for consumers that do not depend on it).
 *
 * - batches() returns a fresh pass each call; two passes give identical data.
 * - A file that cannot be decoded is reported through onSkip and the batch is filled from the next files,
 *   so every batch is full except the last, which is kept and marked `partial`. With `strict` the first
 *   such file ends the pass with an ImageDecodeError (a UserError naming the file).
 * - Per-image data does not depend on the batch size, the concurrency or the order decodes finish in.
 * - Symbolic link loops and dangling links that discovery did not follow are reported through onSkip (kind
 *   'link') at the end of every pass (also with `strict`: they are folder entries, not images that failed to decode).
 */
import { availableParallelism } from 'node:os';
import { UserError, invalidParameter } from '../errors.js';
import { discoverImagesReporting, seededPick, sortPaths } from './discovery.js';
import { mapOrdered } from './prefetch.js';
import { summarizeSkipped } from './skipped.js';
import { ImageDecodeError, decodeImage, imageDims, imageElementCount, normalisationTables, writeImageTensor } from './preprocess.js';
import type { Batch, BatchOptions, Dataset, PreprocessConfig, SkippedFile } from './types.js';

export interface DatasetOptions {
  /** A folder (recursive), a glob or a list file; or give `files`. */
  data?: string;
  /** The files to use, instead of `data` (sorted here). */
  files?: readonly string[];
  /** Resolved preprocessing (see resolvePreprocess). */
  preprocess: PreprocessConfig;
  /** Name of the model input fed (default "input"). */
  inputName?: string;
  /** Images per batch (default 1). */
  batchSize?: number;
  maxImages?: number;
  seed?: number;
  /** A file that cannot be decoded is an error instead of being skipped. */
  strict?: boolean;
  /** Images decoded at once (default: the number of CPU cores). */
  concurrency?: number;
  /** Batches prepared ahead of the consumer (default 2). */
  prefetchBatches?: number;
}

export async function createDataset(options: DatasetOptions): Promise<Dataset> {
  const batchSize = options.batchSize ?? 1;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw invalidParameter('batchSize', 'a positive integer', batchSize);
  const concurrency = options.concurrency ?? availableParallelism();
  if (!Number.isInteger(concurrency) || concurrency < 1) throw invalidParameter('concurrency', 'a positive integer', concurrency);
  const prefetchBatches = options.prefetchBatches ?? 2;
  if (!Number.isInteger(prefetchBatches) || prefetchBatches < 1) throw invalidParameter('prefetchBatches', 'a positive integer', prefetchBatches);

  let files: string[];
  let unreachable: SkippedFile[] = [];
  if (options.files) {
    if (options.files.length === 0) throw new UserError('The dataset has no files.');
    files = sortPaths([...new Set(options.files)]);
    if (options.maxImages !== undefined) {
      // Same pick as discovery, so a list passed in gives the same subset as the folder it came from.
      if (options.maxImages < files.length) files = sortPaths(seededPick(files, options.maxImages, options.seed ?? 0));
    }
  } else if (options.data !== undefined) {
    ({ files, skipped: unreachable } = await discoverImagesReporting(options.data, { maxImages: options.maxImages, seed: options.seed }));
  } else {
    throw invalidParameter('data', 'a folder, a glob or a list file (or files)', undefined);
  }
  return new ImageDataset(options.inputName ?? 'input', options.preprocess, files, batchSize, {
    strict: options.strict ?? false,
    concurrency,
    prefetchBatches,
    unreachable,
  });
}

class ImageDataset implements Dataset {
  readonly imageDims: number[];
  constructor(
    readonly inputName: string,
    readonly preprocess: PreprocessConfig,
    readonly files: readonly string[],
    readonly batchSize: number,
    private readonly settings: { strict: boolean; concurrency: number; prefetchBatches: number; unreachable: readonly SkippedFile[] },
  ) {
    this.imageDims = imageDims(preprocess);
  }

  get size(): number {
    return this.files.length;
  }

  async *batches(options: BatchOptions = {}): AsyncGenerator<Batch, void, undefined> {
    const config = this.preprocess;
    const tables = normalisationTables(config);
    const perImage = imageElementCount(config);
    const { strict, concurrency, prefetchBatches } = this.settings;
    const batchSize = this.batchSize;
    let data = new Float32Array(batchSize * perImage);
    let files: string[] = [];
    let index = 0;
    let used = 0;
    const skipped: SkippedFile[] = [];

    const results = mapOrdered(this.files, (file) => decodeImage(file, config), {
      concurrency,
      window: Math.max(concurrency, prefetchBatches * batchSize),
      signal: options.signal,
      // strict ends the pass at the first unreadable file: in file order, so that it is always the same one.
      ordered: options.order !== 'any' || strict,
    });
    for await (const result of results) {
      const file = this.files[result.index]!;
      if (!result.ok) {
        const error = result.error instanceof ImageDecodeError ? result.error : new ImageDecodeError(file, String(result.error));
        if (strict) throw error;
        const entry = { file, reason: error.reason };
        skipped.push(entry);
        options.onSkip?.(entry);
        continue;
      }
      writeImageTensor(result.value, config, data, files.length * perImage, tables);
      files.push(file);
      used++;
      options.onImage?.(file);
      if (files.length === batchSize) {
        yield { index: index++, data, dims: [batchSize, ...this.imageDims], files, partial: false };
        if (!options.reuseBuffer) data = new Float32Array(batchSize * perImage);
        files = [];
      }
    }
    if (files.length > 0) {
      yield { index, data: data.slice(0, files.length * perImage), dims: [files.length, ...this.imageDims], files, partial: true };
    }
    // Link loops and dangling links that discovery did not follow go to the same list as unreadable images, after
    // the images, so that progress counts (images used + skipped, out of the dataset's size) stay within the size.
    for (const s of this.settings.unreachable) {
      const entry = { ...s };
      skipped.push(entry);
      options.onSkip?.(entry);
    }
    if (used === 0) {
      throw new UserError(`None of the ${this.files.length} selected image(s) could be decoded.`, {
        hint: summarizeSkipped(skipped, 0, 3),
      });
    }
  }
}

export { summarizeSkipped };
