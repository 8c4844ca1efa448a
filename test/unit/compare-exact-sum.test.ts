/** ExactSum (src/compare/exact-sum.ts): sums that do not depend on the order, against hand-computed values. */
import { describe, expect, it } from 'vitest';
import { ExactSum } from '../../src/compare/exact-sum.js';
import { ExactPairSums, LayerComparison, PairSums } from '../../src/compare/metrics.js';

const sum = (xs: readonly number[]) => xs.reduce((s, x) => s.add(x), new ExactSum()).value;

describe('ExactSum', () => {
  it('is exact where float addition is not', () => {
    expect(1e100 + 1 - 1e100).toBe(0);
    expect(sum([1e100, 1, -1e100])).toBe(1);
    // ten 0.1s are exactly 10 x 0.1000000000000000055511151231257827: rounds to 1, where a running sum gives 0.9999999999999999
    expect(Array(10).fill(0.1).reduce((a, b) => a + b, 0)).toBe(0.9999999999999999);
    expect(sum(Array(10).fill(0.1))).toBe(1);
    expect(sum([])).toBe(0);
    expect(sum([2 ** 53, 1, 1])).toBe(2 ** 53 + 2); // a running sum loses both 1s
  });

  it('rounds half-way cases as the exact sum says (math.fsum)', () => {
    // 1 + 2^-53 is half-way between 1 and 1 + 2^-52: ties to even gives 1; a tiny extra part decides upwards.
    expect(sum([1, 2 ** -53])).toBe(1);
    expect(sum([1, 2 ** -53, 2 ** -80])).toBe(1 + 2 ** -52);
    expect(sum([1, 2 ** -53, -(2 ** -80)])).toBe(1);
  });

  it('gives the same bits whatever the order, and merged halves give the whole', () => {
    const xs = Array.from({ length: 200 }, (_, i) => Math.sin(i * 12.9898) * 10 ** ((i % 7) - 3));
    const whole = sum(xs);
    const reversed = sum([...xs].reverse());
    const shuffled = sum(xs.map((x, i) => [x, (i * 7919) % 200] as const).sort((a, b) => a[1] - b[1]).map(([x]) => x));
    expect(reversed).toBe(whole);
    expect(shuffled).toBe(whole);
    const a = xs.slice(0, 77).reduce((s, x) => s.add(x), new ExactSum());
    const b = xs.slice(77).reduce((s, x) => s.add(x), new ExactSum());
    expect(ExactSum.fromState(a.toState()).merge(ExactSum.fromState(b.toState())).value).toBe(whole);
  });

  it('keeps non-finite values apart', () => {
    expect(sum([1, Number.POSITIVE_INFINITY, 2])).toBe(Number.POSITIVE_INFINITY);
    expect(sum([Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY])).toBeNaN();
  });
});

describe('layer sums', () => {
  it('do not depend on the batch size: one batch of 3 images = three batches of 1', () => {
    const ref = Float32Array.from({ length: 3 * 5 }, (_, i) => Math.cos(i) * 3);
    const x = ref.map((v, i) => v + (i % 3) * 0.01);
    const one = new LayerComparison();
    one.add('t', { dtype: 'float32', dims: [3, 5], data: ref }, { dtype: 'float32', dims: [3, 5], data: x });
    const three = new LayerComparison();
    for (let i = 0; i < 3; i++) three.add('t', { dtype: 'float32', dims: [1, 5], data: ref.slice(i * 5, i * 5 + 5) }, { dtype: 'float32', dims: [1, 5], data: x.slice(i * 5, i * 5 + 5) });
    expect(three.result()).toEqual(one.result());
    // and the totals are the per-image sums added exactly
    const exact = new ExactPairSums();
    for (let i = 0; i < 3; i++) exact.add(new PairSums().add(ref, x, i * 5, 5));
    expect(one.result()[0]!.snrDb).toBe(exact.rounded().snrDb);
    expect(one.result()[0]!.elements).toBe(15);
  });
});
