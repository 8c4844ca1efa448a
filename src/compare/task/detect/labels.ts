/**
 * Ground-truth boxes for detection: COCO annotation JSON (`--labels coco.json`), YOLO txt folders
 * (`--labels yolo:DIR`), and class names (`--classes FILE`).
 *
 * Matching label entries to the images of --data:
 * - COCO: an image's `file_name` matches the dataset file whose path relative to the data folder is the same
 *   (with / separators); failing that, the one dataset file with that base name. A base name shared by several
 *   dataset files matches none of them (it would be a guess); such images are counted with the unmatched ones.
 * - YOLO: the image `a/b.jpg` (relative to the data folder) reads `DIR/a/b.txt`, else `DIR/b.txt`. An image
 *   without a txt file has no objects (ultralytics' convention for background images), and is counted.
 * Label entries that match no image of --data are counted and reported (unmatchedImages), never scored.
 * Boxes reaching outside the image are clipped to it (a warning counts them); boxes left without area and boxes of
 * unknown class ids are dropped (counted). A file that cannot be parsed is a UserError naming the file (and line).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import fg from 'fast-glob';
import { UserError } from '../../../errors.js';
import { READ_LIMITS, readUserFile } from '../../../util/fs.js';
import type { GroundTruthBox } from './types.js';

/** Reads `id name` lines (as coco_labels.txt) or one name a line (id = line index, from 0). */
export async function readClassNames(file: string): Promise<Map<number, string>> {
  const text = (await readUserFile(file, 'The class names file (--classes)', READ_LIMITS.labels)).toString('utf8').replace(/^\uFEFF/, '');
  const lines = text.split(/\r?\n/);
  while (lines.length > 0 && lines[lines.length - 1]!.trim() === '') lines.pop();
  if (lines.length === 0) throw new UserError(`The class names file ${file} is empty.`, { hint: 'Write `id name` lines, or one class name a line (line 1 is class 0).' });
  const names = new Map<number, string>();
  const idName = lines.every((l) => l.trim() === '' || /^\s*\d+\s+\S/.test(l));
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (idName) {
      if (line === '') return;
      const m = /^(\d+)\s+(.+)$/.exec(line)!;
      const id = Number(m[1]);
      if (names.has(id)) throw new UserError(`${file}:${i + 1}: class id ${id} is named twice.`);
      names.set(id, m[2]!.trim());
    } else {
      if (line === '') throw new UserError(`${file}:${i + 1}: empty line; with one name a line, line ${i + 1} would be class ${i} with no name.`);
      names.set(i, line);
    }
  });
  return names;
}

/** Counts of one kind of problem, reported as one line with a few examples. */
class WarningTally {
  private readonly kinds = new Map<string, { count: number; examples: string[] }>();
  add(kind: string, example: string): void {
    let k = this.kinds.get(kind);
    if (!k) this.kinds.set(kind, (k = { count: 0, examples: [] }));
    k.count++;
    if (k.examples.length < 3) k.examples.push(example);
  }
  count(kind: string): number {
    return this.kinds.get(kind)?.count ?? 0;
  }
  lines(): string[] {
    return [...this.kinds].map(([kind, { count, examples }]) => `${count} ${kind} (e.g. ${examples.join('; ')})`);
  }
}

const posix = (p: string): string => p.split(path.sep).join('/');

function relativeToData(file: string, dataRoot: string): string {
  return posix(path.relative(path.resolve(dataRoot), path.resolve(file)));
}

/** Clips a box to [0, width] x [0, height]; undefined when nothing with area is left. */
function clipBox(box: GroundTruthBox, width: number, height: number, where: string, tally: WarningTally): GroundTruthBox | undefined {
  const c = { ...box, x1: Math.max(0, box.x1), y1: Math.max(0, box.y1), x2: Math.min(width, box.x2), y2: Math.min(height, box.y2) };
  if (!(c.x2 > c.x1 && c.y2 > c.y1)) {
    tally.add('boxes have no area inside their image and were dropped', where);
    return undefined;
  }
  if (c.x1 !== box.x1 || c.y1 !== box.y1 || c.x2 !== box.x2 || c.y2 !== box.y2) tally.add('boxes reach outside their image and were clipped to it', where);
  return c;
}

export interface CocoLabels {
  labels: Map<string, GroundTruthBox[]>;
  classNames: Map<number, string>;
  /** COCO `file_name`s that match no image of --data. */
  unmatchedImages: string[];
  warnings: string[];
}

