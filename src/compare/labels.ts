/**
 * Class labels for accuracy: from folder names (an image's parent folder is its class, as in ImageNet-style
 * validation folders) or from a CSV of `path,label` lines. Class names become indices through an optional class
 * list (one name per line, line i = class i); without one, labels must be class indices (integers).
 *
 * CSV: RFC 4180 quoting ("a,b", "" for a quote), CRLF or LF, a UTF-8 BOM is ignored, blank lines are skipped.
 * The first line is a header when its label field is not a valid label (not an integer, not a class name) and
 * its path field is not an image file name (so `a.jpg,cow` with an unknown class is an error, not a header).
 * Relative paths are resolved against the CSV's folder and against the data folder; an image matches either.
 */
import path from 'node:path';
import { isImagePath } from '../datasets/discovery.js';
import { UserError } from '../errors.js';
import { READ_LIMITS, readUserFile } from '../util/fs.js';

export interface LabelAssignment {
  /** Where the labels came from, for the report ("folders", or the CSV path). */
  source: string;
  /** Class names by index, when a class list was given. */
  classes?: string[];
  /** Per file (same order as the files given): its class index, or undefined when it has none. */
  labels: (number | undefined)[];
  labelled: number;
  /** Files without a label (the CLI reports the count and a few names). */
  unlabelled: string[];
}

/** Parses a class list: one class name per line, line index = class index. */
export function parseClassList(text: string, file: string): string[] {
  const lines = stripBom(text).split(/\r?\n/);
  while (lines.length > 0 && lines[lines.length - 1]!.trim() === '') lines.pop();
  if (lines.length === 0) throw new UserError(`The class list ${file} is empty.`, { hint: 'Write one class name per line; line 1 is class 0.' });
  const seen = new Map<string, number>();
  return lines.map((raw, i) => {
    const name = raw.trim();
    if (name === '') {
      throw new UserError(`The class list ${file} has an empty line ${i + 1}; line ${i + 1} would be class ${i} with no name.`, {
        hint: 'Write one class name per line, with no blank lines between them (line 1 is class 0).',
      });
    }
    const previous = seen.get(name);
    if (previous !== undefined) throw new UserError(`The class list ${file} names ${JSON.stringify(name)} twice, on lines ${previous + 1} and ${i + 1}.`);
    seen.set(name, i);
    return name;
  });
}

export async function readClassList(file: string): Promise<string[]> {
  return parseClassList((await readUserFile(file, 'Class list', READ_LIMITS.labels)).toString('utf8'), file);
}

export interface CsvLabelEntry {
  /** The path as written in the CSV. */
  path: string;
  label: string;
  line: number;
}

/**
 * Splits a CSV into records of fields, keeping the line number where each record starts. Quoted fields may hold
 * commas, quotes ("") and line breaks.
 */
export function parseCsv(text: string, file: string): Array<{ line: number; fields: string[] }> {
  const src = stripBom(text);
  const records: Array<{ line: number; fields: string[] }> = [];
  let line = 1;
  let i = 0;
  while (i < src.length) {
    const startLine = line;
    const fields: string[] = [];
    let field = '';
    let quoted = false; // inside quotes now
    let wasQuoted = false; // this field was quoted (its text is kept as is, not trimmed)
    const endField = (): void => {
      fields.push(wasQuoted ? field : field.trim());
      field = '';
      wasQuoted = false;
    };
    for (;;) {
      if (i >= src.length) {
        if (quoted) throw new UserError(`${file} line ${startLine}: a quoted field is not closed.`, { hint: 'Close the field with a double quote; write "" for a quote inside it.' });
        endField();
        break;
      }
      const c = src[i]!;
      if (quoted) {
        if (c === '"' && src[i + 1] === '"') {
          field += '"';
          i += 2;
        } else if (c === '"') {
          quoted = false;
          i++;
        } else {
          if (c === '\n') line++;
          field += c;
          i++;
        }
      } else if (c === ',') {
        endField();
        i++;
      } else if (c === '\n' || c === '\r') {
        endField();
        i += c === '\r' && src[i + 1] === '\n' ? 2 : 1;
        line++;
        break;
      } else if (c === '"') {
        if (wasQuoted || field.trim() !== '') {
          throw new UserError(`${file} line ${line}: a double quote in the middle of a field.`, { hint: 'Quote the whole field ("...") and double the quotes inside it.' });
        }
        field = '';
        quoted = true;
        wasQuoted = true;
        i++;
      } else {
        if (wasQuoted && c !== ' ' && c !== '\t') {
          throw new UserError(`${file} line ${line}: text after a closing quote.`, { hint: 'Quote the whole field and double the quotes inside it.' });
        }
        if (!wasQuoted) field += c;
        i++;
      }
    }
    if (fields.length === 1 && fields[0] === '') continue; // blank line
    records.push({ line: startLine, fields });
  }
  return records;
}

