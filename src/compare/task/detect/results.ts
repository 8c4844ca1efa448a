/**
 * --save-detections: a variant's detections in COCO's results format, so that any COCO tool can score them:
 * [{ image_id, category_id, bbox: [x, y, width, height], score }], with image_id the image's path relative to the
 * data folder (with / separators) and boxes in original pixels. Numbers are written at full precision (re-scoring
 * gives the reported mAP), one detection a line, images in dataset order, each image's detections by score.
 */
import path from 'node:path';
import { UserError } from '../../../errors.js';
import { writeFileAtomic } from '../../../util/fs.js';
import type { DetectionBox } from '../types.js';

export interface CocoResult {
  image_id: string;
  category_id: number;
  bbox: [number, number, number, number];
  score: number;
}

export function cocoResults(files: readonly string[], detections: readonly (readonly DetectionBox[])[], dataRoot: string): CocoResult[] {
  if (files.length !== detections.length) throw new Error(`cocoResults: ${files.length} files but ${detections.length} images of detections`);
  const root = path.resolve(dataRoot);
  const out: CocoResult[] = [];
  files.forEach((file, i) => {
    const imageId = path.relative(root, path.resolve(file)).split(path.sep).join('/');
    for (const d of detections[i]!) out.push({ image_id: imageId, category_id: d.classId, bbox: [d.x1, d.y1, d.x2 - d.x1, d.y2 - d.y1], score: d.score });
  });
  return out;
}

export async function writeCocoResults(file: string, files: readonly string[], detections: readonly (readonly DetectionBox[])[], dataRoot: string): Promise<void> {
  const target = path.resolve(file);
  if (files.some((f) => path.resolve(f) === target)) {
    throw new UserError(`--save-detections would write ${file}, which is one of the input images.`, { hint: 'Choose another folder for --save-detections.' });
  }
  const rows = cocoResults(files, detections, dataRoot).map((r) => JSON.stringify(r));
  await writeFileAtomic(file, rows.length === 0 ? '[]\n' : `[\n${rows.join(',\n')}\n]\n`);
}
