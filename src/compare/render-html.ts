/**
 * report.html: one self-contained file (inline CSS, inline SVG charts, thumbnails as data: URIs, no script, and a
 * Content-Security-Policy that forbids every network fetch), rendered from a CompareReport. Pure: the report
 * and the thumbnails in, a string out; the same inputs give the same bytes. Sections appear only when the
 * report holds their data (layers, histograms, trade-off curve, worst images; the task sections of
 * render-task-html.ts). Every string from the report is escaped: tensor names may hold < > & " '.
 */
import {
  agreementLabel,
  fmtAgreement,
  fmtCos,
  fmtDb,
  fmtNum,
  fmtPct,
  fmtPoints,
  gateMetricLabel,
  primaryOf,
  variantLabel,
} from './format.js';
import { colourOf, escapeHtml, svgNumber as c } from './html-parts.js';
import { focusVariant } from './report.js';
import { TASK_CSS, taskSections, taskSummarySection, type TaskHtmlOptions } from './render-task-html.js';
import type { CompareReport, LayerMetrics, TensorHistogram, TradeoffCurve, VariantReport } from './types.js';

/** The task sections' pictures (photos with boxes, mask overlays) come through TaskHtmlOptions. */
export interface HtmlRenderOptions extends TaskHtmlOptions {
  /** Image file (as in the report) -> data: URI of its thumbnail (see thumbnails.ts). */
  thumbnails?: ReadonlyMap<string, string>;
  /** Layers drawn per SNR chart, worst first (default 60). */
  maxLayers?: number;
}

// Re-exported: escapeHtml was defined here before the task sections needed it too.
export { escapeHtml };
const esc = escapeHtml;

function shorten(name: string, max = 60): string {
  if (name.length <= max) return name;
  // Keep more of the end: ONNX names differ mostly in their last parts (features.24/conv/.../Conv_output_0).
  const head = Math.floor((max - 1) * 0.3);
  return `${name.slice(0, head)}\u2026${name.slice(name.length - (max - 1 - head))}`;
}

const CSS = `
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1180px;padding:16px 24px;color:#1b1f23;background:#fff}
h1{font-size:22px;margin:8px 0}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;margin:6px 0 10px;font-variant-numeric:tabular-nums}
th,td{padding:3px 9px;border-bottom:1px solid #e5e8eb;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{background:#f6f8fa}
tr.winner td{background:#eef7ee;font-weight:600}
.name{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;text-align:left;white-space:normal;word-break:break-all}
.meta{color:#57606a}.pass{color:#1a7f37;font-weight:700}.fail{color:#cf222e;font-weight:700}
.banner{padding:8px 12px;border-radius:6px;background:#f6f8fa;margin:8px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:12px}
figure{margin:0;border:1px solid #e5e8eb;border-radius:6px;padding:8px}figcaption{font-size:12px;margin-bottom:4px}
.legend{list-style:none;padding:0;margin:4px 0 0;font-size:12px;display:flex;flex-wrap:wrap;gap:4px 14px}
.sw{display:inline-block;width:14px;height:3px;vertical-align:middle;margin-right:4px}
svg text{font:11px ui-monospace,SFMono-Regular,Menlo,monospace;fill:#1b1f23}
img.thumb{display:block;border-radius:3px}
details>summary{cursor:pointer;margin:6px 0}
pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:12px}
`;

