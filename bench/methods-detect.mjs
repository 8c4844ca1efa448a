// Issue 14's methods on the detectors, each calibrated on images/calib; per algorithm: plain, --weight-search,
// --bias-correction (weights), both, and cross-layer equalization (src/onnx/equalize.ts: the equalized FP32 model
// calibrated again, alone and with bias correction), every variant against the *input* FP32 model:
// - SSDlite MobileNetV2: mAP@[.5:.95] against FP32's detections on images/street (20 frames);
// - PP-OCR det (576x768): the text map's IoU at 0.3 against FP32 (`compare`'s segment task, pooled over images)
//   and the mean per-image cosine of the maps, on the photos of images/calib and images/val where FP32 finds text:
//   at least TEXT_FRACTION of the map's pixels at or above 0.3 (the street frames have none: FP32's map stays
//   below 0.3 on all of them, so an IoU there only says whether INT8's map is empty too). Reported on all such
//   photos and on those of images/val alone (never used to fit a scale, a weight or a bias).
// Everything through the built CLI. BENCH_DETECT_MODELS=ssd,ppocr, BENCH_DETECT_ALGOS=entropy2,minmax and
// BENCH_DETECT_CLE=skip,min (equalize.ts's clip modes; none to leave CLE out) restrict; BENCH_DETECT_WS=0 leaves out the
// weight search rows (on PP-OCR at 576x768 it and auto's probe pass take many minutes on a loaded 2-core machine).
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cli, root } from './cli-json.mjs';
import { writeEqualized } from './equalize.mjs';


/** Fraction of PP-OCR's map at or above 0.3 from which a photo counts as one with text (0.1%: 17 of 58 photos). */
const TEXT_FRACTION = 0.001;

const MODELS = {
  ssd: {
    file: 'ssdlite_mobilenet_v2_coco_300.onnx',
    pre: ['--preset', 'raw01', '--size', '300', '--scale', '2/255', '--mean', '1,1,1', '--std', '1,1,1'],
    task: ['--boxes', 'boxes:yxyx:norm', '--scores', 'scores', '--class-offset', '1'],
    algos: 'entropy2,minmax',
  },
  ppocr: {
    file: 'ppocr_v4_det.onnx',
    pre: ['--preset', 'paddleocr-det', '--shapes', 'x:1x3x576x768'],
    task: ['--task', 'segment'],
    algos: 'entropy2,minmax,auto',
  },
};

/** Copies the photos of images/calib and images/val on which FP32 PP-OCR marks text into `<dir>/{calib,val}`. */
async function textPhotos(fixtures, modelFile, dir) {
  const { createDataset, resolvePreprocess } = await import(path.join(root, 'dist/api.js'));
  const { onnxruntimeBackend } = await import(path.join(root, 'dist/backends/onnxruntime.js'));
  const preprocess = resolvePreprocess({ preset: 'paddleocr-det', shapes: 'x:1x3x576x768' }, { name: 'x', dims: [-1, 3, -1, -1] });
  const session = await onnxruntimeBackend.open({ path: modelFile, bytes: readFileSync(modelFile) }, { threads: 2 });
  const chosen = { calib: [], val: [] };
  try {
    for (const set of ['calib', 'val']) {
      const dataset = await createDataset({ data: path.join(fixtures, 'images', set), preprocess, inputName: 'x' });
      for await (const b of dataset.batches()) {
        const map = (await session.run({ x: { dtype: 'float32', dims: b.dims, data: b.data } }, ['sigmoid_0.tmp_0']))['sigmoid_0.tmp_0'].data;
        let text = 0;
        for (const v of map) if (v >= 0.3) text++;
        if (text / map.length >= TEXT_FRACTION) chosen[set].push({ file: b.files[0], fraction: text / map.length });
      }
      mkdirSync(path.join(dir, set), { recursive: true });
      for (const c of chosen[set]) copyFileSync(c.file, path.join(dir, set, path.basename(c.file)));
    }
  } finally {
    await session.release();
  }
  return chosen;
}