function isIntegerLabel(s: string): boolean {
  return /^\d+$/.test(s);
}

/** Parses a labels CSV into entries; the header (if any) is dropped. */
export function parseLabelCsv(text: string, file: string, classes?: readonly string[]): CsvLabelEntry[] {
  const records = parseCsv(text, file);
  if (records.length === 0) throw new UserError(`The labels file ${file} is empty.`, { hint: 'Write one "path,label" line per image.' });
  const known = classes === undefined ? undefined : new Set(classes);
  const validLabel = (s: string): boolean => isIntegerLabel(s) || (known?.has(s) ?? false);
  const entries: CsvLabelEntry[] = [];
  records.forEach((r, k) => {
    if (r.fields.length !== 2) {
      throw new UserError(`${file} line ${r.line}: expected 2 fields (path,label) but found ${r.fields.length}.`, {
        hint: 'Write one "path,label" per line; quote paths that contain commas.',
      });
    }
    const [p, label] = r.fields as [string, string];
    if (k === 0 && !validLabel(label) && !isImagePath(p)) return; // header
    if (p === '') throw new UserError(`${file} line ${r.line}: the path is empty.`);
    if (label === '') throw new UserError(`${file} line ${r.line}: the label of ${p} is empty.`);
    entries.push({ path: p, label, line: r.line });
  });
  return entries;
}

/** Maps a label (class name or index) to a class index, or throws a UserError naming where it came from. */
export function labelIndex(label: string, classes: readonly string[] | undefined, where: string): number {
  if (classes !== undefined) {
    const byName = classes.indexOf(label);
    if (byName >= 0) return byName;
    if (isIntegerLabel(label)) {
      const n = Number(label);
      if (n < classes.length) return n;
      throw new UserError(`${where}: class index ${n} is out of range; the class list has ${classes.length} classes (0 to ${classes.length - 1}).`);
    }
    throw new UserError(`${where}: unknown class ${JSON.stringify(label)}. Known classes: ${formatList(classes)}.`, {
      hint: 'Fix the label, or add the class to the class list (--classes) at the index the model uses.',
    });
  }
  if (isIntegerLabel(label)) {
    const n = Number(label);
    if (Number.isSafeInteger(n)) return n;
  }
  throw new UserError(`${where}: the label ${JSON.stringify(label)} is a class name, but no class list was given to map names to the model's class indices.`, {
    hint: 'Give --classes FILE (one class name per line, line 1 = class 0), or use class indices as labels.',
  });
}

function formatList(names: readonly string[], max = 30): string {
  const shown = names.slice(0, max).map((n) => JSON.stringify(n));
  return names.length > max ? `${shown.join(', ')} and ${names.length - max} more` : shown.join(', ');
}

/**
 * Labels from folder names: each file's parent folder is its class. Files directly inside `dataRoot` (the --data
 * folder, when it is one) have no label.
 */
