import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { escapeHtml, renderHtml } from '../../src/compare/render-html.js';
import { boxesSvg, detectionPhotoFiles, taskSections, taskSummarySection, variantColours } from '../../src/compare/render-task-html.js';
import { maskOverlayDataUri, photoDataUris, type Photo } from '../../src/compare/thumbnails.js';
import { writeReportFiles } from '../../src/compare/write.js';
import { syntheticReport } from './compare-fixture.js';
import { detectionReport, NASTY_CLASS, NASTY_FILE, ocrReport, segmentationReport, VTEST_001_REFERENCE, VTEST_001_VARIANT } from './task-report-fixture.js';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures');
/** The 768x576 street frames drawn at 480x360: a scale of exactly 0.625. */
const PHOTO: Photo = { uri: 'data:image/jpeg;base64,/9j/AAAA', width: 480, height: 360, originalWidth: 768, originalHeight: 576 };

const tmp: string[] = [];
afterAll(() => {
  for (const d of tmp) rmSync(d, { recursive: true, force: true });
});

function rects(svg: string, cls: 'ref' | 'var'): Array<{ x: number; y: number; width: number; height: number; stroke: string; dash?: string }> {
  const out = [];
  const groups = svg.split(`<g class="box ${cls}">`).slice(1);
  for (const g of groups) {
    const m = /<rect class="edge" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)" fill="none" stroke="(#[0-9a-f]+)" stroke-width="2"(?: stroke-dasharray="([\d ]+)")?\/>/.exec(g);
    expect(m, g).not.toBeNull();
    out.push({ x: Number(m![1]), y: Number(m![2]), width: Number(m![3]), height: Number(m![4]), stroke: m![5]!, ...(m![6] !== undefined ? { dash: m![6] } : {}) });
  }
  return out;
}

describe('detection boxes over the photo', () => {
  it('draws every box at the picture scale: the rect coordinates are the original pixels x 0.625', () => {
    const svg = boxesSvg({ reference: VTEST_001_REFERENCE, variant: VTEST_001_VARIANT }, PHOTO, new Map([[1, 'person'], [3, 'car']]));
    expect(svg.startsWith('<svg class="boxes" width="480" height="360" viewBox="0 0 480 360"')).toBe(true);
    // Worked out by hand: (306, 206, 338, 296) * 0.625 = x 191.25 -> 191.3, y 128.75 -> 128.8, w 20, h 56.25 -> 56.3.
    expect(rects(svg, 'ref')).toEqual([
      { x: 191.3, y: 128.8, width: 20, height: 56.3, stroke: '#00e64d' },
      { x: 293.8, y: 101.3, width: 22.5, height: 51.3, stroke: '#00e64d' },
      { x: 343.8, y: 148.8, width: 35, height: 55, stroke: '#00e64d' },
      { x: 406.3, y: 26.3, width: 47.5, height: 37.5, stroke: '#00e64d' },
    ]);
    expect(rects(svg, 'var')).toEqual([
      { x: 201.3, y: 138.8, width: 20, height: 56.3, stroke: '#ff00ff', dash: '6 4' },
      { x: 353.8, y: 158.8, width: 35, height: 55, stroke: '#ff00ff', dash: '6 4' },
      { x: 406.3, y: 26.3, width: 47.5, height: 37.5, stroke: '#ff00ff', dash: '6 4' },
      { x: 285, y: 211.3, width: 45, height: 90, stroke: '#ff00ff', dash: '6 4' },
    ]);
    // Labels: class name and score; FP32's above the box, the variant's below it.
    expect(svg).toContain('<g class="tag ref"><rect x="191.3" y="115.8" width="');
    expect(svg).toContain('>person 0.91</text>');
    expect(svg).toContain('<g class="tag var"><rect x="285" y="301.3" width="');
    expect(svg).toContain('>person 0.41</text>');
    expect(svg).toContain('<title>FP32: car 0.79 at [650, 42, 726, 102]</title>');
  });

  it('clips boxes that leave the image, leaves specks unlabelled and names unknown classes by id', () => {
    const photo: Photo = { ...PHOTO, width: 400, height: 300, originalWidth: 800, originalHeight: 600 };
    const svg = boxesSvg(
      {
        reference: [{ x1: -40, y1: 500, x2: 120, y2: 700, score: 0.5, classId: 42 }],
        variant: [{ x1: 100, y1: 100, x2: 110, y2: 110, score: 0.9, classId: 1 }],
      },
      photo,
      new Map(),
    );
    expect(rects(svg, 'ref')).toEqual([{ x: 0, y: 250, width: 60, height: 50, stroke: '#00e64d' }]);
    expect(rects(svg, 'var')).toEqual([{ x: 50, y: 50, width: 5, height: 5, stroke: '#ff00ff', dash: '6 4' }]);
    expect(svg).toContain('>#42 0.50</text>');
    expect(svg).not.toContain('<g class="tag var">');
  });

  it('escapes class names in labels and titles', () => {
    const svg = boxesSvg({ reference: [{ x1: 0, y1: 100, x2: 400, y2: 300, score: 0.5, classId: 9 }], variant: [] }, PHOTO, new Map([[9, NASTY_CLASS]]));
    expect(svg).not.toContain(NASTY_CLASS);
    expect(svg).toContain(`>${escapeHtml(NASTY_CLASS)} 0.50</text>`);
  });
});

