import type { SkippedFile } from './types.js';

/**
 * One line, then one line per skipped file (at most `limit`, then "... and N more"): what the CLI prints
 * after a pass, e.g. "3 of 11 images skipped:\n  a.jpg: empty file (0 bytes)".
 */
export function summarizeSkipped(skipped: readonly SkippedFile[], used: number, limit = 20): string {
  if (skipped.length === 0) return `${used} image(s) used, none skipped.`;
  const total = used + skipped.length;
  const lines = [`${skipped.length} of ${total} image(s) skipped:`];
  for (const s of skipped.slice(0, limit)) lines.push(`  ${s.file}: ${s.reason}`);
  if (skipped.length > limit) lines.push(`  ... and ${skipped.length - limit} more`);
  return lines.join('\n');
}