export function labelsFromFolders(files: readonly string[], options: { dataRoot?: string; classes?: readonly string[] } = {}): LabelAssignment {
  const root = options.dataRoot === undefined ? undefined : path.resolve(options.dataRoot);
  const labels: (number | undefined)[] = [];
  const unlabelled: string[] = [];
  for (const file of files) {
    const parent = path.dirname(path.resolve(file));
    if (parent === root || path.basename(parent) === '') {
      labels.push(undefined);
      unlabelled.push(file);
      continue;
    }
    labels.push(labelIndex(path.basename(parent), options.classes, `The folder of ${file}`));
  }
  return finish('folders', labels, unlabelled, options.classes);
}

/**
 * Labels from a parsed CSV. A file matches an entry whose path, resolved against the CSV's folder or against
 * `dataRoot`, is the same file. Two entries for one file with different labels are an error.
 */
export function labelsFromCsv(
  files: readonly string[],
  entries: readonly CsvLabelEntry[],
  options: { csvFile: string; dataRoot?: string; classes?: readonly string[] },
): LabelAssignment {
  const csvDir = path.dirname(path.resolve(options.csvFile));
  const bases = [csvDir];
  if (options.dataRoot !== undefined && path.resolve(options.dataRoot) !== csvDir) bases.push(path.resolve(options.dataRoot));
  const byPath = new Map<string, { index: number; line: number }>();
  for (const e of entries) {
    const index = labelIndex(e.label, options.classes, `${options.csvFile} line ${e.line}`);
    const targets = path.isAbsolute(e.path) ? [path.normalize(e.path)] : bases.map((b) => path.resolve(b, e.path));
    for (const t of new Set(targets)) {
      const previous = byPath.get(t);
      if (previous !== undefined && previous.index !== index) {
        throw new UserError(`${options.csvFile} lines ${previous.line} and ${e.line} give ${e.path} two different labels.`);
      }
      byPath.set(t, { index, line: e.line });
    }
  }
  const labels: (number | undefined)[] = [];
  const unlabelled: string[] = [];
  for (const file of files) {
    const hit = byPath.get(path.resolve(file));
    labels.push(hit?.index);
    if (hit === undefined) unlabelled.push(file);
  }
  const result = finish(options.csvFile, labels, unlabelled, options.classes);
  if (result.labelled === 0 && files.length > 0) {
    throw new UserError(`None of the ${files.length} images has a label in ${options.csvFile} (${entries.length} entries).`, {
      hint: `Paths in the CSV are resolved against ${bases.join(' and ')}; for example ${files[0]} would be written ${JSON.stringify(path.relative(bases[bases.length - 1]!, path.resolve(files[0]!)))}.`,
    });
  }
  return result;
}

function finish(source: string, labels: (number | undefined)[], unlabelled: string[], classes?: readonly string[]): LabelAssignment {
  return {
    source,
    ...(classes !== undefined ? { classes: [...classes] } : {}),
    labels,
    labelled: labels.length - unlabelled.length,
    unlabelled,
  };
}

export interface LoadLabelsOptions {
  /** "folders", or the path of a `path,label` CSV. */
  labels: string;
  /** Optional class list file. */
  classes?: string;
  /** The --data folder (when it is a folder). */
  dataRoot?: string;
}

/** Reads whatever --labels and --classes name and assigns a label to each file. */
export async function loadLabels(files: readonly string[], options: LoadLabelsOptions): Promise<LabelAssignment> {
  const classes = options.classes === undefined ? undefined : await readClassList(options.classes);
  if (options.labels === 'folders') {
    const result = labelsFromFolders(files, { dataRoot: options.dataRoot, classes });
    if (result.labelled === 0 && files.length > 0) {
      throw new UserError(`--labels folders: none of the ${files.length} images is inside a class folder.`, {
        hint: 'Put each image in a folder named after its class (val/cat/1.jpg), or give a CSV of path,label.',
      });
    }
    return result;
  }
  const text = (await readUserFile(options.labels, 'Labels file', READ_LIMITS.labels)).toString('utf8');
  return labelsFromCsv(files, parseLabelCsv(text, options.labels, classes), { csvFile: options.labels, dataRoot: options.dataRoot, classes });
}

function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}
