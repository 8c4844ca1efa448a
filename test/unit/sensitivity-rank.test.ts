import { describe, expect, it } from 'vitest';
import type { VariantScore } from '../../src/sensitivity/evaluate.js';
import { leaveOneOutSensitivity, oneAtATimeSensitivity, rankLayers, sensitivityOf } from '../../src/sensitivity/rank.js';

const score = (agree: number, cosineMean: number, cosineMin: number, images = 40): VariantScore => ({
  images,
  metric: 'top1-agreement',
  value: agree / images,
  drop: ((images - agree) * 100) / images,
  agreeCount: agree,
  agreement: agree / images,
  cosineMean,
  cosineMin,
});

describe('sensitivity of one layer', () => {
  it('one-at-a-time: the damage alone against FP32', () => {
    const s = score(38, 0.99, 0.9);
    expect(oneAtATimeSensitivity(s, 'cosine')).toBeCloseTo(0.01, 15);
    expect(oneAtATimeSensitivity(s, 'worst-cosine')).toBeCloseTo(0.1, 15);
    expect(oneAtATimeSensitivity(s, 'agreement')).toBe(5); // 2 of 40 images: 5 points
  });

  it('leave-one-out: what taking it out recovers against full INT8', () => {
    const full = score(30, 0.9, 0.5);
    const s = score(34, 0.95, 0.45);
    expect(leaveOneOutSensitivity(s, full, 'cosine')).toBeCloseTo(0.05, 15);
    expect(leaveOneOutSensitivity(s, full, 'worst-cosine')).toBeCloseTo(-0.05, 15);
    expect(leaveOneOutSensitivity(s, full, 'agreement')).toBe(10);
    // both: the sum.
    expect(sensitivityOf({ name: 'x', oneAtATime: score(38, 0.99, 0.9), leaveOneOut: s }, 'both', 'cosine', full)).toBeCloseTo(0.06, 15);
    expect(() => sensitivityOf({ name: 'x', oneAtATime: s }, 'leave-one-out', 'cosine', full)).toThrow(/no leave-one-out measurement/);
  });
});

describe('rankLayers', () => {
  const layers = [
    { name: 'conv_b', oneAtATime: score(39, 0.998, 0.95) },
    { name: 'conv_a', oneAtATime: score(39, 0.998, 0.97) },
    { name: 'conv_c', oneAtATime: score(36, 0.97, 0.6) },
    { name: 'add_1', oneAtATime: score(40, 0.9999, 0.999) },
    { name: 'conv_d', oneAtATime: score(39, 0.995, 0.9) },
  ];

  it('ranks most sensitive first, ties by name, the same whatever the input order', () => {
    const expected = ['conv_c', 'conv_d', 'conv_a', 'conv_b', 'add_1'];
    const ranked = rankLayers(layers, 'one-at-a-time', 'cosine');
    expect(ranked.map((l) => l.name)).toEqual(expected);
    expect(ranked.map((l) => l.rank)).toEqual([1, 2, 3, 4, 5]);
    expect(ranked[0]!.sensitivity).toBeCloseTo(0.03, 12);
    for (const order of [[4, 3, 2, 1, 0], [2, 0, 4, 1, 3], [1, 4, 0, 3, 2]]) {
      expect(rankLayers(order.map((i) => layers[i]!), 'one-at-a-time', 'cosine').map((l) => l.name)).toEqual(expected);
    }
  });

  it('breaks agreement ties by the mean cosine, then by name', () => {
    // Agreement: conv_c 4 images lost (10 points); conv_a, conv_b, conv_d 1 image (2.5 points), tied: conv_d has the
    // lower cosine, conv_a and conv_b are tied on cosine too: by name.
    expect(rankLayers(layers, 'one-at-a-time', 'agreement').map((l) => l.name)).toEqual(['conv_c', 'conv_d', 'conv_a', 'conv_b', 'add_1']);
    // Worst cosine separates conv_a from conv_b.
    expect(rankLayers(layers, 'one-at-a-time', 'worst-cosine').map((l) => l.name)).toEqual(['conv_c', 'conv_d', 'conv_b', 'conv_a', 'add_1']);
  });

  it('ranks leave-one-out by the gain over full INT8', () => {
    const full = score(30, 0.9, 0.5);
    const loo = [
      { name: 'a', leaveOneOut: score(30, 0.905, 0.5) },
      { name: 'b', leaveOneOut: score(33, 0.93, 0.6) },
      { name: 'c', leaveOneOut: score(29, 0.899, 0.5) },
    ];
    const ranked = rankLayers(loo, 'leave-one-out', 'cosine', full);
    expect(ranked.map((l) => l.name)).toEqual(['b', 'a', 'c']);
    expect(ranked[2]!.sensitivity).toBeCloseTo(-0.001, 12);
  });
});
