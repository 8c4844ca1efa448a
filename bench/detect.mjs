#!/usr/bin/env node
// The detection task's own cost beside the model's: on the SSDLite COCO detector (1917 anchors x 90 classes) and
// the street frames of <fixtures>/images/street, the time of one image's inference (onnxruntime, default threads),
// of decoding + class-aware NMS of its outputs, and of COCO mAP (FP32 as the truth, against a perturbed copy of
// the outputs standing in for a variant) over all frames. Each is the median of several rounds; CPU time is given
// beside wall time, as the machine may be shared. The fraction is what a `compare --task detect` variant adds to
// its inference for the detection metrics.
//
// Standalone: `node bench/detect.mjs [fixturesFolder]` (after `npx tsc`); bench/run.js calls benchDetect().
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { onnxruntimeBackend } from '../dist/backends/onnxruntime.js';
import { decodeDetections, evaluateCoco } from '../dist/compare/task/detect/index.js';
import { createDataset } from '../dist/datasets/dataset.js';
import { resolvePreprocess } from '../dist/datasets/presets.js';

const SPEC = { layout: 'boxes-scores', boxes: 'boxes', format: 'yxyx', normalized: true, scores: 'scores' };

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Wall and CPU milliseconds of f(). */
function timed(f) {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  f();
  const c = process.cpuUsage(c0);
  return { wall: performance.now() - t0, cpu: (c.user + c.system) / 1000 };
}

export async function benchDetect({ fixtures, log }) {
  const model = path.join(fixtures, 'models', 'ssdlite_mobilenet_v2_coco_300.onnx');
  const data = path.join(fixtures, 'images', 'street');
  const preprocess = resolvePreprocess({ preset: 'raw01', size: 300, scale: 2 / 255, mean: [1, 1, 1], std: [1, 1, 1] }, { name: 'input', dims: [1, 3, 300, 300] });
  const dataset = await createDataset({ data, preprocess, inputName: 'input', batchSize: 1 });
  const session = await onnxruntimeBackend.open({ path: model });
  const frames = [];
  const inference = [];
  try {
    for await (const batch of dataset.batches()) {
      const feed = { input: { dtype: 'float32', dims: batch.dims, data: Float32Array.from(batch.data) } };
      await session.run(feed, ['boxes', 'scores']); // warm-up
      const t0 = performance.now();
      const out = await session.run(feed, ['boxes', 'scores']);
      inference.push(performance.now() - t0);
      const meta = await sharp(batch.files[0]).metadata();
      const geometry = { file: batch.files[0], width: meta.width, height: meta.height, inputWidth: 300, inputHeight: 300, scaleX: 300 / meta.width, scaleY: 300 / meta.height, offsetX: 0, offsetY: 0 };
      frames.push({ outputs: { boxes: out.boxes, scores: out.scores }, geometry });
    }
  } finally {
    await session.release();
  }
  const options = { spec: SPEC, classOffset: 1 };
  const decodeWall = [];
  const decodeCpu = [];
  let fp32 = [];
  for (let round = 0; round < 5; round++) {
    for (const f of frames) {
      let dets;
      const t = timed(() => (dets = decodeDetections(f.outputs, [f.geometry], options)[0]));
      if (round > 0) {
        decodeWall.push(t.wall);
        decodeCpu.push(t.cpu);
      }
      if (round === 0) fp32.push(dets);
    }
  }
  // A variant: scores squared, boxes shifted by 1% of the width.
  const variant = frames.map((f) => {
    const boxes = Float32Array.from(f.outputs.boxes.data);
    for (let i = 1; i < boxes.length; i += 2) boxes[i] += 0.01;
    const scores = Float32Array.from(f.outputs.scores.data, (s) => s * s);
    return decodeDetections({ boxes: { ...f.outputs.boxes, data: boxes }, scores: { ...f.outputs.scores, data: scores } }, [f.geometry], options)[0];
  });
  const truth = fp32.map((dets) => dets.filter((d) => d.score >= 0.25));
  const mapWall = [];
  const mapCpu = [];
  let result;
  for (let round = 0; round < 5; round++) {
    const t = timed(() => (result = evaluateCoco(truth, variant)));
    mapWall.push(t.wall);
    mapCpu.push(t.cpu);
  }
  const n = frames.length;
  const inferMs = median(inference);
  const perImage = median(decodeWall) + median(mapWall) / n;
  const summary = {
    images: n,
    inferenceMs: inferMs,
    decodeNmsMs: median(decodeWall),
    decodeNmsCpuMs: median(decodeCpu),
    evaluateCocoMs: median(mapWall),
    evaluateCocoCpuMs: median(mapCpu),
    detections: variant.reduce((s, d) => s + d.length, 0),
    map: result.map,
    fractionOfInference: perImage / inferMs,
  };
  log(`inference ${inferMs.toFixed(1)} ms/image (onnxruntime, default threads)`);
  log(`decode + NMS ${summary.decodeNmsMs.toFixed(2)} ms/image (CPU ${summary.decodeNmsCpuMs.toFixed(2)})`);
  log(`evaluateCoco ${summary.evaluateCocoMs.toFixed(1)} ms for ${n} images, ${summary.detections} detections (CPU ${summary.evaluateCocoCpuMs.toFixed(1)}); mAP of the perturbed copy ${summary.map.toFixed(4)}`);
  log(`detection metrics per variant and image: ${(100 * summary.fractionOfInference).toFixed(1)}% of its inference`);
  return summary;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const fixtures = process.argv[2] ?? path.resolve(here, '..', '..', 'shared', 'fixtures');
  await benchDetect({ fixtures, log: (line) => console.log(line) });
}
