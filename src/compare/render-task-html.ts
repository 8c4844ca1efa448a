/**
 * The task sections of report.html (issue 13): the verdict table that leads the report (mAP, mIoU, CER, top-1 per
 * variant), and the pictures of each task: for detection the worst images with FP32's and the variant's boxes drawn
 * over the photo, per-class AP bars and FP32-as-truth precision-recall curves; for segmentation the per-class IoU
 * and the worst images with both masks painted over them; for OCR the text pairs.
 *
 * Pure like render-html.ts: VariantReport.task and the pictures (HtmlRenderOptions) in, a string out, the same bytes
 * for the same inputs, every string escaped, a section only where its data exist. Boxes are in the original image's
 * pixels; they are drawn at the picture's scale (Photo.width / Photo.originalWidth), so a box lands where it is on
 * the photo whatever size the picture was made at.
 */
import { fmtPct, variantLabel } from './format.js';
import { ALGORITHM_COLOURS, escapeHtml as esc, EXTRA_COLOURS, OVERLAY_COLOURS, svgNumber as c } from './html-parts.js';
import { focusVariant } from './report.js';
import type {
  ClassAp,
  ClassIou,
  DetectionBox,
  DetectionImageRecord,
  DetectionMetrics,
  OcrMetrics,
  PrCurve,
  SegmentationMetrics,
  TaskKind,
  TaskMetrics,
} from './task/types.js';
import type { Photo } from './thumbnails.js';
import type { CompareReport, VariantReport } from './types.js';

export interface TaskHtmlOptions {
  /** Category id -> name (--classes), for the boxes of categories the per-class lists lack (no FP32 box of them). */
  classNames?: ReadonlyMap<number, string>;
  /** Image file (as in the report) -> its picture and sizes, for the box overlays (photoDataUris in thumbnails.ts). */
  photos?: ReadonlyMap<string, Photo>;
  /** Segmentation: variant name -> image file -> the photo with FP32's and that variant's masks (maskOverlayDataUri). */
  maskOverlays?: ReadonlyMap<string, ReadonlyMap<string, Photo>>;
  /** Categories in the per-class AP chart, most ground truth first (default 20; all are in report.json). */
  maxClasses?: number;
  /** OCR text pairs shown per variant (default 50). */
  maxTextSamples?: number;
}

/** How boxes are drawn: FP32's (the truth) solid green, the variant's dashed magenta, both over a dark halo. */
export const BOX_STYLES = {
  reference: { colour: '#00e64d', dash: undefined as string | undefined, label: 'FP32 (truth)' },
  variant: { colour: '#ff00ff', dash: '6 4' as string | undefined, label: 'variant' },
} as const;

export const TASK_CSS = `
.overlay{position:relative;overflow:hidden;border-radius:3px;background:#f6f8fa}
.overlay>img,.overlay>svg{position:absolute;left:0;top:0;display:block}
.grid.pics{grid-template-columns:repeat(auto-fill,minmax(500px,1fr))}
table.ocr th:not(:last-child){text-align:left}
td.text{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;text-align:left;white-space:pre-wrap;word-break:break-all;max-width:340px}
tr.differs td.text{background:#fff5f5}
.sq{display:inline-block;width:12px;height:12px;vertical-align:middle;margin-right:4px;border-radius:2px}
`;

const KIND_TITLES: Record<TaskKind, string> = {
  detect: 'detection',
  segment: 'segmentation',
  ocr: 'OCR',
  classify: 'classification',
  raw: 'raw outputs',
};

/** A fraction with four decimals (mAP, IoU); '-' where absent or not a number. */
function frac(f: number | undefined): string {
  return f === undefined || !Number.isFinite(f) ? '-' : f.toFixed(4);
}

function signed(f: number | undefined): string {
  if (f === undefined || !Number.isFinite(f)) return '-';
  const r = Math.abs(f) < 0.00005 ? 0 : f;
  return `${r > 0 ? '+' : ''}${r.toFixed(4)}`;
}

function withTask(report: CompareReport): VariantReport[] {
  return report.variants.filter((v) => v.task !== undefined);
}

