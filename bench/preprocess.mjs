#!/usr/bin/env node
// Preprocessing throughput (images/s), imagenet preset, on every photo under <fixtures>/images:
// the Dataset pipeline (parallel decode, bounded prefetch, batches of 8) against a plain sequential loop
// that does the same sharp work one file at a time (metadata, resize shorter side to 256, extract the
// centred 224, raw) and the same float conversion. Both run in the same process, alternately, several
// rounds; the median of each is reported with the ratio. The two must produce the same tensors.
//
// Standalone: `node bench/preprocess.mjs [fixturesFolder]` (after `npx tsc`); bench/run.js calls benchPreprocess().
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { createDataset } from '../dist/datasets/dataset.js';
import { discoverImages } from '../dist/datasets/discovery.js';
import { resolvePreprocess } from '../dist/datasets/presets.js';
import { configureSharp } from '../dist/datasets/preprocess.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

/** The plain loop: one file at a time, straight sharp calls, hand-written normalisation into NCHW. */
async function plainLoop(files, size, shorter) {
  const per = 3 * size * size;
  const out = [];
  for (const file of files) {
    const meta = await sharp(file).metadata();
    const w = meta.autoOrient?.width ?? meta.width;
    const h = meta.autoOrient?.height ?? meta.height;
    const [rw, rh] = w <= h ? [shorter, Math.trunc((shorter * h) / w)] : [Math.trunc((shorter * w) / h), shorter];
    const left = roundHalfEven((rw - size) / 2);
    const top = roundHalfEven((rh - size) / 2);
    let img = sharp(file, { failOn: 'truncated', autoOrient: true });
    if (meta.hasAlpha) img = img.flatten({ background: { r: 255, g: 255, b: 255 } });
    const px = await img
      .toColourspace('srgb')
      .resize(rw, rh, { fit: 'fill', kernel: 'linear', fastShrinkOnLoad: false })
      .extract({ left, top, width: size, height: size })
      .removeAlpha()
      .raw()
      .toBuffer();
    const t = new Float32Array(per);
    const hw = size * size;
    for (let i = 0; i < hw; i++) {
      for (let c = 0; c < 3; c++) t[c * hw + i] = (px[i * 3 + c] / 255 - MEAN[c]) / STD[c];
    }
    out.push(t);
  }
  return out;
}

function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

async function pipeline(files, config, batchSize) {
  const ds = await createDataset({ files, preprocess: config, batchSize });
  const out = [];
  const per = 3 * config.height * config.width;
  for await (const b of ds.batches()) {
    for (let i = 0; i < b.files.length; i++) out.push(b.data.subarray(i * per, (i + 1) * per));
  }
  return { out, order: ds.files };
}

async function timed(fn) {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const result = await fn();
  const cpu = process.cpuUsage(c0);
  return { seconds: (performance.now() - t0) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6, result };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * @param {{ fixtures?: string, log?: (line: string) => void, rounds?: number, batchSize?: number }} [options]
 *   fixtures: the shared fixtures folder (its images/ subfolder is used).
 */
export async function benchPreprocess(options = {}) {
  const log = options.log ?? ((line) => console.log(line));
  const fixtures = options.fixtures ?? path.resolve(here, '..', '..', 'shared', 'fixtures');
  const imagesDir = path.join(fixtures, 'images');
  if (!existsSync(imagesDir)) {
    log(`preprocess: skipped, no images at ${imagesDir}`);
    return { skipped: true, reason: `no images at ${imagesDir}` };
  }
  configureSharp(); // the same sharp settings for both (operation cache off)
  const rounds = options.rounds ?? 3;
  const batchSize = options.batchSize ?? 8;
  const config = resolvePreprocess({ preset: 'imagenet' });
  const files = await discoverImages(imagesDir);
  log(`preprocess: ${files.length} images under ${imagesDir}, imagenet preset (256 -> 224 center crop), ${availableParallelism()} cores`);

  // Warm-up: sharp/libvips initialisation and first-call costs, outside the measurement.
  await plainLoop(files.slice(0, 4), config.height, config.shorterSide);
  await pipeline(files.slice(0, 4), config, batchSize);

  const plainTimes = [];
  const pipeTimes = [];
  const plainCpu = [];
  const pipeCpu = [];
  let check;
  for (let r = 0; r < rounds; r++) {
    const a = await timed(() => plainLoop(files, config.height, config.shorterSide));
    const b = await timed(() => pipeline(files, config, batchSize));
    plainTimes.push(a.seconds);
    pipeTimes.push(b.seconds);
    plainCpu.push(a.cpuSeconds);
    pipeCpu.push(b.cpuSeconds);
    check ??= { plain: a.result, pipe: b.result };
  }

  // Same work: the tensors agree (the loop divides by 255, the pipeline multiplies by 1/255: last-bit differences).
  let maxAbsDiff = 0;
  if (check.pipe.out.length !== check.plain.length) throw new Error(`bench: pipeline used ${check.pipe.out.length} images, the loop ${check.plain.length}`);
  const index = new Map(files.map((f, i) => [f, i]));
  check.pipe.order.forEach((file, i) => {
    const a = check.pipe.out[i];
    const b = check.plain[index.get(file)];
    for (let k = 0; k < a.length; k++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(a[k] - b[k]));
  });

  const plainS = median(plainTimes);
  const pipeS = median(pipeTimes);
  const result = {
    images: files.length,
    rounds,
    cores: availableParallelism(),
    batchSize,
    // CPU time of the whole process (all threads): the pipeline should not spend more per image.
    plainLoop: { seconds: plainS, imagesPerSecond: files.length / plainS, cpuMsPerImage: (1000 * median(plainCpu)) / files.length },
    pipeline: { seconds: pipeS, imagesPerSecond: files.length / pipeS, cpuMsPerImage: (1000 * median(pipeCpu)) / files.length },
    ratio: plainS / pipeS,
    maxAbsDiff,
  };
  log(`  plain sequential sharp loop: ${result.plainLoop.imagesPerSecond.toFixed(1)} images/s (median of ${rounds}: ${plainS.toFixed(3)} s; ${result.plainLoop.cpuMsPerImage.toFixed(1)} CPU ms/image)`);
  log(`  dataset pipeline:            ${result.pipeline.imagesPerSecond.toFixed(1)} images/s (median of ${rounds}: ${pipeS.toFixed(3)} s; ${result.pipeline.cpuMsPerImage.toFixed(1)} CPU ms/image)`);
  log(`  ratio pipeline / loop:       ${result.ratio.toFixed(2)}x   (same tensors: max |diff| ${maxAbsDiff.toExponential(1)})`);
  return result;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const fixtures = process.argv[2] ?? process.env.BENCH_FIXTURES;
  await benchPreprocess({ fixtures });
}
