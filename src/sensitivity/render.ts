/**
 * Terminal text for sensitivity results and the mixed-precision trade-off. Formatting only: every number comes
 * from the typed results.
 */
import { METRIC_VALUE_NAMES } from '../compare/format.js';
import path from 'node:path';
import type { SensitivityReport, LayerSensitivity } from './analyze.js';
import type { VariantScore } from './evaluate.js';
import type { MixedResult } from './mixed.js';

const pct = (v: number) => `${(v * 100).toFixed(2)}%`;
const db = (v: number | undefined) => (v === undefined ? '-' : v === Infinity ? 'inf' : v === -Infinity ? '-inf' : v.toFixed(1));
const cos = (v: number) => v.toFixed(5);

function agreeText(s: VariantScore): string {
  if (s.agreeCount !== undefined && s.metric === 'top1-agreement') return `${s.agreeCount}/${s.images}`;
  return pct(s.value);
}

function table(header: string[], rows: string[][], right: ReadonlySet<number>): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)];
}

const METRIC_WORDS = METRIC_VALUE_NAMES;

export function renderSensitivity(r: SensitivityReport, options: { top?: number } = {}): string {
  const lines: string[] = [];
  const shown = options.top !== undefined ? r.layers.slice(0, options.top) : r.layers;
  lines.push(
    `Sensitivity of ${r.layers.length === r.quantizableLayers ? `all ${r.quantizableLayers}` : `${r.layers.length} of ${r.quantizableLayers}`} quantizable layers of ${path.basename(r.model)}` +
      ` (${r.cache.algorithm} scales from ${r.cache.file}; ${r.data.images} images of ${r.data.source})`,
  );
  lines.push(`measure: ${r.measure}, ranked by ${r.metric}; primary metric: ${METRIC_WORDS[r.budgetMetric]}`);
  const s = r.search;
  if (s?.method === 'proxy-then-measure' && s.rule) {
    lines.push(
      `search: proxy then measure (--exhaustive measures every layer): ${s.measured.length} layers measured (the ${s.rule.taken} lowest own output SNRs of the proxy pass, ` +
        `to ${db(s.rule.lastSnrDb)} dB, and any within ${s.rule.marginDb} dB of it); ${s.proxyRanked.length} ranked after them by that SNR ("proxy")`,
    );
    const d = s.disagreements ?? [];
    lines.push(
      d.length === 0
        ? `proxy and measurement agree on the order of the measured layers`
        : `proxy and measurement disagree on ${d.length} of ${s.measured.length} measured layers (Kendall tau ${(s.kendallTau ?? 0).toFixed(2)}): ` +
            d.slice(0, 6).map((x) => `${x.layer} proxy ${x.proxyRank} measured ${x.measuredRank}`).join(', ') + (d.length > 6 ? ', ...' : ''),
    );
    if (s.hardest) {
      lines.push(`--hardest ${s.hardest.images}: the measured layers' scores are over the ${s.hardest.images} of ${s.hardest.of} images where full INT8 is furthest from FP32 (${s.hardest.by}); everything else is over all ${s.hardest.of}`);
    }
  } else if (s?.why !== undefined) lines.push(`search: every layer measured (${s.why})`);
  lines.push(`full INT8 against FP32: ${METRIC_WORDS[r.budgetMetric]} ${agreeText(r.fullInt8)}, mean cosine ${cos(r.fullInt8.cosineMean)}, worst ${cos(r.fullInt8.cosineMin)}`);
  lines.push('');
  const oat = r.measure !== 'leave-one-out';
  const loo = r.measure !== 'one-at-a-time';
  const fast = r.search?.method === 'proxy-then-measure';
  const header = ['rank', 'layer', 'op', 'sensitivity'];
  if (oat) header.push('alone: agree', 'cos mean', 'cos worst');
  if (loo) header.push('all but it: agree', 'cos mean', 'cos worst');
  header.push('SNR dB in', 'w', ...(oat ? ['out'] : []), 'FP16');
  const rows = shown.map((l: LayerSensitivity) => {
    const row = [String(l.rank), l.name, l.kind === 'residual-add' ? 'Add (skip)' : l.op, l.sensitivity === undefined ? 'proxy' : l.sensitivity.toExponential(2)];
    if (oat) row.push(...(l.oneAtATime ? [agreeText(l.oneAtATime), cos(l.oneAtATime.cosineMean), cos(l.oneAtATime.cosineMin)] : ['-', '-', '-']));
    if (loo) row.push(agreeText(l.leaveOneOut!), cos(l.leaveOneOut!.cosineMean), cos(l.leaveOneOut!.cosineMin));
    row.push(db(l.inputSnrDb), db(l.weightSnrDb), ...(oat ? [db(l.outputSnrDb)] : []), l.fp16.enough ? 'ok' : 'FP32');
    return row;
  });
  const right = new Set<number>([0, 3]);
  header.forEach((h, i) => {
    if (i >= 4 && h !== 'FP16') right.add(i);
  });
  lines.push(...table(header, rows, right));
  if (shown.length < r.layers.length) lines.push(`... ${r.layers.length - shown.length} more (--top, or --json for all)`);
  const noFp16 = r.layers.filter((l) => !l.fp16.enough);
  for (const l of noFp16.slice(0, 5)) lines.push(`FP16 not enough for ${l.name}: ${l.fp16.reason}`);
  if (r.notQuantized.length > 0) {
    lines.push(`${r.notQuantized.length} weighted layer(s) not quantizable with this cache: ${r.notQuantized.slice(0, 5).map((s) => `${s.node} (${s.reason})`).join('; ')}`);
  }
  if (r.cuts && r.cuts.cut > 0) {
    lines.push(
      `${r.cuts.cut} of ${r.cuts.cut + r.cuts.whole} one-at-a-time variants ran from their layer on, fed FP32 activations at the cut (${r.cuts.fp32Passes} FP32 run${r.cuts.fp32Passes > 1 ? 's' : ''}, up to ${(r.cuts.peakBytes / 1024 ** 2).toFixed(1)} MiB kept); the others ran whole`,
    );
  }
  lines.push(
    `${r.variants} variants${fast ? ` and the proxy pass (${(r.search.proxySeconds ?? 0).toFixed(1)} s)` : ''} in ${r.seconds.measure.toFixed(1)} s (${r.seconds.perVariant.toFixed(2)} s each); images decoded and FP32 run once in ${r.seconds.prepare.toFixed(1)} s; ${(r.memoryBytes / 1024 ** 2).toFixed(1)} MiB kept in memory`,
  );
  return lines.join('\n');
}

