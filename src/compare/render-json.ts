/**
 * report.json: the CompareReport as JSON (schema in docs/report-schema.md). JSON has no Infinity or NaN, so a
 * non-finite number is written as the string "Infinity", "-Infinity" or "NaN" (an SNR of identical tensors is
 * +Infinity). parseReportJson turns them back into numbers.
 */
import { UserError } from '../errors.js';
import type { CompareReport } from './types.js';

/** Keys whose value may be a non-finite number (written as a string). */
const NON_FINITE_KEYS = new Set(['snrDb']);

export function renderJson(report: CompareReport): string {
  return `${JSON.stringify(report, (_key, value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? String(value) : value), 2)}\n`;
}

export function parseReportJson(text: string, file: string): CompareReport {
  let value: unknown;
  try {
    value = JSON.parse(text, (key, v: unknown) => {
      if (NON_FINITE_KEYS.has(key) && (v === 'Infinity' || v === '-Infinity' || v === 'NaN')) return Number(v);
      return v;
    });
  } catch (err) {
    throw new UserError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  const r = value as Partial<CompareReport> | null;
  if (r === null || typeof r !== 'object' || r.format !== 'trt-calib-report') {
    throw new UserError(`${file} is not a trt-calib report (no "format": "trt-calib-report").`);
  }
  if (r.formatVersion !== 1) {
    throw new UserError(`${file} is a trt-calib report of format version ${String(r.formatVersion)}; this version reads version 1.`, {
      hint: 'Re-run trt-calib compare with this version to regenerate it.',
    });
  }
  if (!Array.isArray(r.variants)) throw new UserError(`${file}: "variants" is missing or not a list.`);
  return r as CompareReport;
}
