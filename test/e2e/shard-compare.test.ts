/**
 * compare --shard K/N as 2 processes, then trt-calib merge: the report one compare over all the images writes
 * (report.json identical but for `shards`, which says how it was made; report.html written), for the MobileNetV2
 * classifier and the SSD detector (mAP from the union of the shards' detections); the --max-drop gate after the merge
 * exits 2 like one run; and every refusal, each naming the files.
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Packr } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, IMAGES, MOBILENET, assertBuilt, runCli, type CliResult } from './cli.js';

const SSD = path.join(FIXTURES, 'models/ssdlite_mobilenet_v2_coco_300.onnx');
const COCO_NAMES = path.join(FIXTURES, 'models/coco_labels.txt');
const STREET = path.join(FIXTURES, 'street');
const SSD_PRE = ['--preset', 'raw01', '--size', '300', '--scale', String(2 / 255), '--mean', '1,1,1', '--std', '1,1,1'];
const SSD_FLAGS = ['--task', 'detect', '--boxes', 'boxes:yxyx:norm', '--scores', 'scores', '--class-offset', '1', '--classes', COCO_NAMES];
const packr = new Packr({ useRecords: false, variableMapSize: true });

let tmp: string;
let mobile: string[];
beforeAll(async () => {
  assertBuilt();
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-shard-compare-e2e-'));
  // One after the other: a calibration locks its --out-dir.
  for (const args of [
    ['--model', MOBILENET, '--data', IMAGES, '--preset', 'raw01', '--max-images', '3', '--algo', 'entropy2,minmax'],
    ['--model', SSD, '--data', IMAGES, ...SSD_PRE, '--max-images', '3', '--algo', 'entropy2'],
  ]) {
    const r = await runCli([...args, '--trt-version', '10.3.0', '--out-dir', tmp, '-q']);
    expect(r.code, r.stderr).toBe(0);
  }
  mobile = ['compare', '--model', MOBILENET, '--data', IMAGES, '--preset', 'raw01', '--max-images', '5', '--cache', cache('mobilenet_v2_nsfw_224', 'entropy2'), '--out-dir', tmp, '--placement', 'explicit'];
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const cache = (model: string, algo: string) => path.join(tmp, `${model}.${algo}.cache`);
const esc = (s: string) => new RegExp(s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));

function ok(r: CliResult): CliResult {
  expect(r.stderr).not.toMatch(/internal error/);
  expect(r.code, r.stderr).toBe(0);
  return r;
}

async function refused(r: CliResult, ...patterns: RegExp[]) {
  expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
  expect(r.code, r.stderr).toBe(1);
  for (const p of patterns) expect(r.stderr).toMatch(p);
}

const readJson = async (file: string) => JSON.parse(await readFile(file, 'utf8'));

/** The single run and the 2 shards as 3 processes at once, then the merge; returns both reports and the codes. */
async function singleAndMerged(args: string[], name: string, expectCode = 0) {
  const single = path.join(tmp, `${name}-single`);
  const shards = path.join(tmp, `${name}-shards`);
  const runs = await Promise.all([
    runCli([...args, '--report-dir', single, '-q']),
    runCli([...args, '--report-dir', shards, '--shard', '1/2', '-q']),
    runCli([...args, '--report-dir', shards, '--shard', '2/2', '-q']),
  ]);
  expect(runs[0]!.code, runs[0]!.stderr).toBe(expectCode);
  ok(runs[1]!);
  ok(runs[2]!);
  // a shard writes its accumulators, no report
  expect(existsSync(path.join(shards, 'report.json'))).toBe(false);
  const files = [2, 1].map((k) => path.join(shards, `report.${k}of2.msgpack`));
  const text = await runCli(['merge', ...files, '--report-dir', path.join(tmp, `${name}-text`)]);
  expect(text.code, text.stderr).toBe(expectCode);
  expect(text.stdout).toMatch(/merged from 2 compare shards/);
  const merge = await runCli(['merge', ...files, '--json']);
  expect(merge.stderr).not.toMatch(/internal error/);
  expect(merge.code, merge.stderr).toBe(expectCode);
  expect(existsSync(path.join(shards, 'report.html'))).toBe(true);
  const html = await readFile(path.join(shards, 'report.html'), 'utf8');
  expect(html).toMatch(/<html/);
  expect(html).toContain('merged from 2 compare shards');
  const one = await readJson(path.join(single, 'report.json'));
  const merged = await readJson(path.join(shards, 'report.json'));
  return { one, merged, stdout: JSON.parse(merge.stdout), files: [1, 2].map((k) => path.join(shards, `report.${k}of2.msgpack`)), shards };
}

