#!/usr/bin/env node
/**
 * `npm run test:package` (and .ci/run): the package as a user gets it. Packs the project (prepack builds dist/ and
 * the prebuilt addon), then installs the tarball into fresh temporary projects, from the npm registry:
 *   prebuilt, --ignore-scripts   no install script at all: the prebuilt binary must load as shipped
 *   prebuilt, with scripts       native/install.js must pick the prebuilt binary and compile nothing
 *   no prebuilt, with scripts    the same tarball without prebuilds/: the source-build fallback (node-gyp)
 * In each: `trt-calib doctor --json` names the addon that was loaded, the installed CLI calibrates the bundled
 * MobileNetV2 on the bundled photos, and a TypeScript file doing `import { calibrate } from 'trt-calib'`
 * type-checks against the shipped declarations (strict) and runs. Every cache must be the same
 * bytes: CLI and API, prebuilt and source build. Prints the tarball's size and file count and each install's time.
 *
 *   --tarball FILE        check this tarball instead of packing
 *   --skip-source-build   leave out the third project (saves the compile, about 30 s)
 *   --keep                keep the temporary folder (its path is printed)
 * Exit 0 when every check passed, 1 otherwise. The temporary folder is removed on exit, Ctrl-C included.
 */
import { spawnSync } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const option = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const keep = argv.includes('--keep');
const skipSourceBuild = argv.includes('--skip-source-build');
const givenTarball = option('--tarball');

const model = path.join(root, 'test', 'fixtures', 'models', 'mobilenet_v2_nsfw_224.onnx');
const images = path.join(root, 'test', 'fixtures', 'images');
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');

const work = mkdtempSync(path.join(os.tmpdir(), 'trt-calib-package-check-'));
const cleanup = () => {
  if (!keep) rmSync(work, { recursive: true, force: true });
};
process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => process.exit(signal === 'SIGINT' ? 130 : 143));
}

// The nested npm must not inherit this repository's npm settings (npm run exports them as npm_* variables).
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) && k !== 'INIT_CWD'));

const failures = [];
const check = (ok, what) => {
  process.stderr.write(`${ok ? 'ok  ' : 'FAIL'}  ${what}\n`);
  if (!ok) failures.push(what);
  return ok;
};

function run(cmd, args, cwd, extra = {}) {
  const started = Date.now();
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...extra });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', error: r.error, seconds: (Date.now() - started) / 1000 };
}

function must(r, what) {
  if (r.status !== 0) {
    process.stderr.write(`${r.stdout}\n${r.stderr}\n`);
    check(false, `${what} (exit ${r.status}${r.error ? `, ${r.error.message}` : ''})`);
    process.exit(1);
  }
  return r;
}

/** Entries of a tarball (GNU/BSD tar, which every CI image here has). */
function tarballEntries(file) {
  return must(run('tar', ['-tzf', file], work), `listing ${file}`).stdout.split('\n').filter((l) => l && !l.endsWith('/'));
}