export function renderHtml(report: CompareReport, options: HtmlRenderOptions = {}): string {
  const parts: string[] = [];
  parts.push(
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>trt-calib report: ${esc(report.model.file)}</title>`,
    `<style>${CSS}${TASK_CSS}</style>`,
    '</head>',
    '<body>',
    `<h1>INT8 / FP16 accuracy report: ${esc(report.model.file)}</h1>`,
    `<p class="meta">${esc(report.tool.name)} ${esc(report.tool.version)} &middot; ${report.data.images} images from ${esc(report.data.source)}` +
      `${report.data.skipped > 0 ? ` (${report.data.skipped} skipped)` : ''} &middot; backend ${esc(report.settings.backend)}, batch ${report.settings.batchSize}` +
      ` &middot; primary output <span class="name">${esc(report.primaryOutput)}</span>` +
      `${report.shards ? ` &middot; merged from ${report.shards.count} compare shards (${report.shards.files.map((f) => esc(f)).join(', ')})` : ''}</p>`,
  );
  parts.push(taskSummarySection(report));
  parts.push(summarySection(report));
  parts.push(taskSections(report, options));
  parts.push(outputsSection(report));
  parts.push(layersSection(report, options.maxLayers ?? 60));
  if (report.tradeoff !== undefined && report.tradeoff.points.length > 0) parts.push(tradeoffSection(report.tradeoff));
  if (report.histograms !== undefined && report.histograms.length > 0) parts.push(histogramsSection(report.histograms, report.settings.algorithms));
  parts.push(worstSection(report, options.thumbnails));
  if (report.notes.length > 0) parts.push(`<h2 id="notes">Notes</h2><ul>${report.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>`);
  parts.push(`<h2 id="settings">Settings</h2><pre>${esc(JSON.stringify(report.settings, null, 2))}</pre>`);
  parts.push('</body>', '</html>', '');
  return parts.filter((p) => p !== '').join('\n');
}

function summarySection(report: CompareReport): string {
  const primaryName = report.primaryOutput;
  const primary = primaryOf(report.variants[0]!, primaryName);
  const labelled = report.variants.some((v) => v.top1 !== undefined);
  const hasTop5 = report.variants.some((v) => v.top5 !== undefined);
  const head = ['variant', 'precision', agreementLabel(primary), 'mean cosine', 'worst cosine', 'SNR dB'];
  if (labelled) head.push('top-1', 'top-1 drop (pts)');
  if (hasTop5) head.push('top-5', 'top-5 drop (pts)');
  const rows = report.variants.map((v) => {
    const p = primaryOf(v, primaryName);
    const cells = [esc(variantLabel(v)), esc(v.precision), esc(fmtAgreement(v, p)), fmtCos(v.cosineMean), fmtCos(v.cosineMin), fmtDb(p?.snrDb)];
    if (labelled) cells.push(fmtPct(v.top1), fmtPoints(v.top1Drop));
    if (hasTop5) cells.push(fmtPct(v.top5), fmtPoints(v.top5Drop));
    return `<tr${report.winner?.name === v.name ? ' class="winner"' : ''}>${cells.map((x) => `<td>${x}</td>`).join('')}</tr>`;
  });
  const out = [`<h2 id="summary">Summary</h2>`, `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`];
  if (report.winner !== undefined) {
    const w = report.winner;
    const wv = report.variants.find((v) => v.name === w.name)!;
    out.push(
      `<p class="banner">Winner: <b>${esc(variantLabel(wv))}</b>: ${esc(agreementLabel(primary))} ${esc(fmtAgreement(wv, primaryOf(wv, primaryName)))}, ` +
        `mean cosine ${fmtCos(w.cosineMean)}, worst ${fmtCos(w.cosineMin)} (${esc(w.reason)}).</p>`,
    );
  }
  if (report.gate !== undefined) {
    const g = report.gate;
    const rowsG = g.variants
      .map((r) => `<tr><td>${esc(r.name)}</td><td>${fmtPoints(r.drop)}</td><td class="${r.passed ? 'pass' : 'fail'}">${r.passed ? 'pass' : 'fail'}</td></tr>`)
      .join('');
    out.push(
      `<p class="banner">Gate <span class="${g.passed ? 'pass' : 'fail'}">${g.passed ? 'PASSED' : 'FAILED'}</span>: ${esc(gateMetricLabel(g.metric))} at most ${esc(String(g.maxDrop))} ${g.maxDrop === 1 ? 'point' : 'points'}.</p>`,
      rowsG === '' ? '' : `<table><thead><tr><th>variant</th><th>drop (pts)</th><th>result</th></tr></thead><tbody>${rowsG}</tbody></table>`,
    );
  }
  return out.filter((x) => x !== '').join('\n');
}

function outputsSection(report: CompareReport): string {
  const rows: string[] = [];
  for (const v of report.variants) {
    for (const o of v.outputs) {
      rows.push(
        `<tr><td>${esc(v.name)}</td><td class="name">${esc(o.name)}</td><td>${esc(o.kind)}</td><td>${esc(o.dims.join('x'))}</td><td>${fmtCos(o.cosineMean)}</td><td>${fmtCos(o.cosineMin)}</td>` +
          `<td>${fmtDb(o.snrDb)}</td><td>${fmtNum(o.meanAbsErr)}</td><td>${fmtNum(o.maxAbsErr)}</td><td>${o.sameSideFraction === undefined ? '-' : fmtPct(o.sameSideFraction)}</td><td>${o.iou === undefined ? '-' : o.iou.toFixed(4)}</td></tr>`,
      );
    }
  }
  return (
    `<h2 id="outputs">Outputs</h2>\n<table><thead><tr><th>variant</th><th>output</th><th>kind</th><th>dims</th><th>mean cosine</th><th>worst cosine</th>` +
    `<th>SNR dB</th><th>mean |err|</th><th>max |err|</th><th>same side</th><th title="intersection over union of the maps thresholded like the same-side column">IoU</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
  );
}

function layersSection(report: CompareReport, maxLayers: number): string {
  const withLayers = report.variants.filter((v) => v.layers !== undefined && v.layers.length > 0);
  if (withLayers.length === 0) return '';
  const focus = focusVariant(report);
  const out = [`<h2 id="layers">Per-layer SNR against FP32</h2>`, `<p class="meta">Each quantized tensor's SNR over all images, worst first; lower means more error introduced up to that tensor.</p>`];
  for (const v of withLayers) {
    const layers = v.layers!;
    const shown = layers.slice(0, maxLayers);
    const open = v.name === focus?.name || withLayers.length === 1 ? ' open' : '';
    out.push(
      `<details${open}><summary>${esc(variantLabel(v))}: ${layers.length} tensors${shown.length < layers.length ? `, worst ${shown.length} shown (all in report.json)` : ''}</summary>`,
      snrChart(shown),
      '</details>',
    );
  }
  return out.join('\n');
}

function snrColour(db: number): string {
  return db < 15 ? '#d62728' : db < 25 ? '#ff7f0e' : '#2ca02c';
}

/** Horizontal bars, one per tensor: its name, a bar proportional to its SNR, the value. */
export function snrChart(layers: readonly LayerMetrics[]): string {
  const rowH = 16;
  const labelW = 410;
  const barW = 400;
  const valueW = 60;
  const top = 22;
  const width = labelW + barW + valueW;
  const height = top + rowH * layers.length + 6;
  const finite = layers.map((l) => l.snrDb).filter((d) => Number.isFinite(d));
  const xmax = Math.max(10, Math.ceil(Math.max(0, ...finite) / 10) * 10);
  const x = (db: number) => labelW + (Math.min(Math.max(db, 0), xmax) / xmax) * barW;
  const parts: string[] = [`<svg class="chart snr" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="per-layer SNR in dB">`];
  for (let t = 0; t <= xmax; t += xmax > 60 ? 20 : 10) {
    parts.push(`<line x1="${c(x(t))}" y1="${top - 4}" x2="${c(x(t))}" y2="${height - 4}" stroke="#e5e8eb"/><text x="${c(x(t))}" y="${top - 8}" text-anchor="middle">${t}</text>`);
  }
  parts.push(`<text x="${labelW - 6}" y="${top - 8}" text-anchor="end">SNR dB</text>`);
  layers.forEach((l, i) => {
    const y = top + i * rowH;
    const db = l.snrDb;
    const w = Math.max(1, x(db === Number.POSITIVE_INFINITY ? xmax : db) - labelW);
    parts.push(
      `<g><title>${esc(l.name)}${l.opType !== undefined ? ` (${esc(l.opType)})` : ''}: ${fmtDb(db)} dB, cosine ${fmtCos(l.cosine)}</title>` +
        `<text x="${labelW - 6}" y="${y + 12}" text-anchor="end">${esc(shorten(l.name))}</text>` +
        `<rect x="${labelW}" y="${y + 2}" width="${c(w)}" height="${rowH - 4}" fill="${Number.isFinite(db) ? snrColour(db) : '#2ca02c'}"/>` +
        `<text x="${c(labelW + w + 4)}" y="${y + 12}">${fmtDb(db)}</text></g>`,
    );
  });
  parts.push('</svg>');
  return parts.join('');
}

function histogramsSection(histograms: readonly TensorHistogram[], algorithms: readonly string[]): string {
  const out = [
    `<h2 id="histograms">Activation histograms</h2>`,
    `<p class="meta">|x| of each tensor over the calibration images (log count), with the amax each algorithm picks; values beyond the line saturate at ±127.</p>`,
    '<div class="grid">',
  ];
  histograms.forEach((h, i) => out.push(histogramFigure(h, i, algorithms)));
  out.push('</div>');
  return out.join('\n');
}

/** A log-count step histogram of |x| with a dashed vertical line per algorithm threshold, and its legend. */
export function histogramFigure(h: TensorHistogram, index: number, algorithms: readonly string[]): string {
  const W = 520;
  const H = 170;
  const left = 44;
  const right = 16;
  const top = 10;
  const bottom = 34;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const base = top + plotH;
  const upper = h.upper > 0 ? h.upper : 1;
  const maxCount = Math.max(1, ...h.counts);
  const logMax = Math.log10(1 + maxCount);
  const x = (v: number) => left + (Math.min(Math.max(v, 0), upper) / upper) * plotW;
  const y = (n: number) => base - (Math.log10(1 + n) / logMax) * plotH;
  let d = `M${c(left)} ${c(base)}`;
  if (h.upper > 0) {
    h.counts.forEach((n, i) => {
      d += `L${c(x(i * h.binWidth))} ${c(y(n))}L${c(x((i + 1) * h.binWidth))} ${c(y(n))}`;
    });
  } else {
    // Every value is 0: one bar at the origin.
    d += `L${c(left)} ${c(y(h.counts[0] ?? 0))}L${c(left + 4)} ${c(y(h.counts[0] ?? 0))}L${c(left + 4)} ${c(base)}`;
  }
  d += `L${c(x(upper))} ${c(base)}Z`;
  const order = h.thresholds.map((t) => t.algorithm);
  const lines = h.thresholds
    .map((t) => {
      const tx = c(x(t.amax));
      return `<line class="threshold" x1="${tx}" y1="${top}" x2="${tx}" y2="${base}" stroke="${colourOf(t.algorithm, order.length > 0 ? order : algorithms)}" stroke-width="1.5" stroke-dasharray="4 3"><title>${esc(t.algorithm)}: amax ${esc(fmtNum(t.amax))}</title></line>`;
    })
    .join('');
  const ticks = [0, 0.25, 0.5, 0.75, 1]
    .map(
      (f) =>
        `<line x1="${c(x(f * upper))}" y1="${base}" x2="${c(x(f * upper))}" y2="${base + 4}" stroke="#57606a"/>` +
        `<text x="${c(x(f * upper))}" y="${base + 15}" text-anchor="${f === 0 ? 'start' : f === 1 ? 'end' : 'middle'}">${esc(fmtNum(f * (h.upper > 0 ? h.upper : 0)))}</text>`,
    )
    .join('');
  const svg =
    `<svg class="chart hist" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="histogram of |x|">` +
    `<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="#fbfcfd" stroke="#d0d7de"/>` +
    `<path class="bars" d="${d}" fill="#9ecae1" stroke="#3182bd" stroke-width="0.8"/>` +
    lines +
    ticks +
    `<text x="${left - 4}" y="${top + 10}" text-anchor="end">${esc(Number.isInteger(maxCount) ? String(maxCount) : fmtNum(maxCount))}</text><text x="${left - 4}" y="${base}" text-anchor="end">0</text>` +
    `<text x="${left + plotW / 2}" y="${H - 3}" text-anchor="middle">|x|</text>` +
    '</svg>';
  const legend = h.thresholds
    .map((t) => `<li><span class="sw" style="background:${colourOf(t.algorithm, order)}"></span>${esc(t.algorithm)} ${esc(fmtNum(t.amax))}</li>`)
    .join('');
  return (
    `<figure id="hist-${index}"><figcaption><span class="name">${esc(h.name)}</span> <span class="meta">&middot; ${h.count} values, max |x| ${esc(fmtNum(h.absMax))}` +
    `${h.snrDb !== undefined ? `, SNR ${fmtDb(h.snrDb)} dB` : ''}</span></figcaption>${svg}<ul class="legend">${legend}</ul></figure>`
  );
}

function tradeoffSection(t: TradeoffCurve): string {
  const W = 620;
  const H = 240;
  const left = 52;
  const right = 16;
  const top = 12;
  const bottom = 36;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const values = t.points.map((p) => p.value).concat(t.target !== undefined ? [t.target] : []);
  const lo = Math.max(0, Math.floor((Math.min(...values) - 0.01) * 100) / 100);
  const hi = Math.min(1, Math.max(...values) + 0.005);
  const span = hi - lo > 0 ? hi - lo : 1;
  const total = Math.max(1, t.totalLayers);
  const x = (n: number) => left + (n / total) * plotW;
  const y = (v: number) => top + plotH - ((v - lo) / span) * plotH;
  const pts = t.points.slice().sort((a, b) => a.int8Layers - b.int8Layers);
  const d = pts.map((p, i) => `${i === 0 ? 'M' : 'L'}${c(x(p.int8Layers))} ${c(y(p.value))}`).join('');
  const dots = t.points
    .map((p, i) => {
      const chosen = i === t.chosen;
      return `<circle cx="${c(x(p.int8Layers))}" cy="${c(y(p.value))}" r="${chosen ? 6 : 3}" fill="${chosen ? '#d62728' : '#1f77b4'}"><title>${p.int8Layers} INT8 layers: ${fmtPct(p.value)}${p.label !== undefined ? ` (${esc(p.label)})` : ''}${chosen ? ', chosen' : ''}</title></circle>`;
    })
    .join('');
  const target =
    t.target !== undefined
      ? `<line x1="${left}" y1="${c(y(t.target))}" x2="${left + plotW}" y2="${c(y(t.target))}" stroke="#2ca02c" stroke-dasharray="5 4"/><text x="${left + 4}" y="${c(y(t.target) - 4)}">target ${fmtPct(t.target)}</text>`
      : '';
  const svg =
    `<svg class="chart tradeoff" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="trade-off curve">` +
    `<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="#fbfcfd" stroke="#d0d7de"/>` +
    `<path class="curve" d="${d}" fill="none" stroke="#1f77b4" stroke-width="2"/>${dots}${target}` +
    `<text x="${left - 4}" y="${top + 10}" text-anchor="end">${fmtPct(hi, 1)}</text><text x="${left - 4}" y="${top + plotH}" text-anchor="end">${fmtPct(lo, 1)}</text>` +
    `<text x="${left}" y="${H - 18}">0</text><text x="${left + plotW}" y="${H - 18}" text-anchor="end">${t.totalLayers}</text>` +
    `<text x="${left + plotW / 2}" y="${H - 4}" text-anchor="middle">layers in INT8</text></svg>`;
  const chosen = t.chosen !== undefined ? t.points[t.chosen] : undefined;
  return [
    `<h2 id="tradeoff">Trade-off: ${esc(t.metric)} against layers in INT8</h2>`,
    svg,
    chosen !== undefined ? `<p class="banner">Chosen: ${chosen.int8Layers} of ${t.totalLayers} layers in INT8${t.rest !== undefined ? `, the rest in ${t.rest.toUpperCase()}` : ''}, ${esc(t.metric)} ${fmtPct(chosen.value)}.</p>` : '',
  ]
    .filter((s) => s !== '')
    .join('\n');
}

function worstSection(report: CompareReport, thumbnails?: ReadonlyMap<string, string>): string {
  const variants = report.variants.filter((v) => v.precision !== 'fp32' && v.worst.length > 0);
  if (variants.length === 0) return '';
  const classes = report.data.labels?.classes;
  const out = [`<h2 id="worst">Worst images</h2>`, `<p class="meta">By the per-image cosine of output <span class="name">${esc(report.primaryOutput)}</span> against FP32.</p>`];
  for (const v of variants) out.push(worstTable(v, thumbnails, classes));
  return out.join('\n');
}

function worstTable(v: VariantReport, thumbnails: ReadonlyMap<string, string> | undefined, classes: readonly string[] | undefined): string {
  const cls = v.worst.some((w) => w.referenceTop1 !== undefined);
  const dense = v.worst.some((w) => w.sameSideFraction !== undefined);
  const labelled = v.worst.some((w) => w.label !== undefined);
  const thumbs = thumbnails !== undefined && v.worst.some((w) => thumbnails.has(w.file));
  const name = (i: number | undefined) => (i === undefined ? '-' : esc(classes?.[i] ?? String(i)));
  const rows = v.worst.map((w) => {
    const uri = thumbnails?.get(w.file);
    const img = thumbs ? `<td>${uri !== undefined && uri.startsWith('data:image/') ? `<img class="thumb" src="${esc(uri)}" alt="${esc(w.file)}">` : ''}</td>` : '';
    let extra = '';
    if (cls) {
      extra = `<td>${name(w.referenceTop1)} &rarr; ${name(w.variantTop1)}${w.referenceTop1 !== w.variantTop1 ? ' <b>differs</b>' : ''}</td>`;
      if (labelled) extra += `<td>${name(w.label)}</td>`;
    } else if (dense) {
      extra = `<td>${fmtPct(w.sameSideFraction)}</td>`;
    }
    return `<tr>${img}<td class="name">${esc(w.file)}</td><td>${fmtCos(w.cosine)}</td><td>${fmtDb(w.snrDb)}</td><td>${fmtNum(w.maxAbsErr)}</td>${extra}</tr>`;
  });
  const extraHead = cls ? `<th>class fp32 &rarr; variant</th>${labelled ? '<th>label</th>' : ''}` : dense ? '<th>same side</th>' : '';
  return (
    `<h3>${esc(variantLabel(v))}</h3><table><thead><tr>${thumbs ? '<th></th>' : ''}<th>image</th><th>cosine</th><th>SNR dB</th><th>max |err|</th>${extraHead}</tr></thead>` +
    `<tbody>${rows.join('')}</tbody></table>`
  );
}
