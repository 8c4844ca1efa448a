import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCocoLabels, loadYoloLabels, readClassNames } from '../../src/compare/task/detect/index.js';
import { UserError } from '../../src/errors.js';
import { COCO_LABELS, STREET } from './detect-fixture.js';

const FRAMES = ['vtest_001.jpg', 'vtest_003.jpg', 'vtest_005.jpg', 'vtest_007.jpg'].map((f) => path.join(STREET, f));
const SIZES = new Map(FRAMES.map((f) => [f, { width: 768, height: 576 }]));

let tmp: string;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'trt-calib-det-labels-'));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

async function write(name: string, text: string): Promise<string> {
  const file = path.join(tmp, name);
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, text);
  return file;
}

async function rejection(p: Promise<unknown>): Promise<UserError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UserError);
  return err as UserError;
}

describe('readClassNames', () => {
  it('reads `id name` lines (coco_labels.txt) and one name a line', async () => {
    const coco = await readClassNames(COCO_LABELS);
    expect(coco.size).toBe(80);
    expect([coco.get(1), coco.get(3), coco.get(90), coco.has(12)]).toEqual(['person', 'car', 'toothbrush', false]);
    const plain = await readClassNames(await write('names.txt', 'cat\ndog\ntraffic light\n'));
    expect([...plain]).toEqual([
      [0, 'cat'],
      [1, 'dog'],
      [2, 'traffic light'],
    ]);
  });
  it('refuses duplicate ids, blank lines between names, and a missing file', async () => {
    expect((await rejection(readClassNames(await write('dup.txt', '1 person\n1 bicycle\n')))).message).toContain('dup.txt:2');
    expect((await rejection(readClassNames(await write('blank.txt', 'cat\n\ndog\n')))).message).toContain('blank.txt:2');
    expect((await rejection(readClassNames(path.join(tmp, 'nope.txt')))).message).toContain('--classes');
  });
});

describe('loadCocoLabels', () => {
  const annotations = {
    images: [
      { id: 1, file_name: 'vtest_001.jpg', width: 768, height: 576 }, // relative path
      { id: 2, file_name: 'frames/vtest_003.jpg', width: 768, height: 576 }, // base name
      { id: 3, file_name: 'elsewhere.jpg', width: 640, height: 480 }, // not in --data
      { id: 4, file_name: 'vtest_005.jpg', width: 768, height: 576 }, // listed, no annotation: no objects
    ],
    annotations: [
      { id: 10, image_id: 1, category_id: 1, bbox: [555, 239, 46, 89], iscrowd: 0 },
      { id: 11, image_id: 1, category_id: 3, bbox: [725, 48, 60, 49], iscrowd: 0 }, // past the right edge: clipped to 768
      { id: 12, image_id: 2, category_id: 1, bbox: [372, 180, 34, 80], iscrowd: 1 },
      { id: 13, image_id: 2, category_id: 999, bbox: [0, 0, 5, 5] }, // unknown category: dropped
      { id: 14, image_id: 3, category_id: 1, bbox: [0, 0, 5, 5] }, // image not in --data: not scored
      { id: 15, image_id: 2, category_id: 1, bbox: [-20, -20, 10, 10] }, // entirely outside: dropped
    ],
    categories: [
      { id: 1, name: 'person' },
      { id: 3, name: 'car' },
    ],
  };

  it('matches images by relative path, then by base name; clips, drops and counts what does not fit', async () => {
    const file = await write('coco.json', JSON.stringify(annotations));
    const r = await loadCocoLabels(file, FRAMES, STREET);
    expect([...r.labels.keys()]).toEqual([FRAMES[0], FRAMES[1], FRAMES[2]]);
    expect(r.labels.get(FRAMES[0]!)).toEqual([
      { x1: 555, y1: 239, x2: 601, y2: 328, classId: 1 },
      { x1: 725, y1: 48, x2: 768, y2: 97, classId: 3 },
    ]);
    expect(r.labels.get(FRAMES[1]!)).toEqual([{ x1: 372, y1: 180, x2: 406, y2: 260, classId: 1, iscrowd: true }]);
    expect(r.labels.get(FRAMES[2]!)).toEqual([]);
    expect(r.labels.has(FRAMES[3]!)).toBe(false);
    expect(r.classNames).toEqual(new Map([[1, 'person'], [3, 'car']]));
    expect(r.unmatchedImages).toEqual(['elsewhere.jpg']);
    const text = r.warnings.join('\n');
    expect(text).toMatch(/^1 boxes reach outside their image and were clipped.*annotations\[1\]/m);
    expect(text).toMatch(/^1 boxes have no area inside their image and were dropped/m);
    expect(text).toMatch(/^1 annotations have a category_id not in "categories".*category_id 999/m);
    expect(text).toMatch(/^1 images of the labels are not in --data.*elsewhere\.jpg/m);
  });

  it('does not guess between two files of --data with the same base name', async () => {
    const a = await write('data/a/x.jpg', '');
    const b = await write('data/b/x.jpg', '');
    const file = await write('dup.json', JSON.stringify({ images: [{ id: 1, file_name: 'x.jpg' }, { id: 2, file_name: 'b/x.jpg' }], annotations: [] }));
    const r = await loadCocoLabels(file, [a, b], path.join(tmp, 'data'));
    expect([...r.labels.keys()]).toEqual([b]);
    expect(r.unmatchedImages).toEqual(['x.jpg']);
    expect(r.warnings.join('\n')).toContain('match several files of --data by base name');
  });

  it('refuses files that are not COCO annotations, or that match no image', async () => {
    expect((await rejection(loadCocoLabels(await write('bad.json', '{"images": ['), FRAMES, STREET))).message).toMatch(/bad\.json is not valid JSON/);
    expect((await rejection(loadCocoLabels(await write('list.json', '[]'), FRAMES, STREET))).hint).toContain('yolo:DIR');
    const none = await write('none.json', JSON.stringify({ images: [{ id: 1, file_name: 'a.jpg' }], annotations: [] }));
    expect((await rejection(loadCocoLabels(none, FRAMES, STREET))).message).toContain('None of the 1 images');
    const badBox = await write('badbox.json', JSON.stringify({ images: [{ id: 1, file_name: 'vtest_001.jpg' }], annotations: [{ image_id: 1, category_id: 1, bbox: [1, 2, 3] }] }));
    expect((await rejection(loadCocoLabels(badBox, FRAMES, STREET))).message).toContain('annotations[0]');
  });
});