/** The variants judged against FP32 (FP32's own row, when present, is the truth and scores 1). */
function judged<K extends 'detection' | 'segmentation' | 'ocr'>(report: CompareReport, key: K): Array<{ v: VariantReport; m: NonNullable<TaskMetrics[K]> }> {
  const out: Array<{ v: VariantReport; m: NonNullable<TaskMetrics[K]> }> = [];
  for (const v of report.variants) {
    const m = v.task?.[key];
    if (v.precision !== 'fp32' && m !== undefined && m !== null) out.push({ v, m: m as NonNullable<TaskMetrics[K]> });
  }
  return out;
}

/**
 * One colour per variant for the task charts: the algorithm's colour (as in the histograms) for the first variant of
 * each algorithm, grey for FP16, and the spare colours for the rest (e.g. an implicit-mode twin of an algorithm).
 */
export function variantColours(variants: readonly VariantReport[]): Map<string, string> {
  const out = new Map<string, string>();
  const used = new Set<string>();
  let spare = 0;
  for (const v of variants) {
    let colour: string | undefined = v.precision === 'fp16' ? '#7f7f7f' : v.algorithm !== undefined ? ALGORITHM_COLOURS[v.algorithm] : undefined;
    if (colour === undefined || used.has(colour)) {
      const free = EXTRA_COLOURS.filter((x) => !used.has(x));
      colour = free.length > 0 ? free[0]! : EXTRA_COLOURS[spare++ % EXTRA_COLOURS.length]!;
    }
    used.add(colour);
    out.set(v.name, colour);
  }
  return out;
}

/** Category id -> name, from every per-class list in the report that names it, then the names given. */
function classNames(report: CompareReport, given: ReadonlyMap<number, string> | undefined): Map<number, string> {
  const names = new Map<number, string>();
  for (const v of report.variants) {
    const t = v.task;
    for (const list of [t?.detection?.perClass, t?.detection?.perClassLabels, t?.segmentation?.perClass, t?.segmentation?.perClassLabels]) {
      for (const e of list ?? []) if (e.name !== undefined && !names.has(e.classId)) names.set(e.classId, e.name);
    }
  }
  for (const [id, name] of given ?? []) if (!names.has(id)) names.set(id, name);
  return names;
}

function nameOf(names: ReadonlyMap<number, string>, id: number): string {
  return names.get(id) ?? `#${id}`;
}

// ---------------------------------------------------------------------------------------------------------------
// The verdict table

interface Column {
  head: string;
  title?: string;
  cell: (t: TaskMetrics) => string;
}

function columnsFor(kind: TaskKind, tasks: readonly TaskMetrics[]): Column[] {
  const has = (f: (t: TaskMetrics) => unknown) => tasks.some((t) => t.kind === kind && f(t) !== undefined);
  const cols: Column[] = [];
  if (kind === 'detect') {
    cols.push(
      { head: 'mAP@[.5:.95]', title: "against FP32's detections as ground truth", cell: (t) => frac(t.detection?.map ?? t.map) },
      { head: 'mAP@.5', cell: (t) => frac(t.detection?.map50 ?? t.map50) },
    );
    if (has((t) => t.detection?.mapLabels ?? t.mapLabels)) {
      cols.push(
        { head: 'mAP labels', title: 'mAP@[.5:.95] against the labels', cell: (t) => frac(t.detection?.mapLabels ?? t.mapLabels) },
        { head: 'mAP@.5 labels', cell: (t) => frac(t.detection?.map50Labels ?? t.map50Labels) },
      );
    }
    if (has((t) => t.detection)) {
      const d = (f: (m: DetectionMetrics) => string) => (t: TaskMetrics) => (t.detection === undefined ? '-' : f(t.detection));
      cols.push(
        { head: 'FP32 boxes', title: "FP32's detections used as ground truth", cell: d((m) => String(m.referenceDetections)) },
        { head: 'boxes', title: "this variant's detections at or above the ground-truth score", cell: d((m) => String(m.detections)) },
        { head: 'lost', title: 'FP32 detections without a match (IoU >= 0.5, same class)', cell: d((m) => String(m.lost)) },
        { head: 'gained', title: 'detections without an FP32 match', cell: d((m) => String(m.gained)) },
        { head: 'moved', title: 'matched, but IoU < 0.9 with the match', cell: d((m) => String(m.moved)) },
        { head: 'score change', title: 'mean of (variant score - FP32 score) over matched pairs', cell: d((m) => signed(m.meanScoreChange)) },
      );
    }
  } else if (kind === 'segment') {
    cols.push({ head: 'mIoU', title: 'against FP32', cell: (t) => frac(t.segmentation?.miou ?? t.value) });
    if (has((t) => t.segmentation)) cols.push({ head: 'pixel agreement', cell: (t) => fmtPct(t.segmentation?.pixelAgreement) });
    if (has((t) => t.segmentation?.miouLabels)) cols.push({ head: 'mIoU labels', cell: (t) => frac(t.segmentation?.miouLabels) });
  } else if (kind === 'ocr') {
    cols.push(
      { head: 'exact match', title: "images whose text equals FP32's", cell: (t) => fmtPct(t.ocr?.exactMatch) },
      { head: 'CER', title: "character error rate against FP32's text", cell: (t) => fmtPct(t.ocr?.cer) },
    );
    if (has((t) => t.ocr?.cerLabels)) {
      cols.push({ head: 'exact match labels', cell: (t) => fmtPct(t.ocr?.exactMatchLabels) }, { head: 'CER labels', cell: (t) => fmtPct(t.ocr?.cerLabels) });
    }
  } else if (kind === 'classify') {
    cols.push({ head: 'top-1 agreement', cell: (t) => fmtPct(t.classify?.top1Agreement ?? t.value) });
    if (has((t) => t.classify?.top1Labels ?? t.classify?.top1)) cols.push({ head: 'top-1 labels', cell: (t) => fmtPct(t.classify?.top1Labels ?? t.classify?.top1) });
  } else {
    cols.push({ head: 'metric', cell: (t) => esc(t.metric) }, { head: 'value', cell: (t) => frac(t.value) });
  }
  return cols.map((col) => ({ ...col, cell: (t: TaskMetrics) => (t.kind === kind ? col.cell(t) : '-') }));
}

