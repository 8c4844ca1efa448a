/** Number formats shared by the text and HTML renderers (fixed digits: the same report gives the same bytes). */
import type { GateMetric, OutputMetrics, VariantReport } from './types.js';

export function fmtCos(c: number | undefined): string {
  return c === undefined ? '-' : c.toFixed(5);
}

export function fmtDb(db: number | undefined): string {
  if (db === undefined) return '-';
  if (db === Number.POSITIVE_INFINITY) return 'inf';
  if (db === Number.NEGATIVE_INFINITY) return '-inf';
  return db.toFixed(1);
}

/** A fraction as a percentage. */
export function fmtPct(f: number | undefined, digits = 2): string {
  return f === undefined ? '-' : `${(f * 100).toFixed(digits)}%`;
}

/** Points (percentage points), signed so that a gain reads as negative drop. */
export function fmtPoints(p: number | undefined): string {
  if (p === undefined) return '-';
  const v = Math.abs(p) < 0.005 ? 0 : p;
  return v.toFixed(2);
}

export function fmtNum(n: number | undefined): string {
  if (n === undefined) return '-';
  if (!Number.isFinite(n)) return String(n);
  if (n === 0) return '0';
  const a = Math.abs(n);
  return a >= 1e-3 && a < 1e5 ? n.toPrecision(4) : n.toExponential(3);
}

/** "41/43 (95.35%)" for a classifier, "0.8544" for a dense map's IoU of the thresholded maps. */
export function fmtAgreement(v: VariantReport, primary: OutputMetrics | undefined): string {
  if (primary?.kind === 'classifier' && primary.agreeCount !== undefined) return `${primary.agreeCount}/${primary.images} (${fmtPct(primary.agreement)})`;
  if (primary?.kind === 'dense') return primary.iou === undefined ? '1 (both empty)' : primary.iou.toFixed(4);
  return fmtPct(v.agreement);
}

/**
 * A dense map's same-side fraction. A handful of flipped pixels in millions (a false detection) would round to
 * "100.00%", so any difference is spelled out as a pixel count.
 */
export function fmtSameSide(fraction: number, elements: number): string {
  const differing = Math.round((1 - fraction) * elements);
  return differing === 0 ? fmtPct(fraction) : `${fmtPct(fraction, fraction > 0.9999 ? 5 : 2)} (${differing} px differ)`;
}

export function agreementLabel(primary: OutputMetrics | undefined): string {
  if (primary?.kind === 'classifier') return 'top-1 agreement';
  if (primary?.kind === 'dense') return `IoU at ${primary.threshold ?? 0.3}`;
  return 'agreement';
}

/** What a budget metric's value is, in words (the value, not its drop). */
export const METRIC_VALUE_NAMES: Record<GateMetric | 'cosine', string> = {
  'top1-agreement': 'top-1 agreement',
  'top1-accuracy': 'top-1 accuracy',
  'threshold-iou': 'IoU of the thresholded maps',
  'iou-labels': 'IoU against the masks',
  map: 'mAP@[.5:.95] against FP32',
  'map-labels': 'mAP@[.5:.95] against the labels',
  miou: 'mIoU against FP32',
  'miou-labels': 'mIoU against the masks',
  cer: '1 - CER against FP32',
  'cer-labels': '1 - CER against the labels',
  cosine: 'mean cosine',
};

/** What the gate's drop is, in words. */
export function gateMetricLabel(metric: GateMetric): string {
  switch (metric) {
    case 'top1-accuracy':
      return 'top-1 accuracy drop';
    case 'top1-agreement':
      return 'top-1 disagreement with FP32';
    case 'threshold-iou':
      return '1 - IoU of the thresholded maps';
    case 'map':
      return '1 - mAP@[.5:.95] against FP32';
    case 'miou':
      return '1 - mIoU against FP32';
    case 'cer':
      return 'CER against FP32';
    default:
      return `drop of ${METRIC_VALUE_NAMES[metric]} from FP32's`;
  }
}

export function variantLabel(v: VariantReport): string {
  return v.algorithm !== undefined && !v.name.includes(v.algorithm) ? `${v.name} (${v.algorithm})` : v.name;
}

/** A plain-text table: first column left-aligned, the others right-aligned. */
export function textTable(rows: readonly (readonly string[])[], indent = ''): string {
  if (rows.length === 0) return '';
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows
    .map((r) => indent + r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ').trimEnd())
    .join('\n');
}

export function primaryOf(v: VariantReport, name: string): OutputMetrics | undefined {
  return v.outputs.find((o) => o.name === name);
}
