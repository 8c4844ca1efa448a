/**
 * calibrate --shard K/N as separate processes, then trt-calib merge: the caches and the statistics are the bytes
 * of one run over all the images (MobileNetV2 and the SSD detector), and every refusal of the merge names the files.
 */
import { copyFile, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeStatistics, encodeStatistics } from '../../src/stats/store.js';
import { FIXTURES, IMAGES, MOBILENET, assertBuilt, runCli, type CliResult } from './cli.js';

const SSD = path.join(FIXTURES, 'models/ssdlite_mobilenet_v2_coco_300.onnx');
const STREET = path.join(FIXTURES, 'street');
const MOBILENET_ARGS = ['--model', MOBILENET, '--data', IMAGES, '--preset', 'raw01', '--max-images', '5', '--seed', '3'];
const SSD_ARGS = ['--model', SSD, '--data', STREET, '--preset', 'inception', '--resize', 'stretch'];
const CACHE_ARGS = ['--trt-version', '10.3.0'];

let tmp: string;
beforeAll(async () => {
  assertBuilt();
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-shard-e2e-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function contents(dir: string): Promise<Record<string, Buffer>> {
  const out: Record<string, Buffer> = {};
  for (const f of (await readdir(dir)).sort()) out[f] = await readFile(path.join(dir, f));
  return out;
}

function ok(r: CliResult): CliResult {
  expect(r.stderr).not.toMatch(/internal error/);
  expect(r.code, r.stderr).toBe(0);
  return r;
}

/** One run, 4 shards as 4 processes at once, and the merge; returns the folders. */
async function singleVsShards(name: string, args: string[], algos: string) {
  const single = path.join(tmp, `${name}-single`);
  const shards = path.join(tmp, `${name}-shards`);
  const merged = path.join(tmp, `${name}-merged`);
  const runs = await Promise.all([
    runCli([...args, '--algo', algos, ...CACHE_ARGS, '--out-dir', single, '-q']),
    ...[1, 2, 3, 4].map((k) => runCli([...args, '--shard', `${k}/4`, '--out-dir', shards, '--json'])),
  ]);
  runs.forEach(ok);
  const shardFiles = (await readdir(shards)).sort().map((f) => path.join(shards, f));
  ok(await runCli(['merge', ...shardFiles.reverse(), '--model', args[1]!, '--algo', algos, ...CACHE_ARGS, '--out-dir', merged, '-q']));
  return { single, shards, merged, shardJson: runs.slice(1).map((r) => JSON.parse(r.stdout)) };
}

describe('4 shards merged = one run, byte for byte', () => {
  let mobilenet: Awaited<ReturnType<typeof singleVsShards>>;
  let ssd: Awaited<ReturnType<typeof singleVsShards>>;

  it('MobileNetV2, 5 of the 8 photos (--max-images 5 --seed 3), 3 algorithms', async () => {
    mobilenet = await singleVsShards('mobilenet', MOBILENET_ARGS, 'entropy2,minmax,percentile');
    expect(await readdir(mobilenet.shards)).toEqual([1, 2, 3, 4].map((k) => `mobilenet_v2_nsfw_224.stats.${k}of4.msgpack`));
    // the shards wrote no cache, and split the 5 images 1, 1, 1, 2
    expect(mobilenet.shardJson.map((j) => [j.caches.length, j.images.used, j.shard.start, j.shard.end])).toEqual([
      [0, 1, 0, 1],
      [0, 1, 1, 2],
      [0, 1, 2, 3],
      [0, 2, 3, 5],
    ]);
    const single = await contents(mobilenet.single);
    const merged = await contents(mobilenet.merged);
    expect(Object.keys(merged)).toEqual([
      'mobilenet_v2_nsfw_224.entropy2.cache',
      'mobilenet_v2_nsfw_224.minmax.cache',
      'mobilenet_v2_nsfw_224.percentile.cache',
      'mobilenet_v2_nsfw_224.protected.precision.json',
      'mobilenet_v2_nsfw_224.stats.msgpack',
    ]);
    expect(Object.keys(merged)).toEqual(Object.keys(single));
    for (const f of Object.keys(single)) expect(merged[f]!.equals(single[f]!), f).toBe(true);
    const stats = decodeStatistics(merged['mobilenet_v2_nsfw_224.stats.msgpack']!, 'merged');
    expect(stats.provenance.imageCount).toBe(5);
    expect(stats.provenance.shard).toBeUndefined();
  });

  it('SSDLite detector, the 4 street frames, one per shard', async () => {
    ssd = await singleVsShards('ssd', SSD_ARGS, 'entropy2');
    const single = await contents(ssd.single);
    const merged = await contents(ssd.merged);
    expect(Object.keys(merged)).toEqual(['ssdlite_mobilenet_v2_coco_300.entropy2.cache', 'ssdlite_mobilenet_v2_coco_300.protected.precision.json', 'ssdlite_mobilenet_v2_coco_300.stats.msgpack']);
    expect(Object.keys(merged)).toEqual(Object.keys(single));
    for (const f of Object.keys(single)) expect(merged[f]!.equals(single[f]!), f).toBe(true);
  });

  it('--shard auto reads a Slurm array (1-based ids) and a Kubernetes Indexed Job to the same shard files', async () => {
    const slurm = { SLURM_ARRAY_TASK_ID: '2', SLURM_ARRAY_TASK_COUNT: '4', SLURM_ARRAY_TASK_MIN: '1', SLURM_ARRAY_TASK_MAX: '4', JOB_COMPLETION_INDEX: '' };
    const k8s = { JOB_COMPLETION_INDEX: '3', SLURM_ARRAY_TASK_ID: '' };
    const [a, b] = await Promise.all([
      runCli([...MOBILENET_ARGS, '--shard', 'auto', '--out-dir', path.join(tmp, 'auto'), '-q'], { env: slurm }),
      runCli([...MOBILENET_ARGS, '--shard', 'auto/4', '--out-dir', path.join(tmp, 'auto'), '-q'], { env: k8s }),
    ]);
    ok(a);
    ok(b);
    const auto = await contents(path.join(tmp, 'auto'));
    // SLURM_ARRAY_TASK_ID=2 of ids 1..4 is shard 2; JOB_COMPLETION_INDEX=3 (0-based) is shard 4
    expect(Object.keys(auto)).toEqual(['mobilenet_v2_nsfw_224.stats.2of4.msgpack', 'mobilenet_v2_nsfw_224.stats.4of4.msgpack']);
    for (const f of Object.keys(auto)) expect(auto[f]!.equals(await readFile(path.join(mobilenet.shards, f))), f).toBe(true);
  });

  describe('refusals (exit 1, naming the files)', () => {
    const shard = (k: number) => path.join(mobilenet.shards, `mobilenet_v2_nsfw_224.stats.${k}of4.msgpack`);
    const merge = (files: string[], extra: string[] = []) => runCli(['merge', ...files, '--model', MOBILENET, ...CACHE_ARGS, '--out-dir', path.join(tmp, 'refused'), ...extra]);
    async function refused(r: CliResult, ...patterns: RegExp[]) {
      expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
      expect(r.code).toBe(1);
      for (const p of patterns) expect(r.stderr).toMatch(p);
      await expect(readdir(path.join(tmp, 'refused'))).rejects.toThrow(); // nothing written
    }
    const esc = (s: string) => new RegExp(s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));

    it('a missing shard', async () => {
      await refused(await merge([shard(1), shard(3), shard(4)]), /Shard 2of4 of 4 is absent \(mobilenet_v2_nsfw_224\.stats\.2of4\.msgpack\)/, esc(shard(3)));
    });

    it('a shard given twice', async () => {
      const dup = path.join(tmp, 'copy-of-1of4.msgpack');
      await copyFile(shard(1), dup);
      await refused(await merge([shard(1), shard(2), shard(3), shard(4), dup]), esc(`${shard(1)} and ${dup} are the same shard (1 of 4)`));
    });

    it('overlapping image sets (shards of different selections)', async () => {
      // 1of2 of all 8 photos is the first 4 in sorted order; 2of2 of a list of those 4 is their last 2
      const all = path.join(tmp, 'overlap-all');
      const list = path.join(tmp, 'first4.txt');
      const sorted = (await readdir(IMAGES)).filter((f) => /\.(jpg|png)$/.test(f)).sort();
      await writeFile(list, sorted.slice(0, 4).map((f) => path.join(IMAGES, f)).join('\n') + '\n');
      const [a, b] = await Promise.all([
        runCli(['--model', MOBILENET, '--data', IMAGES, '--preset', 'raw01', '--shard', '1/2', '--out-dir', all, '-q']),
        runCli(['--model', MOBILENET, '--data', list, '--preset', 'raw01', '--shard', '2/2', '--out-dir', path.join(tmp, 'overlap-list'), '-q']),
      ]);
      ok(a);
      ok(b);
      const first = path.join(all, 'mobilenet_v2_nsfw_224.stats.1of2.msgpack');
      const second = path.join(tmp, 'overlap-list/mobilenet_v2_nsfw_224.stats.2of2.msgpack');
      await refused(await merge([first, second]), esc(`${first} and ${second} overlap: both used ${sorted[2]}`));
    });

    it('shards of another model, preprocessing, input shape, tool version or split', async () => {
      const other = path.join(tmp, 'other');
      ok(await runCli([...MOBILENET_ARGS, '--preset', 'imagenet', '--shard', '2/4', '--out-dir', path.join(other, 'imagenet'), '-q']));
      const ssdShard = path.join(ssd.shards, 'ssdlite_mobilenet_v2_coco_300.stats.2of4.msgpack');
      const imagenetShard = path.join(other, 'imagenet/mobilenet_v2_nsfw_224.stats.2of4.msgpack');
      const splitShard = path.join(tmp, 'overlap-all/mobilenet_v2_nsfw_224.stats.1of2.msgpack'); // from the test above
      // what another trt-calib version or input shape would have written: a real shard, its provenance edited
      const edited = async (name: string, edit: (p: any) => void) => {
        const stored = decodeStatistics(await readFile(shard(2)), shard(2));
        edit(stored.provenance);
        const file = path.join(other, name);
        await writeFile(file, encodeStatistics(stored));
        return file;
      };
      const older = await edited('older.msgpack', (p) => (p.toolVersion = '0.0.1'));
      const shaped = await edited('shaped.msgpack', (p) => (p.shapes = { input: [3, 160, 160] }));
      const [model, preprocessing, split, tool, shapes] = await Promise.all([
        merge([shard(1), ssdShard, shard(3), shard(4)]),
        merge([shard(1), imagenetShard, shard(3), shard(4)]),
        merge([shard(1), splitShard]),
        merge([shard(1), older, shard(3), shard(4)]),
        merge([shard(1), shaped, shard(3), shard(4)]),
      ]);
      await refused(model, esc(`${shard(1)} and ${ssdShard} are shards of different models`));
      await refused(preprocessing, esc(`${shard(1)} and ${imagenetShard} are shards of different preprocessing`), /--preset/);
      await refused(split, esc(`${shard(1)} and ${splitShard} are shards of different shard counts: N = 4 vs N = 2`));
      await refused(tool, esc(`${shard(1)} and ${older} are shards of different tool versions`), /0\.0\.1/);
      await refused(shapes, esc(`${shard(1)} and ${shaped} are shards of different input shapes`));
    });

    it('a whole run\'s statistics, an output over a shard, and --shard with --from-stats or too many shards', async () => {
      const whole = path.join(mobilenet.single, 'mobilenet_v2_nsfw_224.stats.msgpack');
      await refused(await merge([whole]), esc(`${whole} holds the statistics of a whole run, not of a shard`));
      await refused(await merge([1, 2, 3, 4].map(shard), ['--stats-out', shard(3)]), esc(`would overwrite the shard ${shard(3)}`));
      const before = await readFile(shard(3));
      expect((await readFile(shard(3))).equals(before)).toBe(true);

      const [fromStats, tooMany, noScheduler] = await Promise.all([
        runCli(['--model', MOBILENET, '--from-stats', whole, '--shard', '1/2', ...CACHE_ARGS, '--out-dir', path.join(tmp, 'refused')]),
        runCli([...MOBILENET_ARGS, '--shard', '1/6', '--out-dir', path.join(tmp, 'refused')]),
        runCli([...MOBILENET_ARGS, '--shard', 'auto', '--out-dir', path.join(tmp, 'refused')], { env: { JOB_COMPLETION_INDEX: '', SLURM_ARRAY_TASK_ID: '' } }),
      ]);
      await refused(fromStats, /--shard 1\/2 collects the statistics of a slice .* cannot be combined with --from-stats/);
      await refused(tooMany, /--shard 1\/6: shard 1 of 6 gets no images: 5 images are selected/, /at most 5 shard/);
      await refused(noScheduler, /found none of JOB_COMPLETION_INDEX .* SLURM_ARRAY_TASK_ID/);
    });
  });
});