export function renderMixed(m: MixedResult, total: number): string {
  const lines: string[] = [];
  const metric = m.tradeoff.metric;
  lines.push('');
  lines.push(`Mixed precision: ${metric} must stay at or above ${pct(m.target)} (${m.evaluations} models evaluated in ${m.seconds.toFixed(1)} s)`);
  const rows = m.points.map((p) => [
    p.label,
    String(p.int8Layers),
    String(p.nonInt8Layers),
    pct(p.agreement),
    cos(p.meanCosine),
    cos(p.worstCosine),
    p === m.chosen ? 'chosen' : p.meets ? 'meets' : '',
  ]);
  lines.push(...table(['step', 'INT8 layers', 'not INT8', metric, 'cos mean', 'cos worst', ''], rows, new Set([1, 2, 3, 4, 5])).map((l) => `  ${l}`));
  const c = m.chosen;
  if (m.met) {
    const list = c.keptOut.map((k) => `${k.layer} (${k.precision})`).join(', ');
    lines.push(
      c.keptOut.length === 0
        ? `chosen: every layer in INT8 (${metric} ${pct(c.agreement)})`
        : `chosen: ${c.keptOut.length} of ${total} layers kept out of INT8 (${((100 * c.keptOut.length) / total).toFixed(1)}%), ${c.int8Layers} with Q/DQ: ${list}; ${metric} ${pct(c.agreement)}, mean cosine ${cos(c.meanCosine)}`,
    );
  } else {
    lines.push(`budget not met: ${m.reason}`);
    lines.push(`best reachable: ${c.keptOut.length} layers kept out (${c.keptOut.map((k) => k.layer).join(', ') || 'none'}), ${metric} ${pct(c.agreement)}`);
  }
  if (m.written) lines.push(`wrote ${m.written}`);
  return lines.join('\n');
}
