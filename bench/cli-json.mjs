// The built CLI run as a user would, for the benches that measure methods through it (bias, equalize,
// methods-detect): `trt-calib <args> --json`, its parsed JSON and the wall time of the whole process.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'bin', 'trt-calib.js');

export function cli(args) {
  const started = performance.now();
  const out = execFileSync(process.execPath, [bin, ...args, '--json'], { cwd: root, maxBuffer: 256 * 2 ** 20, stdio: ['ignore', 'pipe', 'ignore'] });
  return { json: JSON.parse(out.toString()), seconds: (performance.now() - started) / 1000 };
}
