/**
 * Writes report.json and report.html for a CompareReport, each atomically (temporary file, then rename).
 * The HTML embeds thumbnails of the worst images, made here (the renderers themselves are pure).
 */
import type { Reporter } from '../reporter.js';
import { writeFileAtomic } from '../util/fs.js';
import { renderHtml, type HtmlRenderOptions } from './render-html.js';
import { renderJson } from './render-json.js';
import { worstFiles } from './report.js';
import { thumbnailDataUris } from './thumbnails.js';
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
  htmlOptions?: Omit<HtmlRenderOptions, 'thumbnails'>;
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
    const thumbnails =
      size > 0
        ? await thumbnailDataUris(worstFiles(report), {
            size,
            ...(options.imageBaseDir !== undefined ? { baseDir: options.imageBaseDir } : {}),
            ...(options.reporter !== undefined ? { reporter: options.reporter } : {}),
          })
        : new Map<string, string>();
    await writeFileAtomic(options.html, renderHtml(report, { ...options.htmlOptions, thumbnails }));
    written.push(options.html);
  }
  return written;
}
