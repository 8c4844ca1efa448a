#!/usr/bin/env node
/**
 * The native addon's install step.
 *
 *   node native/install.js           npm's `install` script: makes sure a native addon that loads is there
 *   node native/install.js --force   `npm run build:native`, `trt-calib build-bridge`: always builds from source
 *                                    (the base addon, and the TensorRT bridge where TensorRT and CUDA are found)
 *   --verbose (or TRT_CALIB_BUILD_VERBOSE=1) shows node-gyp's whole log.
 *
 * Without --force, in this order:
 *  1. a source build (native/build/Release/trt_calib.node) newer than every file it is built from: nothing to do,
 *     and nothing printed (a second `npm install` in a clone; the first `npx trt-calib` there, which links the
 *     clone into npm's cache and runs this again);
 *  2. no source build, and the prebuilt binary for this platform (prebuilds/, from scripts/prebuild.js at pack
 *     time) loads: use it, no compiler needed; where TensorRT is found, say how to build the bridge;
 *  3. otherwise build from source with node-gyp (a clone, an edited native/src, a platform without a prebuilt
 *     binary, a prebuilt binary that does not load here), as `npm run build:native` does.
 * Everything else stays out of sight unless the build fails; each outcome is one line on stderr.
 * Before all that, native/onnxruntime-preflight.js stops the install with the one thing to do when
 * onnxruntime-node's postinstall, which runs after this script, is about to fail for want of api.nuget.org.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findNodeGyp, findNodeHeaders } from './node-gyp.js';
import { findTensorRT } from './find-tensorrt.js';
import { explainDownloadProblem, onnxruntimeDownloadProblem } from './onnxruntime-preflight.js';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(here);
const verbose = process.argv.includes('--verbose') || process.env.TRT_CALIB_BUILD_VERBOSE === '1';
const force = process.argv.includes('--force');
const sourceBuild = path.join(here, 'build', 'Release', 'trt_calib.node');

const say = (line) => process.stderr.write(`trt-calib: ${line}\n`);

/** Newest modification time of the files the addon is built from (binding.gyp, native/src). */
function newestSourceTime() {
  let newest = statSync(path.join(here, 'binding.gyp')).mtimeMs;
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  walk(path.join(here, 'src'));
  return newest;
}

/** The prebuilt binary node-gyp-build picks for this platform, if any, and whether it loads. */
function prebuilt() {
  let file;
  try {
    // The package root has no build/ folder (ours is native/build), so only prebuilds/ is searched.
    file = require('node-gyp-build').resolve(root);
  } catch {
    return undefined;
  }
  try {
    require(file);
    return { file };
  } catch (err) {
    return { file, error: err.message.split('\n')[0] };
  }
}

function buildFromSource(why) {
  const gyp = findNodeGyp();
  if (!gyp) {
    say(`${why}, and node-gyp (which comes with npm) was not found to build it from source.`);
    say('Run `npm rebuild trt-calib` (or `npm run build:native` in a clone) so that npm provides node-gyp.');
    process.exit(1);
  }
  const env = { ...process.env };
  // The running Node.js's own headers where installed: no download from nodejs.org.
  const headers = findNodeHeaders();
  if (headers) env.npm_config_nodedir = headers;
  const child = spawn(process.execPath, [gyp, 'rebuild'], { cwd: here, env, stdio: verbose ? 'inherit' : ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout?.on('data', (d) => (log += d));
  child.stderr?.on('data', (d) => (log += d));
  child.on('error', (err) => {
    say(`cannot run node-gyp to build the native addon: ${err.message}`);
    process.exit(1);
  });
  child.on('close', (code) => {
    if (code !== 0) {
      if (!verbose) process.stderr.write(log);
      say(`building the native addon failed (node-gyp exit ${code}); the log is above. ${why}.`);
      say('It needs python3, make and a C++17 compiler; `npm run build:native -- --verbose` shows the whole log.');
      process.exit(code ?? 1);
    }
    if (!verbose) {
      // native/find-tensorrt.js's lines: why the TensorRT bridge was skipped and how to enable it.
      const ours = log.split('\n').filter((l) => l.startsWith('trt-calib:'));
      for (const line of [...new Set(ours)]) process.stderr.write(`${line}\n`);
    }
    const bridge = existsSync(path.join(here, 'build', 'Release', 'trt_calib_tensorrt.node'));
    say(`native addon built from source (${path.join('native', 'build', 'Release')}${bridge ? ', with the TensorRT bridge' : ''})`);
  });
}

// First, and cheap: a failure about to happen in onnxruntime-node's postinstall, said in words (see the file).
const ortProblem = force ? undefined : await onnxruntimeDownloadProblem();
if (ortProblem) {
  for (const line of explainDownloadProblem(ortProblem)) say(line);
  process.exit(1);
}

if (force) {
  buildFromSource('Building from source as asked');
} else if (existsSync(sourceBuild) && statSync(sourceBuild).mtimeMs >= newestSourceTime()) {
  // Up to date: nothing to do, nothing to say.
} else if (existsSync(sourceBuild)) {
  buildFromSource('native/src changed since the last build');
} else {
  const found = prebuilt();
  if (found && !found.error) {
    say(`using the prebuilt native addon ${path.relative(root, found.file)}`);
    const trt = findTensorRT();
    if (trt.found) say(`TensorRT ${trt.versionString ?? ''} was found: build the TensorRT bridge for it with \`npx trt-calib build-bridge\` (needs python3, make and a C++17 compiler).`);
  } else {
    buildFromSource(
      found
        ? `the prebuilt native addon ${path.relative(root, found.file)} does not load here (${found.error})`
        : `no prebuilt native addon for ${process.platform}-${process.arch}`,
    );
  }
}
