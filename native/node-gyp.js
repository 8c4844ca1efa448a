/**
 * Where node-gyp is, for native/install.js, scripts/prebuild.js and `trt-calib build-bridge`: node-gyp is not a
 * dependency (npm bundles one), so look where npm keeps it. Returns the script to run with this Node.js, or
 * undefined when none is found.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

/** @returns {string | undefined} path of node-gyp's bin/node-gyp.js */
export function findNodeGyp(env = process.env) {
  // npm hands its bundled node-gyp to lifecycle scripts and to `npx`.
  if (env.npm_config_node_gyp && existsSync(env.npm_config_node_gyp)) return env.npm_config_node_gyp;
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    // not installed beside us; try npm's own copy next to this Node.js
  }
  const bin = path.dirname(process.execPath);
  const candidates = [
    path.join(bin, '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'), // Unix prefix layout
    path.join(bin, 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'), // Windows installer layout
  ];
  return candidates.find((p) => existsSync(p));
}

/**
 * A folder holding this Node.js's headers (include/node/node_api.h), for node-gyp's --nodedir, so that a build
 * needs no download from nodejs.org: npm's `nodedir` setting when given, else the headers that Node.js installs
 * beside its binary (Linux packages, the official tarballs, Homebrew). Undefined when there are none (node-gyp
 * then downloads them once into its cache).
 * @returns {string | undefined}
 */
export function findNodeHeaders(env = process.env) {
  if (env.npm_config_nodedir) return env.npm_config_nodedir;
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  return existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined;
}