// 1. The tarball.
let tarball = givenTarball && path.resolve(givenTarball);
if (!tarball) {
  // prepack writes prebuilds/ into the repository; leave it as found (it is ignored by git, but a left-over
  // binary would be loaded by a clone that has no source build).
  const hadPrebuilds = existsSync(path.join(root, 'prebuilds'));
  if (!hadPrebuilds) process.on('exit', () => rmSync(path.join(root, 'prebuilds'), { recursive: true, force: true }));
  const packed = must(run('npm', ['pack', '--pack-destination', work, '--foreground-scripts=false', '--loglevel=error'], root), 'npm pack');
  tarball = path.join(work, packed.stdout.trim().split('\n').pop());
  process.stderr.write(`packed ${path.basename(tarball)} in ${packed.seconds.toFixed(1)} s\n`);
}
const entries = tarballEntries(tarball);
const kib = (bytes) => `${(bytes / 1024).toFixed(0)} KiB`;
process.stderr.write(`tarball: ${kib(statSync(tarball).size)}, ${entries.length} files\n`);
check(entries.some((e) => /^package\/prebuilds\/[^/]+\/trt_calib\.[^/]*node$/.test(e)), 'the tarball holds a prebuilt addon');
check(!entries.some((e) => /^package\/(test|bench|\.ci|scripts|calib-cache)\//.test(e) || /\.(map|onnx|ts)$/.test(e.replace(/\.d\.ts$/, ''))), 'the tarball holds no tests, fixtures, source maps or TypeScript sources');
check(statSync(tarball).size < 5 * 1024 * 1024, 'the tarball is under 5 MiB');

// The same tarball without prebuilds/, for the source-build fallback.
let sourceTarball;
if (!skipSourceBuild) {
  const unpacked = path.join(work, 'unpacked');
  mkdirSync(unpacked);
  must(run('tar', ['-xzf', tarball, '-C', unpacked], work), 'unpacking the tarball');
  rmSync(path.join(unpacked, 'package', 'prebuilds'), { recursive: true, force: true });
  const out = path.join(work, 'no-prebuilt');
  mkdirSync(out);
  must(run('npm', ['pack', '--ignore-scripts', '--pack-destination', out, '--loglevel=error'], path.join(unpacked, 'package')), 'repacking without prebuilds/');
  sourceTarball = path.join(out, readdirSync(out)[0]);
}

// 2. The user's side.
const API_CHECK = `import { calibrate, type CalibrateResult } from 'trt-calib';

const [model, images, outDir] = process.argv.slice(2) as [string, string, string];
const result: CalibrateResult = await calibrate({
  model,
  data: { data: images, preprocess: { preset: 'raw01' } },
  algorithms: ['entropy2'],
  trtVersion: '10.3.0',
  outDir,
});
const cache = result.caches[0];
if (!cache) throw new Error('calibrate() wrote no cache');
process.stdout.write(JSON.stringify({ file: cache.file, header: cache.header, tensors: cache.tensors, images: result.images.used }));
`;
const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    // As `tsc --init` writes it: onnx-proto's own declarations (protobufjs 6) do not compile on their own.
    skipLibCheck: true,
    outDir: 'build',
    types: ['node'],
    // @types/node from this repository: the user's project would have its own.
    typeRoots: [path.join(root, 'node_modules', '@types')],
  },
  files: ['check.ts'],
};