/** The table that leads the report: each variant's verdict in the task's terms. Empty when no variant has one. */
export function taskSummarySection(report: CompareReport): string {
  const variants = withTask(report);
  if (variants.length === 0) return '';
  const tasks = variants.map((v) => v.task!);
  const kinds = [...new Set(tasks.map((t) => t.kind))];
  const cols = kinds.flatMap((k) => columnsFor(k, tasks));
  const head = ['<th>variant</th>', '<th>precision</th>', ...cols.map((col) => `<th${col.title !== undefined ? ` title="${esc(col.title)}"` : ''}>${esc(col.head)}</th>`)];
  const rows = variants.map((v) => {
    const cells = [esc(variantLabel(v)), esc(v.precision), ...cols.map((col) => col.cell(v.task!))];
    return `<tr${report.winner?.name === v.name ? ' class="winner"' : ''}>${cells.map((x) => `<td>${x}</td>`).join('')}</tr>`;
  });
  const metrics = [...new Set(tasks.map((t) => t.metric))];
  return [
    `<h2 id="task">Task: ${esc(kinds.map((k) => KIND_TITLES[k] ?? k).join(', '))}</h2>`,
    `<p class="meta">The verdict: ${esc(metrics.join(', '))} against FP32${kinds.includes('detect') ? " (FP32's detections as ground truth)" : ''}; higher is better.</p>`,
    `<table class="task"><thead><tr>${head.join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`,
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// The pictures

/** Every task section after the summary, in the order detection, segmentation, OCR; '' when there is none. */
export function taskSections(report: CompareReport, options: TaskHtmlOptions = {}): string {
  const colours = variantColours(report.variants);
  const names = classNames(report, options.classNames);
  const focus = focusVariant(report)?.name;
  return [detectionSections(report, options, colours, names, focus), segmentationSections(report, options, names, focus), ocrSections(report, options, focus)]
    .filter((s) => s !== '')
    .join('\n');
}

/** The image files whose photos the detection sections draw boxes on (every judged variant's worst images). */
export function detectionPhotoFiles(report: CompareReport): string[] {
  const files = new Set<string>();
  for (const { m } of judged(report, 'detection')) for (const w of m.worst) files.add(w.file);
  return [...files];
}

function legendItem(colour: string, text: string, dash?: string): string {
  const d = dash !== undefined ? ` stroke-dasharray="${dash}"` : '';
  return (
    `<li><svg width="34" height="10" aria-hidden="true"><line x1="1" y1="5" x2="33" y2="5" stroke="#000" stroke-opacity="0.55" stroke-width="4"${d}/>` +
    `<line x1="1" y1="5" x2="33" y2="5" stroke="${colour}" stroke-width="2"${d}/></svg> ${esc(text)}</li>`
  );
}

function variantLegend(entries: ReadonlyArray<{ v: VariantReport }>, colours: ReadonlyMap<string, string>): string {
  return `<ul class="legend">${entries.map(({ v }) => `<li><span class="sw" style="background:${colours.get(v.name)}"></span>${esc(variantLabel(v))}</li>`).join('')}</ul>`;
}

function detectionSections(
  report: CompareReport,
  options: TaskHtmlOptions,
  colours: ReadonlyMap<string, string>,
  names: ReadonlyMap<number, string>,
  focus: string | undefined,
): string {
  const variants = judged(report, 'detection');
  if (variants.length === 0) return '';
  const out: string[] = [];
  const maxClasses = options.maxClasses ?? 20;
  for (const [labels, key] of [
    [false, 'perClass'],
    [true, 'perClassLabels'],
  ] as const) {
    const series = variants.filter(({ m }) => (m[key]?.length ?? 0) > 0).map(({ v, m }) => ({ name: variantLabel(v), colour: colours.get(v.name)!, perClass: m[key]! }));
    if (series.length === 0) continue;
    out.push(
      `<h2 id="detection-ap${labels ? '-labels' : ''}">Detection: per-class AP against ${labels ? 'the labels' : 'FP32'}</h2>`,
      `<p class="meta">AP@[.5:.95] (solid) and AP@.5 (pale) per category, most ground-truth boxes first; the number after the name is the ground-truth boxes.</p>`,
      classApChart(series, names, maxClasses),
      variantLegend(
        variants.filter(({ m }) => (m[key]?.length ?? 0) > 0),
        colours,
      ),
    );
  }
  const ious = [...new Set(variants.flatMap(({ m }) => m.prCurves.map((p) => p.iou)))].sort((a, b) => a - b);
  if (ious.length > 0) {
    out.push(
      `<h2 id="detection-pr">Detection: precision-recall against FP32</h2>`,
      `<p class="meta">FP32's detections as ground truth, COCO's 101 recall points, all categories together.</p>`,
      '<div class="grid">',
      ...ious.map((iou) => {
        const series = variants.flatMap(({ v, m }) => m.prCurves.filter((p) => p.iou === iou).map((curve) => ({ name: variantLabel(v), colour: colours.get(v.name)!, curve })));
        return `<figure><figcaption>IoU ${esc(String(iou))}</figcaption>${prChart(series)}</figure>`;
      }),
      '</div>',
      variantLegend(variants, colours),
    );
  }
  const withWorst = variants.filter(({ m }) => m.worst.length > 0);
  if (withWorst.length > 0) {
    out.push(
      `<h2 id="detection-worst">Detection: worst images</h2>`,
      `<p class="meta">The images where most FP32 detections were lost or moved, with FP32's boxes and the variant's drawn over the photo.</p>`,
      `<ul class="legend">${legendItem(BOX_STYLES.reference.colour, BOX_STYLES.reference.label, BOX_STYLES.reference.dash)}${legendItem(BOX_STYLES.variant.colour, BOX_STYLES.variant.label, BOX_STYLES.variant.dash)}</ul>`,
    );
    for (const { v, m } of withWorst) {
      const open = v.name === focus || withWorst.length === 1 ? ' open' : '';
      const pictured = m.worst.filter((w) => options.photos?.has(w.file));
      const unpictured = m.worst.filter((w) => !options.photos?.has(w.file));
      out.push(`<details${open}><summary>${esc(variantLabel(v))}: ${m.worst.length} images</summary>`);
      if (pictured.length > 0) {
        out.push(`<div class="grid pics">${pictured.map((w) => detectionFigure(w, options.photos!.get(w.file)!, names)).join('')}</div>`);
      }
      if (unpictured.length > 0) {
        const rows = unpictured.map(
          (w) => `<tr><td class="name">${esc(w.file)}</td><td>${w.lost}</td><td>${w.gained}</td><td>${w.moved}</td><td>${w.reference.length}</td><td>${w.variant.length}</td></tr>`,
        );
        out.push(
          `<table><thead><tr><th>image</th><th>lost</th><th>gained</th><th>moved</th><th>FP32 boxes</th><th>variant boxes</th></tr></thead><tbody>${rows.join('')}</tbody></table>`,
        );
      }
      out.push('</details>');
    }
  }
  return out.join('\n');
}

/** One worst image: the photo with both box sets over it, and its counts. */
export function detectionFigure(record: DetectionImageRecord, photo: Photo, names: ReadonlyMap<number, string>): string {
  return (
    `<figure class="det-image"><figcaption><span class="name">${esc(record.file)}</span> <span class="meta">&middot; lost ${record.lost}, moved ${record.moved}, gained ${record.gained}` +
    ` &middot; FP32 ${record.reference.length} boxes, variant ${record.variant.length}</span></figcaption>` +
    `<div class="overlay" style="width:${photo.width}px;height:${photo.height}px">` +
    `<img class="photo" src="${esc(photo.uri)}" width="${photo.width}" height="${photo.height}" alt="${esc(record.file)}">` +
    boxesSvg(record, photo, names) +
    '</div></figure>'
  );
}

const LABEL_H = 13;
const CHAR_W = 6.7; // 11px monospace

/** The SVG drawn over a photo: FP32's boxes, then the variant's on top, then the labels that have room. */
export function boxesSvg(record: Pick<DetectionImageRecord, 'reference' | 'variant'>, photo: Photo, names: ReadonlyMap<number, string>): string {
  const W = photo.width;
  const H = photo.height;
  const sx = photo.originalWidth > 0 ? W / photo.originalWidth : 1;
  const sy = photo.originalHeight > 0 ? H / photo.originalHeight : 1;
  const clampX = (x: number) => Math.min(Math.max(x, 0), W);
  const clampY = (y: number) => Math.min(Math.max(y, 0), H);
  const rects: string[] = [];
  const tags: string[] = [];
  for (const [which, boxes] of [
    ['reference', record.reference],
    ['variant', record.variant],
  ] as const) {
    const style = BOX_STYLES[which];
    const dash = style.dash !== undefined ? ` stroke-dasharray="${style.dash}"` : '';
    for (const b of boxes) {
      const x = clampX(b.x1 * sx);
      const y = clampY(b.y1 * sy);
      const w = clampX(b.x2 * sx) - x;
      const h = clampY(b.y2 * sy) - y;
      const geometry = `x="${c(x)}" y="${c(y)}" width="${c(Math.max(w, 0))}" height="${c(Math.max(h, 0))}"`;
      rects.push(
        `<g class="box ${which === 'reference' ? 'ref' : 'var'}"><title>${esc(which === 'reference' ? 'FP32' : 'variant')}: ${esc(boxText(b, names))} at ` +
          `[${c(b.x1)}, ${c(b.y1)}, ${c(b.x2)}, ${c(b.y2)}]</title>` +
          `<rect class="halo" ${geometry} fill="none" stroke="#000" stroke-opacity="0.55" stroke-width="4"${dash}/>` +
          `<rect class="edge" ${geometry} fill="none" stroke="${style.colour}" stroke-width="2"${dash}/></g>`,
      );
      const tag = boxTag(which, b, names, x, y, w, h, W, H, style.colour);
      if (tag !== '') tags.push(tag);
    }
  }
  return `<svg class="boxes" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="FP32 and variant boxes">${rects.join('')}${tags.join('')}</svg>`;
}

function boxText(b: DetectionBox, names: ReadonlyMap<number, string>): string {
  return `${nameOf(names, b.classId)} ${b.score.toFixed(2)}`;
}

/** A box's class and score, above it (FP32) or below it (the variant), when the box is wide enough to carry one. */
function boxTag(
  which: 'reference' | 'variant',
  b: DetectionBox,
  names: ReadonlyMap<number, string>,
  x: number,
  y: number,
  w: number,
  h: number,
  W: number,
  H: number,
  colour: string,
): string {
  // Narrow boxes (a pedestrian at 480 px) still get a label wider than themselves; only specks go without.
  if (w < 12 || h < 12) return '';
  let text = boxText(b, names);
  const maxChars = Math.floor(Math.max(w, 100) / CHAR_W) - 1; // "person 0.91", "frisbee 0.28" whole
  if (text.length > maxChars) text = `${text.slice(0, Math.max(1, maxChars - 1))}\u2026`;
  const tw = text.length * CHAR_W + 4;
  const tx = Math.max(0, Math.min(x, W - tw));
  const ty = which === 'reference' ? (y >= LABEL_H ? y - LABEL_H : y) : y + h + LABEL_H <= H ? y + h : y + h - LABEL_H;
  return (
    `<g class="tag ${which === 'reference' ? 'ref' : 'var'}"><rect x="${c(tx)}" y="${c(ty)}" width="${c(tw)}" height="${LABEL_H}" fill="${colour}" fill-opacity="0.85"/>` +
    `<text x="${c(tx + 2)}" y="${c(ty + 10)}" style="fill:#000">${esc(text)}</text></g>`
  );
}

interface ApSeries {
  name: string;
  colour: string;
  perClass: readonly ClassAp[];
}

/** Grouped horizontal bars: per category (most ground truth first) one bar per variant, AP@[.5:.95] solid over AP@.5 pale. */
export function classApChart(series: readonly ApSeries[], names: ReadonlyMap<number, string>, maxClasses: number): string {
  const classes = new Map<number, { groundTruth: number; name?: string }>();
  for (const s of series) {
    for (const e of s.perClass) {
      const known = classes.get(e.classId);
      classes.set(e.classId, { groundTruth: Math.max(known?.groundTruth ?? 0, e.groundTruth), name: known?.name ?? e.name });
    }
  }
  const order = [...classes].sort((a, b) => b[1].groundTruth - a[1].groundTruth || a[0] - b[0]);
  const shown = order.slice(0, Math.max(1, maxClasses));
  const labelW = 200;
  const barW = 440;
  const valueW = 120;
  const barH = 11;
  const gap = 7;
  const top = 22;
  const groupH = series.length * barH + gap;
  const width = labelW + barW + valueW;
  const height = top + groupH * shown.length + 4;
  const x = (f: number) => labelW + Math.min(Math.max(f, 0), 1) * barW;
  const parts = [`<svg class="chart ap" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="per-class AP">`];
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    parts.push(`<line x1="${c(x(t))}" y1="${top - 4}" x2="${c(x(t))}" y2="${height - 4}" stroke="#e5e8eb"/><text x="${c(x(t))}" y="${top - 8}" text-anchor="middle">${t}</text>`);
  }
  parts.push(`<text x="${labelW - 16}" y="${top - 8}" text-anchor="end">AP</text>`);
  shown.forEach(([id, info], i) => {
    const y0 = top + i * groupH;
    const label = `${info.name ?? nameOf(names, id)} (${info.groundTruth})`;
    parts.push(`<text x="${labelW - 6}" y="${c(y0 + (series.length * barH) / 2 + 4)}" text-anchor="end">${esc(label.length > 30 ? `${label.slice(0, 29)}\u2026` : label)}</text>`);
    series.forEach((s, k) => {
      const y = y0 + k * barH;
      const e = s.perClass.find((p) => p.classId === id);
      if (e === undefined) {
        parts.push(`<text x="${labelW + 4}" y="${y + barH - 2}">-</text>`);
        return;
      }
      parts.push(
        `<g><title>${esc(s.name)}, ${esc(label)}: AP@[.5:.95] ${e.ap.toFixed(4)}, AP@.5 ${e.ap50.toFixed(4)}</title>` +
          `<rect class="ap50" x="${labelW}" y="${y + 1}" width="${c(x(e.ap50) - labelW)}" height="${barH - 2}" fill="${s.colour}" fill-opacity="0.3"/>` +
          `<rect class="ap" x="${labelW}" y="${y + 1}" width="${c(x(e.ap) - labelW)}" height="${barH - 2}" fill="${s.colour}"/>` +
          `<text x="${c(x(Math.max(e.ap, e.ap50)) + 4)}" y="${y + barH - 2}">${e.ap.toFixed(3)} / ${e.ap50.toFixed(3)}</text></g>`,
      );
    });
  });
  parts.push('</svg>');
  const more = order.length - shown.length;
  return parts.join('') + (more > 0 ? `<p class="meta">${more} more ${more === 1 ? 'category' : 'categories'} in report.json.</p>` : '');
}

interface PrSeries {
  name: string;
  colour: string;
  curve: PrCurve;
}

/** Precision against recall, one line per variant, both axes 0..1. */
export function prChart(series: readonly PrSeries[]): string {
  const W = 420;
  const H = 290;
  const left = 46;
  const right = 14;
  const top = 10;
  const bottom = 40;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const x = (r: number) => left + Math.min(Math.max(r, 0), 1) * plotW;
  const y = (p: number) => top + plotH - Math.min(Math.max(p, 0), 1) * plotH;
  const parts = [
    `<svg class="chart pr" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="precision-recall curves">`,
    `<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="#fbfcfd" stroke="#d0d7de"/>`,
  ];
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    parts.push(
      `<line x1="${c(x(t))}" y1="${top}" x2="${c(x(t))}" y2="${top + plotH}" stroke="#eef0f2"/><line x1="${left}" y1="${c(y(t))}" x2="${left + plotW}" y2="${c(y(t))}" stroke="#eef0f2"/>` +
        `<text x="${c(x(t))}" y="${top + plotH + 14}" text-anchor="middle">${t}</text><text x="${left - 4}" y="${c(y(t) + 4)}" text-anchor="end">${t}</text>`,
    );
  }
  for (const s of series) {
    const n = Math.min(s.curve.recall.length, s.curve.precision.length);
    if (n === 0) continue;
    let d = '';
    for (let i = 0; i < n; i++) d += `${i === 0 ? 'M' : 'L'}${c(x(s.curve.recall[i]!))} ${c(y(s.curve.precision[i]!))}`;
    parts.push(`<path class="pr" d="${d}" fill="none" stroke="${s.colour}" stroke-width="2"><title>${esc(s.name)}</title></path>`);
  }
  parts.push(`<text x="${left + plotW / 2}" y="${H - 6}" text-anchor="middle">recall</text>`);
  parts.push(`<text x="12" y="${top + plotH / 2}" text-anchor="middle" transform="rotate(-90 12 ${top + plotH / 2})">precision</text>`);
  parts.push('</svg>');
  return parts.join('');
}

