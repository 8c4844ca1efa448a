import { link, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDataset } from '../../src/datasets/dataset.js';
import { discoverImages, discoverImagesReporting, mulberry32, seededPick, sortPaths } from '../../src/datasets/discovery.js';
import { resolvePreprocess } from '../../src/datasets/presets.js';
import { UserError } from '../../src/errors.js';

let root: string;
const NAMES = ['b.jpg', 'a.PNG', 'sub/c.jpeg', 'sub/deeper/d.webp', 'e.TIFF', 'f.gif', 'g.avif', 'h.tif', 'notes.txt', 'sub/labels.csv', '.hidden.jpg'];

async function makeTree(dir: string, names: readonly string[]): Promise<void> {
  for (const n of names) {
    await mkdir(path.dirname(path.join(dir, n)), { recursive: true });
    await writeFile(path.join(dir, n), 'x');
  }
}

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'trt-calib-discovery-'));
  await makeTree(path.join(root, 'data'), NAMES);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('discoverImages', () => {
  it('finds images in a folder recursively, any case of extension, sorted, skipping non-images and hidden files', async () => {
    const files = await discoverImages(path.join(root, 'data'));
    expect(files.map((f) => path.relative(path.join(root, 'data'), f))).toEqual([
      'a.PNG',
      'b.jpg',
      'e.TIFF',
      'f.gif',
      'g.avif',
      'h.tif',
      'sub/c.jpeg',
      'sub/deeper/d.webp',
    ]);
  });

  it('expands a glob and keeps only image files', async () => {
    const files = await discoverImages(`${root}/data/**/*`);
    expect(files.map((f) => path.basename(f))).toEqual(['a.PNG', 'b.jpg', 'e.TIFF', 'f.gif', 'g.avif', 'h.tif', 'c.jpeg', 'd.webp']);
    expect(await discoverImages(`${root}/data/*.jpg`)).toEqual([path.join(root, 'data/b.jpg')]);
  });

  it('reads a list file: paths relative to the list, comments and blank lines ignored, CRLF accepted', async () => {
    const list = path.join(root, 'data', 'list.txt');
    await writeFile(list, '# calibration set\r\nsub/c.jpeg\r\n\r\n  b.jpg  \r\n# a.PNG\r\n/abs/elsewhere.jpg\r\nb.jpg\r\n');
    expect(await discoverImages(list)).toEqual(['/abs/elsewhere.jpg', path.join(root, 'data/b.jpg'), path.join(root, 'data/sub/c.jpeg')]);
  });

  it('takes one image file as a selection of one', async () => {
    expect(await discoverImages(path.join(root, 'data/b.jpg'))).toEqual([path.join(root, 'data/b.jpg')]);
  });

  it('sorts by UTF-8 byte order, not UTF-16 code units', () => {
    // U+FF5E (3 bytes EF BD 9E) sorts before U+1F600 (4 bytes F0 ...) in bytes, after it in UTF-16 units.
    expect(sortPaths(['\u{1F600}.jpg', '\uFF5E.jpg'])).toEqual(['\uFF5E.jpg', '\u{1F600}.jpg']);
    expect(['\u{1F600}.jpg', '\uFF5E.jpg'].sort()).toEqual(['\u{1F600}.jpg', '\uFF5E.jpg']);
  });

  it('picks a reproducible subset that does not depend on the listing order', async () => {
    const all = await discoverImages(path.join(root, 'data'));
    const a = await discoverImages(path.join(root, 'data'), { maxImages: 3, seed: 7 });
    const b = await discoverImages(path.join(root, 'data'), { maxImages: 3, seed: 7 });
    expect(a).toEqual(b);
    expect(a).toHaveLength(3);
    expect(sortPaths(a)).toEqual(a);
    for (const f of a) expect(all).toContain(f);

    // The same files listed in two different orders give the same pick.
    const forward = path.join(root, 'forward.txt');
    const backward = path.join(root, 'backward.txt');
    const rel = all.map((f) => path.relative(root, f));
    await writeFile(forward, rel.join('\n'));
    await writeFile(backward, [...rel].reverse().join('\n'));
    const fromForward = await discoverImages(forward, { maxImages: 3, seed: 7 });
    expect(await discoverImages(backward, { maxImages: 3, seed: 7 })).toEqual(fromForward);
    expect(fromForward).toEqual(a);

    // Another seed gives another pick (for this seed pair; checked, not assumed).
    const seeds = await Promise.all([1, 2, 3, 4, 5].map((seed) => discoverImages(path.join(root, 'data'), { maxImages: 3, seed })));
    expect(new Set(seeds.map((s) => s.join('|'))).size).toBeGreaterThan(1);
    // maxImages at or above the count keeps everything.
    expect(await discoverImages(path.join(root, 'data'), { maxImages: 100, seed: 7 })).toEqual(all);
  });

  it('mulberry32 and the pick follow the published algorithm', () => {
    // First outputs of mulberry32(0), computed independently (Python transcription of the reference C code).
    const r = mulberry32(0);
    const first = [r(), r(), r()].map((x) => Math.floor(x * 4294967296));
    expect(first).toEqual([1144304738, 1416247, 958946056]);
    expect(seededPick([1, 2, 3, 4, 5], 5, 42).sort()).toEqual([1, 2, 3, 4, 5]);
  });

  it('fails with a UserError naming the input and what was searched', async () => {
    const empty = path.join(root, 'empty');
    await makeTree(empty, ['readme.md', 'x/labels.txt']);
    await expect(discoverImages(empty)).rejects.toThrow(UserError);
    await expect(discoverImages(empty)).rejects.toThrow(/No images found in ".*empty": searched the folder and its subfolders for \.jpg/);
    await expect(discoverImages(`${root}/data/*.bmp`)).rejects.toThrow(/No images found in ".*\*\.bmp": searched the glob's matches/);
    await expect(discoverImages(path.join(root, 'nope'))).rejects.toThrow(/The data path ".*nope" does not exist/);
    const emptyList = path.join(root, 'empty.txt');
    await writeFile(emptyList, '# nothing\n\n');
    await expect(discoverImages(emptyList)).rejects.toThrow(/searched the paths listed in the file/);
    await expect(discoverImages(path.join(root, 'data'), { maxImages: 0 })).rejects.toThrow(/positive integer for maxImages/);
  });
});

describe('symbolic links in --data', () => {
  let tree: string;
  beforeAll(async () => {
    // data/one.jpg, data/sub/up -> .., data/other/up -> .. (two loops), data/alias -> sub (a second path to a
    // folder), data/sub/again.jpg -> ../one.jpg and a hard link data/sub/hard.jpg (one real file, three names),
    // data/gone.jpg -> missing.jpg (dangling), data/sub/two.png (a second real image).
    tree = path.join(root, 'links');
    await makeTree(tree, ['one.jpg', 'sub/two.png', 'other/readme.txt']);
    await symlink('..', path.join(tree, 'sub/up'));
    await symlink('..', path.join(tree, 'other/up'));
    await symlink('sub', path.join(tree, 'alias'));
    await symlink('../one.jpg', path.join(tree, 'sub/again.jpg'));
    await link(path.join(tree, 'one.jpg'), path.join(tree, 'sub/hard.jpg'));
    await symlink('missing.jpg', path.join(tree, 'gone.jpg'));
  });

  it('visits each real folder and file once, keeps the first path in sorted order, reports loops and dangling links (time-bounded)', async () => {
    expect(await discoverImages(tree)).toHaveLength(2);
    const { files, skipped } = await discoverImagesReporting(tree);
    // one.jpg is reached as alias/again.jpg, alias/hard.jpg, one.jpg, sub/again.jpg, sub/hard.jpg: once, as the
    // first of those in byte order; two.png as alias/two.png and sub/two.png: once, as alias/two.png.
    expect(files.map((f) => path.relative(tree, f))).toEqual(['alias/again.jpg', 'alias/two.png']);
    expect(skipped.map((s) => path.relative(tree, s.file))).toEqual(['alias/up', 'gone.jpg', 'other/up']);
    expect(skipped[0]!.reason).toMatch(/symbolic link loop: it leads back to ".*links", which contains it/);
    expect(skipped[1]!.reason).toMatch(/dangling symbolic link \(its target "missing.jpg" does not exist\)/);
    // A glob does not descend into linked folders (fast-glob has no cycle check) and reports dangling links.
    const glob = await discoverImagesReporting(`${tree}/**/*.{jpg,png}`);
    expect(glob.files.map((f) => path.relative(tree, f))).toEqual(['one.jpg', 'sub/two.png']);
    expect(glob.skipped.map((s) => path.relative(tree, s.file))).toEqual(['gone.jpg']);
  }, 10_000);

  it('hands the loops and dangling links to the dataset\'s skipped list, on every pass', async () => {
    const preprocess = resolvePreprocess({ preset: 'imagenet' });
    const dataset = await createDataset({ data: tree, preprocess });
    expect(dataset.files).toHaveLength(2);
    const skipped: string[] = [];
    // The two files hold "x", not images: both are skipped as undecodable, then come the three link entries.
    for (let pass = 0; pass < 2; pass++) {
      skipped.length = 0;
      const error = await (async () => {
        for await (const _ of dataset.batches({ onSkip: (s) => skipped.push(`${path.relative(tree, s.file)}${s.kind ? ` (${s.kind})` : ''}`) })) void _;
      })().catch((err: Error) => err);
      expect(String(error)).toMatch(/None of the 2 selected image\(s\) could be decoded/);
      // The summary counts images apart from the links.
      expect(String((error as UserError).hint)).toMatch(/^2 of 2 image\(s\) skipped:\n(.*\n){2}3 link\(s\) in the data not followed:\n  .*alias\/up: symbolic link loop/);
      expect(skipped.slice(0, 2).sort()).toEqual(['alias/again.jpg', 'alias/two.png']);
      expect(skipped.slice(2)).toEqual(['alias/up (link)', 'gone.jpg (link)', 'other/up (link)']);
    }
  }, 10_000);
});
