/**
 * sensitivity --shard K/N as 3 processes, then trt-calib merge: the report one run over all the layers writes
 * (same layers, numbers and ranking; only `seconds` and `merged` say how it was made), and the refusals.
 */
import { copyFile, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IMAGES, MOBILENET, assertBuilt, runCli, type CliResult } from './cli.js';

let tmp: string;
let args: string[];
beforeAll(async () => {
  assertBuilt();
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-shard-sensitivity-e2e-'));
  const r = await runCli(['--model', MOBILENET, '--data', IMAGES, '--preset', 'raw01', '--max-images', '3', '--algo', 'entropy2', '--trt-version', '10.3.0', '--out-dir', tmp, '-q']);
  expect(r.code, r.stderr).toBe(0);
  const cache = path.join(tmp, 'mobilenet_v2_nsfw_224.entropy2.cache');
  args = ['sensitivity', '--model', MOBILENET, '--cache', cache, '--data', IMAGES, '--preset', 'raw01', '--max-images', '2', '--layers', 'block_1_*,block_2_*,bn_Conv1'];
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function ok(r: CliResult): CliResult {
  expect(r.stderr).not.toMatch(/internal error/);
  expect(r.code, r.stderr).toBe(0);
  return r;
}

async function refused(r: CliResult, pattern: RegExp) {
  expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(pattern);
}

const shardFile = (k: number) => path.join(tmp, 'shards', `mobilenet_v2_nsfw_224.sensitivity.${k}of3.json`);
const esc = (s: string) => new RegExp(s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));

describe('sensitivity in 3 shards merged = one run', () => {
  it('the same report but for the fields that say how it was made', async () => {
    const single = path.join(tmp, 'single.json');
    const runs = await Promise.all([
      // A shard measures its slice whole: the merge is the exhaustive search's report.
      runCli([...args, '--exhaustive', '--out', single, '-q']),
      ...[1, 2, 3].map((k) => runCli([...args, '--shard', `${k}/3`, '--out-dir', path.join(tmp, 'shards'), '-q'])),
    ]);
    runs.forEach(ok);
    expect((await readdir(path.join(tmp, 'shards'))).sort()).toEqual([1, 2, 3].map((k) => path.basename(shardFile(k))));
    const merged = path.join(tmp, 'merged.json');
    ok(await runCli(['merge', shardFile(3), shardFile(1), shardFile(2), '--out', merged, '-q']));

    const one = JSON.parse(await readFile(single, 'utf8')).sensitivity;
    const all = JSON.parse(await readFile(merged, 'utf8')).sensitivity;
    const parts = await Promise.all([1, 2, 3].map(async (k) => JSON.parse(await readFile(shardFile(k), 'utf8')).sensitivity));
    // every shard measured a third of the layers; the merge has them all, ranked as one run ranks them
    expect(parts.map((p) => p.layers.length).reduce((a, b) => a + b, 0)).toBe(one.layers.length);
    expect(parts.every((p) => p.layers.length < one.layers.length)).toBe(true);
    expect(one.layers.length).toBeGreaterThanOrEqual(6);
    expect(all.merged.shards.map((s: any) => [path.basename(s.file), s.index])).toEqual([1, 2, 3].map((k) => [path.basename(shardFile(k)), k]));
    expect(all.variants).toBe(one.variants); // the full-INT8 model counted once
    // Each shard cut its own slice's variants (cut.ts): as many variants in all, grouped per shard.
    expect(all.cuts.cut + all.cuts.whole).toBe(one.cuts.cut + one.cuts.whole);
    for (const r of [one, all]) {
      delete r.seconds;
      delete r.merged;
      delete r.cuts;
    }
    expect(parts[0].search).toMatchObject({ method: 'exhaustive', why: '--shard measures its slice of the layers whole' });
    expect(all).toEqual(one);
  });

  it('refuses missing, duplicate and mismatched shards, --max-drop with --shard, and mixed kinds', async () => {
    const dup = path.join(tmp, 'dup.json');
    await copyFile(shardFile(2), dup);
    const other = path.join(tmp, 'other.json');
    const edited = JSON.parse(await readFile(shardFile(2), 'utf8'));
    edited.sensitivity.fullInt8.cosineMean = 0.5; // what another cache or trt-calib version would measure
    await writeFile(other, JSON.stringify(edited));
    const out = ['--out', path.join(tmp, 'refused.json')];
    const [missing, twice, mismatched, maxDrop, mixed, tooMany] = await Promise.all([
      runCli(['merge', shardFile(1), shardFile(3), ...out]),
      runCli(['merge', shardFile(1), shardFile(2), dup, shardFile(3), ...out]),
      runCli(['merge', shardFile(1), other, shardFile(3), ...out]),
      runCli([...args, '--shard', '1/3', '--max-drop', '1']),
      runCli(['merge', shardFile(1), path.join(tmp, 'mobilenet_v2_nsfw_224.stats.msgpack'), '--model', MOBILENET]),
      runCli([...args, '--shard', '1/1000', '--out', path.join(tmp, 'refused.json')]),
    ]);
    await refused(missing, /Sensitivity shard 2of3 of 3 absent/);
    await refused(twice, esc(`${shardFile(2)} and ${dup} are the same shard (2 of 3)`));
    await refused(mismatched, esc(`${shardFile(1)} and ${other} are sensitivity shards of different full-INT8 results`));
    await refused(maxDrop, /--shard 1\/3 measures a slice of the layers; --max-drop needs them all/);
    await refused(mixed, esc(`${shardFile(1)} is a sensitivity report and ${path.join(tmp, 'mobilenet_v2_nsfw_224.stats.msgpack')} holds statistics`));
    await refused(tooMany, /--shard 1\/1000: shard 1 of 1000 gets no layers: \d+ layers are selected/); // before any image is decoded
    expect(tooMany.stderr).not.toMatch(/decoding/);
    await expect(readFile(path.join(tmp, 'refused.json'))).rejects.toThrow();
  });
});
