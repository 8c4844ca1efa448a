/**
 * statisticsFromStates (src/stats/collector.ts): the narrow handle through which a backend that counts in native
 * memory (src/backends/onnxruntime-collect.ts) hands states back to the statistics code.
 */
import { describe, expect, it } from 'vitest';
import { StatisticsCollector, statisticsFromStates } from '../../src/stats/collector.js';
import { HISTOGRAM_BINS, type TensorStatistics } from '../../src/stats/types.js';

/** Packs statistics into the native state layout (9-value header, then bins counts), in the given order. */
function pack(list: readonly TensorStatistics[], bins = HISTOGRAM_BINS) {
  const headers = new Float64Array(list.length * 9);
  const hists = new Float64Array(list.length * bins);
  list.forEach((s, i) => {
    headers.set([s.count, s.nanCount, s.posInfCount, s.negInfCount, s.zeroCount, s.min, s.max, s.absMax, s.range], i * 9);
    hists.set(s.hist, i * bins);
  });
  return { headers, hists };
}

describe('statistics from counted states', () => {
  it('decodes each state under its name, sorted by name, with copies of the counts', async () => {
    const c = new StatisticsCollector();
    await c.add('b', Float32Array.from([1, -2, 0.5, Number.NaN]));
    await c.add('A', Float32Array.from([0, 0, 3, Number.POSITIVE_INFINITY]));
    const expected = c.result(); // ['A', 'b']
    const states = pack([expected[1]!, expected[0]!]);
    const got = statisticsFromStates(['b', 'A'], states);
    expect(got).toEqual(expected);
    states.hists.fill(7);
    expect(got).toEqual(expected);
  });

  it('merges a Pad counted as its zeros only with the values of the tensor it pads (hand-computed)', async () => {
    const c = new StatisticsCollector();
    await c.add('x', Float32Array.from([0, 1, -2, 3]));
    await c.addZeros('pad', 5);
    const [pad, x] = c.result();
    const [merged] = statisticsFromStates(['pad', 'x'], pack([pad!, x!]), HISTOGRAM_BINS, [['pad', 'x']]);
    expect(merged!.name).toBe('pad');
    expect(merged!.count).toBe(9);
    expect(merged!.zeroCount).toBe(6);
    expect([merged!.min, merged!.max, merged!.absMax, merged!.range]).toEqual([-2, 3, 3, 4]);
    // Counting the padded tensor itself gives the same bytes.
    const direct = new StatisticsCollector();
    await direct.add('pad', Float32Array.from([0, 1, -2, 3, 0, 0, 0, 0, 0]));
    expect(merged).toEqual(direct.result()[0]);
  });

  it('refuses states that do not match the names, and merges of names it does not hold', () => {
    const states = { headers: new Float64Array(9), hists: new Float64Array(HISTOGRAM_BINS) };
    expect(() => statisticsFromStates(['a', 'b'], states)).toThrow(/do not match their 2 names/);
    expect(() => statisticsFromStates(['a'], states, HISTOGRAM_BINS, [['a', 'zz']])).toThrow(/zz into a/);
  });
});
