#!/usr/bin/env node
/**
 * `npm install` / `npm run build:native`: builds the native addon with node-gyp, keeping the compiler's log out of
 * sight unless the build fails, and says in one line what was built, plus once, when TensorRT was not found, that
 * the TensorRT bridge was skipped and how to enable it (native/find-tensorrt.js writes that line).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const verbose = process.argv.includes('--verbose') || process.env.TRT_CALIB_BUILD_VERBOSE === '1';

// npm hands its bundled node-gyp to lifecycle scripts; outside npm, use the one on PATH.
const gyp = process.env.npm_config_node_gyp;
const [cmd, args] = gyp ? [process.execPath, [gyp, 'rebuild']] : ['node-gyp', ['rebuild']];
const child = spawn(cmd, args, { cwd: here, stdio: verbose ? 'inherit' : ['ignore', 'pipe', 'pipe'], shell: !gyp && process.platform === 'win32' });
let log = '';
child.stdout?.on('data', (d) => (log += d));
child.stderr?.on('data', (d) => (log += d));
child.on('error', (err) => {
  process.stderr.write(`trt-calib: cannot run node-gyp to build the native addon: ${err.message}\n` + 'Install python3, make and a C++17 compiler, then run `npm run build:native`.\n');
  process.exit(1);
});
child.on('close', (code) => {
  if (code !== 0) {
    if (!verbose) process.stderr.write(log);
    process.stderr.write(`trt-calib: building the native addon failed (node-gyp exit ${code}); the log is above.\n`);
    process.exit(code ?? 1);
  }
  if (!verbose) {
    const ours = log.split('\n').filter((l) => l.startsWith('trt-calib:'));
    for (const line of [...new Set(ours)]) process.stderr.write(`${line}\n`);
  }
  process.stderr.write(`trt-calib: native addon built (${path.join('native', 'build', 'Release')})\n`);
});