// ---------------------------------------------------------------------------------------------------------------
// Segmentation

function rgb(colour: { rgb: readonly number[] }): string {
  return `rgb(${colour.rgb.join(',')})`;
}

function iouTable(rows: ReadonlyArray<{ v: VariantReport; list: readonly ClassIou[] }>, names: ReadonlyMap<number, string>, what: string): string {
  const classes = new Map<number, { pixels: number; name?: string }>();
  for (const { list } of rows) {
    for (const e of list) {
      const known = classes.get(e.classId);
      classes.set(e.classId, { pixels: Math.max(known?.pixels ?? 0, e.pixels), name: known?.name ?? e.name });
    }
  }
  const order = [...classes].sort((a, b) => b[1].pixels - a[1].pixels || a[0] - b[0]);
  const body = order.map(([id, info]) => {
    const cells = rows.map(({ list }) => frac(list.find((e) => e.classId === id)?.iou));
    return `<tr><td>${esc(info.name ?? nameOf(names, id))}</td><td>${info.pixels}</td>${cells.map((x) => `<td>${x}</td>`).join('')}</tr>`;
  });
  return (
    `<table class="iou"><thead><tr><th>class</th><th title="pixels of the class in ${esc(what)}">pixels</th>${rows.map(({ v }) => `<th>${esc(variantLabel(v))}</th>`).join('')}</tr></thead>` +
    `<tbody>${body.join('')}</tbody></table>`
  );
}

