/**
 * Terminal rendering of a CompareReport: first the task's verdict per variant (mAP, mIoU, 1 - CER, top-1, with the
 * drop the gate counts; for detection the per-class AP of the largest classes), then the outputs as numbers side by
 * side, per-output details when there are several outputs or dense maps, the worst layers and images of the winner,
 * the winner and the gate. Pure: report in, string out.
 */
import {
  agreementLabel,
  fmtAgreement,
  fmtSameSide,
  fmtCos,
  fmtDb,
  fmtNum,
  fmtPct,
  fmtPoints,
  gateMetricLabel,
  primaryOf,
  textTable,
  variantLabel,
} from './format.js';
import { focusVariant } from './report.js';
import type { CompareReport, VariantReport } from './types.js';

export interface TextRenderOptions {
  /** Worst layers listed (default 10). */
  layers?: number;
  /** Worst images listed (default 5). */
  images?: number;
}

export function renderText(report: CompareReport, options: TextRenderOptions = {}): string {
  const maxLayers = options.layers ?? 10;
  const maxImages = options.images ?? 5;
  const out: string[] = [];
  const primaryName = report.primaryOutput;
  const first = report.variants[0]!;
  const primary = primaryOf(first, primaryName);
  const labelled = report.variants.some((v) => v.top1 !== undefined);
  const hasTop5 = report.variants.some((v) => v.top5 !== undefined);

  const taskLines = renderTask(report);
  out.push(
    `${report.model.file} on ${report.data.images} images (${report.data.source})${report.data.skipped > 0 ? `, ${report.data.skipped} skipped` : ''}; ` +
      `output ${JSON.stringify(primaryName)} (${primary?.kind ?? 'other'}${primary?.kind === 'classifier' ? `, ${primary.dims[0]} classes` : ''})` +
      (report.shards ? `; merged from ${report.shards.count} compare shards` : ''),
  );
  out.push('');
  if (taskLines.length > 0) out.push(...taskLines, '');

  const header = ['variant', agreementLabel(primary), 'cos mean', 'cos worst', 'SNR dB'];
  if (labelled) header.push('top-1', 'drop');
  if (hasTop5) header.push('top-5', 'drop');
  const rows: string[][] = [header];
  for (const v of report.variants) {
    const p = primaryOf(v, primaryName);
    const row = [variantLabel(v) + (report.winner?.name === v.name ? ' *' : ''), fmtAgreement(v, p), fmtCos(v.cosineMean), fmtCos(v.cosineMin), fmtDb(p?.snrDb)];
    if (labelled) row.push(fmtPct(v.top1), fmtPoints(v.top1Drop));
    if (hasTop5) row.push(fmtPct(v.top5), fmtPoints(v.top5Drop));
    rows.push(row);
  }
  out.push(textTable(rows));

  // Per-output details: every output when there are several, or the dense extras.
  const outputNames = first.outputs.map((o) => o.name);
  if (outputNames.length > 1 || first.outputs.some((o) => o.kind === 'dense')) {
    out.push('', 'Outputs:');
    const orows: string[][] = [['variant', 'output', 'cos mean', 'cos worst', 'SNR dB', 'mean |err|', 'max |err|', 'same side', 'IoU']];
    for (const v of report.variants) {
      for (const o of v.outputs) {
        orows.push([v.name, o.name, fmtCos(o.cosineMean), fmtCos(o.cosineMin), fmtDb(o.snrDb), fmtNum(o.meanAbsErr), fmtNum(o.maxAbsErr), o.sameSideFraction === undefined ? '-' : fmtSameSide(o.sameSideFraction, o.elements), o.iou === undefined ? '-' : o.iou.toFixed(4)]);
      }
    }
    out.push(textTable(orows, '  '));
  }

  const focus = focusVariant(report);
  if (focus?.layers !== undefined && focus.layers.length > 0 && maxLayers > 0) {
    const shown = focus.layers.slice(0, maxLayers);
    out.push('', `Worst layers of ${focus.name} (SNR against FP32, ${shown.length} of ${focus.layers.length}):`);
    out.push(textTable([['tensor', 'op', 'SNR dB', 'cosine'], ...shown.map((l) => [l.name, l.opType ?? '', fmtDb(l.snrDb), fmtCos(l.cosine)])], '  '));
  }
  if (focus !== undefined && focus.worst.length > 0 && maxImages > 0) {
    const shown = focus.worst.slice(0, maxImages);
    const cls = shown.some((w) => w.referenceTop1 !== undefined);
    out.push('', `Worst images of ${focus.name}:`);
    out.push(
      textTable(
        [
          ['image', 'cosine', 'SNR dB', cls ? 'class fp32 -> variant' : 'same side'],
          ...shown.map((w) => [
            w.file,
            fmtCos(w.cosine),
            fmtDb(w.snrDb),
            cls ? `${w.referenceTop1} -> ${w.variantTop1}${w.referenceTop1 !== w.variantTop1 ? ' (differs)' : ''}` : fmtPct(w.sameSideFraction),
          ]),
        ],
        '  ',
      ),
    );
  }

  out.push('');
  if (report.winner !== undefined) {
    const w = report.winner;
    const wv = report.variants.find((v) => v.name === w.name)!;
    const verdict = w.task !== undefined && w.task.kind !== 'raw' ? `${w.task.metric} ${fmtFraction(w.task.value)} against ${w.task.against === 'labels' ? 'the labels' : 'FP32'}; ` : '';
    out.push(
      `Winner: ${variantLabel(wv)}: ${verdict}${agreementLabel(primary)} ${fmtAgreement(wv, primaryOf(wv, primaryName))}, mean cosine ${fmtCos(w.cosineMean)}, worst ${fmtCos(w.cosineMin)} (${w.reason}).`,
    );
  }
  if (report.gate !== undefined) {
    const g = report.gate;
    const parts = g.variants.map((r) => `${r.name} ${fmtPoints(r.drop)}${r.passed ? '' : ' > max'}`);
    out.push(`Gate ${g.passed ? 'PASSED' : 'FAILED'}: ${gateMetricLabel(g.metric)} at most ${g.maxDrop} ${g.maxDrop === 1 ? 'point' : 'points'}: ${parts.join(', ') || 'no variant to check'}.`);
  }
  for (const n of report.notes) out.push(`Note: ${n}`);
  return `${out.join('\n').replace(/\n+$/, '')}\n`;
}

