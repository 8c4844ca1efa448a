// Calibration benchmark (issues 3 and 16): plain FP32 inference over the images vs calibration (statistics
// collection plus every algorithm), both through the same dataset pipeline, on MobileNetV2 (images/calib), the SSD
// (28 photos of images/calib at 300x300) and PP-OCR det (images/street at 576x768); peak memory of both for N and
// 4N images, each in a fresh child process so that one run's heap does not inflate the other's; and where the time
// goes per image. BENCH_CALIBRATE=mobilenet,ssd,ppocr picks fixtures (default: all three).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, mkdirSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(here, '..', 'dist');

/** The fixtures: model, images, preprocessing; `plainBatch` the plain pass's batch (its fastest). */
export function fixtureList(fixtures) {
  const models = path.join(fixtures, 'models');
  const images = path.join(fixtures, 'images');
  return [
    { key: 'mobilenet', label: 'MobileNetV2', model: path.join(models, 'mobilenet_v2_nsfw_224.onnx'), data: path.join(images, 'calib'), preset: 'raw01', input: 'input', dims: [224, 224], plainBatch: 8 },
    { key: 'ssd', label: 'SSDLite-MobileNetV2 300x300', model: path.join(models, 'ssdlite_mobilenet_v2_coco_300.onnx'), data: path.join(images, 'calib'), maxImages: 28, preset: 'inception', input: 'input', dims: [300, 300], plainBatch: 1 },
    { key: 'ppocr', label: 'PP-OCRv4 det 576x768', model: path.join(models, 'ppocr_v4_det.onnx'), data: path.join(images, 'street'), preset: 'paddleocr-det', shapes: 'x:1x3x576x768', input: 'x', dims: [576, 768], plainBatch: 1 },
  ];
}

export async function load() {
  const { calibrate } = await import(path.join(dist, 'app', 'calibrate.js'));
  const { createDataset } = await import(path.join(dist, 'datasets', 'dataset.js'));
  const { resolvePreprocess } = await import(path.join(dist, 'datasets', 'presets.js'));
  const { getBackend } = await import(path.join(dist, 'backends', 'index.js'));
  const { decodeBudget } = await import(path.join(dist, 'datasets', 'decode-budget.js'));
  return { calibrate, createDataset, resolvePreprocess, getBackend, decodeBudget };
}

const preprocessOf = (fx) => ({ preset: fx.preset, ...(fx.shapes ? { shapes: fx.shapes } : {}) });

/**
 * One plain FP32 pass, timed the way calibration is: from the model file to the last output (session creation
 * included, as calibrate() includes its own), decode + preprocess + model outputs only, onnxruntime's default
 * threads. Without the pixel budget of whole-image decodes (src/datasets/decode-budget.ts): it makes images/calib's
 * two 12-megapixel progressive JPEGs decode one after the other, which slows this pass by 50-60 ms; the reference
 * is the fastest plain pass. `decodeOnly`: the same pass without the model (the decode's share).
 */
async function plainPass(m, fx, data, { decodeOnly = false } = {}) {
  const budget = m.decodeBudget.budget;
  m.decodeBudget.budget = Infinity;
  try {
    const t0 = performance.now();
    const preprocess = m.resolvePreprocess(preprocessOf(fx), { name: fx.input, dims: ['N', 3, ...fx.dims] });
    const dataset = await m.createDataset({ data, preprocess, inputName: fx.input, batchSize: fx.plainBatch, ...(fx.maxImages ? { maxImages: fx.maxImages } : {}) });
    const session = decodeOnly ? undefined : await m.getBackend('onnxruntime').open({ path: fx.model });
    let images = 0;
    for await (const b of dataset.batches()) {
      await session?.run({ [fx.input]: { dtype: 'float32', dims: b.dims, data: b.data } });
      images += b.files.length;
    }
    const seconds = (performance.now() - t0) / 1000;
    await session?.release();
    return { seconds, images };
  } finally {
    m.decodeBudget.budget = budget;
  }
}

/** `counting`: 'outputs' counts from the model's outputs on a counting thread, the path before in-graph counting. */
async function calibratePass(m, fx, data, outDir, counting) {
  const before = process.env.TRT_CALIB_COUNT;
  if (counting) process.env.TRT_CALIB_COUNT = counting;
  try {
    return await calibratePassAs(m, fx, data, outDir);
  } finally {
    if (before === undefined) delete process.env.TRT_CALIB_COUNT;
    else process.env.TRT_CALIB_COUNT = before;
  }
}

async function calibratePassAs(m, fx, data, outDir) {
  const t0 = performance.now();
  const r = await m.calibrate({
    model: fx.model,
    // batch undefined: the command's default (1), with its default threads.
    data: { data, preprocess: preprocessOf(fx), ...(fx.maxImages ? { maxImages: fx.maxImages } : {}) },
    algorithms: ['entropy2', 'entropy', 'minmax', 'percentile', 'mse'],
    trtVersion: '10.3.0',
    outDir,
  });
  return { seconds: (performance.now() - t0) / 1000, collect: r.seconds.collect, algorithms: r.seconds.algorithms, images: r.images.used };
}

