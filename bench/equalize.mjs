// Cross-layer equalization (issue 14, item 4; src/onnx/equalize.ts) measured on the MobileNetV2 fixture with
// per-channel INT8 weights (what `quantize` writes): top-1 agreement with the *input* FP32 model on images/calib
// (43) and images/val (15), per algorithm, plain and with --bias-correction (weights mode), for the input model and
// its equalized copies (clip 'skip' | 'relu' | 'min', see equalize.ts). Each equalized model is calibrated again
// (its activation ranges changed) on images/calib. The equalized FP32 models themselves are compared too: their
// drift from the input model (0 for 'skip' and 'min' up to float rounding; 'relu' drops ReLU6's upper bound).
//
// BENCH_CLE_ALGOS=entropy2,minmax and BENCH_CLE_MODES=none,skip,relu,min restrict; BENCH_CLE_BC=0 skips the bias
// correction rows.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cli, root } from './cli-json.mjs';


/** Writes `<dir>/<base>.cle-<mode>.onnx` for each mode; returns the files and the transform's summaries. */
export async function writeEqualized(modelFile, dir, modes) {
  const { loadOnnxModel, writeOnnxModel } = await import(path.join(root, 'dist/onnx/model.js'));
  const { equalizeModel } = await import(path.join(root, 'dist/onnx/equalize.js'));
  const model = await loadOnnxModel(modelFile);
  const base = path.basename(modelFile).replace(/\.onnx$/, '');
  const out = {};
  for (const mode of modes) {
    const started = performance.now();
    const r = equalizeModel(model, { clip: mode, file: modelFile });
    const file = path.join(dir, `${base}.cle-${mode}.onnx`);
    await writeOnnxModel(file, r.model);
    out[mode] = { file, pairs: r.pairs.length, clipChanged: r.pairs.filter((p) => p.clipChanged).length, iterations: r.iterations, seconds: (performance.now() - started) / 1000, worstRatioBefore: Math.max(1, ...r.pairs.map((p) => p.rangeRatioBefore)) };
  }
  return out;
}

export async function benchEqualize({ fixtures, log }) {
  const algos = (process.env.BENCH_CLE_ALGOS ?? 'entropy2,entropy,minmax,percentile,mse').split(',');
  const modes = (process.env.BENCH_CLE_MODES ?? 'none,skip,relu,min').split(',');
  const withBc = process.env.BENCH_CLE_BC !== '0';
  const model = path.join(root, 'test/fixtures/models/mobilenet_v2_nsfw_224.onnx');
  const calib = path.join(fixtures, 'images/calib');
  const sets = { calib, val: path.join(fixtures, 'images/val') };
  const pre = ['--preset', 'raw01'];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'trt-calib-bench-equalize-'));
  try {
    const eq = await writeEqualized(model, dir, modes.filter((m) => m !== 'none'));
    for (const [mode, e] of Object.entries(eq)) log(`cle-${mode}: ${e.pairs} pairs (${e.clipChanged} across a changed Clip), ${e.iterations} sweeps, ${e.seconds.toFixed(1)} s; worst range ratio before ${e.worstRatioBefore.toExponential(2)}`);
    const variants = [];
    for (const mode of modes) {
      const file = mode === 'none' ? model : eq[mode].file;
      const base = path.basename(file).replace(/\.onnx$/, '');
      if (mode !== 'none') variants.push(file); // the equalized FP32 model: its drift from the input model
      cli(['--model', file, '--data', calib, ...pre, '--algo', algos.join(','), '--trt-version', '10.3.0', '--out-dir', dir]);
      for (const algo of algos) {
        const cache = path.join(dir, `${base}.${algo}.cache`);
        const tag = mode === 'none' ? algo : `${algo}.cle-${mode}`;
        const plain = path.join(dir, `${tag}.int8.onnx`);
        cli(['quantize', '--model', file, '--cache', cache, '--out', plain]);
        variants.push(plain);
        if (withBc) {
          const bc = path.join(dir, `${tag}+bc.int8.onnx`);
          cli(['quantize', '--model', file, '--cache', cache, '--data', calib, ...pre, '--bias-correction', '--out', bc]);
          variants.push(bc);
        }
      }
    }
    const table = {};
    for (const [set, data] of Object.entries(sets)) {
      const r = cli(['compare', '--model', model, '--data', data, ...pre, '--precisions', 'fp32', '--variant-model', variants.join(','), '--no-layers', '--report-dir', path.join(dir, `r-${set}`)]);
      for (const v of r.json.variants.filter((x) => x.modelFile)) {
        const name = path.basename(v.modelFile).replace(/\.onnx$/, '');
        (table[name] ??= {})[set] = { agree: `${Math.round(v.agreement * v.images)}/${v.images}`, cosine: v.cosineMean };
      }
    }
    log('variant                          calib   (cos)    val    (cos)');
    for (const [name, row] of Object.entries(table)) log(`${name.padEnd(32)} ${row.calib.agree.padEnd(7)} ${row.calib.cosine.toFixed(4)}  ${row.val.agree.padEnd(6)} ${row.val.cosine.toFixed(4)}`);
    return { equalized: eq, table };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
