/**
 * report.html in a real browser: headless Chromium (Debian's `chromium` package) loads the report from a file://
 * URL with every network feature off; the test asserts no console error, no exception, no blocked fetch, that
 * the SVG charts have drawn geometry, that the thumbnails decoded, and that a screenshot of the chart regions is
 * not blank.
 *
 * Chromium is driven through the DevTools protocol over --remote-debugging-pipe (fd 3: commands in, fd 4:
 * replies out, NUL-separated JSON), so no WebSocket client or npm dependency is needed.
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
import { renderHtml } from '../../src/compare/render-html.js';
import { worstFiles } from '../../src/compare/report.js';
import { thumbnailDataUris } from '../../src/compare/thumbnails.js';
import { syntheticReport } from '../unit/compare-fixture.js';

const CHROMIUM = process.env.TRT_CALIB_CHROMIUM ?? '/usr/bin/chromium';
const SKIP = process.env.TRT_CALIB_SKIP_BROWSER === '1';

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
});

async function ensureDir(file: string): Promise<string> {
  const { mkdir } = await import('node:fs/promises');
  await mkdir(path.dirname(file), { recursive: true });
  return file;
}