const cases = [
  { name: 'prebuilt, --ignore-scripts', tarball, scripts: false, addon: 'prebuilt' },
  { name: 'prebuilt, with scripts', tarball, scripts: true, addon: 'prebuilt' },
  ...(sourceTarball ? [{ name: 'no prebuilt, with scripts', tarball: sourceTarball, scripts: true, addon: 'built from source' }] : []),
];
const caches = [];
const timings = [];
for (const [i, c] of cases.entries()) {
  process.stderr.write(`\n== ${c.name}\n`);
  const dir = path.join(work, `project-${i}`);
  mkdirSync(dir);
  // onnxruntime-node's postinstall downloads its CUDA provider from api.nuget.org on every linux-x64 install;
  // denying it is what the README tells users without access to that host (see "Installing as a package").
  const manifest = { name: `trt-calib-check-${i}`, version: '1.0.0', private: true, type: 'module', allowScripts: { 'onnxruntime-node': false } };
  writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  const args = ['install', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts', ...(c.scripts ? [] : ['--ignore-scripts']), c.tarball];
  const installed = must(run('npm', args, dir), `npm install ${c.name}`);
  timings.push({ name: c.name, seconds: installed.seconds });
  process.stderr.write(`installed in ${installed.seconds.toFixed(1)} s\n`);
  const installLog = installed.stdout + installed.stderr;
  if (c.scripts) {
    check(
      c.addon === 'prebuilt' ? /trt-calib: using the prebuilt native addon/.test(installLog) && !/built from source/.test(installLog) : /trt-calib: native addon built from source/.test(installLog),
      `the install script ${c.addon === 'prebuilt' ? 'used the prebuilt addon, compiling nothing' : 'built the addon from source'}`,
    );
  }
  const bin = path.join(dir, 'node_modules', '.bin', 'trt-calib');

  const doctor = run(bin, ['doctor', '--json'], dir);
  const addon = doctor.status === 0 || doctor.status === 1 ? JSON.parse(doctor.stdout).checks.find((x) => x.id === 'native-addon') : undefined;
  check(addon?.status === 'ok' && addon.found.startsWith(`${c.addon}:`), `doctor: native addon ${addon ? `${addon.status}, ${addon.found.split(' (')[0]}` : `(exit ${doctor.status})`}`);

  const outCli = path.join(dir, 'out-cli');
  const cli = run(bin, ['--model', model, '--data', images, '--preset', 'raw01', '--algo', 'entropy2', '--trt-version', '10.3.0', '--out-dir', outCli, '--quiet'], dir);
  const cliCache = path.join(outCli, 'mobilenet_v2_nsfw_224.entropy2.cache');
  if (check(cli.status === 0 && existsSync(cliCache), `the installed CLI calibrates (exit ${cli.status})`)) {
    const lines = readFileSync(cliCache, 'utf8').split('\n').filter(Boolean);
    check(lines[0] === 'TRT-100300-EntropyCalibration2' && lines.length > 100, `its cache: ${lines[0]}, ${lines.length - 1} tensors`);
    caches.push({ what: `${c.name}, CLI`, bytes: readFileSync(cliCache) });
  } else process.stderr.write(cli.stderr);

  writeFileSync(path.join(dir, 'check.ts'), API_CHECK);
  writeFileSync(path.join(dir, 'tsconfig.json'), `${JSON.stringify(TSCONFIG, null, 2)}\n`);
  const typed = run(process.execPath, [tsc, '-p', 'tsconfig.json'], dir);
  if (check(typed.status === 0, `check.ts (import { calibrate } from 'trt-calib') type-checks with tsc`)) {
    const outApi = path.join(dir, 'out-api');
    const api = run(process.execPath, [path.join('build', 'check.js'), model, images, outApi], dir);
    if (check(api.status === 0, `check.ts runs (exit ${api.status})`)) {
      const r = JSON.parse(api.stdout);
      check(r.header === 'TRT-100300-EntropyCalibration2' && r.tensors > 100 && r.images === 8, `calibrate(): ${r.header}, ${r.tensors} tensors, ${r.images} images`);
      caches.push({ what: `${c.name}, API`, bytes: readFileSync(r.file) });
    } else process.stderr.write(api.stderr);
  } else process.stderr.write(typed.stdout + typed.stderr);
}

// 3. Without the allowScripts denial, where api.nuget.org cannot be reached: the install must stop with
// trt-calib's explanation (native/onnxruntime-preflight.js), before onnxruntime-node's bare ENOTFOUND.
const nuget = await lookup('api.nuget.org').then(() => true, () => false);
if (nuget) process.stderr.write('\n(api.nuget.org is reachable here: the check of the failure message for machines without it is skipped)\n');
else {
  process.stderr.write('\n== prebuilt, with scripts, no allowScripts, api.nuget.org unreachable\n');
  const dir = path.join(work, 'project-no-policy');
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify({ name: 'trt-calib-check-no-policy', version: '1.0.0', private: true }, null, 2)}\n`);
  const r = run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], dir);
  const log = r.stdout + r.stderr;
  const failedIn = /npm error path (.*)/.exec(log)?.[1] ?? '';
  check(
    r.status !== 0 && /node_modules[\\/]trt-calib$/.test(failedIn) && /"allowScripts": \{ "onnxruntime-node": false \}/.test(log) && /ONNXRUNTIME_NODE_INSTALL=skip/.test(log),
    `the install stops in trt-calib's install script, before onnxruntime-node's download, saying what to do (exit ${r.status}, failed in ${failedIn || '?'})`,
  );
}

// 4. One answer everywhere.
process.stderr.write('\n');
if (caches.length > 1) {
  const first = caches[0];
  check(caches.every((c) => c.bytes.equals(first.bytes)), `the ${caches.length} caches (${caches.map((c) => c.what).join('; ')}) are the same bytes`);
}
process.stderr.write(`\ntarball ${kib(statSync(tarball).size)}, ${entries.length} files; install times: ${timings.map((t) => `${t.name} ${t.seconds.toFixed(1)} s`).join(', ')}\n`);
if (keep) process.stderr.write(`kept ${work}\n`);
process.stderr.write(failures.length ? `${failures.length} check(s) failed\n` : 'every package check passed\n');
process.exit(failures.length ? 1 : 0);
