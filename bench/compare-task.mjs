// Task-metric benchmark (issue 13): what judging a detector in its own terms costs inside a `compare` run. The SSD
// fixture (models/ssdlite_mobilenet_v2_coco_300.onnx) is calibrated (entropy2) on images/calib, then compared on
// images/street (FP32, FP16, INT8) through runComparison with the detection evaluator, every call of which is
// timed: decoding the boxes, class-aware NMS, matching against FP32 and COCO mAP. Printed as a fraction of the
// whole comparison pass (target < 5%), with the image-header reads of the geometries beside it.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(here, '..', 'dist');
const imp = (p) => import(path.join(dist, p));

const PREPROCESS = { preset: 'raw01', size: 300, scale: 2 / 255, mean: [1, 1, 1], std: [1, 1, 1] };
const FLAGS = { task: 'detect', boxes: 'boxes:yxyx:norm', scores: 'scores', classOffset: 1 };

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s[Math.floor(s.length / 2)];
}

/** The evaluator with every call timed (ms summed in `timing`, each call's ms in `calls`, by method and variant). */
function timed(evaluator, timing, calls) {
  const wrap = (name) => (...args) => {
    const t0 = performance.now();
    try {
      return evaluator[name](...args);
    } finally {
      const ms = performance.now() - t0;
      timing[name] = (timing[name] ?? 0) + ms;
      (calls[name === 'addVariant' ? `${name} ${args[0]}` : name] ??= []).push(ms);
    }
  };
  return { kind: evaluator.kind, outputs: evaluator.outputs, addReference: wrap('addReference'), addVariant: wrap('addVariant'), finish: wrap('finish') };
}

