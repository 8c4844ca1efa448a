#!/usr/bin/env node
// `npm run bench`: every benchmark in one run, on the real fixtures in ../shared/fixtures (or BENCH_FIXTURES).
// Benchmarks never run inside the tests.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = process.env.BENCH_FIXTURES ?? path.resolve(here, '..', '..', 'shared', 'fixtures');
if (!existsSync(fixtures)) {
  console.error(`bench: fixtures not found at ${fixtures}; set BENCH_FIXTURES to the fixtures folder.`);
  process.exit(1);
}
const only = process.argv.slice(2);
const suites = [
  ['preprocess', './preprocess.mjs', 'benchPreprocess'],
  ['stats', './stats.mjs', 'benchStats'],
  ['calibrate', './calibrate.mjs', 'benchCalibrate'],
  ['sensitivity', './sensitivity.mjs', 'benchSensitivity'],
  ['detect', './detect.mjs', 'benchDetect'],
  ['compare-task', './compare-task.mjs', 'benchCompareTask'],
  ['shard', './shard.mjs', 'benchShard'],
  ['shard-compare', './shard-compare.mjs', 'benchShardCompare'],
  ['bias', './bias.mjs', 'benchBias'],
  ['pool-qdq', './pool-qdq.mjs', 'benchPoolQdq'],
  ['methods-detect', './methods-detect.mjs', 'benchMethodsDetect'],
  ['equalize', './equalize.mjs', 'benchEqualize'],
];
const results = {};
for (const [name, file, fn] of suites) {
  if (only.length > 0 && !only.includes(name)) continue;
  if (!existsSync(path.join(here, file))) continue;
  const mod = await import(file);
  console.log(`\n== ${name}`);
  results[name] = await mod[fn]({ fixtures, log: (line) => console.log(line) });
}
if (process.env.BENCH_JSON) {
  const { writeFileSync } = await import('node:fs');
  writeFileSync(process.env.BENCH_JSON, JSON.stringify(results, null, 2));
}
