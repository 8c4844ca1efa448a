/**
 * The edit operations between two texts, for showing a text pair with its differences marked (report.html's OCR
 * pairs). One optimal Levenshtein alignment, by code point; where several are optimal the backtrace prefers a
 * match or substitution, then a deletion, then an insertion, so the same pair always gives the same marks.
 */
export interface TextEdit {
  kind: 'equal' | 'replace' | 'delete' | 'insert';
  /** The reference's characters in this run ('' for an insertion), and the variant's ('' for a deletion). */
  reference: string;
  variant: string;
}

/** Above this many table cells a pair is shown as one replacement (texts of thousands of characters are not OCR lines). */
const MAX_CELLS = 1_000_000;

export function alignTexts(reference: string, variant: string): TextEdit[] {
  const a = Array.from(reference);
  const b = Array.from(variant);
  if (a.length === 0 && b.length === 0) return [];
  if ((a.length + 1) * (b.length + 1) > MAX_CELLS) {
    return reference === variant ? [{ kind: 'equal', reference, variant }] : [{ kind: 'replace', reference, variant }];
  }
  const w = b.length + 1;
  const d = new Int32Array((a.length + 1) * w);
  for (let i = 0; i <= a.length; i++) d[i * w] = i;
  for (let j = 0; j <= b.length; j++) d[j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const diagonal = d[(i - 1) * w + j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      d[i * w + j] = Math.min(diagonal, d[(i - 1) * w + j]! + 1, d[i * w + j - 1]! + 1);
    }
  }
  const steps: Array<{ kind: TextEdit['kind']; ref: string; var: string }> = [];
  let i = a.length;
  let j = b.length;
  while (i > 0 || j > 0) {
    const here = d[i * w + j]!;
    if (i > 0 && j > 0 && here === d[(i - 1) * w + j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)) {
      steps.push({ kind: a[i - 1] === b[j - 1] ? 'equal' : 'replace', ref: a[i - 1]!, var: b[j - 1]! });
      i--;
      j--;
    } else if (i > 0 && here === d[(i - 1) * w + j]! + 1) {
      steps.push({ kind: 'delete', ref: a[i - 1]!, var: '' });
      i--;
    } else {
      steps.push({ kind: 'insert', ref: '', var: b[j - 1]! });
      j--;
    }
  }
  steps.reverse();
  const runs: TextEdit[] = [];
  for (const s of steps) {
    const last = runs[runs.length - 1];
    if (last !== undefined && last.kind === s.kind) {
      last.reference += s.ref;
      last.variant += s.var;
    } else runs.push({ kind: s.kind, reference: s.ref, variant: s.var });
  }
  return runs;
}

/** The distance an alignment stands for (replacements count each character pair; used to check alignTexts). */
export function alignmentCost(edits: readonly TextEdit[]): number {
  let cost = 0;
  for (const e of edits) {
    if (e.kind === 'replace') cost += Array.from(e.reference).length;
    else if (e.kind === 'delete') cost += Array.from(e.reference).length;
    else if (e.kind === 'insert') cost += Array.from(e.variant).length;
  }
  return cost;
}
