#!/usr/bin/env node
/**
 * `npm pack` / `npm publish` (prepack): builds the base native addon (statistics kernels, the onnxruntime
 * collector, the batch feeder) with prebuildify into prebuilds/<platform>-<arch>/trt_calib[.glibc|.musl].node,
 * the file node-gyp-build picks at run time (src/native.ts), so that an installed package needs no compiler.
 *
 * One binary per platform covers every Node.js >= 20.9: the addon is compiled against Node-API 8
 * (NAPI_VERSION=8 in native/binding.gyp), which every Node.js of the engines range provides, so the binary does
 * not depend on the Node.js ABI version it was built with. The TensorRT bridge is never prebuilt (it links the
 * user's TensorRT): TRT_CALIB_SKIP_TENSORRT=1 leaves it out even where the packing machine has TensorRT.
 *
 * Options: --verbose shows the compiler's log; --keep leaves earlier prebuilds of other platforms in place
 * (default: prebuilds/ is emptied first so that a tarball never carries a stale binary).
 */
import { createRequire } from 'node:module';
import { cpSync, existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findNodeGyp, findNodeHeaders } from '../native/node-gyp.js';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const verbose = process.argv.includes('--verbose');
const keep = process.argv.includes('--keep');

let prebuildify;
try {
  prebuildify = require('prebuildify');
} catch {
  process.stderr.write('trt-calib: prebuildify is not installed; run `npm install` in the repository first.\n');
  process.exit(1);
}

const prebuilds = path.join(root, 'prebuilds');
if (!keep) rmSync(prebuilds, { recursive: true, force: true });

// Built in a copy of native/ (node-gyp rebuild empties its build folder), so that a developer's own build in
// native/build, TensorRT bridge included, survives `npm pack`. .tmp/ is ignored by git and not packed.
const staging = path.join(root, '.tmp', `prebuild-${process.pid}`);
rmSync(staging, { recursive: true, force: true });
mkdirSync(staging, { recursive: true });
for (const name of ['binding.gyp', 'find-tensorrt.js', 'src']) cpSync(path.join(root, 'native', name), path.join(staging, name), { recursive: true });
// node-gyp's header cache, should it need one: inside the staging folder, not the system temp folder.
const cache = path.join(staging, 'node-gyp-cache');
const gypScript = findNodeGyp();
if (!gypScript) {
  process.stderr.write('trt-calib: node-gyp was not found (it comes with npm); run this through `npm pack` or install node-gyp.\n');
  process.exit(1);
}
// prebuildify spawns this through a shell.
const quote = (p) => `"${p.replace(/(["\\$`])/g, '\\$1')}"`;
const nodeGyp = `${quote(process.execPath)} ${quote(gypScript)}`;
const started = Date.now();
process.env.TRT_CALIB_SKIP_TENSORRT = '1';
// Build with the running Node.js's own headers where they are installed, so that nothing is downloaded.
const headers = findNodeHeaders();
if (headers) process.env.npm_config_nodedir = headers;

prebuildify(
  {
    cwd: staging,
    out: root,
    name: 'trt_calib',
    napi: true,
    // Build with the running Node.js: its headers are local (nodedir or node-gyp's cache), so no download.
    targets: [{ runtime: 'node', target: process.versions.node }],
    tagLibc: true,
    strip: process.platform === 'linux' || process.platform === 'darwin',
    cache,
    quiet: !verbose,
    nodeGyp,
    shell: true,
  },
  (err) => {
    rmSync(staging, { recursive: true, force: true });
    try {
      rmdirSync(path.dirname(staging)); // .tmp/, when nothing else is in it
    } catch {
      // not empty: another build's, or a user's; leave it
    }
    if (err) {
      process.stderr.write(`trt-calib: prebuilding the native addon failed: ${err.message}\n` + (verbose ? '' : 'Run `node scripts/prebuild.js --verbose` to see the compiler\'s log.\n'));
      process.exit(1);
    }
    const dir = path.join(prebuilds, `${process.platform}-${process.arch}`);
    for (const name of readdirSync(dir)) {
      const bytes = statSync(path.join(dir, name)).size;
      process.stderr.write(`trt-calib: prebuilt ${path.relative(root, path.join(dir, name))} (${(bytes / 1024).toFixed(0)} KiB, Node-API 8) in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    }
    if (!existsSync(dir)) process.exit(1);
  },
);