/**
 * Per-image cost of the parts on the first image, each as calibration and the plain pass run them: onnxruntime
 * plain (onnxruntime-node, default threads); the collecting session's graph (blocked layout, counting nodes:
 * src/backends/onnxruntime-collect.ts) with nothing to count, i.e. what exposing the activations costs the
 * inference; the same with counting, whose difference is the time the inference waits for the counting.
 */
export async function components(m, fx, data) {
  const { loadOnnxModel } = await import(path.join(dist, 'onnx', 'model.js'));
  const { listActivations } = await import(path.join(dist, 'onnx', 'graph.js'));
  const { planCollection } = await import(path.join(dist, 'backends', 'collection-plan.js'));
  const { NativeStatistics } = await import(path.join(dist, 'backends', 'onnxruntime-collect.js'));
  const proto = await loadOnnxModel(fx.model);
  const activations = listActivations(proto);
  // A real image: the counting's cost depends on the values (how often a range widens, how the bins spread).
  const preprocess = m.resolvePreprocess(preprocessOf(fx), { name: fx.input, dims: ['N', 3, ...fx.dims] });
  const dataset = await m.createDataset({ data, preprocess, inputName: fx.input, batchSize: 1 });
  const it = dataset.batches()[Symbol.asyncIterator]();
  const first = (await it.next()).value;
  await it.return?.();
  const dims = first.dims;
  const x = { dtype: 'float32', dims, data: Float32Array.from(first.data) };
  const time = async (fn, n) => {
    await fn();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await fn();
    return (performance.now() - t0) / n;
  };
  const n = fx.key === 'ppocr' ? 5 : 20;
  const plain = await m.getBackend('onnxruntime').open({ path: fx.model });
  const plainMs = await time(() => plain.run({ [fx.input]: x }), n);
  await plain.release();
  const plan = planCollection(proto, activations);
  const session = async (counted) => {
    // countNothing: the same graph and session, its counting nodes returning at once.
    const s = new NativeStatistics({ modelFile: fx.model, model: proto, inputName: fx.input, plan, activations, countNothing: !counted });
    await s.start();
    const ms = await time(() => s.add(dims, x.data), n);
    const info = { threads: s.threads, inGraph: s.countsInGraph, blocked: s.blockedExports };
    await s.finish();
    await s.close();
    return { ms, ...info };
  };
  const uncounted = await session(false);
  const counted = await session(true);
  return { tensors: activations.length, exported: plan.exported.length, plain: plainMs, graph: uncounted.ms, counted: counted.ms, counting: counted.ms - uncounted.ms, ...counted };
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

/** Child mode: one calibration or plain pass, then print peak RSS. */
if (process.argv[2] === '--child') {
  const [kind, key, fixtures, data, outDir, counting] = process.argv.slice(3);
  const fx = fixtureList(fixtures).find((f) => f.key === key);
  const m = await load();
  if (kind === 'plain') await plainPass(m, { ...fx, maxImages: undefined }, data);
  else await calibratePass(m, { ...fx, maxImages: undefined }, data, outDir, counting);
  process.stdout.write(JSON.stringify({ maxRssMiB: peakRssMiB() }));
  process.exit(0);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A folder with the images, and one with them 4 times (symlinks), for the N and 4N peaks. */
function imageSets(fx, tmp) {
  const files = readdirSync(fx.data).sort();
  const picked = fx.maxImages ? files.slice(0, fx.maxImages) : files;
  const one = path.join(tmp, `${fx.key}-n`);
  const four = path.join(tmp, `${fx.key}-4n`);
  mkdirSync(one, { recursive: true });
  for (const f of picked) symlinkSync(path.join(fx.data, f), path.join(one, f));
  for (let k = 0; k < 4; k++) {
    mkdirSync(path.join(four, `copy${k}`), { recursive: true });
    for (const f of picked) symlinkSync(path.join(fx.data, f), path.join(four, `copy${k}`, f));
  }
  return { one, four, count: picked.length };
}

async function benchFixture(m, fx, fixtures, tmp, log, repeats) {
  const sets = imageSets(fx, tmp);
  // Warm-up: first decodes and session creation pay one-off costs (page cache, code loading).
  await plainPass(m, fx, sets.one);
  await calibratePass(m, fx, sets.one, path.join(tmp, `${fx.key}-warm`));
  const plain = [];
  const calib = [];
  const fromOutputs = [];
  const decode = [];
  // Alternated, so that the machine's load falls on both alike.
  for (let i = 0; i < repeats; i++) {
    plain.push(await plainPass(m, fx, sets.one));
    calib.push(await calibratePass(m, fx, sets.one, path.join(tmp, `${fx.key}-run${i}`)));
    fromOutputs.push(await calibratePass(m, fx, sets.one, path.join(tmp, `${fx.key}-out${i}`), 'outputs'));
    decode.push(await plainPass(m, fx, sets.one, { decodeOnly: true }));
  }
  const plainS = median(plain.map((p) => p.seconds));
  const calibS = median(calib.map((c) => c.seconds));
  const images = plain[0].images;
  const s = (xs) => xs.map((x) => x.toFixed(2)).join('/');
  log(`${fx.label}, ${images} images (${path.relative(fixtures, fx.data)}${fx.maxImages ? `, first ${fx.maxImages}` : ''}), ${os.availableParallelism()} cores, load ${os.loadavg()[0].toFixed(1)}, median of ${repeats}:`);
  log(`  plain FP32 pass (decode + inference, batch ${fx.plainBatch}): ${plainS.toFixed(2)} s (${s(plain.map((p) => p.seconds))})`);
  log(`  calibration, defaults (batch 1, 5 algorithms):     ${calibS.toFixed(2)} s (${s(calib.map((c) => c.seconds))}; collection ${median(calib.map((c) => c.collect)).toFixed(2)} s, algorithms ${median(calib.map((c) => c.algorithms)).toFixed(2)} s)`);
  const outputsS = median(fromOutputs.map((c) => c.seconds));
  log(`  calibration counting from the outputs (TRT_CALIB_COUNT=outputs, the path before): ${outputsS.toFixed(2)} s (${s(fromOutputs.map((c) => c.seconds))})`);
  log(`  ratio calibration / plain: ${(calibS / plainS).toFixed(2)}  (target <= 1.25; counting from the outputs ${(outputsS / plainS).toFixed(2)})`);
  const parts = await components(m, fx, sets.one);
  const decodeMs = (1000 * median(decode.map((d) => d.seconds))) / images;
  log(
    `  where the time goes, per image: decode ${decodeMs.toFixed(1)} ms (the pass without the model, on its own threads beside the inference); ` +
      `inference plain ${parts.plain.toFixed(1)} ms; with the ${parts.exported} tensors of ${parts.tensors} counted from (${parts.blocked} in onnxruntime's blocked layout) ${parts.graph.toFixed(1)} ms; ` +
      `counting wait ${parts.counting.toFixed(1)} ms (${parts.inGraph ? 'counted in the graph' : 'counted from the outputs'}, ${parts.threads} onnxruntime threads)`,
  );
  const peak = (kind, dir, counting = '') =>
    JSON.parse(execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', kind, fx.key, fixtures, dir, path.join(tmp, `${fx.key}-mem`), counting], { encoding: 'utf8' })).maxRssMiB;
  // Three runs each, alternated: a peak falls while the model loads and the first photos decode, and moves by
  // +-20 MiB with how those overlap.
  const runs = { plainN: [], plain4N: [], calibN: [], calib4N: [], outputsN: [] };
  for (let i = 0; i < 3; i++) {
    runs.outputsN.push(peak('calibrate', sets.one, 'outputs'));
    runs.plainN.push(peak('plain', sets.one));
    runs.calibN.push(peak('calibrate', sets.one));
    runs.plain4N.push(peak('plain', sets.four));
    runs.calib4N.push(peak('calibrate', sets.four));
  }
  const med = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)]));
  const mib = (xs) => xs.map((x) => x.toFixed(0)).join('/');
  log(
    `  peak RSS, median of 3: ${sets.count} images: calibration ${med.calibN.toFixed(0)} MiB (${mib(runs.calibN)}) vs plain ${med.plainN.toFixed(0)} (${mib(runs.plainN)}), ${(med.calibN / med.plainN).toFixed(2)}x; ` +
      `${4 * sets.count} images: calibration ${med.calib4N.toFixed(0)} (${mib(runs.calib4N)}) vs plain ${med.plain4N.toFixed(0)} (${mib(runs.plain4N)}), ${(med.calib4N / med.plain4N).toFixed(2)}x (target <= 2x); ` +
      `calibration 4N vs N ${med.calib4N >= med.calibN ? '+' : ''}${((100 * (med.calib4N - med.calibN)) / med.calibN).toFixed(1)}%; ` +
      `counting from the outputs, ${sets.count} images: ${med.outputsN.toFixed(0)} (${mib(runs.outputsN)})`,
  );
  return { images, plainSeconds: plainS, calibrationSeconds: calibS, ratio: calibS / plainS, outputsPathSeconds: outputsS, decodeMsPerImage: decodeMs, components: parts, peakRssMiB: { ...med, runs } };
}

export async function benchCalibrate({ fixtures, log = console.log, repeats = 3 } = {}) {
  const m = await load();
  const only = process.env.BENCH_CALIBRATE?.split(',');
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'trt-calib-bench-'));
  const results = {};
  try {
    for (const fx of fixtureList(fixtures)) {
      if (only && !only.includes(fx.key)) continue;
      results[fx.key] = await benchFixture(m, fx, fixtures, tmp, log, repeats);
    }
    return results;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const fixtures = process.env.BENCH_FIXTURES ?? path.resolve(here, '..', '..', 'shared', 'fixtures');
  await benchCalibrate({ fixtures });
}
