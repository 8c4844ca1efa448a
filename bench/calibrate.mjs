// Calibration benchmark (issue 3): plain FP32 inference over the images vs calibration (statistics collection
// plus every algorithm), both through the same dataset pipeline, and peak memory for N and 4N images, each in a
// fresh child process so that one run's heap does not inflate the other's.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, copyFileSync, rmSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(here, '..', 'dist');

async function load() {
  const { calibrate } = await import(path.join(dist, 'app', 'calibrate.js'));
  const { createDataset } = await import(path.join(dist, 'datasets', 'dataset.js'));
  const { resolvePreprocess } = await import(path.join(dist, 'datasets', 'presets.js'));
  const { getBackend } = await import(path.join(dist, 'backends', 'index.js'));
  const { decodeBudget } = await import(path.join(dist, 'datasets', 'decode-budget.js'));
  return { calibrate, createDataset, resolvePreprocess, getBackend, decodeBudget };
}

/**
 * One plain FP32 pass, timed the way calibration is: from the model file to the last output (session creation
 * included, as calibrate() includes its own), decode + preprocess + model outputs only. Without the pixel budget
 * of whole-image decodes (src/datasets/decode-budget.ts): it makes images/calib's two 12-megapixel progressive
 * JPEGs decode one after the other, which slows this pass by 50-60 ms; the reference is the fastest plain pass.
 */
async function plainPass(m, model, data, batch) {
  const budget = m.decodeBudget.budget;
  m.decodeBudget.budget = Infinity;
  try {
    return await plainPassUnbounded(m, model, data, batch);
  } finally {
    m.decodeBudget.budget = budget;
  }
}

async function plainPassUnbounded(m, model, data, batch) {
  const t0 = performance.now();
  const preprocess = m.resolvePreprocess({ preset: 'raw01' }, { name: 'input', dims: ['N', 3, 224, 224] });
  const dataset = await m.createDataset({ data, preprocess, inputName: 'input', batchSize: batch });
  const session = await m.getBackend('onnxruntime').open({ path: model });
  let images = 0;
  for await (const b of dataset.batches()) {
    await session.run({ input: { dtype: 'float32', dims: b.dims, data: b.data } });
    images += b.files.length;
  }
  const seconds = (performance.now() - t0) / 1000;
  await session.release();
  return { seconds, images };
}

async function calibratePass(m, model, data, batch, outDir) {
  const t0 = performance.now();
  const r = await m.calibrate({
    model,
    // batch undefined: the command's default (1), with its default threads (all cores but one).
    data: { data, preprocess: { preset: 'raw01' }, ...(batch ? { batch } : {}) },
    algorithms: ['entropy2', 'entropy', 'minmax', 'percentile', 'mse'],
    trtVersion: '10.3.0',
    outDir,
  });
  return { seconds: (performance.now() - t0) / 1000, collect: r.seconds.collect, algorithms: r.seconds.algorithms, images: r.images.used };
}

/**
 * Per-image cost of the parts, one thread each, on a synthetic image: onnxruntime plain (onnxruntime-node), the
 * model with the activations calibration exports run through onnxruntime's C API (src/backends/onnxruntime-collect.ts),
 * and counting their statistics (the same run with counting, minus without).
 */
