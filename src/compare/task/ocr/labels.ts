/**
 * Text labels of recognition images: `path<TAB>text` lines (PaddleOCR's rec_gt_*.txt format), the path relative to
 * the data folder. The text is everything after the first tab, as it is (spaces kept).
 */
import path from 'node:path';
import { UserError } from '../../../errors.js';
import { READ_LIMITS, readUserFile } from '../../../util/fs.js';

export interface TextLabels {
  /** Dataset file (path.resolve'd) -> expected text. */
  labels: Map<string, string>;
  /** Label lines whose image is not in the data (their paths as written), in file order. */
  unmatched: string[];
}

export async function readTextLabels(file: string, datasetFiles: readonly string[], dataRoot: string): Promise<TextLabels> {
  const bytes = await readUserFile(file, 'The labels file', READ_LIMITS.labels);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new UserError(`The labels file ${file} is not UTF-8 text.`);
  }
  return parseTextLabels(text, file, datasetFiles, dataRoot);
}

export function parseTextLabels(text: string, file: string, datasetFiles: readonly string[], dataRoot: string): TextLabels {
  if (text.startsWith('\ufeff')) text = text.slice(1);
  const known = new Set(datasetFiles.map((f) => path.resolve(f)));
  const labels = new Map<string, string>();
  const seen = new Map<string, { line: number; text: string }>();
  const unmatched: string[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line.trim() === '') continue;
    const tab = line.indexOf('\t');
    const where = `${file}:${i + 1}`;
    if (tab < 0) {
      throw new UserError(`${where}: expected "path<TAB>text", found no tab in ${JSON.stringify(line.length > 80 ? `${line.slice(0, 80)}...` : line)}.`, {
        hint: 'Each line is an image path relative to the data folder, a tab, then the text in the image.',
      });
    }
    const rel = line.slice(0, tab);
    if (rel.trim() === '') throw new UserError(`${where}: the image path before the tab is empty.`);
    const label = line.slice(tab + 1);
    const image = path.resolve(dataRoot, rel);
    const before = seen.get(image);
    if (before !== undefined) {
      if (before.text !== label) throw new UserError(`${where}: ${rel} is labelled again with another text (first on line ${before.line}).`, { hint: 'Keep one line per image.' });
      continue;
    }
    seen.set(image, { line: i + 1, text: label });
    if (known.has(image)) labels.set(image, label);
    else unmatched.push(rel);
  }
  return { labels, unmatched };
}
