import { describe, expect, it } from 'vitest';
import { escapeHtml, renderHtml } from '../../src/compare/render-html.js';
import { parseReportJson, renderJson } from '../../src/compare/render-json.js';
import { renderText } from '../../src/compare/render-text.js';
import { NASTY_NAME, syntheticReport } from './compare-fixture.js';

describe('text report', () => {
  it('shows the variants side by side, the worst layers, the winner and the gate', () => {
    const r = syntheticReport({ labels: true, maxDrop: 50 });
    const text = renderText(r);
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^models\/mobile<net>\.onnx on 23 images \(images\/val\); output "output" \(classifier, 8 classes\)$/);
    const header = lines[2]!;
    for (const col of ['variant', 'top-1 agreement', 'cos mean', 'cos worst', 'SNR dB', 'top-1', 'drop', 'top-5']) expect(header).toContain(col);
    expect(lines[3]).toMatch(/^fp32 +23\/23 \(100\.00%\) +1\.00000 +1\.00000 +inf +\d+\.\d\d% +0\.00 +\d+\.\d\d% +0\.00$/);
    expect(text).toMatch(/^int8-entropy2 \*/m);
    expect(text).toContain('Worst layers of int8-entropy2 (SNR against FP32, 10 of 27):');
    expect(text).toContain(NASTY_NAME); // text is not escaped: it is for a terminal
    expect(text).toMatch(/^Winner: int8-entropy2: top-1 agreement \d+\/23 \(\d+\.\d\d%\), mean cosine 0\.\d{5}, worst 0\.\d{5} \(highest agreement with FP32; next best int8-\w+\)\.$/m);
    expect(text).toMatch(/^Gate PASSED: top-1 accuracy drop at most 50 points: fp16 -?\d+\.\d\d, int8-entropy2 -?\d+\.\d\d\.$/m);
    expect(text.endsWith('\n')).toBe(true);
  });
  it('lists the outputs and the same-side fraction for dense maps; no accuracy columns without labels', () => {
    const text = renderText(syntheticReport({ dense: true, maxDrop: 0 }));
    expect(text).toContain('Outputs:');
    expect(text).toMatch(/^ {2}int8-minmax +prob_map +0\.\d{5} .*\d+\.\d\d% \(\d+ px differ\) +[01]\.\d{4}$/m);
    // A map identical on the threshold shows the plain percentage.
    expect(text).toMatch(/^ {2}fp16 +prob_map .* 100\.00% +1\.0000$/m);
    expect(text.split('\n')[2]).not.toContain('drop');
    expect(text).toMatch(/^Gate FAILED: top-1 disagreement with FP32 at most 0 points: fp16 0\.00, int8-entropy2 \d+\.\d\d > max\.$/m);
  });
});

describe('JSON report', () => {
  it('writes Infinity as a string and reads it back as a number', () => {
    const r = syntheticReport({ labels: true, dense: true, tradeoff: true, maxDrop: 1 });
    const json = renderJson(r);
    expect(json).toContain('"snrDb": "Infinity"');
    expect(() => JSON.parse(json)).not.toThrow();
    const back = parseReportJson(json, 'report.json');
    expect(back).toEqual(r);
    expect(renderJson(back)).toBe(json);
  });
  it('rejects files that are not reports', () => {
    expect(() => parseReportJson('{"format":"x"}', 'r.json')).toThrow(/r\.json is not a trt-calib report/);
    expect(() => parseReportJson('{"format":"trt-calib-report","formatVersion":9,"variants":[]}', 'r.json')).toThrow(/format version 9/);
    expect(() => parseReportJson('{', 'r.json')).toThrow(/r\.json is not valid JSON/);
  });
});

describe('HTML report', () => {
  it('escapes every special character', () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  });
  it('never lets a tensor, file or model name through unescaped', () => {
    const r = syntheticReport({ labels: true, dense: true });
    const html = renderHtml(r);
    expect(html).not.toContain(NASTY_NAME);
    expect(html).toContain(escapeHtml(NASTY_NAME));
    expect(html).not.toContain('mobile<net>');
    expect(html).not.toContain('<&>.jpg');
    expect(html).toContain(escapeHtml(r.variants[2]!.worst[0]!.file));
    // the only tags are the ones the renderer writes
    const tags = new Set([...html.matchAll(/<([a-zA-Z][a-zA-Z0-9]*)/g)].map((m) => m[1]!.toLowerCase()));
    expect([...tags].sort()).toEqual(
      ['b', 'details', 'figcaption', 'figure', 'g', 'h1', 'h2', 'h3', 'head', 'html', 'li', 'line', 'meta', 'p', 'path', 'pre', 'rect', 'span', 'style', 'summary', 'svg', 'table', 'tbody', 'td', 'text', 'th', 'thead', 'title', 'tr', 'ul', 'div', 'body'].sort(),
    );
  });
  it('is self-contained: no script, no network URL, a CSP that forbids fetching', () => {
    const r = syntheticReport({ labels: true, tradeoff: true });
    const file = r.variants[1]!.worst[0]!.file;
    const html = renderHtml(r, { thumbnails: new Map([[file, 'data:image/jpeg;base64,/9j/AAAA']]) });
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/(src|href)\s*=\s*"(?!data:)/i);
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).toContain(`content="default-src 'none'; img-src data:; style-src 'unsafe-inline'"`);
    expect(html).toContain(`<img class="thumb" src="data:image/jpeg;base64,/9j/AAAA" alt="${escapeHtml(file)}">`);
  });
  it('draws only the sections it has data for', () => {
    const plain = renderHtml(syntheticReport());
    expect(plain).toContain('id="summary"');
    expect(plain).toContain('id="layers"');
    expect(plain).toContain('id="histograms"');
    expect(plain).not.toContain('id="tradeoff"');
    const withCurve = renderHtml(syntheticReport({ tradeoff: true }));
    expect(withCurve).toContain('id="tradeoff"');
    expect(withCurve).toContain('Chosen: 24 of 27 layers in INT8, top-1 agreement 97.70%.');
    const r = syntheticReport();
    delete r.histograms;
    r.variants.forEach((v) => delete v.layers);
    const bare = renderHtml(r);
    expect(bare).not.toContain('id="layers"');
    expect(bare).not.toContain('id="histograms"');
  });
  it('draws one SNR bar per layer, one threshold line per algorithm and a log-count path per histogram', () => {
    const r = syntheticReport();
    const html = renderHtml(r);
    const winnerLayers = r.variants.find((v) => v.name === r.winner!.name)!.layers!.length;
    const snrSvgs = [...html.matchAll(/<svg class="chart snr"[\s\S]*?<\/svg>/g)];
    expect(snrSvgs.length).toBe(3); // one per INT8 variant
    expect([...snrSvgs[0]![0].matchAll(/<rect /g)].length).toBe(winnerLayers);
    expect([...html.matchAll(/<path class="bars" d="M[^"]+Z"/g)].length).toBe(r.histograms!.length);
    expect([...html.matchAll(/<line class="threshold"/g)].length).toBe(r.histograms!.length * 3);
  });
  it('gives the same bytes for the same report', () => {
    const a = renderHtml(syntheticReport({ labels: true, dense: true, tradeoff: true, maxDrop: 2 }));
    const b = renderHtml(syntheticReport({ labels: true, dense: true, tradeoff: true, maxDrop: 2 }));
    expect(b).toBe(a);
    expect(renderText(syntheticReport({ dense: true }))).toBe(renderText(syntheticReport({ dense: true })));
  });
});
