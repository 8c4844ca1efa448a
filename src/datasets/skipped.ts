import type { SkippedFile } from './types.js';

/**
 * One line, then one line per skipped file (at most `limit`, then "... and N more"): what the CLI prints
 * after a pass, e.g. "3 of 11 images skipped:\n  a.jpg: empty file (0 bytes)".
 */
export function summarizeSkipped(skipped: readonly SkippedFile[], used: number, limit = 20): string {
  const images = skipped.filter((s) => s.kind !== 'link');
  const links = skipped.filter((s) => s.kind === 'link');
  const lines = [images.length === 0 ? `${used} image(s) used, none skipped.` : `${images.length} of ${used + images.length} image(s) skipped:`];
  const list = (entries: readonly SkippedFile[]) => {
    for (const s of entries.slice(0, limit)) lines.push(`  ${s.file}: ${s.reason}`);
    if (entries.length > limit) lines.push(`  ... and ${entries.length - limit} more`);
  };
  list(images);
  // Link loops and dangling links in --data: folder entries, not images, so not in the image count.
  if (links.length > 0) {
    lines.push(`${links.length} link(s) in the data not followed:`);
    list(links);
  }
  return lines.join('\n');
}