describe('loadYoloLabels', () => {
  it('reads normalised cx cy w h lines, clips, drops unknown classes, counts images and files without a match', async () => {
    const dir = path.join(tmp, 'yolo');
    // 768x576: cx .5 w .2 -> x 307.2..460.8; cy .5 h .4 -> y 172.8..403.2.
    await write('yolo/vtest_001.txt', '0 0.5 0.5 0.2 0.4\n2 0.95 0.5 0.2 0.2\n\n79 0.1 0.1 0.1 0.1\n99 0.5 0.5 0.1 0.1\n');
    await write('yolo/vtest_003.txt', '');
    await write('yolo/other.txt', '0 0.5 0.5 0.1 0.1\n');
    const names = new Map([[0, 'person'], [2, 'car'], [79, 'toothbrush']]);
    const r = await loadYoloLabels(dir, FRAMES, STREET, SIZES, names);
    const first = r.labels.get(FRAMES[0]!)!;
    expect(first.length).toBe(3);
    expect(first[0]!.classId).toBe(0);
    expect(first[0]!.x1).toBeCloseTo(307.2, 9);
    expect(first[0]!.x2).toBeCloseTo(460.8, 9);
    expect(first[0]!.y1).toBeCloseTo(172.8, 9);
    expect(first[0]!.y2).toBeCloseTo(403.2, 9);
    // cx .95 w .2 -> x2 = 1.05 * 768, clipped to 768.
    expect(first[1]!.x2).toBe(768);
    expect(first[1]!.x1).toBeCloseTo(0.85 * 768, 9);
    expect(r.labels.get(FRAMES[1]!)).toEqual([]);
    // No txt: an image without objects, still scored.
    expect(r.labels.get(FRAMES[2]!)).toEqual([]);
    expect(r.unmatchedImages).toEqual(['other.txt']);
    const text = r.warnings.join('\n');
    expect(text).toMatch(/^1 boxes reach outside their image and were clipped/m);
    expect(text).toMatch(/^1 boxes have a class id not in --classes.*vtest_001\.txt:5 class 99/m);
    expect(text).toMatch(/^2 images have no label file/m);
    expect(text).toMatch(/^1 label files match no image of --data.*other\.txt/m);
  });

  it('refuses a line that does not parse with its file and line, a missing folder, and a folder matching nothing', async () => {
    await write('yolo-bad/vtest_001.txt', '0 0.5 0.5 0.2 0.4\n1 0.5 0.5 abc 0.1\n');
    const err = await rejection(loadYoloLabels(path.join(tmp, 'yolo-bad'), FRAMES, STREET, SIZES));
    expect(err.message).toContain(`${path.join(tmp, 'yolo-bad', 'vtest_001.txt')}:2`);
    expect((await rejection(loadYoloLabels(path.join(tmp, 'nowhere'), FRAMES, STREET, SIZES))).message).toContain('yolo:');
    await write('yolo-other/a.txt', '0 0.5 0.5 0.1 0.1\n');
    expect((await rejection(loadYoloLabels(path.join(tmp, 'yolo-other'), FRAMES, STREET, SIZES))).message).toContain('no label file matches');
  });
});