describe('task sections of report.html', () => {
  it('leads the report with the verdict table: mAP, mAP@.5, lost/gained/moved per variant', () => {
    const report = detectionReport();
    const html = renderHtml(report);
    const summary = taskSummarySection(report);
    expect(html.indexOf('<h2 id="task">')).toBeGreaterThan(0);
    expect(html.indexOf('<h2 id="task">')).toBeLessThan(html.indexOf('<h2 id="summary">'));
    expect(summary).toContain('<h2 id="task">Task: detection</h2>');
    const head = /<thead><tr>(.*?)<\/tr><\/thead>/.exec(summary)![1]!.replace(/<th[^>]*>/g, '|').replace(/<\/th>/g, '');
    expect(head).toBe('|variant|precision|mAP@[.5:.95]|mAP@.5|FP32 boxes|boxes|lost|gained|moved|score change');
    const rows = [...summary.matchAll(/<tr( class="winner")?><td>(.*?)<\/td><\/tr>/g)].map((m) => `${m[1] ? '*' : ''}${m[2]!.split('</td><td>').join(' ')}`);
    // int8-entropy2 is k = 1: mAP 0.8 x 0.9, mAP@.5 0.9 x 0.9, lost 2, gained 1, moved 3, score change -0.025.
    expect(rows).toEqual([
      'fp32 fp32 1.0000 1.0000 23 23 0 0 0 0.0000',
      'fp16 fp16 0.8000 0.9000 23 22 1 0 2 -0.0125',
      '*int8-entropy2 int8 0.7200 0.8100 23 21 2 1 3 -0.0250',
      'int8-minmax int8 0.6400 0.7200 23 20 3 2 4 -0.0375',
      'int8-percentile int8 0.5600 0.6300 23 19 4 3 5 -0.0500',
    ]);
  });

  it('draws per-class AP bars, most ground truth first, at AP x the bar width', () => {
    const html = taskSections(detectionReport());
    const chart = /<svg class="chart ap"[\s\S]*?<\/svg>/.exec(html)![0];
    const labels = [...chart.matchAll(/text-anchor="end">([^<]*)<\/text>/g)].map((m) => m[1]).slice(1);
    expect(labels).toEqual(['person (12)', 'bicycle (6)', 'car (4)', `${escapeHtml(NASTY_CLASS)} (1)`]);
    // One bar per judged variant (fp16 + 3 INT8) and category; fp16's person AP 0.8 is 352 px of 440.
    expect([...chart.matchAll(/<rect class="ap" /g)]).toHaveLength(16);
    expect(chart).toContain('<rect class="ap" x="200" y="23" width="352" height="9" fill="#7f7f7f"/>');
    expect(chart).toContain('<rect class="ap50" x="200" y="23" width="418" height="9" fill="#7f7f7f" fill-opacity="0.3"/>');
    expect(taskSections(detectionReport(), { maxClasses: 2 })).toContain('2 more categories in report.json.');
  });

  it('draws one precision-recall line per variant at IoU 0.5 and 0.75', () => {
    const html = taskSections(detectionReport());
    const charts = [...html.matchAll(/<figcaption>IoU ([\d.]+)<\/figcaption><svg class="chart pr"([\s\S]*?)<\/svg>/g)];
    expect(charts.map((m) => m[1])).toEqual(['0.5', '0.75']);
    for (const m of charts) expect([...m[2]!.matchAll(/<path class="pr" /g)]).toHaveLength(4);
    // fp16 at IoU 0.5: precision 1 - 0.1 r up to recall 0.95, 0 beyond: (0, 1) -> (46, 10), (0.95, 0.905) -> (388, 32.8),
    // (0.96, 0) -> (391.6, 250), (1, 0) -> (406, 250).
    const fp16 = /<path class="pr" d="([^"]*)" fill="none" stroke="#7f7f7f"/.exec(charts[0]![2]!)![1]!;
    expect(fp16.startsWith('M46 10L49.6 10.2')).toBe(true);
    expect(fp16).toContain('L388 32.8L391.6 250');
    expect(fp16.endsWith('L406 250')).toBe(true);
    expect(fp16.split('L')).toHaveLength(101);
  });

  it('shows the worst images with both box sets where a photo exists, a table row where not', () => {
    const report = detectionReport();
    const photos = new Map([['street/vtest_001.jpg', PHOTO]]);
    const html = taskSections(report, { photos });
    expect(detectionPhotoFiles(report)).toEqual(['street/vtest_001.jpg', NASTY_FILE]);
    const figures = [...html.matchAll(/<figure class="det-image">/g)];
    expect(figures).toHaveLength(4); // one per judged variant
    expect(html).toContain(`<img class="photo" src="${PHOTO.uri}" width="480" height="360" alt="street/vtest_001.jpg">`);
    expect(html).toContain('lost 1, moved 2, gained 1 &middot; FP32 4 boxes, variant 4');
    expect(html).toContain(`<td class="name">${escapeHtml(NASTY_FILE)}</td><td>1</td><td>0</td><td>0</td><td>1</td><td>0</td>`);
    // The winner's list is open, the others folded; the legend names both styles.
    expect(html).toContain('<details open><summary>int8-entropy2: 2 images</summary>');
    expect(html).toContain('<details><summary>int8-minmax: 2 images</summary>');
    expect(html).toMatch(/stroke="#00e64d" stroke-width="2"\/><\/svg> FP32 \(truth\)<\/li>/);
    expect(html).toContain('stroke-opacity="0.55" stroke-width="4" stroke-dasharray="6 4"/><line');
    expect(html).toMatch(/stroke="#ff00ff" stroke-width="2" stroke-dasharray="6 4"\/><\/svg> variant<\/li>/);
  });

  it('names a box of a category without FP32 ground truth from classNames', () => {
    const report = detectionReport(() => [
      { file: 'street/vtest_001.jpg', index: 0, lost: 0, gained: 1, moved: 0, reference: [], variant: [{ x1: 64, y1: 496, x2: 160, y2: 528, score: 0.28, classId: 34 }] },
    ]);
    const photos = new Map([['street/vtest_001.jpg', PHOTO]]);
    expect(taskSections(report, { photos })).toContain('>#34 0.28</text>');
    expect(taskSections(report, { photos, classNames: new Map([[34, 'frisbee'], [1, 'not used: the report names 1']]) })).toContain('>frisbee 0.28</text>');
  });

  it('shows a section only where its data exist', () => {
    const plain = renderHtml(syntheticReport({ labels: true }));
    expect(plain).not.toMatch(/id="(task|detection-|segmentation-|ocr-)/);
    const noWorst = taskSections(detectionReport(() => []));
    expect(noWorst).toContain('id="detection-ap"');
    expect(noWorst).not.toContain('id="detection-worst"');
    expect(noWorst).not.toContain('id="detection-ap-labels"');
    const fp32Only = detectionReport();
    fp32Only.variants = fp32Only.variants.filter((v) => v.precision === 'fp32');
    expect(taskSections(fp32Only)).toBe('');
  });

  it('escapes every name and text, has no script, and gives the same bytes twice', () => {
    for (const report of [detectionReport(), segmentationReport(), ocrReport()]) {
      const a = renderHtml(report, { photos: new Map([['street/vtest_001.jpg', PHOTO]]) });
      const b = renderHtml(structuredClone(report), { photos: new Map([['street/vtest_001.jpg', PHOTO]]) });
      expect(a).toBe(b);
      expect(a).not.toContain(NASTY_CLASS);
      expect(a).not.toContain(NASTY_FILE);
      expect(a).not.toMatch(/<script|NaN|undefined|\[object/);
    }
    expect(renderHtml(segmentationReport())).toContain(escapeHtml(NASTY_CLASS));
    expect(renderHtml(ocrReport())).toContain(escapeHtml(NASTY_FILE));
  });

  it('segmentation: per-class IoU by pixels, and each variant its own mask overlays', () => {
    const report = segmentationReport();
    const overlay = (tag: string): Photo => ({ ...PHOTO, uri: `data:image/jpeg;base64,${tag}` });
    const html = taskSections(report, { maskOverlays: new Map([['int8-entropy2', new Map([['street/vtest_003.jpg', overlay('QUJD')]])]]) });
    const table = /<table class="iou">([\s\S]*?)<\/table>/.exec(html)![1]!;
    expect([...table.matchAll(/<tr><td>([^<]*)<\/td><td>(\d+)<\/td>/g)].map((m) => `${m[1]} ${m[2]}`)).toEqual([
      'background 90000',
      'person 8000',
      `${escapeHtml(NASTY_CLASS)} 1200`,
    ]);
    // int8-entropy2 is the third variant (k = 2): mIoU 0.85, person 0.80.
    expect(table).toContain('<tr><td>person</td><td>8000</td><td>0.8500</td><td>0.8000</td><td>0.7500</td><td>0.7000</td></tr>');
    expect(html).toContain('<img class="photo overlay-mask" src="data:image/jpeg;base64,QUJD" width="480" height="360" alt="street/vtest_003.jpg">');
    expect([...html.matchAll(/overlay-mask/g)]).toHaveLength(1);
    expect(html).toContain('FP32 only (lost)');
    expect(html).toContain(`<td class="name">${escapeHtml(NASTY_FILE)}</td><td>0.7500</td>`);
    expect(taskSummarySection(report)).toContain('<td>int8-entropy2</td><td>int8</td><td>0.8500</td><td>89.00%</td>');
  });

  it('OCR: the text pairs with label and edit distance, worst first, escaped', () => {
    const html = taskSections(ocrReport());
    expect(html).toContain('<details open><summary>int8-entropy2: exact match 50.00%, CER 12.50%</summary>');
    const table = /<details open>[\s\S]*?<tbody>([\s\S]*?)<\/tbody>/.exec(html)![1]!;
    expect(table.split('</tr>').filter((r) => r !== '')).toEqual([
      '<tr class="differs"><td class="name">text/a.png</td><td class="text">PRICE &lt;5 &amp; &quot;10&quot;</td><td class="text">PRlCE &lt;5 &amp; &quot;1O&quot;</td><td class="text">PRICE &lt;5 &amp; &quot;10&quot;</td><td>2</td>',
      `<tr class="differs"><td class="name">${escapeHtml(NASTY_FILE)}</td><td class="text">it&#39;s</td><td class="text"><span class="meta">(empty)</span></td><td>-</td><td>4</td>`,
      '<tr><td class="name">text/c.png</td><td class="text">EXIT</td><td class="text">EXIT</td><td>-</td><td>0</td>',
    ]);
    expect(taskSummarySection(ocrReport())).toContain('<th title="character error rate against FP32&#39;s text">CER</th>');
  });

  it('gives every variant its own colour: algorithms as in the histograms, an implicit twin a spare one', () => {
    const report = syntheticReport({});
    const twin = { ...report.variants[2]!, name: 'int8-entropy2-implicit' };
    const colours = variantColours([...report.variants, twin]);
    expect([...colours]).toEqual([
      ['fp32', '#8c564b'],
      ['fp16', '#7f7f7f'],
      ['int8-entropy2', '#1f77b4'],
      ['int8-minmax', '#d62728'],
      ['int8-percentile', '#2ca02c'],
      ['int8-entropy2-implicit', '#e377c2'],
    ]);
  });
});

