// Q/DQ around pooling and Resize (src/onnx/qdq.ts rule 6, issue 15): is it worth adopting? Each fixture is
// calibrated (minmax, as the INT8 + FP16 measurements in docs/quantization.md; BENCH_ALGO to change) on a folder, the Q/DQ model is written twice (today's
// placement, and with `pooling: true`, the rest float32 in both), and both go through `trt-calib compare
// --variant-model` on the same folder: top-1 agreement and mean cosine for MobileNetV2, IoU of the text maps at
// 0.3 and mean cosine for PP-OCR det. Also counted: Q and DQ nodes, the pooling/Resize ops that get Q/DQ, and
// how many of those Qs a float layer shares the input with (a separate quantize layer in TensorRT).
// Usage: node bench/pool-qdq.mjs (or `npm run bench -- pool-qdq`), after `npx tsc`; ~1 minute.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const dist = path.join(root, 'dist');
const cli = path.join(root, 'bin', 'trt-calib.js');
const imp = (p) => import(path.join(dist, p));

const MODELS = [
  { file: 'mobilenet_v2_nsfw_224.onnx', flags: ['--preset', 'raw01'] },
  { file: 'ppocr_v4_det.onnx', flags: ['--preset', 'paddleocr-det', '--shapes', 'x:1x3x320x320'] },
];

const ALGO = process.env.BENCH_ALGO ?? 'minmax';
// BENCH_HP=1: the rest in FP16 as `--high-precision fp16` writes it (emulated on the CPU: float16 between every op).
const HIGH_PRECISION = process.env.BENCH_HP === '1' ? { highPrecision: { emulateOnCpu: true } } : {};
const run = (args) => execFileSync(process.execPath, [cli, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });

export async function benchPoolQdq({ fixtures, log, folders }) {
  const { loadOnnxModel, saveOnnxModel, graphOf } = await imp('onnx/model.js');
  const { parseCalibrationCache } = await imp('cache/trt-cache.js');
  const { buildMixedPrecisionModel } = await imp('precision/apply.js');
  const sets = folders ?? [
    ['images', path.join(root, 'test', 'fixtures', 'images')],
    ['street', path.join(fixtures, 'images', 'street')],
  ];
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'trt-calib-bench-pool-'));
  const results = [];
  try {
    for (const [setName, data] of sets) {
      for (const { file, flags } of MODELS) {
        const modelFile = path.join(root, 'test', 'fixtures', 'models', file);
        const dir = path.join(tmp, `${setName}-${file}`);
        run(['--model', modelFile, '--data', data, ...flags, '--algo', ALGO, '--trt-version', '10.3.0', '--threads', '2', '--out-dir', dir, '--quiet']);
        const base = file.replace(/\.onnx$/, '');
        const cache = parseCalibrationCache(readFileSync(path.join(dir, `${base}.${ALGO}.cache`)));
        const activationScales = new Map(cache.entries.map((e) => [e.name, e.scale]));
        const model = await loadOnnxModel(modelFile);
        const written = {};
        for (const pooling of [false, true]) {
          const r = buildMixedPrecisionModel(model, { activationScales, pooling, file: modelFile, ...HIGH_PRECISION });
          const out = path.join(dir, `${base}.${pooling ? 'pooling' : 'default'}.int8.onnx`);
          writeFileSync(out, saveOnnxModel(r.model));
          const nodes = graphOf(r.model).node;
          // A quantized pooling input that a float layer reads too: its producer must write float, so TensorRT
          // cannot fuse the Q into it and runs the Q as a layer of its own.
          const pooled = new Set(r.qdq.poolingNodes);
          const qdqNodes = graphOf(r.qdq.model).node; // before any FP16 cast, where the names are the Q/DQ pass's
          const standaloneQ = qdqNodes
            .filter((n) => pooled.has(n.name))
            .map((n) => r.qdq.quantizedTensors.find((t) => r.qdq.dequantized.get(t) === n.input[0]))
            .filter((t) => qdqNodes.some((n) => n.opType !== 'QuantizeLinear' && n.input.includes(t))).length;
          written[pooling ? 'pooling' : 'default'] = {
            out,
            q: nodes.filter((n) => n.opType === 'QuantizeLinear').length,
            dq: nodes.filter((n) => n.opType === 'DequantizeLinear').length,
            int8Pooling: r.qdq.poolingNodes.length,
            int8PoolingNodes: r.qdq.poolingNodes,
            standaloneQ,
            poolingOps: nodes.filter((n) => ['MaxPool', 'AveragePool', 'GlobalAveragePool', 'Resize'].includes(n.opType)).length,
          };
        }
        const report = JSON.parse(
          run(['compare', '--model', modelFile, '--data', data, ...flags, '--precisions', 'fp32', '--variant-model', `${written.default.out},${written.pooling.out}`, '--no-layers', '--threads', '2', '--out-dir', dir, '--json']),
        );
        for (const key of ['default', 'pooling']) {
          const v = report.variants.find((x) => x.name !== 'fp32' && x.name.includes(key));
          const row = { set: setName, model: base, placement: key, ...written[key], out: undefined, agreement: v.agreement, cosineMean: v.cosineMean };
          results.push(row);
          if (key === 'pooling') log(`  INT8 with pooling: ${row.int8PoolingNodes.join(' ')}`);
          log(`${setName.padEnd(7)} ${base.padEnd(24)} ${key.padEnd(8)} Q ${row.q} DQ ${row.dq} pooling/Resize in INT8 ${row.int8Pooling}/${row.poolingOps} (Q not fusable into its producer: ${row.standaloneQ})  agreement ${v.agreement?.toFixed(4)}  mean cosine ${v.cosineMean.toFixed(5)}`);
        }
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return results;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const fixtures = process.env.BENCH_FIXTURES ?? path.resolve(root, '..', '..', 'shared', 'fixtures');
  await benchPoolQdq({ fixtures, log: (line) => console.log(line) });
}
