#!/usr/bin/env node
/**
 * `npm pack` / `npm publish`: what the tarball needs that git does not hold.
 *  1. dist/ emptied, so that no output of a deleted source file is packed (npm then runs `prepare`, which
 *     compiles it afresh, after prepack and before packing);
 *  2. the prebuilt native addon for this platform (scripts/prebuild.js), so that installs need no compiler.
 * Built here rather than committed: a binary in git goes stale silently when native/src changes, and each
 * version would stay in the history (about 320 KiB each); building at pack time ties the binary to the sources
 * of the tarball it ships in.
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function run(args) {
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

rmSync(path.join(root, 'dist'), { recursive: true, force: true });
run([path.join(root, 'scripts', 'prebuild.js'), ...process.argv.slice(2)]);
