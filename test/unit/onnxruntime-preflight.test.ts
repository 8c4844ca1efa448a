/**
 * native/onnxruntime-preflight.js: trt-calib's install script stops the install, saying what to do, only when
 * onnxruntime-node's postinstall is about to download from a host that cannot be reached. Checked on fabricated
 * projects (a node_modules with an onnxruntime-node whose install metadata asks for files for this platform),
 * with a host under .invalid (RFC 6761: never resolves) standing for an unreachable api.nuget.org.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(__dirname, '../..');
const UNREACHABLE = 'nuget.trt-calib-test.invalid';
const temps: string[] = [];
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

interface Preflight {
  onnxruntimeDownloadProblem(env: NodeJS.ProcessEnv, options?: { host?: string; sameInstallMs?: number }): Promise<{ host: string; error: string; version?: string } | undefined>;
  explainDownloadProblem(problem: { host: string; error: string; version?: string }): string[];
}

/** A user's project with trt-calib and onnxruntime-node 1.30.0 just unpacked into node_modules. */
async function project(options: { ortFilesPresent?: boolean; allowScripts?: Record<string, boolean>; ortOutside?: boolean; ortEarlier?: boolean } = {}) {
  const prefix = mkdtempSync(path.join(os.tmpdir(), 'trt-calib-preflight-'));
  temps.push(prefix);
  writeFileSync(path.join(prefix, 'package.json'), JSON.stringify({ name: 'app', private: true, ...(options.allowScripts ? { allowScripts: options.allowScripts } : {}) }));
  const ours = path.join(prefix, 'node_modules', 'trt-calib');
  mkdirSync(path.join(ours, 'native'), { recursive: true });
  const writeOurs = () => writeFileSync(path.join(ours, 'package.json'), JSON.stringify({ name: 'trt-calib', version: '0.1.0', type: 'module' }));
  if (!options.ortEarlier) writeOurs();
  copyFileSync(path.join(ROOT, 'native', 'onnxruntime-preflight.js'), path.join(ours, 'native', 'onnxruntime-preflight.js'));

  const ort = path.join(prefix, 'node_modules', 'onnxruntime-node');
  mkdirSync(path.join(ort, 'script'), { recursive: true });
  writeFileSync(path.join(ort, 'package.json'), JSON.stringify({ name: 'onnxruntime-node', version: '1.30.0' }));
  const platform = `${process.platform}/${process.arch}`;
  writeFileSync(
    path.join(ort, 'script', 'install-metadata.js'),
    `module.exports = ${JSON.stringify({ requirements: { [platform]: ['cuda12'] }, manifests: { [`${platform}:cuda12`]: { './libonnxruntime_providers_cuda.so': {} } } })};`,
  );
  if (options.ortFilesPresent) {
    const bin = path.join(ort, 'bin', 'napi-v6', platform);
    mkdirSync(bin, { recursive: true });
    writeFileSync(path.join(bin, 'libonnxruntime_providers_cuda.so'), '');
  }
  if (options.ortEarlier) {
    await new Promise((r) => setTimeout(r, 50));
    writeOurs();
  }
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, npm_lifecycle_event: 'install', npm_config_local_prefix: prefix };
  if (options.ortOutside) {
    // The first `npx trt-calib` in a clone: npm's npx project is elsewhere; onnxruntime-node stays in the clone.
    const npxProject = mkdtempSync(path.join(os.tmpdir(), 'trt-calib-preflight-npx-'));
    temps.push(npxProject);
    writeFileSync(path.join(npxProject, 'package.json'), '{}');
    env.npm_config_local_prefix = npxProject;
  }
  const mod = (await import(pathToFileURL(path.join(ours, 'native', 'onnxruntime-preflight.js')).href)) as Preflight;
  return { mod, env, ort };
}

describe('onnxruntime-node download preflight', () => {
  it('stops a fresh install where the download host is unreachable, and says the one thing to do', async () => {
    const { mod, env } = await project();
    const problem = await mod.onnxruntimeDownloadProblem(env, { host: UNREACHABLE });
    expect(problem).toMatchObject({ host: UNREACHABLE, version: '1.30.0' });
    expect(problem!.error).toMatch(/ENOTFOUND|EAI_AGAIN|no answer/);
    const text = mod.explainDownloadProblem(problem!).join('\n');
    expect(text).toContain('"allowScripts": { "onnxruntime-node": false }');
    expect(text).toContain('ONNXRUNTIME_NODE_INSTALL=skip npm install trt-calib');
  });

  it.each([
    ['ONNXRUNTIME_NODE_INSTALL=skip', { ONNXRUNTIME_NODE_INSTALL: 'skip' }],
    ['the npm setting onnxruntime-node-install', { npm_config_onnxruntime_node_install: 'skip' }],
    ['a proxy for onnxruntime-node\'s downloader', { GLOBAL_AGENT_HTTPS_PROXY: 'http://proxy:3128' }],
    ['a run outside npm\'s install step', { npm_lifecycle_event: undefined }],
  ])('lets the install go on with %s', async (_what, extra) => {
    const { mod, env } = await project();
    expect(await mod.onnxruntimeDownloadProblem({ ...env, ...extra }, { host: UNREACHABLE })).toBeUndefined();
  });

  it.each([
    ['a name-only denial', { 'onnxruntime-node': false }],
    ['a denial of this version', { 'onnxruntime-node@1.29.0 || 1.30.0': false }],
  ])("lets the install go on when the project's allowScripts has %s", async (_what, allowScripts) => {
    const { mod, env } = await project({ allowScripts });
    expect(await mod.onnxruntimeDownloadProblem(env, { host: UNREACHABLE })).toBeUndefined();
  });

  it('still stops when allowScripts denies another version or approves onnxruntime-node', async () => {
    for (const allowScripts of [{ 'onnxruntime-node@1.29.0': false }, { 'onnxruntime-node': true }]) {
      const { mod, env } = await project({ allowScripts });
      expect(await mod.onnxruntimeDownloadProblem(env, { host: UNREACHABLE })).toBeDefined();
    }
  });

  it('lets the install go on when the provider files are there, so nothing is downloaded', async () => {
    const { mod, env } = await project({ ortFilesPresent: true });
    expect(await mod.onnxruntimeDownloadProblem(env, { host: UNREACHABLE })).toBeUndefined();
  });

  it('lets the install go on when onnxruntime-node was unpacked by an earlier install (its postinstall will not run now)', async () => {
    // Unpacked 50 ms apart, judged with a 10 ms window: stands for an install minutes or days apart.
    const { mod, env } = await project({ ortEarlier: true });
    expect(await mod.onnxruntimeDownloadProblem(env, { host: UNREACHABLE, sameInstallMs: 10 })).toBeUndefined();
    expect(await mod.onnxruntimeDownloadProblem(env, { host: UNREACHABLE, sameInstallMs: 10_000 })).toBeDefined();
  });

  it('lets the first `npx trt-calib` in a clone go on (onnxruntime-node is not in npx\'s project)', async () => {
    const { mod, env } = await project({ ortOutside: true });
    expect(await mod.onnxruntimeDownloadProblem(env, { host: UNREACHABLE })).toBeUndefined();
  });
});
