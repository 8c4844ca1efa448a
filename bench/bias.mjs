// Bias correction (issue 14): MobileNetV2 fixture, full INT8 (no layer kept out), top-1 agreement with FP32 on
// test/fixtures/images, images/calib (43) and images/val (15), per algorithm, without and with --bias-correction
// (both modes),
// scales and shifts from images/calib; and the time of each method next to one plain FP32 pass over images/calib.
// Everything goes through the built CLI (calibrate, quantize, compare --variant-model), as a user would run it.
//
// BENCH_BIAS_ALGOS=minmax,auto restricts the algorithms (default: the five and auto).
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cli, root } from './cli-json.mjs';

const model = path.join(root, 'test/fixtures/models/mobilenet_v2_nsfw_224.onnx');

export async function benchBias({ fixtures, log }) {
  const algos = (process.env.BENCH_BIAS_ALGOS ?? 'entropy2,entropy,minmax,percentile,mse,auto').split(',');
  const calib = path.join(fixtures, 'images/calib');
  const sets = { fixtures: path.join(root, 'test/fixtures/images'), calib, val: path.join(fixtures, 'images/val') };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'trt-calib-bench-bias-'));
  try {
    const pre = ['--preset', 'raw01'];
    const plainAlgos = algos.filter((a) => a !== 'auto');
    if (plainAlgos.length > 0) cli(['--model', model, '--data', calib, ...pre, '--algo', plainAlgos.join(','), '--trt-version', '10.3.0', '--out-dir', dir]);
    // auto: the five algorithms' statistics pass plus its probe pass (timed alone in `auto.seconds`).
    const auto = algos.includes('auto') ? cli(['--model', model, '--data', calib, ...pre, '--algo', 'auto', '--trt-version', '10.3.0', '--out-dir', dir]) : undefined;
    const fp32 = cli(['compare', '--model', model, '--data', calib, ...pre, '--precisions', 'fp32', '--no-layers', '--report-dir', path.join(dir, 'r0')]);
    const variants = [];
    const times = {};
    for (const algo of algos) {
      const cache = path.join(dir, `mobilenet_v2_nsfw_224.${algo}.cache`);
      const plain = path.join(dir, `${algo}.int8.onnx`);
      const bc = path.join(dir, `${algo}.bc-full.int8.onnx`);
      const bcw = path.join(dir, `${algo}.bc-weights.int8.onnx`);
      const q0 = cli(['quantize', '--model', model, '--cache', cache, '--out', plain]);
      const q1 = cli(['quantize', '--model', model, '--cache', cache, '--data', calib, ...pre, '--bias-correction', '--bias-correction-mode', 'full', '--out', bc]);
      const q2 = cli(['quantize', '--model', model, '--cache', cache, '--data', calib, ...pre, '--bias-correction', '--bias-correction-mode', 'weights', '--out', bcw]);
      // Weight search alone, and with the weights-mode bias correction measured on the searched weights.
      const ws = path.join(dir, `${algo}.ws.int8.onnx`);
      const wsbc = path.join(dir, `${algo}.ws+bc-weights.int8.onnx`);
      const wsbcf = path.join(dir, `${algo}.ws+bc-full.int8.onnx`);
      const q3 = cli(['quantize', '--model', model, '--cache', cache, '--data', calib, ...pre, '--weight-search', '--out', ws]);
      const q4 = cli(['quantize', '--model', model, '--cache', cache, '--data', calib, ...pre, '--weight-search', '--bias-correction', '--bias-correction-mode', 'weights', '--out', wsbc]);
      const q5 = cli(['quantize', '--model', model, '--cache', cache, '--data', calib, ...pre, '--weight-search', '--bias-correction', '--bias-correction-mode', 'full', '--out', wsbcf]);
      times[algo] = { quantize: q0.seconds, biasCorrectionFull: q1.json.biasCorrection.seconds, biasCorrectionWeights: q2.json.biasCorrection.seconds, weightSearch: q3.json.weightSearch.seconds, ...(algo === 'auto' ? { autoProbe: auto.json.auto.seconds } : {}) };
      void q4;
      void q5;
      variants.push(plain, bc, bcw, ws, wsbc, wsbcf);
    }
    const table = {};
    for (const [set, data] of Object.entries(sets)) {
      const r = cli(['compare', '--model', model, '--data', data, ...pre, '--precisions', 'fp32,int8', '--variant-model', variants.join(','), '--no-layers', '--report-dir', path.join(dir, `r-${set}`)]);
      for (const v of r.json.variants.filter((x) => x.precision === 'int8')) {
        const name = path.basename(v.modelFile).replace(/\.int8\.onnx$/, '');
        (table[name] ??= {})[set] = `${Math.round(v.agreement * v.images)}/${v.images}`;
      }
    }
    log(`one FP32 pass over images/calib (compare, fp32 only): ${fp32.seconds.toFixed(1)} s`);
    if (auto) log(`auto: probe pass ${auto.json.auto.seconds.toFixed(1)} s; choices ${JSON.stringify(auto.json.auto.chosen)}`);
    log('variant                    fixtures  calib  val    method time (s)');
    for (const [name, row] of Object.entries(table)) {
      const [algo, mode] = name.split('.');
      const t = mode === 'bc-full' ? times[algo].biasCorrectionFull : mode === 'bc-weights' ? times[algo].biasCorrectionWeights : mode === 'ws' ? times[algo].weightSearch : undefined;
      log(`${name.padEnd(26)} ${row.fixtures.padEnd(9)} ${row.calib.padEnd(6)} ${row.val.padEnd(6)} ${t === undefined ? '-' : t.toFixed(1)}`);
    }
    return { fp32PassSeconds: fp32.seconds, table, times };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
