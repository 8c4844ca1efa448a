/**
 * report.html in a real browser: headless Chromium (Debian's `chromium` package) loads the report from a file://
 * URL with every network feature off; the test asserts no console error, no exception, no blocked fetch, that
 * the SVG charts have drawn geometry, that the thumbnails decoded, and that a screenshot of the chart regions is
 * not blank.
 *
 * Chromium is driven through the DevTools protocol over --remote-debugging-pipe (fd 3: commands in, fd 4:
 * replies out, NUL-separated JSON), so no WebSocket client or npm dependency is needed.
 *
 * The task sections (issue 13) are checked on a real street photo: the boxes' pixels must be in the box colours
 * where the boxes are, the mask overlay's colours where the masks disagree.
 *
 * Needs /usr/bin/chromium (`apt-get install -y chromium`); TRT_CALIB_SKIP_BROWSER=1 skips it (and only that).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { quantize } from '../../src/app/quantize.js';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { renderHtml } from '../../src/compare/render-html.js';
import { BOX_STYLES, detectionPhotoFiles } from '../../src/compare/render-task-html.js';
import { buildCompareReport, VariantComparison, worstFiles } from '../../src/compare/report.js';
import { createDetectionEvaluator, readClassNames } from '../../src/compare/task/detect/index.js';
import type { DetectionBox } from '../../src/compare/task/types.js';
import { createDataset, resolvePreprocess } from '../../src/datasets/index.js';
import type { Tensor } from '../../src/tensor.js';
import { maskOverlayDataUri, photoDataUris, thumbnailDataUris } from '../../src/compare/thumbnails.js';
import { syntheticReport } from '../unit/compare-fixture.js';
import { COCO_LABELS, runSsdOnStreet, SSD, SSD_SPEC, STREET } from '../unit/detect-fixture.js';
import { detectionReport, NASTY_FILE, ocrReport, segmentationReport, VTEST_001_REFERENCE, VTEST_001_VARIANT } from '../unit/task-report-fixture.js';

const CHROMIUM = process.env.TRT_CALIB_CHROMIUM ?? '/usr/bin/chromium';
const SKIP = process.env.TRT_CALIB_SKIP_BROWSER === '1';
/** Set to a folder to keep the task screenshots there (to look at them); by default they go with the temporary folder. */
const KEEP_SHOTS = process.env.TRT_CALIB_SCREENSHOTS;
const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures');
/** The SSD fixture's preprocessing (as test/unit/detect-fixture.ts runs it): RGB stretched to 300x300, x * 2/255 - 1. */
const SSD_PREPROCESS = { preset: 'raw01', size: 300, scale: 2 / 255, mean: [1, 1, 1], std: [1, 1, 1] };

/** Runs an SSD model (FP32 or its Q/DQ INT8 export) on the street frames, one image a run (the model's batch is 1). */
async function runOnStreet(model: string): Promise<{ files: string[]; outputs: Record<string, Tensor> }> {
  const preprocess = resolvePreprocess(SSD_PREPROCESS, { name: 'input', dims: [1, 3, 300, 300] });
  const dataset = await createDataset({ data: STREET, preprocess, inputName: 'input', batchSize: 1, concurrency: 2 });
  const session = await onnxruntimeBackend.open({ path: model }, { threads: 1 });
  const files: string[] = [];
  const parts: Record<string, Float32Array[]> = { boxes: [], scores: [] };
  const dims: Record<string, number[]> = {};
  try {
    for await (const batch of dataset.batches()) {
      const out = await session.run({ input: { dtype: 'float32', dims: batch.dims, data: batch.data } }, ['boxes', 'scores']);
      for (const name of ['boxes', 'scores']) {
        parts[name]!.push(Float32Array.from(out[name]!.data as Float32Array));
        dims[name] = out[name]!.dims.slice(1);
      }
      files.push(...batch.files);
    }
  } finally {
    await session.release();
  }
  const join = (list: Float32Array[]) => {
    const all = new Float32Array(list.reduce((n, p) => n + p.length, 0));
    list.reduce((at, p) => (all.set(p, at), at + p.length), 0);
    return all;
  };
  const outputs: Record<string, Tensor> = {};
  for (const name of ['boxes', 'scores']) outputs[name] = { dtype: 'float32', dims: [files.length, ...dims[name]!], data: join(parts[name]!) };
  return { files, outputs };
}

