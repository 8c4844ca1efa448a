/**
 * The suite's leak check (vitest globalSetup). Every test process gets a private temporary folder (TMPDIR, which
 * os.tmpdir(), the CLI children the e2e tests spawn and onnxruntime all follow), so that what the tests leave can
 * be told apart from other programs' files in the shared system folder. At the end, anything left there that the
 * tool or its libraries name like their own temporary files (`trt-calib-*` folders and files, onnxruntime's
 * `mat-debug-<pid>.log`) fails the run, listed by name; the folder is removed either way, so the system temporary
 * folder keeps nothing.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sweepAbandonedOnnxruntimeLogs } from '../src/util/run-temp.js';

/** What the tool's and onnxruntime's temporary files are called. */
export const LEAK_PATTERNS: readonly RegExp[] = [/^trt-calib-/, /^mat-debug-\d+\.log$/];

export default function setup(): () => void {
  const previous = process.env.TMPDIR;
  const dir = mkdtempSync(path.join(tmpdir(), 'vitest-trt-calib-tmp-'));
  process.env.TMPDIR = dir;
  return async () => {
    // onnxruntime creates its empty mat-debug-<pid>.log on a thread of its own, at times after a short run's last
    // chance to remove it; the tool's next run removes those of processes that are gone, and so does this check
    // (a non-empty one still fails it). The test worker processes may still be exiting: given a few seconds.
    for (let i = 0; i < 50 && sweepOnce(dir); i++) await new Promise((resolve) => setTimeout(resolve, 100));
    const left = readdirSync(dir).filter((name) => LEAK_PATTERNS.some((p) => p.test(name))).sort();
    const details = left.map((name) => {
      const file = path.join(dir, name);
      try {
        const size = statSync(file).size;
        // a log onnxruntime wrote into says why: show its start
        const text = size > 0 && /^mat-debug-/.test(name) ? `: ${JSON.stringify(readFileSync(file, 'utf8').slice(0, 400))}` : '';
        return `${name} (${size} bytes)${text}`;
      } catch {
        return name;
      }
    });
    rmSync(dir, { recursive: true, force: true });
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
    if (left.length > 0) {
      throw new Error(`The tests left ${left.length} temporary item(s) behind (clean up in afterAll/afterEach, or fix the code that makes them): ${details.join(', ')}`);
    }
  };
}

/** Sweeps onnxruntime's logs of processes that are gone; true while some mat-debug log is still there. */
function sweepOnce(dir: string): boolean {
  sweepAbandonedOnnxruntimeLogs(dir);
  return readdirSync(dir).some((name) => /^mat-debug-\d+\.log$/.test(name));
}