export async function benchCompareTask({ fixtures, log }) {
  const m = {
    ...(await imp('app/calibrate.js')),
    ...(await imp('app/variants.js')),
    ...(await imp('backends/onnxruntime.js')),
    ...(await imp('compare/run.js')),
    ...(await imp('compare/task/index.js')),
    ...(await imp('datasets/dataset.js')),
    ...(await imp('datasets/geometry.js')),
    ...(await imp('datasets/presets.js')),
    ...(await imp('onnx/graph.js')),
    ...(await imp('onnx/model.js')),
  };
  const modelFile = path.join(fixtures, 'models', 'ssdlite_mobilenet_v2_coco_300.onnx');
  const street = path.join(fixtures, 'images', 'street');
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'trt-calib-bench-task-'));
  try {
    const calibrated = await m.calibrate({ model: modelFile, data: { data: path.join(fixtures, 'images', 'calib'), preprocess: PREPROCESS }, algorithms: ['entropy2'], trtVersion: '10.3.0', outDir: tmp });
    const model = await m.loadOnnxModel(modelFile);
    const input = { name: 'input', dims: [1, 3, 300, 300] };
    const preprocess = m.resolvePreprocess(PREPROCESS, input);
    const dataset = await m.createDataset({ data: street, preprocess, inputName: 'input', batchSize: 1 });
    const outputs = m.graphOutputs(model).map((o) => ({ name: o.name, dims: o.dims ?? [] }));
    const task = await m.prepareTask({ flags: FLAGS, outputs, datasetFiles: dataset.files, dataRoot: street, preprocess });
    const loaded = await m.loadCacheFor(calibrated.caches[0].file, m.listActivations(model).map((a) => a.name), modelFile);
    const int8 = m.buildInt8Variant(model, loaded.scales, { file: modelFile });
    const fp16 = m.buildFp16Variant(model, { file: modelFile });
    const open = (bytes, name) => m.onnxruntimeBackend.open({ path: name, bytes });
    const reference = await m.onnxruntimeBackend.open({ path: modelFile });
    const variants = [
      { spec: { name: 'fp16', precision: 'fp16' }, session: await open(m.saveOnnxModel(fp16.model), 'fp16') },
      { spec: { name: 'int8-entropy2', precision: 'int8', algorithm: 'entropy2' }, session: await open(m.saveOnnxModel(int8.model), 'int8') },
    ];
    const timing = {};
    const calls = {};
    try {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const run = await m.runComparison({ dataset, reference, variants, includeReference: true, task: timed(task.create(), timing, calls) });
      const total = performance.now() - t0;
      const cpu = process.cpuUsage(cpu0);
      const cpuMs = (cpu.user + cpu.system) / 1000;
      const t1 = performance.now();
      await m.imageGeometries(dataset.files, preprocess);
      const headers = performance.now() - t1;
      const evaluator = Object.values(timing).reduce((a, b) => a + b, 0);
      const fraction = evaluator / total;
      log(`SSDLite on ${run.images} street frames (batch 1), FP32 + FP16 + INT8 entropy2, ${os.availableParallelism()} cores`);
      log(`  compare pass: ${(total / 1000).toFixed(2)} s`);
      log(`  detection evaluator (decode + NMS + matching + mAP): ${evaluator.toFixed(1)} ms = ${(fraction * 100).toFixed(2)}% of the pass (target < 5%)`);
      // The evaluator is synchronous JS on the main thread; onnxruntime uses every core: on a shared machine the wall
      // fraction moves with the load, the CPU fraction much less.
      log(`  of the pass's CPU time (${(cpuMs / 1000).toFixed(2)} s on all threads): ${((evaluator / cpuMs) * 100).toFixed(2)}%`);
      log(`    addReference ${(timing.addReference ?? 0).toFixed(1)} ms, addVariant ${(timing.addVariant ?? 0).toFixed(1)} ms (3 rows), finish ${(timing.finish ?? 0).toFixed(1)} ms`);
      // On a shared 2-core machine a few calls are preempted (5-25 ms instead of 1-2): the median call times the
      // number of calls is the evaluator's cost without them (finish() is one call, taken as measured).
      const steady = Object.entries(calls).reduce((sum, [k, ms]) => sum + (k === 'finish' ? 0 : median(ms) * ms.length), 0) + (timing.finish ?? 0);
      log(`    median call x calls (finish as measured): ${steady.toFixed(1)} ms = ${((steady / total) * 100).toFixed(2)}% of the pass`);
      log(`  image headers for the geometries: ${headers.toFixed(1)} ms (${((headers / total) * 100).toFixed(2)}%)`);
      // What the task costs the compare run itself: its work overlaps the next session's run (src/compare/run.ts),
      // so the time inside the evaluator is not all added to the pass. The same pass with and without the task,
      // alternately, three times each: the difference of the medians.
      const walls = { with: [], without: [] };
      for (let i = 0; i < 3; i++) {
        for (const key of ['without', 'with']) {
          const s0 = performance.now();
          await m.runComparison({ dataset, reference, variants, includeReference: true, ...(key === 'with' ? { task: task.create() } : {}) });
          walls[key].push(performance.now() - s0);
        }
      }
      const added = median(walls.with) - median(walls.without);
      log(`  the pass with the task ${(median(walls.with) / 1000).toFixed(2)} s, without ${(median(walls.without) / 1000).toFixed(2)} s (medians of 3): the task adds ${added.toFixed(0)} ms = ${((added / median(walls.with)) * 100).toFixed(2)}% (target < 5%)`);
      const w = run.variants.find((v) => v.name === 'int8-entropy2');
      log(`  int8-entropy2: mAP@[.5:.95] ${w.task.map.toFixed(4)}, mAP@.5 ${w.task.map50.toFixed(4)} against FP32`);
      return { images: run.images, addedMs: added, addedFraction: added / median(walls.with), steadyMs: steady, passSeconds: total / 1000, passCpuSeconds: cpuMs / 1000, cpuFraction: evaluator / cpuMs, evaluatorMs: evaluator, fraction, headersMs: headers, timing };
    } finally {
      await reference.release();
      for (const v of variants) await v.session.release();
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