interface CocoJson {
  images?: unknown;
  annotations?: unknown;
  categories?: unknown;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export async function loadCocoLabels(file: string, datasetFiles: readonly string[], dataRoot: string): Promise<CocoLabels> {
  const bytes = await readUserFile(file, 'The labels file (--labels)', READ_LIMITS.labels);
  let json: CocoJson;
  try {
    json = JSON.parse(bytes.toString('utf8').replace(/^\uFEFF/, '')) as CocoJson;
  } catch (err) {
    throw new UserError(`The labels file ${file} is not valid JSON: ${(err as Error).message}.`, { hint: 'Give COCO annotations (images, annotations, categories) or yolo:DIR.' });
  }
  if (!isRecord(json) || !Array.isArray(json.images) || !Array.isArray(json.annotations)) {
    throw new UserError(`The labels file ${file} is not COCO annotations: it needs "images" and "annotations" arrays.`, { hint: 'For YOLO txt labels, pass --labels yolo:DIR.' });
  }
  const tally = new WarningTally();
  const classNames = new Map<number, string>();
  if (Array.isArray(json.categories)) {
    for (const c of json.categories) {
      if (isRecord(c) && Number.isInteger(c.id)) classNames.set(c.id as number, typeof c.name === 'string' ? c.name : String(c.id));
    }
  }

  const byRelative = new Map<string, string>();
  const byBase = new Map<string, string[]>();
  for (const f of datasetFiles) {
    const abs = path.resolve(f);
    byRelative.set(relativeToData(abs, dataRoot), abs);
    const base = path.basename(abs);
    byBase.set(base, [...(byBase.get(base) ?? []), abs]);
  }

  const labels = new Map<string, GroundTruthBox[]>();
  const imageById = new Map<unknown, { file: string; width: number; height: number; name: string }>();
  const unmatchedImages: string[] = [];
  json.images.forEach((im, i) => {
    if (!isRecord(im) || typeof im.file_name !== 'string' || im.id === undefined) {
      throw new UserError(`${file}: images[${i}] has no file_name or id.`);
    }
    const name = im.file_name.replace(/\\/g, '/').replace(/^\.\//, '');
    let match = byRelative.get(name);
    if (!match) {
      const same = byBase.get(path.posix.basename(name));
      if (same?.length === 1) match = same[0];
      else if (same && same.length > 1) tally.add('images match several files of --data by base name and were left out', name);
    }
    if (!match) {
      unmatchedImages.push(name);
      return;
    }
    if (labels.has(match)) {
      tally.add('images name a file of --data already named by another entry and were left out', name);
      return;
    }
    const width = typeof im.width === 'number' ? im.width : Infinity;
    const height = typeof im.height === 'number' ? im.height : Infinity;
    labels.set(match, []);
    imageById.set(im.id, { file: match, width, height, name });
  });
  if (labels.size === 0 && json.images.length > 0) {
    throw new UserError(`None of the ${json.images.length} images of ${file} is in --data (${datasetFiles.length} images).`, {
      hint: 'Images match by file_name: the path relative to the --data folder, or a base name found once in --data.',
    });
  }

  const listedIds = new Set(json.images.map((im) => (isRecord(im) ? im.id : undefined)));
  json.annotations.forEach((a, i) => {
    const where = `annotations[${i}]`;
    if (!isRecord(a)) throw new UserError(`${file}: ${where} is not an object.`);
    const image = imageById.get(a.image_id);
    if (!image) {
      // Annotations of images left out above are expected; others name images the file does not list.
      if (!listedIds.has(a.image_id)) tally.add('annotations name an image id not in "images" and were dropped', `${where} image_id ${String(a.image_id)}`);
      return;
    }
    const bbox = a.bbox;
    if (!Array.isArray(bbox) || bbox.length !== 4 || !bbox.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      throw new UserError(`${file}: ${where} has no valid bbox [x, y, width, height] (got ${JSON.stringify(bbox)}).`);
    }
    const classId = a.category_id;
    if (typeof classId !== 'number' || !Number.isInteger(classId) || (classNames.size > 0 && !classNames.has(classId))) {
      tally.add('annotations have a category_id not in "categories" and were dropped', `${where} category_id ${String(classId)}`);
      return;
    }
    const [x, y, w, h] = bbox as [number, number, number, number];
    const box: GroundTruthBox = { x1: x, y1: y, x2: x + w, y2: y + h, classId, ...(a.iscrowd ? { iscrowd: true } : {}) };
    const clipped = clipBox(box, image.width, image.height, `${image.name} ${where}`, tally);
    if (clipped) labels.get(image.file)!.push(clipped);
  });
  if (unmatchedImages.length > 0) tally.add('images of the labels are not in --data and were not scored', unmatchedImages.slice(0, 3).join(', '));
  return { labels, classNames, unmatchedImages, warnings: tally.lines() };
}

export interface YoloLabels {
  labels: Map<string, GroundTruthBox[]>;
  /** Label files (relative to DIR) that match no image of --data. */
  unmatchedImages: string[];
  warnings: string[];
}

export async function loadYoloLabels(
  dir: string,
  datasetFiles: readonly string[],
  dataRoot: string,
  images: ReadonlyMap<string, { width: number; height: number }>,
  classNames?: ReadonlyMap<number, string>,
): Promise<YoloLabels> {
  const stat = await fsp.stat(dir).catch(() => undefined);
  if (!stat?.isDirectory()) throw new UserError(`--labels yolo:${dir}: ${stat ? 'not a folder' : 'no such folder'}.`, { hint: 'Name the folder of YOLO .txt label files.' });
  const root = path.resolve(dir);
  const present = new Set(await fg('**/*.txt', { cwd: root, onlyFiles: true, dot: false }));
  const used = new Set<string>();
  const tally = new WarningTally();
  const labels = new Map<string, GroundTruthBox[]>();
  for (const f of datasetFiles) {
    const abs = path.resolve(f);
    const size = images.get(abs) ?? images.get(f);
    if (!size) throw new Error(`loadYoloLabels: no image size for ${abs}`);
    const rel = relativeToData(abs, dataRoot);
    const stem = (p: string): string => p.slice(0, p.length - path.posix.extname(p).length) + '.txt';
    const candidates = [stem(rel), stem(path.posix.basename(rel))];
    const txt = candidates.find((c) => present.has(c));
    const boxes: GroundTruthBox[] = [];
    labels.set(abs, boxes);
    if (!txt) {
      tally.add('images have no label file and count as images without objects', rel);
      continue;
    }
    used.add(txt);
    const labelFile = path.join(root, txt);
    const text = (await readUserFile(labelFile, 'The YOLO label file', READ_LIMITS.labels)).toString('utf8').replace(/^\uFEFF/, '');
    text.split(/\r?\n/).forEach((raw, i) => {
      const line = raw.trim();
      if (line === '') return;
      const where = `${labelFile}:${i + 1}`;
      const fields = line.split(/\s+/);
      const values = fields.map(Number);
      if (fields.length !== 5 || !values.every(Number.isFinite) || !Number.isInteger(values[0]) || values[0]! < 0 || values[3]! < 0 || values[4]! < 0) {
        throw new UserError(`${where}: ${JSON.stringify(line)} is not a YOLO box line "class cx cy w h".`, {
          hint: 'Each line is a class index (integer from 0) and the box centre and size, normalised to 0..1 of the image.',
        });
      }
      const [classId, cx, cy, w, h] = values as [number, number, number, number, number];
      if (classNames && classNames.size > 0 && !classNames.has(classId)) {
        tally.add('boxes have a class id not in --classes and were dropped', `${where} class ${classId}`);
        return;
      }
      const box = { x1: (cx - w / 2) * size.width, y1: (cy - h / 2) * size.height, x2: (cx + w / 2) * size.width, y2: (cy + h / 2) * size.height, classId };
      const clipped = clipBox(box, size.width, size.height, where, tally);
      if (clipped) boxes.push(clipped);
    });
  }
  if (used.size === 0) {
    throw new UserError(`--labels yolo:${dir}: no label file matches an image of --data (${present.size} .txt files, ${datasetFiles.length} images).`, {
      hint: 'The image a/b.jpg (relative to the --data folder) reads DIR/a/b.txt or DIR/b.txt.',
    });
  }
  const unmatchedImages = [...present].filter((t) => !used.has(t)).sort();
  if (unmatchedImages.length > 0) tally.add('label files match no image of --data and were not scored', unmatchedImages.slice(0, 3).join(', '));
  return { labels, unmatchedImages, warnings: tally.lines() };
}
