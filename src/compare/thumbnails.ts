/**
 * Thumbnails of the worst images for report.html: each image decoded with sharp (EXIF orientation applied),
 * fitted inside size x size pixels, encoded as JPEG and returned as a data: URI, so that the report needs no
 * other file. An image that cannot be read is left out with a warning (the report still renders).
 */
import path from 'node:path';
import sharp from 'sharp';
import type { Reporter } from '../reporter.js';
import { silentReporter } from '../reporter.js';

export interface ThumbnailOptions {
  /** Longest side in pixels (default 96). */
  size?: number;
  /** JPEG quality (default 70). */
  quality?: number;
  /** Relative file names are resolved against this folder (default: the working directory). */
  baseDir?: string;
  reporter?: Reporter;
}

/** file (as given) -> data:image/jpeg;base64,... */
export async function thumbnailDataUris(files: readonly string[], options: ThumbnailOptions = {}): Promise<Map<string, string>> {
  const size = options.size ?? 96;
  const quality = options.quality ?? 70;
  const reporter = options.reporter ?? silentReporter;
  const out = new Map<string, string>();
  // One at a time: a handful of small images, and sharp already uses its own threads.
  for (const file of files) {
    if (out.has(file)) continue;
    const full = options.baseDir !== undefined ? path.resolve(options.baseDir, file) : file;
    try {
      const jpeg = await sharp(full, { failOn: 'none' })
        .rotate()
        .flatten({ background: '#ffffff' })
        .resize(size, size, { fit: 'inside', withoutEnlargement: true })
        .jpeg({ quality, mozjpeg: false })
        .toBuffer();
      out.set(file, `data:image/jpeg;base64,${jpeg.toString('base64')}`);
    } catch (err) {
      reporter.warn(`No thumbnail for ${file}: ${(err as Error).message}`);
    }
  }
  return out;
}
