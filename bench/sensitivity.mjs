// Sensitivity benchmark (issue 5, issue 14 item 5): the whole `sensitivity` analysis on the MobileNetV2 fixture next to
// one plain FP32 pass over the same images (as a ratio), for the default proxy-then-measure search and for
// --exhaustive (same preparation, both charged it), the measured layers' numbers checked against --exhaustive's and
// the precision map both rankings give compared; then for each calibration algorithm the mixed-precision search
// (top-1 agreement >= 42/43 on images/calib, at most 10% of the quantizable layers out of INT8), the chosen map
// checked on images/val, and the chosen Q/DQ model written to disk, reloaded in onnxruntime-node and compared
// again through the comparison module (runComparison), which must reproduce the numbers the search reported.
//
// BENCH_SENSITIVITY_ALGOS=minmax,mse restricts the algorithms (default: all five; the first one is timed).
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(here, '..', 'dist');
const imp = (p) => import(path.join(dist, p));

async function load() {
  return {
    ...(await imp('app/calibrate.js')),
    ...(await imp('datasets/dataset.js')),
    ...(await imp('datasets/presets.js')),
    ...(await imp('backends/onnxruntime.js')),
    ...(await imp('onnx/model.js')),
    ...(await imp('precision/apply.js')),
    ...(await imp('sensitivity/analyze.js')),
    ...(await imp('sensitivity/auto.js')),
    ...(await imp('compare/run.js')),
  };
}

const PREPROCESS = { preset: 'raw01' };
/** --hardest sizes tried per algorithm (BENCH_SENSITIVITY_HARDEST=12,16). */
const HARDEST = (process.env.BENCH_SENSITIVITY_HARDEST ?? '12,16').split(',').map(Number).filter((n) => n > 0);

/** One plain FP32 pass: decode + preprocess + model outputs only, batch 8 (what sensitivity does once). */
async function plainPass(m, model, data) {
  const preprocess = m.resolvePreprocess(PREPROCESS, { name: 'input', dims: ['N', 3, 224, 224] });
  const dataset = await m.createDataset({ data, preprocess, inputName: 'input', batchSize: 8 });
  const t0 = performance.now();
  const session = await m.onnxruntimeBackend.open({ path: model });
  let images = 0;
  for await (const b of dataset.batches()) {
    await session.run({ input: { dtype: 'float32', dims: b.dims, data: b.data } });
    images += b.files.length;
  }
  await session.release();
  return { seconds: (performance.now() - t0) / 1000, images };
}

/** FP32 against a model file, through the comparison module (a path independent of the search's evaluator). */
async function compareFile(m, model, variantFile, data) {
  const preprocess = m.resolvePreprocess(PREPROCESS, { name: 'input', dims: ['N', 3, 224, 224] });
  const dataset = await m.createDataset({ data, preprocess, inputName: 'input', batchSize: 8 });
  const reference = await m.onnxruntimeBackend.open({ path: model });
  const session = await m.onnxruntimeBackend.open({ path: variantFile });
  try {
    const r = await m.runComparison({ dataset, reference, variants: [{ spec: { name: 'mixed', precision: 'int8' }, session }] });
    const v = r.variants[0];
    const o = v.outputs.find((x) => x.kind === 'classifier');
    return { agree: o.agreeCount, images: o.images, cosineMean: v.cosineMean, cosineMin: v.cosineMin };
  } finally {
    await reference.release();
    await session.release();
  }
}