/** A fraction with four decimals (mAP, IoU, 1 - CER). */
function fmtFraction(f: number | undefined): string {
  return f === undefined ? '-' : f.toFixed(4);
}

/** Per-class AP rows: the classes with the most FP32 detections (as ground truth) first. */
const CLASS_ROWS = 8;

/** The task's table (and, for detection, per-class AP); empty when the report has no task. */
export function renderTask(report: CompareReport): string[] {
  const variants = report.variants.filter((v) => v.task !== undefined);
  const first = variants[0]?.task;
  if (first === undefined) return [];
  const setting = report.settings.task;
  const out: string[] = [`Task: ${first.kind}${setting ? ` (${setting.reason})` : ''}`];
  const labelled = variants.some((v) => v.task!.valueLabels !== undefined);
  const drop = (v: VariantReport) => fmtPoints(v.taskDrop);
  const star = (v: VariantReport) => variantLabel(v) + (report.winner?.name === v.name ? ' *' : '');
  let rows: string[][];
  switch (first.kind) {
    case 'detect': {
      rows = [['variant', 'mAP@[.5:.95]', 'mAP@.5', ...(labelled ? ['mAP labels', 'mAP@.5 labels'] : []), 'lost', 'gained', 'moved', 'score change', 'drop']];
      for (const v of variants) {
        const t = v.task!;
        const d = t.detection;
        rows.push([
          star(v),
          fmtFraction(t.map ?? t.value),
          fmtFraction(t.map50),
          ...(labelled ? [fmtFraction(t.mapLabels), fmtFraction(t.map50Labels)] : []),
          String(d?.lost ?? '-'),
          String(d?.gained ?? '-'),
          String(d?.moved ?? '-'),
          d === undefined ? '-' : d.meanScoreChange.toFixed(4),
          drop(v),
        ]);
      }
      out.push(textTable(rows));
      const classes = [...(first.detection?.perClass ?? [])].sort((a, b) => b.groundTruth - a.groundTruth || a.classId - b.classId).slice(0, CLASS_ROWS);
      const others = variants.filter((v) => v.precision !== 'fp32');
      if (classes.length > 0 && others.length > 0) {
        out.push('', `AP@[.5:.95] per class against FP32 (${classes.length} largest of ${first.detection!.perClass.length}):`);
        const crows = [['class', 'FP32 boxes', ...others.map((v) => v.name)]];
        for (const c of classes) {
          crows.push([
            c.name ?? String(c.classId),
            String(c.groundTruth),
            ...others.map((v) => fmtFraction(v.task!.detection?.perClass.find((x) => x.classId === c.classId)?.ap ?? 0)),
          ]);
        }
        out.push(textTable(crows, '  '));
      }
      return out;
    }
    case 'segment': {
      const binary = first.segmentation?.mode === 'binary';
      const name = binary ? 'IoU' : 'mIoU';
      rows = [['variant', `${name}${binary && first.segmentation?.threshold !== undefined ? ` at ${first.segmentation.threshold}` : ''}`, 'pixel agreement', ...(labelled ? [`${name} labels`] : []), 'drop']];
      for (const v of variants) {
        const t = v.task!;
        rows.push([star(v), fmtFraction(t.value), fmtPct(t.segmentation?.pixelAgreement, 4), ...(labelled ? [fmtFraction(t.valueLabels)] : []), drop(v)]);
      }
      break;
    }
    case 'ocr':
      rows = [['variant', '1 - CER', 'exact match', ...(labelled ? ['1 - CER labels', 'exact labels'] : []), 'drop']];
      for (const v of variants) {
        const t = v.task!;
        rows.push([star(v), fmtFraction(t.value), fmtPct(t.ocr?.exactMatch), ...(labelled ? [fmtFraction(t.valueLabels), fmtPct(t.ocr?.exactMatchLabels)] : []), drop(v)]);
      }
      break;
    case 'classify':
      rows = [['variant', 'top-1 agreement', ...(labelled ? ['top-1 labels'] : []), 'drop']];
      for (const v of variants) {
        const t = v.task!;
        rows.push([star(v), fmtPct(t.value), ...(labelled ? [fmtPct(t.valueLabels)] : []), drop(v)]);
      }
      break;
    case 'raw':
      rows = [['variant', 'mean cosine']];
      for (const v of variants) rows.push([star(v), fmtCos(v.task!.value)]);
      break;
  }
  out.push(textTable(rows));
  return out;
}