async function components(m, model) {
  const { loadOnnxModel, saveOnnxModel } = await import(path.join(dist, 'onnx', 'model.js'));
  const { listActivations } = await import(path.join(dist, 'onnx', 'graph.js'));
  const { planCollection } = await import(path.join(dist, 'backends', 'collection-plan.js'));
  const { exposeTensors } = await import(path.join(dist, 'onnx', 'expose.js'));
  const { loadNative } = await import(path.join(dist, 'native.js'));
  const { nativeSessionConfig, onnxruntimeLibraryPath } = await import(path.join(dist, 'backends', 'onnxruntime.js'));
  const proto = await loadOnnxModel(model);
  const activations = listActivations(proto);
  const plan = planCollection(proto, activations);
  const outputs = plan.exported.filter((n) => n !== 'input');
  const bytes = saveOnnxModel(exposeTensors(proto, outputs));
  const x = { dtype: 'float32', dims: [1, 3, 224, 224], data: new Float32Array(3 * 224 * 224).map((_, i) => ((i * 7919) % 255) / 255) };
  const time = async (fn, n = 20) => {
    await fn();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await fn();
    return (performance.now() - t0) / n;
  };
  const plain = await m.getBackend('onnxruntime').open({ path: model }, { threads: 1 });
  const native = loadNative();
  const collector = (count) => {
    // Each exported tensor counted into its own state (the derived Clip/Relu/Pad ones come with their roots).
    const names = [...plan.exported, ...plan.derived.map((d) => d.name)];
    const index = new Map(names.map((n, i) => [n, i]));
    return new native.OrtCollector(onnxruntimeLibraryPath(), bytes, {
      ...nativeSessionConfig({ threads: 1 }),
      inputName: 'input',
      bins: 8192,
      states: names.length,
      inputTargets: [],
      outputs: outputs.map((name) => ({
        name,
        targets: !count
          ? []
          : [{ state: index.get(name) }, ...plan.derived.filter((d) => d.root === name && !(d.clamp && d.pads)).map((d) => ({ state: index.get(d.name), ...(d.clamp ? { clamp: [d.clamp.lo, d.clamp.hi] } : {}), ...(d.pads ? { pads: d.pads } : {}) }))],
      })),
    });
  };
  const without = collector(false);
  const withCounting = collector(true);
  await without.open();
  await withCounting.open();
  // What calibration runs: the same outputs in onnxruntime's blocked layout where they allow it (src/onnx/nchwc.ts).
  const { blockedModel } = await import(path.join(dist, 'backends', 'onnxruntime-collect.js'));
  const blocked = await blockedModel(onnxruntimeLibraryPath(), bytes, nativeSessionConfig({ threads: 1 }), outputs);
  const blockedCollector = blocked
    ? new native.OrtCollector(onnxruntimeLibraryPath(), blocked.file, { ...nativeSessionConfig({ threads: 1 }), optimization: 0, inputName: 'input', bins: 8192, states: 0, inputTargets: [], outputs: outputs.map((name) => ({ name, targets: [] })) })
    : undefined;
  await blockedCollector?.open();
  if (blocked) rmSync(blocked.dir, { recursive: true, force: true });
  const serial = (c) => async () => {
    await c.infer(x.data, x.dims);
    await c.drain();
  };
  const result = {
    tensors: activations.length,
    exported: outputs.length,
    plain: await time(() => plain.run({ input: x })),
    exposed: await time(serial(without)),
    blocked: blocked ? blocked.count : 0,
    exposedBlocked: blockedCollector ? await time(serial(blockedCollector)) : undefined,
    counted: await time(serial(withCounting)),
  };
  result.stats = result.counted - result.exposed;
  await plain.release();
  without.close();
  withCounting.close();
  blockedCollector?.close();
  return result;
}

/**
 * This process's peak resident memory. On Linux, VmHWM of /proc/self/status: getrusage's maxRSS carries the peak of
 * the parent it was forked from across exec (a bench process that has just counted a 416 MB batch made every child
 * report 670 MiB).
 */
