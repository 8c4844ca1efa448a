import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { labelIndex, labelsFromCsv, labelsFromFolders, loadLabels, parseClassList, parseCsv, parseLabelCsv } from '../../src/compare/labels.js';
import { UserError } from '../../src/errors.js';

function catchError(fn: () => unknown): UserError {
  try {
    fn();
  } catch (err) {
    if (err instanceof UserError) return err;
    throw err;
  }
  throw new Error('expected a UserError');
}

describe('class list', () => {
  it('one name per line, line index = class index; CRLF, BOM and trailing blank lines tolerated', () => {
    expect(parseClassList('\ufeffDrawing\r\nHentai\r\nNeutral\r\nPorn\r\nSexy\r\n\r\n', 'classes.txt')).toEqual(['Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy']);
  });
  it('rejects blank lines in the middle and duplicates with line numbers', () => {
    expect(() => parseClassList('cat\n\ndog\n', 'c.txt')).toThrow(/c\.txt has an empty line 2/);
    expect(() => parseClassList('cat\ndog\ncat\n', 'c.txt')).toThrow(/"cat" twice, on lines 1 and 3/);
    expect(() => parseClassList('\n\n', 'c.txt')).toThrow(/empty/);
  });
});

describe('CSV parsing', () => {
  it('handles quotes, doubled quotes, commas and line breaks in quoted fields, CRLF and blank lines', () => {
    const text = 'path,label\r\n"a, b.jpg",cat\r\n\r\n"say ""hi"".png" , dog\n"multi\nline.jpg",3\n  plain.jpg ,  owl  \n';
    expect(parseCsv(text, 'l.csv')).toEqual([
      { line: 1, fields: ['path', 'label'] },
      { line: 2, fields: ['a, b.jpg', 'cat'] },
      { line: 4, fields: ['say "hi".png', 'dog'] },
      { line: 5, fields: ['multi\nline.jpg', '3'] },
      { line: 7, fields: ['plain.jpg', 'owl'] },
    ]);
  });
  it('reports malformed lines with their line number', () => {
    expect(() => parseCsv('a.jpg,1\n"b.jpg,2\n', 'l.csv')).toThrow(/l\.csv line 2: a quoted field is not closed/);
    expect(() => parseCsv('a.jpg,1\nb"x.jpg,2\n', 'l.csv')).toThrow(/line 2: a double quote in the middle/);
    expect(() => parseCsv('"a.jpg"x,1\n', 'l.csv')).toThrow(/line 1: text after a closing quote/);
    expect(() => parseLabelCsv('a.jpg,1\nb.jpg\n', 'l.csv')).toThrow(/l\.csv line 2: expected 2 fields \(path,label\) but found 1/);
    expect(() => parseLabelCsv('a.jpg,1\nb.jpg,1,extra\n', 'l.csv')).toThrow(/line 2: expected 2 fields/);
  });
  it('detects the header by its label field', () => {
    expect(parseLabelCsv('image,class\na.jpg,3\n', 'l.csv').map((e) => e.path)).toEqual(['a.jpg']);
    expect(parseLabelCsv('a.jpg,3\nb.jpg,4\n', 'l.csv').map((e) => e.path)).toEqual(['a.jpg', 'b.jpg']);
    // "cat" is a class name, so line 1 is data
    expect(parseLabelCsv('a.jpg,cat\n', 'l.csv', ['cat'])).toEqual([{ path: 'a.jpg', label: 'cat', line: 1 }]);
  });
});

describe('label to class index', () => {
  it('names through the class list, indices as is', () => {
    expect(labelIndex('dog', ['cat', 'dog'], 'x')).toBe(1);
    expect(labelIndex('1', ['cat', 'dog'], 'x')).toBe(1);
    expect(labelIndex('7', undefined, 'x')).toBe(7);
  });
  it('unknown names list the known classes; names without a class list ask for one', () => {
    const e = catchError(() => labelIndex('cow', ['cat', 'dog'], 'labels.csv line 4'));
    expect(e.message).toBe('labels.csv line 4: unknown class "cow". Known classes: "cat", "dog".');
    expect(e.hint).toMatch(/--classes/);
    expect(() => labelIndex('cow', undefined, 'x')).toThrow(/no class list/);
    expect(() => labelIndex('2', ['cat', 'dog'], 'x')).toThrow(/class index 2 is out of range; the class list has 2 classes \(0 to 1\)/);
  });
});