interface CdpMessage {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
  sessionId?: string;
}

/** A minimal DevTools protocol client over Chromium's debugging pipe. */
class Browser {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: Record<string, unknown>) => void; reject: (e: Error) => void; method: string }>();
  private readonly listeners: Array<(m: CdpMessage) => void> = [];
  private buffer = '';
  readonly stderr: string[] = [];

  private constructor(
    private readonly proc: ChildProcess,
    private readonly input: Writable,
  ) {}

  static launch(userDataDir: string): Browser {
    const proc = spawn(
      CHROMIUM,
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-extensions',
        '--disable-default-apps',
        '--no-first-run',
        '--no-default-browser-check',
        '--hide-scrollbars',
        '--mute-audio',
        '--force-color-profile=srgb',
        `--user-data-dir=${userDataDir}`,
        '--remote-debugging-pipe',
        'about:blank',
      ],
      { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] },
    );
    const browser = new Browser(proc, proc.stdio[3] as Writable);
    (proc.stdio[2] as Readable).on('data', (d: Buffer) => browser.stderr.push(d.toString()));
    (proc.stdio[4] as Readable).on('data', (d: Buffer) => browser.receive(d.toString('utf8')));
    proc.on('exit', (code) => {
      for (const p of browser.pending.values()) p.reject(new Error(`Chromium exited (${code}) during ${p.method}: ${browser.stderr.join('').slice(-2000)}`));
      browser.pending.clear();
    });
    return browser;
  }

  private receive(chunk: string): void {
    this.buffer += chunk;
    let end: number;
    while ((end = this.buffer.indexOf('\0')) >= 0) {
      const msg = JSON.parse(this.buffer.slice(0, end)) as CdpMessage;
      this.buffer = this.buffer.slice(end + 1);
      if (msg.id !== undefined) {
        const p = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (msg.error) p?.reject(new Error(`${p.method}: ${msg.error.message}`));
        else p?.resolve(msg.result ?? {});
      } else {
        for (const l of this.listeners) l(msg);
      }
    }
  }

  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    const promise = new Promise<Record<string, unknown>>((resolve, reject) => this.pending.set(id, { resolve, reject, method }));
    this.input.write(`${JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) })}\0`);
    return promise;
  }

  on(listener: (m: CdpMessage) => void): void {
    this.listeners.push(listener);
  }

  waitFor(predicate: (m: CdpMessage) => boolean, timeoutMs: number, what: string): Promise<CdpMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
      this.on((m) => {
        if (predicate(m)) {
          clearTimeout(timer);
          resolve(m);
        }
      });
    });
  }

  /** Opens a page, loads `url`, and returns the session plus every problem the page reported. */
  async open(url: string, width = 1280, height = 900): Promise<{ session: string; problems: string[] }> {
    const { targetId } = (await this.send('Target.createTarget', { url: 'about:blank' })) as { targetId: string };
    const { sessionId } = (await this.send('Target.attachToTarget', { targetId, flatten: true })) as { sessionId: string };
    const problems: string[] = [];
    this.on((m) => {
      if (m.sessionId !== sessionId) return;
      const p = m.params ?? {};
      if (m.method === 'Runtime.exceptionThrown') {
        const d = p.exceptionDetails as { text?: string; exception?: { description?: string } };
        problems.push(`exception: ${d.exception?.description ?? d.text}`);
      } else if (m.method === 'Runtime.consoleAPICalled' && (p.type === 'error' || p.type === 'assert' || p.type === 'warning')) {
        problems.push(`console.${String(p.type)}: ${JSON.stringify(p.args)}`);
      } else if (m.method === 'Log.entryAdded') {
        const e = p.entry as { level: string; text: string; source: string; url?: string };
        if (e.level === 'error' || e.level === 'warning') problems.push(`${e.source} ${e.level}: ${e.text} ${e.url ?? ''}`);
      } else if (m.method === 'Network.loadingFailed') {
        problems.push(`failed load: ${String(p.errorText)} ${String(p.blockedReason ?? '')}`);
      }
    });
    await Promise.all([
      this.send('Runtime.enable', {}, sessionId),
      this.send('Log.enable', {}, sessionId),
      this.send('Page.enable', {}, sessionId),
      this.send('Network.enable', {}, sessionId),
      this.send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false }, sessionId),
    ]);
    const loaded = this.waitFor((m) => m.sessionId === sessionId && m.method === 'Page.loadEventFired', 10_000, `the load event of ${url}`);
    const nav = (await this.send('Page.navigate', { url }, sessionId)) as { errorText?: string };
    if (nav.errorText) throw new Error(`Navigation to ${url} failed: ${nav.errorText}`);
    await loaded;
    return { session: sessionId, problems };
  }

  async evaluate<T>(session: string, expression: string): Promise<T> {
    const r = (await this.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }, session)) as {
      result: { value: T };
      exceptionDetails?: { text: string };
    };
    if (r.exceptionDetails) throw new Error(`evaluate failed: ${r.exceptionDetails.text}`);
    return r.result.value;
  }

  async close(): Promise<void> {
    const exited = new Promise((resolve) => this.proc.once('exit', resolve));
    await this.send('Browser.close').catch(() => {});
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }
}

interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Fraction of pixels that are not near-white, and the standard deviation of the luminance. */
async function inkOf(png: Buffer): Promise<{ ink: number; stdev: number; width: number; height: number }> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  let ink = 0;
  let sum = 0;
  let sum2 = 0;
  const n = info.width * info.height;
  for (let i = 0; i < n; i++) {
    const y = 0.299 * data[i * 3]! + 0.587 * data[i * 3 + 1]! + 0.114 * data[i * 3 + 2]!;
    sum += y;
    sum2 += y * y;
    if (y < 235) ink++;
  }
  const mean = sum / n;
  return { ink: ink / n, stdev: Math.sqrt(Math.max(0, sum2 / n - mean * mean)), width: info.width, height: info.height };
}

describe.skipIf(SKIP)('report.html in headless Chromium', () => {
  let dir: string;
  let browser: Browser | undefined;

  beforeAll(() => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `${CHROMIUM} is missing: the browser test needs Debian's chromium package. Install it with ` +
          '`apt-get update && apt-get install -y chromium`, point TRT_CALIB_CHROMIUM at another Chromium, ' +
          'or set TRT_CALIB_SKIP_BROWSER=1 to skip this test.',
      );
    }
    dir = mkdtempSync(path.join(tmpdir(), 'trt-calib-browser-'));
    browser = Browser.launch(path.join(dir, 'profile'));
  });

  afterAll(async () => {
    await browser?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('catches a page with errors (the harness can fail)', async () => {
    const bad = path.join(dir, 'bad.html');
    writeFileSync(bad, '<!DOCTYPE html><title>bad</title><script>console.error("boom"); throw new Error("bang")</script>');
    const { problems } = await browser!.open(pathToFileURL(bad).href);
    await new Promise((r) => setTimeout(r, 100));
    expect(problems.join('\n')).toMatch(/boom/);
    expect(problems.join('\n')).toMatch(/bang/);
  });

  it('loads with no errors, draws every chart, and the screenshot is not blank', async () => {
    // Real image files for the thumbnails (named like the report's worst images).
    const images = path.join(dir, 'images');
    const report = syntheticReport({ labels: true, dense: true, tradeoff: true, maxDrop: 1 });
    const files = worstFiles(report);
    for (const [i, f] of files.entries()) {
      const full = path.join(images, f);
      await sharp({ create: { width: 160 + i * 8, height: 120, channels: 3, background: { r: (i * 53) % 256, g: 120, b: (i * 97) % 256 } } })
        .composite([{ input: Buffer.from(`<svg width="80" height="60"><circle cx="40" cy="30" r="25" fill="#fff"/></svg>`), top: 30, left: 40 }])
        .jpeg()
        .toFile(await ensureDir(full));
    }
    const thumbnails = await thumbnailDataUris(files, { baseDir: images });
    expect(thumbnails.size).toBe(files.length);
    const html = renderHtml(report, { thumbnails });
    const file = path.join(dir, 'report with spaces & <chars>.html'.replace(/[<>]/g, '_'));
    writeFileSync(file, html);

    const { session, problems } = await browser!.open(pathToFileURL(file).href);
    const dom = await browser!.evaluate<{
      snrBars: number;
      snrChartsVisible: number;
      histPaths: number;
      histograms: number;
      thresholds: number;
      tradeoffPath: number;
      thumbs: number;
      thumbsDecoded: number;
      hist: Rect;
      snr: Rect;
      title: string;
    }>(
      session,
      `(() => {
        const box = (el) => { const r = el.getBoundingClientRect(); return { x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height }; };
        const visible = (el) => { const r = el.getBoundingClientRect(); return el.checkVisibility() && r.width > 0 && r.height > 0; };
        const paths = [...document.querySelectorAll('svg.hist path.bars')];
        const bars = [...document.querySelectorAll('svg.snr rect')].filter(visible);
        const thumbs = [...document.querySelectorAll('img.thumb')];
        return {
          snrBars: bars.length,
          snrChartsVisible: [...document.querySelectorAll('svg.snr')].filter(visible).length,
          histPaths: paths.filter((p) => (p.getAttribute('d') || '').length > 20 && p.getBBox().width > 0 && p.getBBox().height > 0).length,
          histograms: document.querySelectorAll('svg.hist').length,
          thresholds: [...document.querySelectorAll('svg.hist line.threshold')].filter((l) => l.getBBox().height > 0).length,
          tradeoffPath: [...document.querySelectorAll('svg.tradeoff path.curve')].filter((p) => p.getBBox().width > 0).length,
          thumbs: thumbs.length,
          thumbsDecoded: thumbs.filter((i) => i.complete && i.naturalWidth > 0).length,
          hist: box(document.querySelector('svg.hist')),
          snr: box(document.querySelector('svg.snr')),
          title: document.title,
        };
      })()`,
    );
    expect(problems).toEqual([]);
    expect(dom.title).toBe('trt-calib report: models/mobile<net>.onnx');
    const winnerLayers = report.variants.find((v) => v.name === report.winner!.name)!.layers!.length;
    expect(dom.snrChartsVisible).toBe(1); // the winner's chart is open, the others folded
    expect(dom.snrBars).toBe(winnerLayers);
    expect(dom.histograms).toBe(report.histograms!.length);
    expect(dom.histPaths).toBe(report.histograms!.length);
    expect(dom.thresholds).toBe(report.histograms!.reduce((n, h) => n + h.thresholds.length, 0));
    expect(dom.tradeoffPath).toBe(1);
    expect(dom.thumbs).toBeGreaterThan(0);
    expect(dom.thumbsDecoded).toBe(dom.thumbs);

    for (const [name, rect] of [
      ['histogram', dom.hist],
      ['SNR chart', dom.snr],
    ] as const) {
      const shot = (await browser!.send(
        'Page.captureScreenshot',
        { format: 'png', clip: { ...rect, scale: 1 }, captureBeyondViewport: true },
        session,
      )) as { data: string };
      const png = Buffer.from(shot.data, 'base64');
      writeFileSync(path.join(dir, `${name}.png`), png);
      const { ink, stdev, width, height } = await inkOf(png);
      expect({ name, width, height }).toEqual({ name, width: Math.round(rect.width), height: Math.round(rect.height) });
      expect(stdev, `${name}: luminance standard deviation`).toBeGreaterThan(5);
      expect(ink, `${name}: fraction of non-white pixels`).toBeGreaterThan(0.03);
    }
  });
  it('draws FP32 and variant boxes over a real street photo, in their colours where the boxes are', async () => {
    const report = detectionReport();
    const photos = await photoDataUris(detectionPhotoFiles(report), { baseDir: FIXTURES, size: 480, quality: 80 });
    expect(photos.get('street/vtest_001.jpg')).toMatchObject({ width: 480, height: 360, originalWidth: 768, originalHeight: 576 });
    const file = path.join(dir, 'detection.html');
    writeFileSync(file, renderHtml(report, { photos }));
    const { session, problems } = await browser!.open(pathToFileURL(file).href);
    const dom = await browser!.evaluate<{ overlay: Rect; svg: Rect; decoded: boolean; boxes: number; apBars: number; prLines: number; ap: Rect; pr: Rect }>(
      session,
      `(() => {
        const box = (el) => { const r = el.getBoundingClientRect(); return { x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height }; };
        const fig = document.querySelector('details[open] figure.det-image');
        const img = fig.querySelector('img.photo');
        const drawn = (el) => { const b = el.getBBox(); return b.width > 0 && b.height > 0; };
        return {
          overlay: box(fig.querySelector('.overlay')),
          svg: box(fig.querySelector('svg.boxes')),
          decoded: img.complete && img.naturalWidth === 480 && img.naturalHeight === 360,
          boxes: [...fig.querySelectorAll('svg.boxes rect.edge')].filter(drawn).length,
          apBars: [...document.querySelectorAll('svg.ap rect.ap')].filter(drawn).length,
          prLines: [...document.querySelectorAll('svg.pr path.pr')].filter(drawn).length,
          ap: box(document.querySelector('svg.ap')),
          pr: box(document.querySelector('svg.pr')),
        };
      })()`,
    );
    expect(problems).toEqual([]);
    expect(dom.decoded).toBe(true);
    expect(dom.boxes).toBe(VTEST_001_REFERENCE.length + VTEST_001_VARIANT.length);
    expect(dom.apBars).toBe(16);
    expect(dom.prLines).toBe(8);
    expect(dom.svg).toEqual(dom.overlay);

    const clip = { x: Math.round(dom.overlay.x), y: Math.round(dom.overlay.y), width: 480, height: 360 };
    const shot = (await browser!.send('Page.captureScreenshot', { format: 'png', clip: { ...clip, scale: 1 }, captureBeyondViewport: true }, session)) as { data: string };
    const png = Buffer.from(shot.data, 'base64');
    keep('detection-boxes.png', png);
    const { ink, stdev, width, height } = await inkOf(png);
    expect([width, height]).toEqual([480, 360]);
    expect(stdev).toBeGreaterThan(20); // the photo, not a blank box
    expect(ink).toBeGreaterThan(0.5);

    const { data } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const at = (x: number, y: number) => [data[(y * 480 + x) * 3]!, data[(y * 480 + x) * 3 + 1]!, data[(y * 480 + x) * 3 + 2]!];
    const rgb = (hex: string) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
    const green = rgb(BOX_STYLES.reference.colour);
    const magenta = rgb(BOX_STYLES.variant.colour);
    const is = (p: number[], c: number[]) => p.every((v, k) => Math.abs(v - c[k]!) <= 40);
    const dx = dom.overlay.x - clip.x;
    const dy = dom.overlay.y - clip.y;
    /** Fraction of the points along a box's left and right edges (in original pixels) whose nearest pixel has the colour. */
    const edgeFraction = (b: { x1: number; y1: number; x2: number; y2: number }, colour: number[]) => {
      let hits = 0;
      let n = 0;
      for (const xo of [b.x1, b.x2]) {
        const x = xo * 0.625 + dx;
        for (let y = Math.ceil(b.y1 * 0.625 + dy) + 3; y <= Math.floor(b.y2 * 0.625 + dy) - 3; y++) {
          n++;
          if ([Math.floor(x), Math.floor(x) - 1, Math.ceil(x)].some((px) => is(at(px, y), colour))) hits++;
        }
      }
      return hits / n;
    };
    // FP32's three people: solid green edges (the van is covered by the variant's identical box).
    for (const b of VTEST_001_REFERENCE.slice(0, 3)) expect(edgeFraction(b, green), `FP32 box ${JSON.stringify(b)}`).toBeGreaterThan(0.9);
    // The variant's boxes: dashed magenta (6 on, 4 off).
    for (const b of VTEST_001_VARIANT) {
      const f = edgeFraction(b, magenta);
      expect(f, `variant box ${JSON.stringify(b)}`).toBeGreaterThan(0.4);
      expect(f, `variant box ${JSON.stringify(b)}`).toBeLessThan(0.85);
    }
    // The van, where both boxes coincide: FP32's green shows between the variant's dashes.
    expect(edgeFraction(VTEST_001_REFERENCE[3]!, green)).toBeGreaterThan(0.1);
    // Inside the boxes the photo shows through, and neither colour appears away from the boxes (the lawn, bottom left).
    const van = VTEST_001_REFERENCE[3]!;
    expect(is(at(Math.round(((van.x1 + van.x2) / 2) * 0.625 + dx), Math.round(((van.y1 + van.y2) / 2) * 0.625 + dy)), green)).toBe(false);
    for (let y = 250; y < 350; y += 5) for (let x = 10; x < 150; x += 5) expect(is(at(x, y), green) || is(at(x, y), magenta)).toBe(false);

    for (const [name, rect] of [
      ['ap', dom.ap],
      ['pr', dom.pr],
    ] as const) {
      const chart = (await browser!.send('Page.captureScreenshot', { format: 'png', clip: { ...rect, scale: 1 }, captureBeyondViewport: true }, session)) as { data: string };
      const chartPng = Buffer.from(chart.data, 'base64');
      keep(`detection-${name}.png`, chartPng);
      expect((await inkOf(chartPng)).ink, `${name} chart ink`).toBeGreaterThan(0.03);
    }
    await keepTaskSections(session, 'detection-page.png');
  });

  it('paints the segmentation masks over a real photo: red where FP32 alone has the class', async () => {
    const report = segmentationReport();
    // 64 x 48 masks over the 768 x 576 frame (12 px a cell): two pedestrians in FP32, only the first in the variant.
    const W = 64;
    const H = 48;
    const person = (x: number, y: number, cx1: number, cy1: number, cx2: number, cy2: number) => x >= cx1 / 12 && x < cx2 / 12 && y >= cy1 / 12 && y < cy2 / 12;
    const mask = (both: boolean) => ({
      width: W,
      height: H,
      data: Array.from({ length: W * H }, (_, i) => {
        const x = i % W;
        const y = Math.floor(i / W);
        return person(x, y, 504, 216, 552, 312) || (both && person(x, y, 672, 252, 720, 372)) ? 15 : 0;
      }),
    });
    const overlay = await maskOverlayDataUri(path.join(FIXTURES, 'street/vtest_003.jpg'), mask(true), mask(false));
    const file = path.join(dir, 'segmentation.html');
    writeFileSync(file, renderHtml(report, { maskOverlays: new Map([['int8-entropy2', new Map([['street/vtest_003.jpg', overlay]])]]) }));
    const { session, problems } = await browser!.open(pathToFileURL(file).href);
    const dom = await browser!.evaluate<{ img: Rect; decoded: boolean }>(
      session,
      `(() => { const i = document.querySelector('img.overlay-mask'); const r = i.getBoundingClientRect();
        return { img: { x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height }, decoded: i.complete && i.naturalWidth === 480 }; })()`,
    );
    expect(problems).toEqual([]);
    expect(dom.decoded).toBe(true);
    const clip = { x: Math.round(dom.img.x), y: Math.round(dom.img.y), width: 480, height: 360 };
    const shot = (await browser!.send('Page.captureScreenshot', { format: 'png', clip: { ...clip, scale: 1 }, captureBeyondViewport: true }, session)) as { data: string };
    const png = Buffer.from(shot.data, 'base64');
    keep('segmentation-overlay.png', png);
    const { data } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const at = (xo: number, yo: number) => {
      const o = (Math.round(yo * 0.625) * 480 + Math.round(xo * 0.625)) * 3;
      return [data[o]!, data[o + 1]!, data[o + 2]!];
    };
    const [r, g, b] = at(696, 312); // the second pedestrian: lost
    expect(r).toBeGreaterThan(150);
    expect(g).toBeLessThan(90);
    expect(b).toBeLessThan(90);
    const [r2, g2, b2] = at(528, 264); // the first: both agree, a green tint
    expect(g2).toBeGreaterThan(r2);
    expect(g2).toBeGreaterThan(b2);
    expect((await inkOf(png)).stdev).toBeGreaterThan(20);
    await keepTaskSections(session, 'segmentation-page.png');
  });

  it('a real comparison: the SSD fixture, FP32 against its INT8 (minmax) export, boxes on the street frames', async () => {
    const fp32 = await runSsdOnStreet();
    const q = await quantize({
      model: SSD,
      precision: 'int8',
      data: { data: path.join(FIXTURES, 'images'), preprocess: SSD_PREPROCESS, maxImages: 4 },
      algorithm: 'minmax',
      outDir: dir,
      out: path.join(dir, 'ssd.minmax.int8.onnx'),
      threads: 1,
    });
    const int8 = await runOnStreet(q.out);
    expect(int8.files).toEqual(fp32.files);
    const names = await readClassNames(COCO_LABELS);
    const evaluator = createDetectionEvaluator({ spec: SSD_SPEC, classOffset: 1, classNames: names });
    evaluator.addReference(fp32.outputs, fp32.images);
    evaluator.addVariant('fp32', fp32.outputs, fp32.images);
    evaluator.addVariant('int8-minmax', int8.outputs, fp32.images);
    const tasks = evaluator.finish();
    const variants = [
      { name: 'fp32', precision: 'fp32' as const, outputs: fp32.outputs },
      { name: 'int8-minmax', precision: 'int8' as const, algorithm: 'minmax', outputs: int8.outputs },
    ].map((spec) => {
      const cmp = new VariantComparison({ name: spec.name, precision: spec.precision, ...(spec.algorithm ? { algorithm: spec.algorithm } : {}) });
      cmp.addOutputs(fp32.outputs, spec.outputs, fp32.files, undefined, ['boxes', 'scores']);
      return { ...cmp.result('scores'), task: tasks.get(spec.name)! };
    });
    const report = buildCompareReport({
      tool: { name: 'trt-calib', version: 'test' },
      model: { file: 'ssdlite_mobilenet_v2_coco_300.onnx', inputs: [{ name: 'input', dims: [1, 3, 300, 300] }], outputs: [] },
      data: { source: STREET, images: fp32.files.length, skipped: 0 },
      settings: { backend: 'onnxruntime', batchSize: 1, precisions: ['fp32', 'int8'], algorithms: ['minmax'], threshold: 0.3, worstCount: 5 },
      variants,
      primaryOutput: 'scores',
    });
    const det = report.variants[1]!.task!.detection!;
    expect(report.variants[0]!.task!.map).toBeCloseTo(1, 12);
    expect(det.map).toBeGreaterThan(0);
    expect(det.map).toBeLessThan(1);
    expect(det.perClass.map((c) => c.name)).toContain('person');
    expect(det.worst.length).toBeGreaterThan(0);
    // Four frames, at most five worst: every image with a difference is listed, so the lists add up to the totals.
    expect(det.worst.reduce((n, w) => n + w.lost, 0)).toBe(det.lost);
    expect(det.worst.reduce((n, w) => n + w.moved, 0)).toBe(det.moved);
    expect(det.worst.reduce((n, w) => n + w.gained, 0)).toBe(det.gained);
    const worst = det.worst[0]!;
    const people = worst.reference.filter((b) => b.classId === 1 && b.score >= 0.5);
    expect(people.length).toBeGreaterThanOrEqual(3);

    const photos = await photoDataUris(det.worst.map((w) => w.file), { size: 480, quality: 80 });
    const file = path.join(dir, 'ssd.html');
    writeFileSync(file, renderHtml(report, { photos, classNames: names }));
    const { session, problems } = await browser!.open(pathToFileURL(file).href);
    const dom = await browser!.evaluate<{ overlay: Rect; boxes: number; decoded: boolean }>(
      session,
      `(() => { const fig = document.querySelector('details[open] figure.det-image'); const r = fig.querySelector('.overlay').getBoundingClientRect();
        const img = fig.querySelector('img.photo');
        return { overlay: { x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height }, boxes: fig.querySelectorAll('svg.boxes rect.edge').length,
          decoded: img.complete && img.naturalWidth === 480 }; })()`,
    );
    expect(problems).toEqual([]);
    expect(dom.decoded).toBe(true);
    expect(dom.boxes).toBe(worst.reference.length + worst.variant.length);
    const clip = { x: Math.round(dom.overlay.x), y: Math.round(dom.overlay.y), width: 480, height: 360 };
    const shot = (await browser!.send('Page.captureScreenshot', { format: 'png', clip: { ...clip, scale: 1 }, captureBeyondViewport: true }, session)) as { data: string };
    const png = Buffer.from(shot.data, 'base64');
    keep('ssd-int8-minmax-worst.png', png);
    expect((await inkOf(png)).stdev).toBeGreaterThan(20);
    // Every FP32 person's box is drawn where the box is: its side edges in FP32's green or, where the INT8 box lies on
    // top of it, the variant's magenta (labels are in the same colours; only their text, where a neighbour's label
    // crosses an edge, is neither).
    const { data } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const at = (x: number, y: number) => [data[(y * 480 + x) * 3]!, data[(y * 480 + x) * 3 + 1]!, data[(y * 480 + x) * 3 + 2]!];
    const rgb = (hex: string) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
    const colours = [rgb(BOX_STYLES.reference.colour), rgb(BOX_STYLES.variant.colour)];
    const drawn = (p: number[]) => colours.some((c) => p.every((v, k) => Math.abs(v - c[k]!) <= 40));
    const dx = dom.overlay.x - clip.x;
    const dy = dom.overlay.y - clip.y;
    for (const b of people as DetectionBox[]) {
      let hits = 0;
      let n = 0;
      for (const xo of [b.x1, b.x2]) {
        const x = xo * 0.625 + dx;
        for (let y = Math.ceil(b.y1 * 0.625 + dy) + 3; y <= Math.floor(b.y2 * 0.625 + dy) - 3; y++, n++) {
          if ([Math.floor(x) - 1, Math.floor(x), Math.ceil(x)].some((px) => px >= 0 && px < 480 && drawn(at(px, y)))) hits++;
        }
      }
      expect(hits / n, `FP32 person ${JSON.stringify(b)}`).toBeGreaterThan(0.7);
    }
  });

  it('shows the OCR text pairs as the text itself (escaped in the file, intact on the page)', async () => {
    const file = path.join(dir, 'ocr.html');
    writeFileSync(file, renderHtml(ocrReport()));
    const { session, problems } = await browser!.open(pathToFileURL(file).href);
    const rows = await browser!.evaluate<string[][]>(
      session,
      `[...document.querySelectorAll('details[open] table.ocr tbody tr')].map((tr) => [...tr.children].map((td) => td.textContent))`,
    );
    expect(problems).toEqual([]);
    expect(rows).toEqual([
      ['text/a.png', 'PRICE <5 & "10"', 'PRlCE <5 & "1O"', 'PRICE <5 & "10"', '2'],
      [NASTY_FILE, "it's", '(empty)', '-', '4'],
      ['text/c.png', 'EXIT', 'EXIT', '-', '0'],
    ]);
    await keepTaskSections(session, 'ocr-page.png');
  });

  /** With TRT_CALIB_SCREENSHOTS, keeps the task sections as a reader sees them, from the verdict table to the outputs. */
  async function keepTaskSections(session: string, name: string): Promise<void> {
    if (KEEP_SHOTS === undefined) return;
    const top = await browser!.evaluate<number>(session, `document.getElementById('task').getBoundingClientRect().top + scrollY`);
    const bottom = await browser!.evaluate<number>(session, `document.getElementById('outputs').getBoundingClientRect().top + scrollY`);
    const clip = { x: 0, y: top, width: 1280, height: bottom - top, scale: 1 };
    const page = (await browser!.send('Page.captureScreenshot', { format: 'png', clip, captureBeyondViewport: true }, session)) as { data: string };
    keep(name, Buffer.from(page.data, 'base64'));
  }

  /** Writes a screenshot beside the report (removed with it) and, with TRT_CALIB_SCREENSHOTS, to that folder too. */
  function keep(name: string, png: Buffer): void {
    writeFileSync(path.join(dir, name), png);
    if (KEEP_SHOTS !== undefined) writeFileSync(path.join(KEEP_SHOTS, name), png);
  }
});

async function ensureDir(file: string): Promise<string> {
  const { mkdir } = await import('node:fs/promises');
  await mkdir(path.dirname(file), { recursive: true });
  return file;
}