export async function benchMethodsDetect({ fixtures, log }) {
  const models = (process.env.BENCH_DETECT_MODELS ?? 'ssd,ppocr').split(',');
  const cleModes = (process.env.BENCH_DETECT_CLE ?? 'skip,min').split(',').filter((m) => m !== 'none');
  const calib = path.join(fixtures, 'images/calib');
  const results = {};
  for (const key of models) {
    const m = MODELS[key];
    const algos = (process.env.BENCH_DETECT_ALGOS ?? m.algos).split(',');
    const model = path.join(fixtures, 'models', m.file);
    const base = m.file.replace(/\.onnx$/, '');
    const dir = mkdtempSync(path.join(os.tmpdir(), `trt-calib-bench-methods-${key}-`));
    try {
      let sets = { street: path.join(fixtures, 'images/street') };
      if (key === 'ppocr') {
        const text = await textPhotos(fixtures, model, path.join(dir, 'text'));
        log(`ppocr: photos with text (FP32 map >= 0.3 on >= ${TEXT_FRACTION * 100}% of pixels): ${text.calib.length} of images/calib, ${text.val.length} of images/val`);
        for (const [set, list] of Object.entries(text)) log(`  ${set}: ${list.map((c) => `${path.basename(c.file)} ${(c.fraction * 100).toFixed(2)}%`).join(', ')}`);
        sets = { text: path.join(dir, 'text'), 'text-val': path.join(dir, 'text/val') };
      }
      const variants = [];
      const times = {};
      const quantizeAll = (file, fileBase, suffix, methods) => {
        // auto runs its own statistics pass plus a probe pass: it cannot be listed with the others.
        const plain = algos.filter((a) => a !== 'auto');
        if (plain.length > 0) cli(['--model', file, '--data', calib, ...m.pre, '--algo', plain.join(','), '--trt-version', '10.3.0', '--out-dir', dir]);
        if (algos.includes('auto')) cli(['--model', file, '--data', calib, ...m.pre, '--algo', 'auto', '--trt-version', '10.3.0', '--out-dir', dir]);
        for (const algo of algos) {
          const cache = path.join(dir, `${fileBase}.${algo}.cache`);
          for (const [name, extra] of methods) {
            const out = path.join(dir, `${algo}${suffix}${name}.int8.onnx`);
            const r = cli(['quantize', '--model', file, '--cache', cache, ...(extra.length > 0 ? ['--data', calib, ...m.pre, ...extra] : []), '--out', out]);
            variants.push(out);
            const t = (times[`${algo}${suffix}`] ??= {});
            if (r.json.weightSearch && !r.json.biasCorrection) t.weightSearch = r.json.weightSearch.seconds;
            if (r.json.biasCorrection && !r.json.weightSearch) t.biasCorrection = r.json.biasCorrection.seconds;
          }
        }
      };
      const withWs = process.env.BENCH_DETECT_WS !== '0';
      quantizeAll(model, base, '', [['', []], ['.bc', ['--bias-correction']], ...(withWs ? [['.ws', ['--weight-search']], ['.ws+bc', ['--weight-search', '--bias-correction']]] : [])]);
      const equalized = cleModes.length > 0 ? await writeEqualized(model, dir, cleModes) : {};
      for (const [mode, e] of Object.entries(equalized)) {
        // A model without Clip pairs gives the same equalized model in every mode: measure it once.
        if (mode !== 'skip' && e.clipChanged === 0 && equalized.skip) continue;
        log(`${key}: cle-${mode} ${e.pairs} pairs (${e.clipChanged} across a changed Clip), ${e.iterations} sweeps, ${e.seconds.toFixed(1)} s`);
        variants.push(e.file);
        quantizeAll(e.file, path.basename(e.file).replace(/\.onnx$/, ''), `.cle-${mode}`, [['', []], ['.bc', ['--bias-correction']]]);
      }
      const rows = {};
      for (const [set, data] of Object.entries(sets)) {
        const r = cli(['compare', '--model', model, '--data', data, ...m.pre, ...m.task, '--precisions', 'fp32', '--variant-model', variants.join(','), '--no-layers', '--report-dir', path.join(dir, `r-${set}`)]);
        for (const v of r.json.variants.filter((x) => x.name !== 'fp32')) {
          const name = path.basename(v.modelFile ?? v.name).replace(/(\.int8)?\.onnx$/, '');
          const t = v.task ?? {};
          (rows[name] ??= {})[set] = { metric: t.metric ?? 'agreement', value: t.value ?? v.agreement, cosineMean: v.cosineMean, images: v.images };
        }
      }
      for (const [set] of Object.entries(sets)) {
        log(`${key} on ${set}:`);
        for (const [name, row] of Object.entries(rows)) {
          const x = row[set];
          log(`  ${name.padEnd(44)} ${String(x.metric).padEnd(12)} ${typeof x.value === 'number' ? x.value.toFixed(4) : JSON.stringify(x.value)}  cos ${x.cosineMean.toFixed(4)}  (${x.images} images)`);
        }
      }
      for (const [algo, t] of Object.entries(times)) log(`  ${algo}: weight search ${t.weightSearch?.toFixed(1) ?? '-'} s, bias correction ${t.biasCorrection?.toFixed(1) ?? '-'} s`);
      results[key] = { rows, times, equalized };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return results;
}
