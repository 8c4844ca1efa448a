import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { parseReportJson } from '../../src/compare/render-json.js';
import { thumbnailDataUris } from '../../src/compare/thumbnails.js';
import { writeReportFiles } from '../../src/compare/write.js';
import { syntheticReport } from './compare-fixture.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const IMAGES = path.resolve(here, '../fixtures/images');

const made: string[] = [];
afterAll(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

describe('writing report.json and report.html', () => {
  it('writes both atomically, with the worst images as JPEG thumbnails of at most 96 px', async () => {
    const photos = readdirSync(IMAGES).filter((f) => /\.(jpg|png)$/.test(f)).sort();
    const files = Array.from({ length: 23 }, (_, i) => photos[i % photos.length]!);
    const report = syntheticReport({ files });
    const dir = mkdtempSync(path.join(tmpdir(), 'trt-calib-report-'));
    made.push(dir);
    const written = await writeReportFiles(report, { json: path.join(dir, 'report.json'), html: path.join(dir, 'report.html'), imageBaseDir: IMAGES });
    expect(written).toEqual([path.join(dir, 'report.json'), path.join(dir, 'report.html')]);
    expect(readdirSync(dir).sort()).toEqual(['report.html', 'report.json']); // no temporary file left
    expect(parseReportJson(readFileSync(path.join(dir, 'report.json'), 'utf8'), 'report.json')).toEqual(report);
    const html = readFileSync(path.join(dir, 'report.html'), 'utf8');
    const uris = [...html.matchAll(/src="data:image\/jpeg;base64,([A-Za-z0-9+/=]+)"/g)].map((m) => m[1]!);
    const shown = report.variants.filter((v) => v.precision !== 'fp32').reduce((n, v) => n + v.worst.length, 0);
    expect(uris.length).toBe(shown);
    for (const b64 of uris.slice(0, 4)) {
      const meta = await sharp(Buffer.from(b64, 'base64')).metadata();
      expect(meta.format).toBe('jpeg');
      expect(Math.max(meta.width!, meta.height!)).toBeLessThanOrEqual(96);
    }
  });
  it('leaves out an image it cannot read, with a warning', async () => {
    const warnings: string[] = [];
    const reporter = { start() {}, update() {}, stop() {}, info() {}, warn: (m: string) => void warnings.push(m) };
    const map = await thumbnailDataUris(['opencv_doc__apple.jpg', 'missing.jpg'], { baseDir: IMAGES, reporter });
    expect([...map.keys()]).toEqual(['opencv_doc__apple.jpg']);
    expect(warnings.join()).toMatch(/No thumbnail for missing\.jpg/);
    // deterministic bytes
    const again = await thumbnailDataUris(['opencv_doc__apple.jpg'], { baseDir: IMAGES });
    expect(again.get('opencv_doc__apple.jpg')).toBe(map.get('opencv_doc__apple.jpg'));
  });
});