describe('compare in 2 shards merged = one compare', () => {
  it('MobileNetV2 (classification): report.json identical but for `shards`, report.html written', async () => {
    const { one, merged, stdout, files } = await singleAndMerged([...mobile, '--max-drop', '100'], 'mobile');
    expect(merged.shards).toEqual({ count: 2, files });
    expect(one.shards).toBeUndefined();
    const { shards: _shards, ...rest } = merged;
    expect(rest).toEqual(one);
    // bit for bit: the serialised numbers are the same text
    expect(JSON.stringify(rest)).toBe(JSON.stringify(one));
    expect(stdout.shards.count).toBe(2);
    expect(one.data.images).toBe(5);
    const int8 = one.variants.find((v: any) => v.name === 'int8-entropy2');
    expect(int8.layers.length).toBeGreaterThan(10);
    expect(int8.worst.length).toBe(5);
    expect(one.gate.passed).toBe(true);
  });

  it('the SSD detector (--task detect): the same mAP, from the union of the detections', async () => {
    const args = ['compare', '--model', SSD, '--data', STREET, ...SSD_PRE, '--cache', cache('ssdlite_mobilenet_v2_coco_300', 'entropy2'), '--out-dir', tmp, '--placement', 'explicit', '--no-layers', ...SSD_FLAGS];
    const { one, merged } = await singleAndMerged(args, 'ssd');
    const { shards: _shards, ...rest } = merged;
    expect(JSON.stringify(rest)).toBe(JSON.stringify(one));
    const int8 = one.variants.find((v: any) => v.name === 'int8-entropy2');
    expect(int8.task.kind).toBe('detect');
    expect(int8.task.detection.referenceDetections).toBeGreaterThan(0);
    expect(int8.task.map).toBeGreaterThan(0);
    expect(int8.task.map).toBeLessThanOrEqual(1);
  });

  it('a failing --max-drop gate after the merge exits 2, as one run does', async () => {
    const { one, merged } = await singleAndMerged([...mobile, '--max-drop', '0'], 'gate', 2);
    expect(one.gate.passed).toBe(false);
    expect(merged.gate).toEqual(one.gate);
  });
});