describe('labels from folders', () => {
  it('the parent folder is the class; files directly in --data have none', () => {
    const files = ['val/dog/1.jpg', 'val/cat/2.jpg', 'val/loose.jpg', 'val/cat/sub/3.jpg'];
    expect(() => labelsFromFolders(files, { dataRoot: 'val', classes: ['cat', 'dog'] })).toThrow(/The folder of val\/cat\/sub\/3\.jpg: unknown class "sub"/);
    const r = labelsFromFolders(files.slice(0, 3), { dataRoot: 'val', classes: ['cat', 'dog'] });
    expect(r.labels).toEqual([1, 0, undefined]);
    expect(r.labelled).toBe(2);
    expect(r.unlabelled).toEqual(['val/loose.jpg']);
    expect(r.source).toBe('folders');
    expect(r.classes).toEqual(['cat', 'dog']);
  });
  it('numeric folder names need no class list', () => {
    expect(labelsFromFolders(['d/0/a.png', 'd/4/b.png'], { dataRoot: 'd' }).labels).toEqual([0, 4]);
  });
});

describe('labels from a CSV on disk', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'trt-calib-labels-'));
  const data = path.join(dir, 'val');
  mkdirSync(path.join(data, 'x'), { recursive: true });
  const files = [path.join(data, 'a.jpg'), path.join(data, 'x', 'b,c.jpg'), path.join(data, 'd.jpg')];
  for (const f of files) writeFileSync(f, '');
  writeFileSync(path.join(dir, 'classes.txt'), 'cat\ndog\n');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('paths relative to the CSV folder or to --data; unlabelled files counted', async () => {
    // a.jpg relative to --data, "x/b,c.jpg" relative to the CSV (which lives beside val/)
    writeFileSync(path.join(dir, 'labels.csv'), 'path,label\na.jpg,dog\n"val/x/b,c.jpg",cat\nmissing.jpg,cat\n');
    const r = await loadLabels(files, { labels: path.join(dir, 'labels.csv'), classes: path.join(dir, 'classes.txt'), dataRoot: data });
    expect(r.labels).toEqual([1, 0, undefined]);
    expect(r.labelled).toBe(2);
    expect(r.unlabelled).toEqual([files[2]]);
    expect(r.source).toBe(path.join(dir, 'labels.csv'));
  });
  it('conflicting labels for one file, unknown classes and no match at all are errors', async () => {
    const csv = path.join(dir, 'bad.csv');
    expect(() =>
      labelsFromCsv(files, parseLabelCsv('a.jpg,0\nval/a.jpg,1\n', csv), { csvFile: csv, dataRoot: data }),
    ).toThrow(/lines 1 and 2 give val\/a\.jpg two different labels/);
    writeFileSync(csv, 'a.jpg,cow\n');
    await expect(loadLabels(files, { labels: csv, classes: path.join(dir, 'classes.txt'), dataRoot: data })).rejects.toThrow(/bad\.csv line 1: unknown class "cow"\. Known classes: "cat", "dog"/);
    writeFileSync(csv, 'nothere.jpg,1\n');
    await expect(loadLabels(files, { labels: csv, dataRoot: data })).rejects.toThrow(/None of the 3 images has a label in .*bad\.csv \(1 entries\)/);
    await expect(loadLabels(files, { labels: path.join(dir, 'nope.csv') })).rejects.toThrow(/Labels file .*nope\.csv does not exist/);
  });
  it('--labels folders with no class folder at all is an error', async () => {
    await expect(loadLabels([files[0]!], { labels: 'folders', dataRoot: data })).rejects.toThrow(/none of the 1 images is inside a class folder/);
  });
});
