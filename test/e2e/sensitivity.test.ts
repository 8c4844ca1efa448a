/**
 * `trt-calib sensitivity` on the bundled MobileNetV2 and its 8 photos (a MinMax cache made here), on a selection
 * of 10 layers: the ranking, the mixed-precision search with a budget of 0 points, the precision map it writes,
 * and the model `quantize --precision-map` makes from that map, reloaded in onnxruntime-node, reproducing the
 * numbers the search reported. Also: the same ranking whatever the batch size, and the refusals.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { runComparison } from '../../src/compare/run.js';
import { createDataset } from '../../src/datasets/dataset.js';
import { resolvePreprocess } from '../../src/datasets/presets.js';
import { parsePrecisionMap } from '../../src/precision/map.js';
import { renderSensitivity } from '../../src/sensitivity/render.js';
import { IMAGES, MOBILENET, assertBuilt, labelledPhotos, runCli } from './cli.js';

let tmp: string;
let cache: string;
const LAYERS = 'bn_Conv1,expanded_conv_*,block_1_*,block_2_*';

beforeAll(async () => {
  assertBuilt();
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-sensitivity-e2e-'));
  const r = await runCli(['--model', MOBILENET, '--data', IMAGES, '--preset', 'raw01', '--algo', 'minmax', '--trt-version', '10.3.0', '--out-dir', tmp, '-q']);
  expect(r.code).toBe(0);
  cache = path.join(tmp, 'mobilenet_v2_nsfw_224.minmax.cache');
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const base = () => ['sensitivity', '--model', MOBILENET, '--cache', cache, '--data', IMAGES, '--preset', 'raw01', '--layers', LAYERS];

describe('trt-calib sensitivity', () => {
  let json: any;
  let fast: any;
  const map = () => path.join(tmp, 'm.precision.json');

  it('ranks the selected layers and chooses a precision map within the budget (--exhaustive: every layer measured)', async () => {
    const r = await runCli([...base(), '--exhaustive', '--max-drop', '0', '--precision-out', map(), '--json']);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.code).toBe(0);
    json = JSON.parse(r.stdout);
    const s = json.sensitivity;
    expect(s.measure).toBe('one-at-a-time');
    expect(s.quantizableLayers).toBe(65);
    expect(s.data.images).toBe(8);
    expect(s.layers.map((l: any) => l.rank)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(s.layers.map((l: any) => l.name).sort()).toEqual(
      ['bn_Conv1', 'expanded_conv_depthwise_BN', 'expanded_conv_project_BN', 'block_1_expand_BN', 'block_1_depthwise_BN', 'block_1_project_BN', 'block_2_expand_BN', 'block_2_depthwise_BN', 'block_2_project_BN', 'block_2_add'].sort(),
    );
    for (const l of s.layers) {
      expect(l.oneAtATime.images).toBe(8);
      expect(l.inputSnrDb).toBeGreaterThan(20);
      expect(l.outputSnrDb).toBeGreaterThan(15);
    }
    const cosines = s.layers.map((l: any) => l.oneAtATime.cosineMean);
    expect([...cosines].sort((a: number, b: number) => a - b)).toEqual(cosines); // most damage first

    const m = json.mixed;
    expect(m.met).toBe(true);
    expect(m.chosen.agreement).toBe(1);
    expect(m.tradeoff.points[m.tradeoff.chosen].label).toMatch(/^chosen: /);
    expect(m.written).toBe(map());
    const written = parsePrecisionMap(await readFile(map(), 'utf8'), map());
    expect(written.size).toBe(65);
    const out = [...written].filter(([, p]) => p !== 'int8');
    expect(out.map(([l, p]) => ({ layer: l, precision: p })).sort((a, b) => (a.layer < b.layer ? -1 : 1))).toEqual(
      [...m.chosen.keptOut].sort((a: any, b: any) => (a.layer < b.layer ? -1 : 1)),
    );
    // Only ranked layers are ever kept out.
    for (const [layer] of out) expect(s.layers.map((l: any) => l.name)).toContain(layer);
    expect(s.search).toMatchObject({ method: 'exhaustive', proxyRanked: [] });
    expect(s.search.measured).toHaveLength(10);
    expect(s.variants).toBe(11);
  });

  it('by default ranks by the proxy pass and measures only its candidates, with --exhaustive\'s numbers; the map meets the same budget', async () => {
    const fastMap = path.join(tmp, 'fast.precision.json');
    const r = await runCli([...base(), '--max-drop', '0', '--precision-out', fastMap, '--json']);
    expect(r.code).toBe(0);
    fast = JSON.parse(r.stdout);
    const s = fast.sensitivity;
    // 10 layers: the rule takes max(8, 20%) = 8, and any within 0.1 dB of the 8th.
    expect(s.search.method).toBe('proxy-then-measure');
    expect(s.search.rule).toMatchObject({ share: 0.2, min: 8, marginDb: 0.1, taken: 8 });
    expect(s.search.measured.length).toBeGreaterThanOrEqual(8);
    expect(s.search.measured.length + s.search.proxyRanked.length).toBe(10);
    expect(s.variants).toBe(1 + s.search.measured.length);
    const exhaustive = new Map(json.sensitivity.layers.map((l: any) => [l.name, l]));
    const measured = s.layers.filter((l: any) => l.rankedBy === 'measured');
    expect(measured.map((l: any) => l.name).sort()).toEqual([...s.search.measured].sort());
    for (const l of measured) {
      const e = exhaustive.get(l.name) as any;
      expect(l.oneAtATime).toEqual(e.oneAtATime);
      // Its own output SNR: the proxy pass's, the float twin's pair in another graph.
      expect(Math.abs(l.outputSnrDb - e.outputSnrDb)).toBeLessThan(0.01);
      expect(l.sensitivity).toBe(e.sensitivity);
    }
    // Measured first, in the exhaustive order; then the proxy-ranked ones, by their own output SNR.
    const order = json.sensitivity.layers.map((l: any) => l.name).filter((n: string) => s.search.measured.includes(n));
    expect(measured.map((l: any) => l.name)).toEqual(order);
    const rest = s.layers.slice(measured.length);
    for (const l of rest) {
      expect(l.rankedBy).toBe('proxy');
      expect(l.oneAtATime).toBeUndefined();
      expect(l.sensitivity).toBeUndefined();
      expect(Math.abs(l.outputSnrDb - (exhaustive.get(l.name) as any).outputSnrDb)).toBeLessThan(0.01);
    }
    // The map meets the same budget. (It need not be --exhaustive's: on these 8 photos bn_Conv1, whose own SNR is
    // the highest of the ten, is the proxy's last and not measured, and the exhaustive map keeps it out.)
    expect(fast.mixed.met).toBe(true);
    expect(fast.mixed.chosen.drop).toBe(0);
    for (const k of fast.mixed.chosen.keptOut) expect(s.layers.map((l: any) => l.name)).toContain(k.layer);
    const text = { stdout: renderSensitivity(s) };
    expect(text.stdout).toMatch(/search: proxy then measure \(--exhaustive measures every layer\): \d+ layers measured/);
    expect(text.stdout).toMatch(/proxy and measurement (agree on the order|disagree on \d+ of \d+ measured layers \(Kendall tau -?\d\.\d\d\))/);
  });

  it('gives a map that quantize turns into a model reproducing the reported numbers', async () => {
    const model = path.join(tmp, 'mixed.onnx');
    const q = await runCli(['quantize', '--model', MOBILENET, '--cache', cache, '--precision-map', map(), '--out', model, '--json']);
    expect(q.stderr).not.toMatch(/internal error/);
    expect(q.code).toBe(0);
    const preprocess = resolvePreprocess({ preset: 'raw01' }, { name: 'input', dims: ['N', 3, 224, 224] });
    const dataset = await createDataset({ data: IMAGES, preprocess, inputName: 'input', batchSize: 3 });
    const reference = await onnxruntimeBackend.open({ path: MOBILENET });
    const session = await onnxruntimeBackend.open({ path: model });
    const r = await runComparison({ dataset, reference, variants: [{ spec: { name: 'mixed', precision: 'int8' }, session }] });
    await reference.release();
    await session.release();
    const v = r.variants[0]!;
    expect(v.agreement).toBe(json.mixed.chosen.agreement);
    expect(v.cosineMean).toBe(json.mixed.chosen.meanCosine);
    expect(v.cosineMin).toBe(json.mixed.chosen.worstCosine);
  });

  it('ranks the same whatever the batch size, both searches', async () => {
    const r = await runCli([...base(), '--batch', '3', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).sensitivity.layers).toEqual(fast.sensitivity.layers);
    const e = await runCli([...base(), '--exhaustive', '--batch', '3', '--json']);
    expect(e.code).toBe(0);
    expect(JSON.parse(e.stdout).sensitivity.layers).toEqual(json.sensitivity.layers);
  });

  it('exits 2 with the best trade-off when the budget cannot be met, writing no map', async () => {
    const none = path.join(tmp, 'none.precision.json');
    expect(json.sensitivity.fullInt8.agreeCount).toBeLessThan(8); // full INT8 loses an image: 0 points needs a layer out
    const r = await runCli([...base(), '--max-drop', '0', '--max-layers', '0', '--precision-out', none]);
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/budget not met: meeting the target 100\.00% needs \d+ layers out of INT8 \(.*\), more than the cap of 0; within the cap the best is 87\.50% with 0 layer\(s\) out/);
    expect(r.stderr).toMatch(/the accuracy budget of 0 points cannot be met/);
    expect(existsSync(none)).toBe(false);
  });

  it('with --labels, measures and budgets top-1 accuracy (compare\'s label sources)', async () => {
    const { data, classes } = await labelledPhotos(tmp);
    const r = await runCli(['sensitivity', '--model', MOBILENET, '--cache', cache, '--data', data, '--preset', 'raw01', '--layers', 'bn_Conv1', '--labels', 'folders', '--classes', classes, '--max-drop', '100', '--precision-out', path.join(tmp, 'labelled.precision.json'), '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.sensitivity.budgetMetric).toBe('top1-accuracy');
    expect(out.mixed.metric).toBe('top1-accuracy');
    const bad = await runCli(['sensitivity', '--model', MOBILENET, '--cache', cache, '--data', data, '--preset', 'raw01', '--layers', 'bn_Conv1', '--labels', path.join(tmp, 'no-such.csv')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/no-such\.csv/);
  });

  it('refuses before any work, naming what to change', async () => {
    const mem = await runCli([...base(), '--max-memory', '1']);
    expect(mem.code).toBe(1);
    expect(mem.stderr).toMatch(/Keeping 8 preprocessed images in memory takes 8 x 3x224x224 x 4 bytes = 4\.6 MiB, above the limit of 1\.0 MiB/);
    expect(mem.stderr).toMatch(/--max-images 1 /);
    const layers = await runCli(['sensitivity', '--model', MOBILENET, '--cache', cache, '--data', IMAGES, '--layers', 'conv_does_not_exist']);
    expect(layers.code).toBe(1);
    expect(layers.stderr).toMatch(/--layers: no quantizable layer matches "conv_does_not_exist"/);
    const measure = await runCli([...base(), '--measure', 'sometimes']);
    expect(measure.code).toBe(1);
    expect(measure.stderr).toMatch(/Allowed choices are one-at-a-time, leave-one-out, both/);
  });
});
