// Compare sharding benchmark (issue 18): one `trt-calib compare` over the validation images vs the same comparison
// cut into 2 shards, each a separate `compare --shard K/2` process, then `trt-calib merge`. Timed three ways: both
// shards at once on this machine, each shard alone (what each of 2 machines would take), and the merge. Checks that
// the merged report.json is the single run's but for `shards`.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const bin = path.resolve(here, '..', 'bin', 'trt-calib.js');
const SHARDS = 2;
const cpuAtExit = `data:text/javascript,process.on('exit',()=>{const u=process.cpuUsage();process.stderr.write('bench-cpu '+(u.user+u.system)/1e6+'\\n')})`;

function cli(args, okCodes = [0]) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    execFile(process.execPath, ['--import', cpuAtExit, bin, ...args, '-q'], { maxBuffer: 1 << 26 }, (err, _stdout, stderr) => {
      if (err && !okCodes.includes(err.code)) return reject(new Error(`trt-calib ${args.join(' ')} failed: ${stderr}`));
      const cpu = Number(/bench-cpu (\S+)/.exec(stderr)?.[1]);
      resolve({ wall: (performance.now() - t0) / 1000, cpu });
    });
  });
}
const sum = (xs) => xs.reduce((a, b) => ({ wall: a.wall + b.wall, cpu: a.cpu + b.cpu }), { wall: 0, cpu: 0 });
const slowest = (xs) => xs.reduce((a, b) => (b.wall > a.wall ? b : a));
const median = (xs) => [...xs].sort((a, b) => a.wall - b.wall)[Math.floor(xs.length / 2)];

export async function benchShardCompare({ fixtures, log = console.log, repeats = 3 } = {}) {
  const model = path.join(fixtures, 'models', 'mobilenet_v2_nsfw_224.onnx');
  const calib = path.join(fixtures, 'images', 'calib');
  // The 43 calibration photos as the validation set: the largest set of the fixtures (val has 15).
  const data = calib;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'trt-calib-bench-shard-compare-'));
  const runs = { single: [], together: [], slowestAlone: [], sumAlone: [], merge: [] };
  try {
    await cli(['--model', model, '--data', calib, '--preset', 'raw01', '--algo', 'entropy2', '--trt-version', '10.3.0', '--out-dir', tmp]);
    const common = ['compare', '--model', model, '--data', data, '--preset', 'raw01', '--cache', path.join(tmp, 'mobilenet_v2_nsfw_224.entropy2.cache'), '--out-dir', tmp];
    for (let r = 0; r < repeats; r++) {
      const dir = (name) => path.join(tmp, `${r}-${name}`);
      runs.single.push(await cli([...common, '--report-dir', dir('single')]));
      const t0 = performance.now();
      const together = await Promise.all(Array.from({ length: SHARDS }, (_, k) => cli([...common, '--shard', `${k + 1}/${SHARDS}`, '--report-dir', dir('together')])));
      runs.together.push({ wall: (performance.now() - t0) / 1000, cpu: sum(together).cpu });
      const alone = [];
      for (let k = 1; k <= SHARDS; k++) alone.push(await cli([...common, '--shard', `${k}/${SHARDS}`, '--report-dir', dir('alone')]));
      runs.slowestAlone.push(slowest(alone));
      runs.sumAlone.push(sum(alone));
      const shardFiles = readdirSync(dir('together')).map((f) => path.join(dir('together'), f));
      runs.merge.push(await cli(['merge', ...shardFiles]));
      const one = JSON.parse(readFileSync(path.join(dir('single'), 'report.json'), 'utf8'));
      const { shards: _shards, ...merged } = JSON.parse(readFileSync(path.join(dir('together'), 'report.json'), 'utf8'));
      if (JSON.stringify(one) !== JSON.stringify(merged)) throw new Error('the merged report.json differs from the single run\'s');
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const images = readdirSync(data).length;
  const m = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)]));
  const t = (x) => `${x.wall.toFixed(2)} s wall, ${x.cpu.toFixed(2)} s CPU`;
  log(`compare MobileNetV2 (fp32, fp16, int8-entropy2 + implicit, layers), ${images} images, ${os.availableParallelism()} cores (load average ${os.loadavg()[0].toFixed(1)}), median of ${repeats}:`);
  log(`  one run:                               ${t(m.single)}`);
  log(`  ${SHARDS} shards at once on this machine:      ${t(m.together)}`);
  log(`  ${SHARDS} shards one at a time, the slowest:   ${t(m.slowestAlone)}`);
  log(`  ${SHARDS} shards one at a time, all together:  ${t(m.sumAlone)}`);
  log(`  merge:                                 ${t(m.merge)}`);
  log('  merged report.json: the single run\'s but for `shards`');
  return { images, cores: os.availableParallelism(), ...m };
}