describe('merge refuses compare shards that are not the N slices of one comparison', () => {
  const shardOf = (k: number) => path.join(tmp, 'mobile-shards', `report.${k}of2.msgpack`);

  it('a missing shard, a duplicate shard', async () => {
    await refused(await runCli(['merge', shardOf(1)]), /Shard 2of2 of 2 is absent \(report\.2of2\.msgpack\)/, esc(shardOf(1)), /--shard K\/2/);
    await refused(await runCli(['merge', shardOf(1), shardOf(1), shardOf(2)]), /are the same shard \(1 of 2\)/, esc(shardOf(1)));
  });

  it('shards of different options, caches, tool versions and models', async () => {
    const dir = path.join(tmp, 'other');
    const runs = await Promise.all([
      runCli([...mobile, '--max-drop', '100', '--worst', '3', '--report-dir', path.join(dir, 'worst'), '--shard', '2/2', '-q']),
      runCli([...mobile.map((a) => (a === cache('mobilenet_v2_nsfw_224', 'entropy2') ? cache('mobilenet_v2_nsfw_224', 'minmax') : a)), '--max-drop', '100', '--report-dir', path.join(dir, 'minmax'), '--shard', '2/2', '-q']),
    ]);
    runs.forEach(ok);
    await refused(await runCli(['merge', shardOf(1), path.join(dir, 'worst', 'report.2of2.msgpack')]), /are compare shards of different variants or options/, esc(shardOf(1)), esc(path.join(dir, 'worst', 'report.2of2.msgpack')));
    await refused(await runCli(['merge', shardOf(1), path.join(dir, 'minmax', 'report.2of2.msgpack')]), /compare shards of different/, /same command line|same files/);

    // the same cache name with other contents: refused by the files' sha256
    const tampered = async (name: string, edit: (body: any) => void) => {
      const body = packr.unpack(await readFile(shardOf(2))) as any;
      edit(body);
      const file = path.join(dir, `${name}.2of2.msgpack`);
      await writeFile(file, packr.pack(body));
      return file;
    };
    const cacheChanged = await tampered('cache', (b) => (b.inputs[0][1] = '0'.repeat(64)));
    await refused(await runCli(['merge', shardOf(1), cacheChanged]), /different input files \(caches/, esc(cacheChanged));
    const version = await tampered('version', (b) => (b.context.tool.version = '0.0.1'));
    await refused(await runCli(['merge', shardOf(1), version]), /different tool versions: trt-calib .* vs trt-calib 0\.0\.1/, /same trt-calib version/);
    const model = await tampered('model', (b) => (b.context.model.sha256 = 'f'.repeat(64)));
    await refused(await runCli(['merge', shardOf(1), model]), /different models/, esc(model));

    // the histograms' statistics where the merge runs are not the file the shards read
    const other = path.join(tmp, 'ssdlite_mobilenet_v2_coco_300.stats.msgpack');
    const moved = await Promise.all(
      [1, 2].map(async (k) => {
        const body = packr.unpack(await readFile(shardOf(k))) as any;
        body.stats.file = other;
        const file = path.join(dir, 'stats', `report.${k}of2.msgpack`);
        await mkdir(path.dirname(file), { recursive: true });
        await writeFile(file, packr.pack(body));
        return file;
      }),
    );
    await refused(await runCli(['merge', ...moved]), esc(`${other} is not the statistics file the shards read`));
  });

  it('overlapping image sets', async () => {
    // A folder holding the last image of shard 1 and one more: its shard 2 of 2 is that image again.
    const first = (packr.unpack(await readFile(shardOf(1))) as any).images as string[];
    const data = path.join(tmp, 'overlap-data');
    await mkdir(data, { recursive: true });
    await copyFile(path.join(IMAGES, first[0]!), path.join(data, first[0]!));
    await copyFile(path.join(IMAGES, first[1]!), path.join(data, first[1]!));
    const dir = path.join(tmp, 'overlap');
    const args = mobile.map((a) => (a === IMAGES ? data : a)).filter((a, i, all) => a !== '--max-images' && all[i - 1] !== '--max-images');
    ok(await runCli([...args, '--max-drop', '100', '--report-dir', dir, '--shard', '2/2', '-q']));
    await refused(await runCli(['merge', shardOf(1), path.join(dir, 'report.2of2.msgpack')]), esc(`overlap: both compared ${first[1]}`), esc(shardOf(1)), /same --data, --max-images and --seed/);
  });

  it('a mix of compare shards and statistics shards', async () => {
    const stats = path.join(tmp, 'stats');
    ok(await runCli(['--model', MOBILENET, '--data', IMAGES, '--preset', 'raw01', '--max-images', '2', '--shard', '1/2', '--out-dir', stats, '-q']));
    const statsShard = path.join(stats, 'mobilenet_v2_nsfw_224.stats.1of2.msgpack');
    await refused(await runCli(['merge', shardOf(1), statsShard, '--model', MOBILENET]), esc(`${shardOf(1)} is a compare shard and ${statsShard} holds statistics: merge one kind at a time`));
  });

  it('compare --shard refuses what a slice cannot do, before the pass', async () => {
    await refused(await runCli([...mobile, '--labels', 'folders', '--shard', '1/2', '--report-dir', path.join(tmp, 'labels')]), /--shard 1\/2 compares a slice of the images: --labels/);
    await refused(await runCli([...mobile, '--shard', '3/2']), /shard 3 is not between 1 and 2/);
    const copy = path.join(tmp, 'copy.msgpack');
    await copyFile(shardOf(1), copy);
    await writeFile(copy, Buffer.from('not msgpack at all'));
    await refused(await runCli(['merge', copy, '--model', MOBILENET]), esc(copy));
  });
});
