/**
 * Writes report.json and report.html for a CompareReport, each atomically (temporary file, then rename).
 * The HTML embeds thumbnails of the worst images and, for detection, larger photos to draw the boxes on, made here
 * (the renderers themselves are pure). Segmentation's mask overlays need the masks, which the report does not hold:
 * the comparison pass makes them (maskOverlayDataUri) and passes them in htmlOptions.maskOverlays.
 */
import type { Reporter } from '../reporter.js';
import { writeFileAtomic } from '../util/fs.js';
import { renderHtml, type HtmlRenderOptions } from './render-html.js';
import { renderJson } from './render-json.js';
import { detectionPhotoFiles } from './render-task-html.js';
import { worstFiles } from './report.js';
import { photoDataUris, thumbnailDataUris } from './thumbnails.js';
import type { CompareReport } from './types.js';

export interface WriteReportOptions {
  /** Path of report.json (not written when undefined). */
  json?: string;
  /** Path of report.html (not written when undefined). */
  html?: string;
  /** Folder that relative image paths in the report are relative to (default: the working directory). */
  imageBaseDir?: string;
  /** Thumbnail size in pixels (default 96); 0 for none. */
  thumbnailSize?: number;
  /** Longest side of the detection photos that boxes are drawn on (default 480); 0 for none. */
  photoSize?: number;
  htmlOptions?: Omit<HtmlRenderOptions, 'thumbnails' | 'photos'>;
  reporter?: Reporter;
}

/** Returns the paths written. */
export async function writeReportFiles(report: CompareReport, options: WriteReportOptions): Promise<string[]> {
  const written: string[] = [];
  if (options.json !== undefined) {
    await writeFileAtomic(options.json, renderJson(report));
    written.push(options.json);
  }
  if (options.html !== undefined) {
    const size = options.thumbnailSize ?? 96;
    const photoSize = options.photoSize ?? 480;
    const common = {
      ...(options.imageBaseDir !== undefined ? { baseDir: options.imageBaseDir } : {}),
      ...(options.reporter !== undefined ? { reporter: options.reporter } : {}),
    };
    const thumbnails = size > 0 ? await thumbnailDataUris(worstFiles(report), { size, ...common }) : new Map<string, string>();
    const photoFiles = photoSize > 0 ? detectionPhotoFiles(report) : [];
    const photos = photoFiles.length > 0 ? await photoDataUris(photoFiles, { size: photoSize, quality: 80, ...common }) : undefined;
    await writeFileAtomic(options.html, renderHtml(report, { ...options.htmlOptions, thumbnails, ...(photos !== undefined ? { photos } : {}) }));
    written.push(options.html);
  }
  return written;
}
