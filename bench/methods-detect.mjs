// Issue 14's methods on the detectors: SSDlite MobileNetV2 (mAP@[.5:.95] against FP32's detections on
// images/street) and PP-OCR det (IoU of the probability map at 0.3 against FP32, images/street at 576x768), each
// calibrated on images/calib; per algorithm: plain, --weight-search, --bias-correction (weights), both.
// Everything through the built CLI. BENCH_DETECT_MODELS=ssd,ppocr and BENCH_DETECT_ALGOS=entropy2,minmax restrict.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const bin = path.join(root, 'bin', 'trt-calib.js');

function cli(args) {
  const started = performance.now();
  const out = execFileSync(process.execPath, [bin, ...args, '--json'], { cwd: root, maxBuffer: 256 * 2 ** 20, stdio: ['ignore', 'pipe', 'ignore'] });
  return { json: JSON.parse(out.toString()), seconds: (performance.now() - started) / 1000 };
}

const MODELS = {
  ssd: {
    file: 'ssdlite_mobilenet_v2_coco_300.onnx',
    pre: ['--preset', 'raw01', '--size', '300', '--scale', '2/255', '--mean', '1,1,1', '--std', '1,1,1'],
    task: ['--boxes', 'boxes:yxyx:norm', '--scores', 'scores', '--class-offset', '1'],
  },
  ppocr: {
    file: 'ppocr_v4_det.onnx',
    pre: ['--preset', 'paddleocr-det', '--shapes', 'x:1x3x576x768'],
    task: [],
  },
};

export async function benchMethodsDetect({ fixtures, log }) {
  const models = (process.env.BENCH_DETECT_MODELS ?? 'ssd,ppocr').split(',');
  const algos = (process.env.BENCH_DETECT_ALGOS ?? 'entropy2,minmax').split(',');
  const calib = path.join(fixtures, 'images/calib');
  const street = path.join(fixtures, 'images/street');
  const results = {};
  for (const key of models) {
    const m = MODELS[key];
    const model = path.join(fixtures, 'models', m.file);
    const base = m.file.replace(/\.onnx$/, '');
    const dir = mkdtempSync(path.join(os.tmpdir(), `trt-calib-bench-methods-${key}-`));
    try {
      cli(['--model', model, '--data', calib, ...m.pre, '--algo', algos.join(','), '--trt-version', '10.3.0', '--out-dir', dir]);
      const variants = [];
      const times = {};
      for (const algo of algos) {
        const cache = path.join(dir, `${base}.${algo}.cache`);
        const q = (name, extra) => {
          const out = path.join(dir, `${algo}${name}.int8.onnx`);
          const r = cli(['quantize', '--model', model, '--cache', cache, ...(extra.length > 0 ? ['--data', calib, ...m.pre, ...extra] : []), '--out', out]);
          variants.push(out);
          return r;
        };
        q('', []);
        const ws = q('.ws', ['--weight-search']);
        const bc = q('.bc', ['--bias-correction']);
        q('.ws+bc', ['--weight-search', '--bias-correction']);
        times[algo] = { weightSearch: ws.json.weightSearch.seconds, biasCorrection: bc.json.biasCorrection.seconds };
      }
      const fp32 = cli(['compare', '--model', model, '--data', street, ...m.pre, ...m.task, '--precisions', 'fp32', '--no-layers', '--report-dir', path.join(dir, 'r0')]);
      const r = cli(['compare', '--model', model, '--data', street, ...m.pre, ...m.task, '--precisions', 'fp32', '--variant-model', variants.join(','), '--no-layers', '--report-dir', path.join(dir, 'r')]);
      const rows = {};
      for (const v of r.json.variants.filter((x) => x.name !== 'fp32')) {
        const name = path.basename(v.modelFile ?? v.name).replace(/\.int8\.onnx$/, '');
        const t = v.task ?? {};
        rows[name] = { metric: t.metric ?? 'agreement', value: t.value ?? v.agreement, cosineMean: v.cosineMean };
      }
      log(`${key}: one FP32 pass over images/street (compare, fp32 only) ${fp32.seconds.toFixed(1)} s`);
      for (const [name, row] of Object.entries(rows)) log(`  ${name.padEnd(20)} ${String(row.metric).padEnd(12)} ${typeof row.value === 'number' ? row.value.toFixed(4) : JSON.stringify(row.value)}  cos ${row.cosineMean.toFixed(4)}`);
      for (const [algo, t] of Object.entries(times)) log(`  ${algo}: weight search ${t.weightSearch.toFixed(1)} s, bias correction ${t.biasCorrection.toFixed(1)} s`);
      results[key] = { rows, times, fp32PassSeconds: fp32.seconds };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return results;
}
