/**
 * Which native addon src/native.ts loads (a source build, else the prebuilt binary node-gyp-build picks from
 * prebuilds/), and native/install.js's choice at install time. Layouts are built in temporary package roots with
 * the real addon copied in, so that "loads" means a real dlopen.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadNative, nativeAddonSource, resolveNativeAddon, sourceBuildPath } from '../../src/native.js';

const ROOT = path.resolve(__dirname, '../..');
const temps: string[] = [];
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

function packageRoot(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'trt-calib-loader-'));
  temps.push(dir);
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'trt-calib', version: '0.0.0' }));
  return dir;
}

function put(file: string, bytes = 'not a real addon'): string {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, bytes);
  return file;
}

const libc = process.platform === 'linux' ? (existsSync('/etc/alpine-release') ? 'musl' : 'glibc') : undefined;
const prebuiltName = `trt_calib${libc ? `.${libc}` : ''}.node`;
const platformDir = `${process.platform}-${process.arch}`;

describe('resolveNativeAddon', () => {
  it('finds nothing in a package with neither a prebuilt binary nor a source build', () => {
    expect(resolveNativeAddon(packageRoot())).toBeUndefined();
  });

  it("ignores prebuilt binaries of other platforms and architectures", () => {
    const root = packageRoot();
    put(path.join(root, 'prebuilds', 'sunos-sparc', 'trt_calib.node'));
    put(path.join(root, 'prebuilds', `${process.platform}-mips`, prebuiltName));
    expect(resolveNativeAddon(root)).toBeUndefined();
  });

  it("picks the prebuilt binary of this platform, architecture and libc", () => {
    const root = packageRoot();
    const mine = put(path.join(root, 'prebuilds', platformDir, prebuiltName));
    if (libc) put(path.join(root, 'prebuilds', platformDir, `trt_calib.${libc === 'glibc' ? 'musl' : 'glibc'}.node`));
    expect(resolveNativeAddon(root)).toEqual({ kind: 'prebuilt', path: mine });
  });

  it('prefers a source build to the prebuilt binary, and ignores the TensorRT bridge beside it', () => {
    const root = packageRoot();
    put(path.join(root, 'prebuilds', platformDir, prebuiltName));
    put(path.join(root, 'native', 'build', 'Release', 'trt_calib_tensorrt.node'));
    expect(resolveNativeAddon(root)?.kind).toBe('prebuilt');
    const built = put(sourceBuildPath(root));
    expect(resolveNativeAddon(root)).toEqual({ kind: 'source-build', path: built });
  });
});

describe('loadNative', () => {
  it('says which addon it loaded, and it is the one resolveNativeAddon names', () => {
    const native = loadNative();
    expect(typeof native.statsAccumulate).toBe('function');
    expect(nativeAddonSource()).toEqual(resolveNativeAddon());
    expect(nativeAddonSource()?.kind).toBe(existsSync(sourceBuildPath()) ? 'source-build' : 'prebuilt');
  });
});

describe('native/install.js without --force', () => {
  // A package root holding the install scripts (and the real addon, placed by each test); its dependencies
  // (node-gyp-build, onnxruntime-node) are the repository's, through a node_modules link.
  function installRoot(): string {
    const dir = packageRoot();
    mkdirSync(path.join(dir, 'native'));
    for (const f of ['install.js', 'node-gyp.js', 'find-tensorrt.js', 'onnxruntime-preflight.js', 'binding.gyp']) {
      copyFileSync(path.join(ROOT, 'native', f), path.join(dir, 'native', f));
    }
    writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'trt-calib', version: '0.0.0', type: 'module' }));
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
    put(path.join(dir, 'native', 'src', 'addon.cc'), '// stands for the sources');
    return dir;
  }
  const realAddon = resolveNativeAddon()!.path;
  const install = (root: string) =>
    spawnSync(process.execPath, [path.join(root, 'native', 'install.js')], {
      cwd: root,
      encoding: 'utf8',
      // The onnxruntime-node download check is not what is tested here (and must not depend on the network).
      env: { ...process.env, TRT_CALIB_SKIP_TENSORRT: '1', ONNXRUNTIME_NODE_INSTALL: 'skip' },
      timeout: 30_000,
    });

  it('uses a prebuilt binary that loads, compiling nothing', () => {
    const root = installRoot();
    const prebuilt = path.join(root, 'prebuilds', platformDir, prebuiltName);
    mkdirSync(path.dirname(prebuilt), { recursive: true });
    copyFileSync(realAddon, prebuilt);
    const r = install(root);
    expect(r.status).toBe(0);
    expect(r.stderr.trim()).toBe(`trt-calib: using the prebuilt native addon ${path.join('prebuilds', platformDir, prebuiltName)}`);
    expect(existsSync(path.join(root, 'native', 'build'))).toBe(false);
  });

  it('does nothing, silently, when the source build is newer than native/src', () => {
    const root = installRoot();
    const built = sourceBuildPath(root);
    mkdirSync(path.dirname(built), { recursive: true });
    copyFileSync(realAddon, built);
    const later = new Date(statSync(path.join(root, 'native', 'src', 'addon.cc')).mtimeMs + 10_000);
    utimesSync(built, later, later);
    const stamp = statSync(built).mtimeMs;
    const r = install(root);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
    expect(statSync(built).mtimeMs).toBe(stamp); // not rebuilt
    expect(existsSync(path.join(root, 'native', 'build', 'Makefile'))).toBe(false); // node-gyp never ran
  });

  it('rebuilds from source when native/src is newer than the source build, even with a prebuilt binary there', { timeout: 60_000 }, () => {
    const root = installRoot();
    const built = sourceBuildPath(root);
    mkdirSync(path.dirname(built), { recursive: true });
    copyFileSync(realAddon, built);
    const prebuilt = path.join(root, 'prebuilds', platformDir, prebuiltName);
    mkdirSync(path.dirname(prebuilt), { recursive: true });
    copyFileSync(realAddon, prebuilt);
    const earlier = new Date(statSync(path.join(root, 'native', 'src', 'addon.cc')).mtimeMs - 10_000);
    utimesSync(built, earlier, earlier);
    // node-gyp runs and fails here (this root holds one stand-in source file): the attempt is what is checked.
    const r = spawnSync(process.execPath, [path.join(root, 'native', 'install.js')], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, TRT_CALIB_SKIP_TENSORRT: '1', ONNXRUNTIME_NODE_INSTALL: 'skip' },
      timeout: 55_000,
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/trt-calib: building the native addon failed \(node-gyp exit \d+\); the log is above\. native\/src changed since the last build\./);
    expect(r.stderr).not.toMatch(/using the prebuilt/);
  });
});