export async function benchSensitivity({ fixtures, log = console.log } = {}) {
  const m = await load();
  const model = path.join(fixtures, 'models', 'mobilenet_v2_nsfw_224.onnx');
  const calib = path.join(fixtures, 'images', 'calib');
  const val = path.join(fixtures, 'images', 'val');
  const algorithms = (process.env.BENCH_SENSITIVITY_ALGOS ?? 'minmax,mse,entropy,percentile,entropy2').split(',').map((s) => s.trim()).filter(Boolean);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'trt-calib-bench-sens-'));
  const results = { algorithms: {} };
  try {
    const caches = await m.calibrate({ model, data: { data: calib, preprocess: PREPROCESS, batch: 8 }, algorithms, trtVersion: '10.3.0', outDir: tmp });
    const cacheOf = (a) => caches.caches.find((c) => c.algorithm === a).file;

    const warmPlain = await plainPass(m, model, calib); // warm-up (page cache, code loading)
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    log(`MobileNetV2, ${warmPlain.images} images (images/calib), batch 8, ${os.availableParallelism()} cores`);

    const sameMap = (a, b) => JSON.stringify([...a.map]) === JSON.stringify([...b.map]);
    // Warm-up, as the plain pass had one: the first search of the process also loads onnxruntime's library for the
    // counting pass and compiles the code paths (0.3-0.6 s that a plain pass does not pay twice either).
    {
      const warm = await m.prepareSensitivity({ model, cache: cacheOf(algorithms[0]), data: { data: calib, preprocess: PREPROCESS, batch: 8 } });
      await m.measureSensitivity(warm, {});
    }
    // The headline: the default search (first algorithm) 5 times, each from a fresh preparation and each right after
    // a plain pass of its own (this machine's speed drifts by tens of percent within a minute: interleaved, both
    // medians see the same machine), median against median; the ratio of each pair shows the spread. Every other
    // ratio below is against the same median plain pass.
    const fastRuns = [];
    const pairPlains = [];
    for (let k = 0; k < 5; k++) {
      pairPlains.push((await plainPass(m, model, calib)).seconds);
      const c = await m.prepareSensitivity({ model, cache: cacheOf(algorithms[0]), data: { data: calib, preprocess: PREPROCESS, batch: 8 } });
      const r = await m.measureSensitivity(c, {});
      fastRuns.push(c.seconds + r.seconds.measure);
    }
    const fastMedian = median(fastRuns);
    const base = median(pairPlains);
    const pairRatios = fastRuns.map((x, k) => x / pairPlains[k]).sort((a, b) => a - b);
    log(`  sensitivity (${algorithms[0]} cache, default search), 5 runs each after a plain pass (searches ${fastRuns.map((x) => x.toFixed(1)).join(', ')} s; plain passes ${pairPlains.map((x) => x.toFixed(2)).join(', ')} s):`);
    log(`    ratio to one plain FP32 pass: median ${fastMedian.toFixed(1)} s / median ${base.toFixed(2)} s = ${(fastMedian / base).toFixed(1)} plain passes (pairs ${pairRatios[0].toFixed(1)}-${pairRatios[4].toFixed(1)})`);
    results.sensitivitySeconds = fastMedian;
    results.ratio = fastMedian / base;
    results.pairRatios = pairRatios;
    results.plainSeconds = base;

    for (const [i, algorithm] of algorithms.entries()) {
      // Prepared once; each search is charged the preparation (decode + FP32 once) plus its own measuring.
      const ctx = await m.prepareSensitivity({ model, cache: cacheOf(algorithm), data: { data: calib, preprocess: PREPROCESS, batch: 8 } });
      // Each timed search measures the inputs' noise itself (in the proxy pass, or the FP32 noise pass for
      // --exhaustive), as a fresh run would: the context would otherwise keep the first one's.
      const fresh = () => (ctx.inputNoise.measured = false);
      fresh();
      const report = await m.measureSensitivity(ctx, {});
      fresh();
      const exhaustive = await m.measureSensitivity(ctx, { exhaustive: true });
      const fastSeconds = ctx.seconds + report.seconds.measure;
      const exhaustiveSeconds = ctx.seconds + exhaustive.seconds.measure;
      const layers = report.quantizableLayers;
      const s = report.search;
      const fastLine = `fast (proxy then measure: proxy pass ${s.proxySeconds.toFixed(1)} s, ${s.measured.length} of ${layers} layers measured, ${report.variants} variants, ${report.cuts?.cut ?? 0} from their cut): ` +
        `${fastSeconds.toFixed(1)} s = ${(fastSeconds / base).toFixed(1)} plain passes`;
      const exhLine = `--exhaustive (${exhaustive.variants} variants, ${exhaustive.cuts?.cut ?? 0} from their cut in ${exhaustive.cuts?.fp32Passes ?? 0} FP32 runs): ${exhaustiveSeconds.toFixed(1)} s = ${(exhaustiveSeconds / base).toFixed(1)} plain passes` +
        ` (decode + FP32 once ${ctx.seconds.toFixed(1)} s in both)`;
      if (i === 0) {
        results.exhaustiveSeconds = exhaustiveSeconds;
        results.exhaustiveRatio = exhaustiveSeconds / base;
      }
      // The measured layers' numbers must be the exhaustive search's, and the ranking's head the same.
      const byName = new Map(exhaustive.layers.map((l) => [l.name, l]));
      // Bit for bit, or within float32 rounding: a cut variant's FP32 activations come from a session exposing its
      // group's cut tensors, and onnxruntime fuses differently around them (src/sensitivity/cut.ts).
      const measuredRows = report.layers.filter((l) => l.rankedBy === 'measured');
      const measuredSame = measuredRows.every((l) => JSON.stringify(l.oneAtATime) === JSON.stringify(byName.get(l.name).oneAtATime));
      const measuredClose = measuredRows.every((l) => {
        const a = l.oneAtATime, b = byName.get(l.name).oneAtATime;
        return a.agreeCount === b.agreeCount && Math.abs(a.cosineMean - b.cosineMean) < 1e-7 && Math.abs(a.cosineMin - b.cosineMin) < 1e-7 && Math.abs(l.outputSnrDb - byName.get(l.name).outputSnrDb) < 1e-3;
      });
      const maxCosDiff = Math.max(0, ...measuredRows.map((l) => Math.abs(l.oneAtATime.cosineMean - byName.get(l.name).oneAtATime.cosineMean)));
      let head = 0;
      while (head < layers && report.layers[head].name === exhaustive.layers[head].name) head++;
      log(`\n  ${algorithm}: full INT8 ${report.fullInt8.agreeCount}/${report.fullInt8.images}, mean cosine ${report.fullInt8.cosineMean.toFixed(5)}, worst ${report.fullInt8.cosineMin.toFixed(4)}`);
      log(`    ${fastLine}; ${exhLine}`);
      log(`    measured layers' numbers equal --exhaustive's: ${measuredSame ? 'yes, bit for bit' : measuredClose ? `yes, within float32 rounding (mean cosine within ${maxCosDiff.toExponential(1)})` : 'NO'}; same ranking for the first ${head} layers;` +
        ` proxy vs measured order: Kendall tau ${s.kendallTau.toFixed(2)}, ${s.disagreements.length} of ${s.measured.length} measured layers placed differently`);
      log('    most sensitive (fast search; exhaustive rank in brackets, proxy rank = by own output SNR):');
      const proxyRank = new Map([...report.layers].sort((a, b) => a.outputSnrDb - b.outputSnrDb || (a.name < b.name ? -1 : 1)).map((l, k) => [l.name, k + 1]));
      for (const l of report.layers.slice(0, 8)) {
        const e = byName.get(l.name);
        log(`    ${String(l.rank).padStart(2)} [${String(e.rank).padStart(2)}] ${l.name.padEnd(28)} ${l.rankedBy === 'measured' ? `alone ${l.oneAtATime.agreeCount}/${l.oneAtATime.images} cos ${l.oneAtATime.cosineMean.toFixed(5)}` : '(proxy-ranked)'}` +
          `  SNR in ${l.inputSnrDb.toFixed(1)} dB, w ${l.weightSnrDb?.toFixed(1) ?? '-'} dB, out ${l.outputSnrDb?.toFixed(1)} dB (proxy rank ${proxyRank.get(l.name)})`);
      }
      const exhMixed = (await m.autoMixedPrecision(ctx, { maxDrop: 2.33, maxNonInt8: '10%', sensitivity: exhaustive })).mixed;
      // --hardest N: the candidates measured on the N images where full INT8 is furthest from FP32.
      for (const n of HARDEST) {
        fresh();
        const hard = await m.measureSensitivity(ctx, { hardest: n });
        const hardMixed = (await m.autoMixedPrecision(ctx, { maxDrop: 2.33, maxNonInt8: '10%', sensitivity: hard })).mixed;
        const seconds = ctx.seconds + hard.seconds.measure;
        const same = sameMap(hardMixed, exhMixed);
        log(`    --hardest ${n}: ${seconds.toFixed(1)} s = ${(seconds / base).toFixed(1)} plain passes; --exhaustive's precision map: ${same ? 'the same' : `NOT the same (${hardMixed.chosen.keptOut.map((k) => k.layer).join(', ') || 'none'}, ${hardMixed.met ? 'met' : 'not met'})`}`);
        (results.hardest ??= {})[`${algorithm}-${n}`] = { seconds, ratio: seconds / base, sameMapAsExhaustive: same, met: hardMixed.met };
      }

      const mapFile = path.join(tmp, `${algorithm}.precision.json`);
      const { mixed } = await m.autoMixedPrecision(ctx, { maxDrop: 2.33, maxNonInt8: '10%', sensitivity: report, out: mapFile });
      const c = mixed.chosen;
      const row = {
        fastSeconds,
        exhaustiveSeconds,
        measured: s.measured.length,
        measuredSame: measuredSame || measuredClose,
        sameHead: head,
        kendallTau: s.kendallTau,
        sameMapAsExhaustive: sameMap(mixed, exhMixed),
        exhaustiveKeptOut: exhMixed.chosen.keptOut,
        fullInt8: report.fullInt8.agreeCount,
        met: mixed.met,
        keptOut: c.keptOut,
        int8Layers: c.int8Layers,
        layers,
        calibAgree: Math.round(c.agreement * warmPlain.images),
        calibCosine: c.meanCosine,
        evaluations: mixed.evaluations,
        searchSeconds: mixed.seconds,
      };
      // The chosen model, written to disk and reloaded: calib again (must equal the search's numbers) and val.
      const built = m.buildMixedPrecisionModel(ctx.model, { activationScales: ctx.scales, precisionMap: mixed.map });
      const file = path.join(tmp, `${algorithm}.mixed.onnx`);
      await m.writeOnnxModel(file, built.model);
      const again = await compareFile(m, model, file, calib);
      const onVal = await compareFile(m, model, file, val);
      row.reloadCalibAgree = again.agree;
      row.reproduced = again.agree === row.calibAgree && again.cosineMean === c.meanCosine && again.cosineMin === c.worstCosine;
      row.valAgree = onVal.agree;
      row.valImages = onVal.images;
      row.valCosine = onVal.cosineMean;
      results.algorithms[algorithm] = row;
      const list = c.keptOut.map((k) => `${k.layer} (${k.precision})`).join(', ') || 'none';
      log(`    search (${mixed.evaluations} models, ${mixed.seconds.toFixed(1)} s): ${mixed.met ? 'met' : 'NOT met'}; kept out of INT8: ${c.keptOut.length} of ${layers}` +
        ` (${((100 * c.keptOut.length) / layers).toFixed(1)}%; ${layers - c.int8Layers} without Q/DQ): ${list}`);
      log(`    calib ${row.calibAgree}/${warmPlain.images} (cos ${c.meanCosine.toFixed(5)}), val ${onVal.agree}/${onVal.images} (cos ${onVal.cosineMean.toFixed(5)});` +
        ` reloaded from disk: calib ${again.agree}/${again.images}, same numbers: ${row.reproduced ? 'yes' : 'NO'}`);
      if (!mixed.met) log(`    why: ${mixed.reason}`);
      log(`    --exhaustive's ranking gives ${row.sameMapAsExhaustive ? 'the same precision map' : `ANOTHER map: ${exhMixed.chosen.keptOut.map((k) => k.layer).join(', ') || 'none'} (${exhMixed.met ? 'met' : 'not met'}, ${Math.round(exhMixed.chosen.agreement * warmPlain.images)}/${warmPlain.images})`}`);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return results;
}