function peakRssMiB() {
  try {
    const m = readFileSync('/proc/self/status', 'utf8').match(/^VmHWM:\s+(\d+) kB/m);
    if (m) return Number(m[1]) / 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS / 1024;
}

/** Child mode: one calibration, then print peak RSS. */
if (process.argv[2] === '--child') {
  const [model, data, outDir] = process.argv.slice(3);
  const m = await load();
  await calibratePass(m, model, data, undefined, outDir);
  process.stdout.write(JSON.stringify({ maxRssMiB: peakRssMiB() }));
  process.exit(0);
}

export async function benchCalibrate({ fixtures, log = console.log, repeats = 5 } = {}) {
  const m = await load();
  const model = path.join(fixtures, 'models', 'mobilenet_v2_nsfw_224.onnx');
  const data = path.join(fixtures, 'images', 'calib');
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'trt-calib-bench-'));
  try {
    // Warm-up: first decodes and session creation pay one-off costs (page cache, code loading).
    await plainPass(m, model, data, 8);
    await calibratePass(m, model, data, undefined, path.join(tmp, 'warm'));
    const plain = [];
    const calib = [];
    const calib8 = [];
    for (let i = 0; i < repeats; i++) {
      plain.push(await plainPass(m, model, data, 8));
      calib.push(await calibratePass(m, model, data, undefined, path.join(tmp, `run${i}`)));
      calib8.push(await calibratePass(m, model, data, 8, path.join(tmp, `run8-${i}`)));
    }
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const plainS = median(plain.map((p) => p.seconds));
    const calibS = median(calib.map((c) => c.seconds));
    const calib8S = median(calib8.map((c) => c.seconds));
    const images = plain[0].images;
    log(`MobileNetV2, ${images} images (images/calib), ${os.availableParallelism()} cores, median of ${repeats}:`);
    log(`  plain FP32 pass (decode + inference, batch 8):   ${plainS.toFixed(2)} s  (${(images / plainS).toFixed(1)} images/s)`);
    log(`  calibration, defaults (batch 1):                 ${calibS.toFixed(2)} s  (collection ${median(calib.map((c) => c.collect)).toFixed(2)} s, 5 algorithms ${median(calib.map((c) => c.algorithms)).toFixed(2)} s)`);
    log(`  calibration, batch 8:                            ${calib8S.toFixed(2)} s`);
    log(`  ratio calibration / plain: ${(calibS / plainS).toFixed(2)}  (target <= 1.5)`);
    const parts = await components(m, model);
    log(`  where the time goes, per image (one thread each): onnxruntime plain ${parts.plain.toFixed(1)} ms; with the ${parts.exported} exported activations (of ${parts.tensors}; the others are counted from them) ${parts.exposed.toFixed(1)} ms all reordered to NCHW, ${parts.exposedBlocked?.toFixed(1) ?? '-'} ms with ${parts.blocked} of them in onnxruntime's blocked layout (what calibration runs); counting all ${parts.tensors} ${parts.stats.toFixed(1)} ms, on its own thread beside the next image's inference`);
    // Peak memory for N and 4N images: 4 copies of the folder under other names.
    const four = path.join(tmp, 'x4');
    const files = readdirSync(data);
    for (let k = 0; k < 4; k++) {
      mkdirSync(path.join(four, `copy${k}`), { recursive: true });
      for (const f of files) copyFileSync(path.join(data, f), path.join(four, `copy${k}`, f));
    }
    const peak = (dir) =>
      JSON.parse(execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', model, dir, path.join(tmp, 'mem')], { encoding: 'utf8' })).maxRssMiB;
    // Three runs each, alternated: the 43-image peak falls while the model loads and the first photos decode, and
    // moves by +-20 MiB with how those overlap.
    const peaksN = [];
    const peaks4N = [];
    for (let i = 0; i < 3; i++) {
      peaksN.push(peak(data));
      peaks4N.push(peak(four));
    }
    const peakN = median(peaksN);
    const peak4N = median(peaks4N);
    const mib = (xs) => xs.map((x) => x.toFixed(0)).join('/');
    log(`  peak RSS, median of 3: ${files.length} images ${peakN.toFixed(0)} MiB (${mib(peaksN)}), ${4 * files.length} images ${peak4N.toFixed(0)} MiB (${mib(peaks4N)}); ${peak4N >= peakN ? '+' : ''}${((100 * (peak4N - peakN)) / peakN).toFixed(1)}%, target within 10%`);
    return { images, plainSeconds: plainS, calibrationSeconds: calibS, calibrationBatch8Seconds: calib8S, ratio: calibS / plainS, components: parts, peakRssMiB: { n: peakN, n4: peak4N, runsN: peaksN, runs4N: peaks4N } };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const fixtures = process.env.BENCH_FIXTURES ?? path.resolve(here, '..', '..', 'shared', 'fixtures');
  await benchCalibrate({ fixtures });
}
