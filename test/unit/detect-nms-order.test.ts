// The score order every detection step relies on (NMS, matching, COCO mAP): orderByScore's merge sort and the
// heap NMS draws its candidates from must give exactly the stable "score descending, then index" order.
import { describe, expect, it } from 'vitest';
import { nonMaxSuppression, nonMaxSuppressionIndices, orderByScore, ScoreQueue } from '../../src/compare/task/detect/nms.js';

/** The definition: a comparator sort, equal scores by index, NaN scores last by index. */
function reference(scores: readonly number[]): number[] {
  const idx = scores.map((_, i) => i);
  const key = (i: number): number => (Number.isNaN(scores[i]!) ? -Infinity : scores[i]!);
  const nan = (i: number): number => (Number.isNaN(scores[i]!) ? 1 : 0);
  return idx.sort((a, b) => nan(a) - nan(b) || (key(b) > key(a) ? 1 : key(b) < key(a) ? -1 : 0) || a - b);
}

function drain(q: ScoreQueue): number[] {
  const out: number[] = [];
  for (let i = q.next(); i >= 0; i = q.next()) out.push(i);
  return out;
}

/** Deterministic scores with many ties, signed zeros, infinities and NaN. */
function scoresFor(seed: number, n: number): number[] {
  let s = seed;
  const next = (): number => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  const special = [0, -0, Infinity, -Infinity, NaN];
  return Array.from({ length: n }, () => {
    const r = next();
    return r < 0.25 ? special[Math.floor(next() * special.length)]! : Math.floor(next() * 6) / 6;
  });
}

describe('orderByScore', () => {
  it('orders highest first, equal scores (and -0 / 0) by index, NaN last', () => {
    expect(Array.from(orderByScore([0.5, 0.9, 0.5, NaN, 0.9, -0, 0, Infinity]))).toEqual([7, 1, 4, 0, 2, 5, 6, 3]);
    expect(Array.from(orderByScore([]))).toEqual([]);
    expect(Array.from(orderByScore([0.3, 0.1, 0.2], 2))).toEqual([0, 1]);
  });

  it('matches the comparator definition on every length up to 70, and ScoreQueue draws the same order', () => {
    for (let n = 0; n <= 70; n++) {
      const scores = scoresFor(n + 1, n);
      const expected = reference(scores);
      expect(Array.from(orderByScore(scores)), `n = ${n}`).toEqual(expected);
      expect(drain(new ScoreQueue(scores)), `n = ${n}`).toEqual(expected);
    }
    const scores = scoresFor(99, 40);
    expect(drain(new ScoreQueue(scores, 25))).toEqual(reference(scores.slice(0, 25)));
  });
});

describe('nonMaxSuppressionIndices', () => {
  it('keeps the first of equal-score overlapping boxes, stops at maxDetections, and never lets classes suppress each other', () => {
    // Boxes 0 and 1: same class, IoU 0.8 (> 0.7), equal scores: the lower index stays. Box 2: other class, same
    // place: kept. Box 3: class 0, IoU 0.4 and 0.5 with boxes 0 and 1: kept, and suppresses neither.
    const boxes = [
      { x1: 0, y1: 0, x2: 10, y2: 10, score: 0.9, classId: 0 },
      { x1: 0, y1: 0, x2: 10, y2: 8, score: 0.9, classId: 0 },
      { x1: 0, y1: 0, x2: 10, y2: 10, score: 0.8, classId: 1 },
      { x1: 0, y1: 0, x2: 10, y2: 4, score: 0.95, classId: 0 },
      { x1: 50, y1: 50, x2: 60, y2: 60, score: 0.1, classId: 0 },
    ];
    expect(nonMaxSuppression(boxes, 0.7, 10).map((b) => boxes.indexOf(b))).toEqual([3, 0, 2, 4]);
    expect(nonMaxSuppression(boxes, 0.7, 2).map((b) => boxes.indexOf(b))).toEqual([3, 0]);
    // A class's kept list grows past its first buffer (16 boxes): 40 disjoint boxes of one class all stay.
    const many = { x1: new Float64Array(40), y1: new Float64Array(40), x2: new Float64Array(40), y2: new Float64Array(40), score: new Float64Array(40), classId: new Float64Array(40) };
    for (let i = 0; i < 40; i++) {
      many.x1[i] = 20 * i;
      many.x2[i] = 20 * i + 10;
      many.y2[i] = 10;
      many.score[i] = 1 - i / 100;
    }
    many.x1[39] = 20 * 38 + 1; // overlaps box 38 with IoU 9/11 > 0.7: suppressed
    many.x2[39] = 20 * 38 + 11;
    expect(nonMaxSuppressionIndices(many, 40, 0.7, 100)).toEqual(Array.from({ length: 39 }, (_, i) => i));
  });
});
