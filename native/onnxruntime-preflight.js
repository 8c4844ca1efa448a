/**
 * Before onnxruntime-node's postinstall runs (npm runs every package's `install` script before any `postinstall`),
 * say clearly when it is going to fail. On linux-x64 that script downloads onnxruntime's CUDA provider
 * (the Microsoft.ML.OnnxRuntime.Gpu.Linux NuGet package) from api.nuget.org on every install, CUDA or not,
 * unless told to skip; where that host cannot be reached the whole `npm install` fails with a bare
 * "getaddrinfo ENOTFOUND api.nuget.org". A dependent package cannot skip it for the user (the script reads only
 * its environment and command line, and npm runs it unless the root project's allowScripts denies it), so this
 * says the one thing to do.
 *
 * Checked only in npm's install step, for an onnxruntime-node inside the project being installed, and only when its
 * script would download: this platform has a download manifest, its files
 * are missing, no ONNXRUNTIME_NODE_INSTALL* setting and no allowScripts denial is there, no proxy is configured,
 * and onnxruntime-node was unpacked in this same install (its package.json is as new as ours), so that its
 * postinstall is about to run. Then one DNS lookup of the host, bounded to 3 s.
 */
import { lookup } from 'node:dns/promises';
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const HOST = 'api.nuget.org';

function readJson(file) {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Whether the root project's package.json denies onnxruntime-node's scripts (`false`, by name or name@version). */
function deniedByAllowScripts(env, version) {
  const prefix = env.npm_config_local_prefix;
  const policy = prefix ? readJson(path.join(prefix, 'package.json'))?.allowScripts : undefined;
  if (!policy || typeof policy !== 'object') return false;
  return Object.entries(policy).some(([key, value]) => {
    if (value !== false) return false;
    if (key === 'onnxruntime-node') return true;
    if (!key.startsWith('onnxruntime-node@')) return false;
    return key.slice('onnxruntime-node@'.length).split('||').map((v) => v.trim()).includes(version);
  });
}

/** The reason onnxruntime-node's postinstall will fail here, or undefined when it will not download or can. */
/**
 * @param {NodeJS.ProcessEnv} [env]
 * @param {{ host?: string, sameInstallMs?: number }} [options] the host to look up; how close the two packages'
 *   unpacking times must be to count as one install (tests change both)
 */
export async function onnxruntimeDownloadProblem(env = process.env, { host = HOST, sameInstallMs = 120_000 } = {}) {
  let ortPackage;
  try {
    ortPackage = require.resolve('onnxruntime-node/package.json');
  } catch {
    return undefined;
  }
  const ortRoot = path.dirname(ortPackage);
  // Only inside npm's install of a project that holds that onnxruntime-node: not when this script is run by hand,
  // nor for the first `npx trt-calib` in a clone (npx links the clone into its cache; onnxruntime-node stays in the
  // clone and is not installed again).
  const prefix = env.npm_config_local_prefix;
  if (env.npm_lifecycle_event !== 'install' || !prefix) return undefined;
  const inside = path.relative(realpathSync(prefix), realpathSync(ortRoot));
  if (inside.startsWith('..') || path.isAbsolute(inside)) return undefined;
  const settings = ['ONNXRUNTIME_NODE_INSTALL', 'npm_config_onnxruntime_node_install', 'ONNXRUNTIME_NODE_INSTALL_CUDA', 'npm_config_onnxruntime_node_install_cuda'];
  if (settings.some((k) => env[k])) return undefined;
  const proxies = ['GLOBAL_AGENT_HTTPS_PROXY', 'GLOBAL_AGENT_HTTP_PROXY', 'HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy'];
  if (proxies.some((k) => env[k])) return undefined;

  let metadata;
  try {
    metadata = require(path.join(ortRoot, 'script', 'install-metadata.js'));
  } catch {
    return undefined; // another onnxruntime-node layout: nothing known to check
  }
  const platform = `${process.platform}/${process.arch}`;
  const names = metadata.requirements?.[platform] ?? [];
  const files = names.flatMap((name) => Object.keys(metadata.manifests?.[`${platform}:${name}`] ?? {}));
  const binFolder = path.join(ortRoot, 'bin', 'napi-v6', platform);
  if (files.length === 0 || files.every((f) => existsSync(path.join(binFolder, f)))) return undefined;

  const version = readJson(ortPackage)?.version;
  if (deniedByAllowScripts(env, version)) return undefined;
  // Unpacked in this install (as our own package.json was), so its postinstall runs after this script.
  const ours = statSync(path.join(here, '..', 'package.json')).ctimeMs;
  if (Math.abs(statSync(ortPackage).ctimeMs - ours) > sameInstallMs) return undefined;

  const reachable = await Promise.race([
    lookup(host).then(() => true, (err) => err.code ?? String(err)),
    new Promise((resolve) => setTimeout(() => resolve('no answer within 3 s'), 3000).unref()),
  ]);
  if (reachable === true) return undefined;
  return { host, error: reachable, version };
}

export function explainDownloadProblem(problem) {
  return [
    `onnxruntime-node ${problem.version ?? ''} is about to download its CUDA provider from ${problem.host}, which this machine cannot reach (${problem.error});`,
    'npm would then fail in its postinstall. trt-calib needs only the CPU build that onnxruntime-node ships inside its package.',
    'Skip that download and install again: add  "allowScripts": { "onnxruntime-node": false }  to your package.json',
    '(npm 11: `npm install-scripts deny onnxruntime-node`), or run the install as  ONNXRUNTIME_NODE_INSTALL=skip npm install trt-calib',
  ];
}
