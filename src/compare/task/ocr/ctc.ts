/**
 * CTC greedy (best-path) decoding and the edit distance behind the character error rate.
 *
 * Greedy decoding (Graves et al., 2006; PaddleOCR's CTCLabelDecode, torchaudio's greedy decoder): the most likely
 * class at each time step (the first on ties), then repeats merged, then blanks dropped, so "a a - a" is "aa".
 * Probabilities and logits give the same path (softmax keeps the argmax).
 */
import { argmax } from '../../metrics.js';

/** Class ids of the best path of one [T, C] sequence, repeats merged and blanks dropped. */
export function ctcGreedyDecode(probs: Float32Array | Float64Array, t: number, c: number, blank: number, offset = 0): number[] {
  if (!Number.isInteger(t) || !Number.isInteger(c) || t < 0 || c < 1) throw new Error(`ctcGreedyDecode: bad sequence shape [${t}, ${c}].`);
  if (offset + t * c > probs.length) throw new Error(`ctcGreedyDecode: ${probs.length} values cannot hold [${t}, ${c}] at offset ${offset}.`);
  const ids: number[] = [];
  let previous = -1;
  for (let step = 0; step < t; step++) {
    const k = argmax(probs, offset + step * c, c);
    if (k !== previous && k !== blank) ids.push(k);
    previous = k;
  }
  return ids;
}

/**
 * Levenshtein distance (insertions, deletions and substitutions each cost 1). Strings are compared by Unicode code
 * point (so a character outside the BMP is one character, as Python's str, which PaddleOCR's metric uses).
 */
export function editDistance(a: readonly number[] | string, b: readonly number[] | string): number {
  const x = typeof a === 'string' ? Array.from(a) : a;
  const y = typeof b === 'string' ? Array.from(b) : b;
  if (x.length === 0) return y.length;
  if (y.length === 0) return x.length;
  // Two rows of the dynamic-programming table, over the shorter sequence.
  const [long, short] = x.length >= y.length ? [x, y] : [y, x];
  let prev = new Int32Array(short.length + 1);
  let row = new Int32Array(short.length + 1);
  for (let j = 0; j <= short.length; j++) prev[j] = j;
  for (let i = 1; i <= long.length; i++) {
    row[0] = i;
    const li = long[i - 1];
    for (let j = 1; j <= short.length; j++) {
      const substitute = prev[j - 1]! + (li === short[j - 1] ? 0 : 1);
      const remove = prev[j]! + 1;
      const insert = row[j - 1]! + 1;
      row[j] = substitute < remove ? (substitute < insert ? substitute : insert) : remove < insert ? remove : insert;
    }
    [prev, row] = [row, prev];
  }
  return prev[short.length]!;
}

/** Length in characters (code points), as editDistance counts them. */
export function textLength(s: readonly number[] | string): number {
  return typeof s === 'string' ? Array.from(s).length : s.length;
}
