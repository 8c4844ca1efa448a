// Statistics and calibrator benchmark (run by bench/run.js after `tsc`; reads dist/).
//
// Data: activations shaped like MobileNetV2 at 224x224, batch 8 (the layer schedule of Sandler et al. 2018:
// every Conv output and its ReLU6), with ReLU-like and signed value distributions. Synthetic so that the kernel
// is measured alone; the end-to-end calibration benchmark (bench/calibrate.mjs) runs the real model.
//
// Timings are the best of a few runs (the machine is shared). Reports: histogram kernel MB/s (one thread; two tensors at once on worker threads; a whole batch of tensors
// in flight), milliseconds per tensor for every algorithm, the KL scans in TypeScript vs native, and the memory
// the statistics hold.
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = (p) => import(pathToFileURL(path.join(here, '..', 'dist', p)).href);

/** [channels, spatial size] of every activation of MobileNetV2 at 224 (Conv outputs and their ReLU6). */
export function mobilenetV2Activations() {
  const out = [];
  const conv = (c, hw, relu = true) => {
    out.push([c, hw]);
    if (relu) out.push([c, hw]);
  };
  conv(32, 112);
  let cin = 32;
  let hw = 112;
  for (const [t, c, n, s] of [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]) {
    for (let k = 0; k < n; k++) {
      const stride = k === 0 ? s : 1;
      if (t !== 1) conv(cin * t, hw); // expand 1x1
      hw = hw / stride;
      conv(cin * t, hw); // depthwise 3x3
      conv(c, hw, false); // project 1x1, linear
      if (stride === 1 && cin === c) out.push([c, hw]); // residual Add
      cin = c;
    }
  }
  conv(1280, 7);
  out.push([1280, 1], [1000, 1], [1000, 1]); // pool, Gemm, Softmax
  return out;
}

function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function activation(n, seed, relu) {
  const r = rng(seed);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    // a cheap bell shape (sum of uniforms) with a long tail now and then
    let v = (r() + r() + r() - 1.5) * 2;
    if (r() < 0.001) v *= 8;
    d[i] = relu ? Math.min(6, Math.max(0, v)) : v;
  }
  return d;
}

const now = () => performance.now();

/** Best of `reps` timings of fn() in ms: the machine is shared, the minimum is the least disturbed run. */
async function best(reps, fn) {
  let min = Infinity;
  for (let k = 0; k < reps; k++) {
    const t0 = now();
    await fn();
    min = Math.min(min, now() - t0);
  }
  return min;
}

export async function benchStats({ log = console.log } = {}) {
  const { StatisticsCollector } = await dist('stats/collector.js');
  const { HISTOGRAM_BINS } = await dist('stats/types.js');
  const { ALGORITHM_NAMES, CALIBRATORS, computeAllAmaxes } = await dist('calibrators/registry.js');
  const { klScan } = await dist('calibrators/kl.js');
  const { klScanNative } = await dist('calibrators/kl-native.js');
  const { entropy2Histogram, ENTROPY2_SPEC } = await dist('calibrators/entropy2.js');
  const { entropyHistogram, ENTROPY_SPEC } = await dist('calibrators/entropy.js');
  const results = { cores: availableParallelism(), bins: HISTOGRAM_BINS };

  // --- histogram kernel ---
  const big = activation(8 * 96 * 112 * 112, 1, true); // the largest MobileNetV2 activation, batch 8: 38.5 MB
  const mb = big.byteLength / 1e6;
  {
    const c = new StatisticsCollector({ asyncThreshold: Infinity });
    c.addSync('warm', big);
    const ms = await best(8, () => c.addSync('t', big));
    results.kernelSyncMBps = Math.round(mb / (ms / 1000));
    log(`histogram kernel, 1 thread: ${results.kernelSyncMBps} MB/s (${mb.toFixed(1)} MB tensor, ${ms.toFixed(1)} ms)`);
  }
  {
    const other = activation(big.length, 2, false);
    const c = new StatisticsCollector({ asyncThreshold: 0 });
    await Promise.all([c.add('a', big), c.add('b', other)]);
    const ms = await best(6, () => Promise.all([c.add('a', big), c.add('b', other)]));
    results.kernelTwoTensorsMBps = Math.round((2 * mb) / (ms / 1000));
    log(`histogram kernel, 2 tensors at once on worker threads: ${results.kernelTwoTensorsMBps} MB/s`);
  }
  const layers = mobilenetV2Activations();
  const batch = layers.map(([c, hw], i) => activation(8 * c * hw * hw, 100 + i, i % 2 === 1));
  const batchMB = batch.reduce((a, d) => a + d.byteLength, 0) / 1e6;
  const collector = new StatisticsCollector();
  {
    await Promise.all(batch.map((d, i) => collector.add(`act${String(i).padStart(3, '0')}`, d)));
    const ms = await best(4, () => Promise.all(batch.map((d, i) => collector.add(`act${String(i).padStart(3, '0')}`, d))));
    results.batchTensors = batch.length;
    results.batchMB = +batchMB.toFixed(1);
    results.batchMs = +ms.toFixed(1);
    results.batchMBps = Math.round(batchMB / (ms / 1000));
    log(
      `a MobileNetV2 batch of 8 (${batch.length} activations, ${batchMB.toFixed(0)} MB): ${ms.toFixed(1)} ms, ${results.batchMBps} MB/s over ${results.cores} cores`,
    );
  }
  results.statisticsBytes = collector.memoryBytes;
  log(`statistics held: ${(collector.memoryBytes / 1e6).toFixed(1)} MB (${collector.size} tensors x ${HISTOGRAM_BINS} bins x 8 bytes), whatever the number of images`);

  // --- calibrators ---
  const stats = collector.result();
  results.msPerTensor = {};
  for (const name of ALGORITHM_NAMES) {
    const cal = CALIBRATORS[name];
    for (const s of stats.slice(0, 5)) cal.compute(s);
    const ms = (await best(3, () => stats.forEach((s) => cal.compute(s)))) / stats.length;
    results.msPerTensor[name] = +ms.toFixed(3);
  }
  log(`ms per tensor, one thread: ${Object.entries(results.msPerTensor).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  const scans = {};
  for (const [label, spec, prep] of [
    ['entropy2', ENTROPY2_SPEC, (s) => entropy2Histogram(s)],
    ['entropy', ENTROPY_SPEC, (s) => entropyHistogram(s)],
  ]) {
    const hs = stats.map(prep).filter(Boolean).map((h) => h.counts);
    const ts = (await best(3, () => hs.forEach((h) => klScan(h, spec)))) / hs.length;
    const cc = (await best(3, () => hs.forEach((h) => klScanNative(h, spec)))) / hs.length;
    scans[label] = { typescriptMs: +ts.toFixed(3), nativeMs: +cc.toFixed(3) };
  }
  results.klScanMsPerTensor = scans;
  log(`KL scan ms per tensor, TypeScript vs native: ${Object.entries(scans).map(([k, v]) => `${k} ${v.typescriptMs} vs ${v.nativeMs}`).join(', ')}`);
  {
    await computeAllAmaxes(ALGORITHM_NAMES, stats);
    const ms = await best(3, () => computeAllAmaxes(ALGORITHM_NAMES, stats));
    results.allAlgorithmsMs = +ms.toFixed(1);
    log(`all ${ALGORITHM_NAMES.length} algorithms for ${stats.length} tensors (computeAllAmaxes): ${ms.toFixed(1)} ms`);
  }
  return results;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const r = await benchStats();
  if (process.argv.includes('--json')) console.log(JSON.stringify(r, null, 2));
}
