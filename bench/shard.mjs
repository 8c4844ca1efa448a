// Sharding benchmark (issue 18): one calibration run over the images vs the same run cut into 4 shards, each
// shard a separate `trt-calib calibrate --shard K/4` process, then `trt-calib merge`. Timed three ways: the four
// shards at once on this machine, each shard alone (what each of 4 machines would take), and the merge. Checks
// that the merged caches and statistics are the single run's bytes.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const bin = path.resolve(here, '..', 'bin', 'trt-calib.js');
const SHARDS = 4;

// The process's CPU time (all its threads: onnxruntime's, the decoders', the counting thread), printed at exit.
const cpuAtExit = `data:text/javascript,process.on('exit',()=>{const u=process.cpuUsage();process.stderr.write('bench-cpu '+(u.user+u.system)/1e6+'\\n')})`;

/** Runs the CLI; resolves to { wall, cpu } in seconds. */
function cli(args) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    execFile(process.execPath, ['--import', cpuAtExit, bin, ...args, '-q'], { maxBuffer: 1 << 26 }, (err, _stdout, stderr) => {
      if (err) return reject(new Error(`trt-calib ${args.join(' ')} failed: ${stderr}`));
      const cpu = Number(/bench-cpu (\S+)/.exec(stderr)?.[1]);
      resolve({ wall: (performance.now() - t0) / 1000, cpu });
    });
  });
}
const sum = (xs) => xs.reduce((a, b) => ({ wall: a.wall + b.wall, cpu: a.cpu + b.cpu }), { wall: 0, cpu: 0 });
const slowest = (xs) => xs.reduce((a, b) => (b.wall > a.wall ? b : a));

const median = (xs) => [...xs].sort((a, b) => a.wall - b.wall)[Math.floor(xs.length / 2)];

export async function benchShard({ fixtures, log = console.log, repeats = 3 } = {}) {
  const model = path.join(fixtures, 'models', 'mobilenet_v2_nsfw_224.onnx');
  const data = path.join(fixtures, 'images', 'calib');
  const common = ['--model', model, '--data', data, '--preset', 'raw01'];
  const cache = ['--algo', 'entropy2', '--trt-version', '10.3.0'];
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'trt-calib-bench-shard-'));
  const runs = { single: [], together: [], slowestAlone: [], sumAlone: [], merge: [] };
  try {
    for (let r = 0; r < repeats; r++) {
      const dir = (name) => path.join(tmp, `${r}-${name}`);
      runs.single.push(await cli([...common, ...cache, '--out-dir', dir('single')]));
      const t0 = performance.now();
      const together = await Promise.all(Array.from({ length: SHARDS }, (_, k) => cli([...common, '--shard', `${k + 1}/${SHARDS}`, '--out-dir', dir('together')])));
      runs.together.push({ wall: (performance.now() - t0) / 1000, cpu: sum(together).cpu });
      const alone = [];
      for (let k = 1; k <= SHARDS; k++) alone.push(await cli([...common, '--shard', `${k}/${SHARDS}`, '--out-dir', dir('alone')]));
      runs.slowestAlone.push(slowest(alone));
      runs.sumAlone.push(sum(alone));
      const shardFiles = readdirSync(dir('together')).map((f) => path.join(dir('together'), f));
      runs.merge.push(await cli(['merge', ...shardFiles, '--model', model, ...cache, '--out-dir', dir('merged')]));
      for (const f of readdirSync(dir('single'))) {
        if (!readFileSync(path.join(dir('single'), f)).equals(readFileSync(path.join(dir('merged'), f)))) throw new Error(`merged ${f} differs from the single run's`);
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const images = readdirSync(data).length;
  const m = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)]));
  const t = (x) => `${x.wall.toFixed(2)} s wall, ${x.cpu.toFixed(2)} s CPU`;
  log(`MobileNetV2, ${images} images, entropy2, ${os.availableParallelism()} cores (load average ${os.loadavg()[0].toFixed(1)}), median of ${repeats}:`);
  log(`  one run:                               ${t(m.single)}`);
  log(`  ${SHARDS} shards at once on this machine:      ${t(m.together)}`);
  log(`  ${SHARDS} shards one at a time, the slowest:   ${t(m.slowestAlone)}`);
  log(`  ${SHARDS} shards one at a time, all together:  ${t(m.sumAlone)}`);
  log(`  merge:                                 ${t(m.merge)}`);
  log('  merged caches and statistics: the single run\'s bytes');
  return { images, cores: os.availableParallelism(), ...m };
}