async function pixel(uri: string, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(Buffer.from(uri.slice(uri.indexOf(',') + 1), 'base64')).raw().toBuffer({ resolveWithObject: true });
  const o = (y * info.width + x) * info.channels;
  return [data[o]!, data[o + 1]!, data[o + 2]!];
}

function near(actual: number[], expected: number[], tolerance = 14): boolean {
  return actual.every((v, k) => Math.abs(v - expected[k]!) <= tolerance);
}

describe('pictures for the task sections', () => {
  it('photoDataUris: the picture fitted in 480 px and the original size, EXIF orientation applied', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'trt-calib-photos-'));
    tmp.push(dir);
    await sharp({ create: { width: 100, height: 50, channels: 3, background: '#808080' } })
      .jpeg()
      .withMetadata({ orientation: 6 })
      .toFile(path.join(dir, 'rotated.jpg'));
    const photos = await photoDataUris(['street/vtest_001.jpg', 'missing.jpg', 'rotated.jpg'], { baseDir: FIXTURES });
    const street = photos.get('street/vtest_001.jpg')!;
    expect({ ...street, uri: street.uri.slice(0, 23) }).toEqual({ uri: 'data:image/jpeg;base64,', width: 480, height: 360, originalWidth: 768, originalHeight: 576 });
    expect(photos.has('missing.jpg')).toBe(false);
    const rotated = (await photoDataUris([path.join(dir, 'rotated.jpg')])).get(path.join(dir, 'rotated.jpg'))!;
    expect([rotated.width, rotated.height, rotated.originalWidth, rotated.originalHeight]).toEqual([50, 100, 50, 100]);
  });

  it('maskOverlayDataUri: tint where both agree, red where FP32 only, blue where the variant only', async () => {
    const grey = [128, 128, 128];
    const photo = await sharp({ create: { width: 80, height: 60, channels: 3, background: { r: 128, g: 128, b: 128 } } }).png().toBuffer();
    // 8 x 6 masks: FP32 has class 1 in the left half, the variant in the top half.
    const ref = { width: 8, height: 6, data: Array.from({ length: 48 }, (_, i) => (i % 8 < 4 ? 1 : 0)) };
    const variant = { width: 8, height: 6, data: Array.from({ length: 48 }, (_, i) => (i < 24 ? 1 : 0)) };
    const out = await maskOverlayDataUri(photo, ref, variant);
    expect([out.width, out.height, out.originalWidth, out.originalHeight]).toEqual([80, 60, 80, 60]);
    const mix = (rgb: number[], a: number) => grey.map((g, k) => Math.round(g * (1 - a) + rgb[k]! * a));
    expect(await pixel(out.uri, 15, 12)).toSatisfy((p: number[]) => near(p, mix([44, 160, 44], 0.35))); // both
    expect(await pixel(out.uri, 15, 45)).toSatisfy((p: number[]) => near(p, mix([214, 39, 40], 0.8))); // FP32 only
    expect(await pixel(out.uri, 65, 12)).toSatisfy((p: number[]) => near(p, mix([31, 119, 180], 0.8))); // variant only
    expect(await pixel(out.uri, 65, 45)).toSatisfy((p: number[]) => near(p, grey)); // neither
    // Another class on both sides: amber.
    const other = await maskOverlayDataUri(photo, ref, { ...ref, data: ref.data.map((v) => v * 2) });
    expect(await pixel(other.uri, 15, 30)).toSatisfy((p: number[]) => near(p, mix([255, 191, 0], 0.8)));
  });

  it('maskOverlayDataUri maps through a letterbox: the padding is not painted', async () => {
    const photo = await sharp({ create: { width: 80, height: 40, channels: 3, background: { r: 128, g: 128, b: 128 } } }).png().toBuffer();
    // An 80x80 input, the photo at scale 1 with 20 px of padding above and below; an 8x8 mask (10 input px a cell).
    // Rows 0-1 and 6-7 (the padding) hold class 1 in FP32 only, rows 2-3 (the photo's top half) class 1 in both.
    const data = Array.from({ length: 64 }, (_, i) => Math.floor(i / 8));
    const ref = { width: 8, height: 8, data: data.map((r) => (r < 4 || r > 5 ? 1 : 0)) };
    const variant = { width: 8, height: 8, data: data.map((r) => (r >= 2 && r <= 3 ? 1 : 0)) };
    const geometry = { inputWidth: 80, inputHeight: 80, scaleX: 1, scaleY: 1, offsetX: 0, offsetY: 20 };
    const out = await maskOverlayDataUri(photo, ref, variant, { geometry });
    expect(await pixel(out.uri, 40, 5)).toSatisfy((p: number[]) => near(p, [99, 139, 99])); // agree tint
    expect(await pixel(out.uri, 40, 35)).toSatisfy((p: number[]) => near(p, [128, 128, 128])); // no red from the padding
  });

  it('maskOverlayDataUri refuses masks that do not match', async () => {
    const photo = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#000' } }).png().toBuffer();
    await expect(maskOverlayDataUri(photo, { width: 4, height: 4, data: new Uint8Array(15) }, { width: 4, height: 4, data: new Uint8Array(16) })).rejects.toThrow(
      /the reference mask is 4x4 but holds 15 values/,
    );
    await expect(maskOverlayDataUri(photo, { width: 4, height: 4, data: new Uint8Array(16) }, { width: 2, height: 8, data: new Uint8Array(16) })).rejects.toThrow(
      /the masks differ in size \(4x4 and 2x8\)/,
    );
  });

  it('writeReportFiles draws the boxes on 480 px photos of the worst detection images', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'trt-calib-task-html-'));
    tmp.push(dir);
    const html = path.join(dir, 'report.html');
    await writeReportFiles(detectionReport(), { html, imageBaseDir: FIXTURES });
    const text = readFileSync(html, 'utf8');
    expect([...text.matchAll(/<img class="photo" src="data:image\/jpeg;base64,[^"]+" width="480" height="360" alt="street\/vtest_001.jpg">/g)]).toHaveLength(4);
    expect([...text.matchAll(/<svg class="boxes" width="480" height="360"/g)]).toHaveLength(4);
  });
});