function segmentationSections(
  report: CompareReport,
  options: TaskHtmlOptions,
  names: ReadonlyMap<number, string>,
  focus: string | undefined,
): string {
  const variants = judged(report, 'segmentation');
  if (variants.length === 0) return '';
  const first: SegmentationMetrics = variants[0]!.m;
  const out = [
    `<h2 id="segmentation-iou">Segmentation: per-class IoU against FP32</h2>`,
    `<p class="meta">${first.mode === 'binary' ? `A binary map thresholded at ${esc(String(first.threshold ?? 0.5))}: the IoU of the foreground.` : 'The argmax class of every pixel.'}</p>`,
  ];
  const rows = variants.filter(({ m }) => m.perClass.length > 0).map(({ v, m }) => ({ v, list: m.perClass }));
  if (rows.length > 0) out.push(iouTable(rows, names, 'FP32'));
  const labelRows = variants.filter(({ m }) => (m.perClassLabels?.length ?? 0) > 0).map(({ v, m }) => ({ v, list: m.perClassLabels! }));
  if (labelRows.length > 0) out.push(`<h3>Against the labels</h3>`, iouTable(labelRows, names, 'the labels'));
  const withWorst = variants.filter(({ m }) => m.worst.length > 0);
  if (withWorst.length > 0) {
    const o = OVERLAY_COLOURS;
    out.push(
      `<h2 id="segmentation-worst">Segmentation: worst images</h2>`,
      `<p class="meta">The images with the lowest IoU against FP32${options.maskOverlays !== undefined && options.maskOverlays.size > 0 ? ', with both masks painted over the photo' : ''}.</p>`,
    );
    if (options.maskOverlays !== undefined && options.maskOverlays.size > 0) {
      out.push(
        `<ul class="legend"><li><span class="sq" style="background:${rgb(o.agree)};opacity:0.6"></span>both agree</li><li><span class="sq" style="background:${rgb(o.lost)}"></span>FP32 only (lost)</li>` +
          `<li><span class="sq" style="background:${rgb(o.gained)}"></span>variant only (gained)</li><li><span class="sq" style="background:${rgb(o.changed)}"></span>another class</li></ul>`,
      );
    }
    for (const { v, m } of withWorst) {
      const open = v.name === focus || withWorst.length === 1 ? ' open' : '';
      const overlays = options.maskOverlays?.get(v.name);
      const pictured = m.worst.filter((w) => overlays?.has(w.file));
      const unpictured = m.worst.filter((w) => !overlays?.has(w.file));
      out.push(`<details${open}><summary>${esc(variantLabel(v))}: ${m.worst.length} images</summary>`);
      if (pictured.length > 0) {
        const figures = pictured.map((w) => {
          const p = overlays!.get(w.file)!;
          return (
            `<figure class="seg-image"><figcaption><span class="name">${esc(w.file)}</span> <span class="meta">&middot; IoU ${frac(w.iou)}</span></figcaption>` +
            `<img class="photo overlay-mask" src="${esc(p.uri)}" width="${p.width}" height="${p.height}" alt="${esc(w.file)}"></figure>`
          );
        });
        out.push(`<div class="grid pics">${figures.join('')}</div>`);
      }
      if (unpictured.length > 0) {
        out.push(
          `<table><thead><tr><th>image</th><th>IoU</th></tr></thead><tbody>${unpictured.map((w) => `<tr><td class="name">${esc(w.file)}</td><td>${frac(w.iou)}</td></tr>`).join('')}</tbody></table>`,
        );
      }
      out.push('</details>');
    }
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// OCR

function textCell(s: string): string {
  return s === '' ? '<td class="text"><span class="meta">(empty)</span></td>' : `<td class="text">${esc(s)}</td>`;
}

function ocrSections(report: CompareReport, options: TaskHtmlOptions, focus: string | undefined): string {
  const variants = judged(report, 'ocr').filter(({ m }) => m.samples.length > 0);
  if (variants.length === 0) return '';
  const max = options.maxTextSamples ?? 50;
  const out = [`<h2 id="ocr-text">OCR: text against FP32</h2>`, `<p class="meta">The decoded text of FP32 and of each variant, worst first; the distance is the edit distance.</p>`];
  for (const { v, m } of variants) {
    out.push(ocrTable(v, m, max, v.name === focus || variants.length === 1));
  }
  return out.join('\n');
}

function ocrTable(v: VariantReport, m: OcrMetrics, max: number, open: boolean): string {
  const labelled = m.samples.some((s) => s.label !== undefined);
  const shown = m.samples.slice(0, Math.max(0, max));
  const rows = shown.map(
    (s) =>
      `<tr${s.distance > 0 ? ' class="differs"' : ''}><td class="name">${esc(s.file)}</td>${textCell(s.reference)}${textCell(s.variant)}` +
      `${labelled ? (s.label === undefined ? '<td>-</td>' : textCell(s.label)) : ''}<td>${s.distance}</td></tr>`,
  );
  return (
    `<details${open ? ' open' : ''}><summary>${esc(variantLabel(v))}: exact match ${fmtPct(m.exactMatch)}, CER ${fmtPct(m.cer)}` +
    `${shown.length < m.samples.length ? `, ${shown.length} of ${m.samples.length} pairs shown` : ''}</summary>` +
    `<table class="ocr"><thead><tr><th>image</th><th>FP32</th><th>variant</th>${labelled ? '<th>label</th>' : ''}<th>distance</th></tr></thead><tbody>${rows.join('')}</tbody></table></details>`
  );
}
