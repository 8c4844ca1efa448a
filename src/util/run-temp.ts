/**
 * The one temporary folder of a run: <tmpdir>/trt-calib-run.<pid>.<start time>. Every temporary file or folder the
 * tool makes outside its outputs' folders (the blocked-layout model and its weights, src/backends/onnxruntime-collect.ts;
 * the model bytes handed to TensorRT's parser, src/backends/tensorrt.ts) goes inside it, so that:
 * - at exit (also Ctrl-C, SIGTERM, SIGHUP) one synchronous step removes all of it. The folder is first renamed, so
 *   that a file another thread is still creating under the old path (onnxruntime writing weights) fails instead of
 *   appearing in a folder being removed; this closes the race between the exit handler and in-flight writes;
 * - a run killed outright (SIGKILL, a crash, power loss) leaves a folder whose name says whose it was: the next run
 *   that needs a temporary folder or writes an output sees that the process is gone and removes it.
 */
import { randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, unlinkSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { atExit } from './cleanup.js';
import { isProcessAlive, ownProcess } from './process-identity.js';

const PREFIX = 'trt-calib-run.';
/** A run's folder, or one renamed for removal at exit (".<hex>.removing"). */
const RUN_FOLDER = /^trt-calib-run\.(\d+)\.(\d+)(?:\.[0-9a-f]+\.removing)?$/;

let hooked = false;

/** This run's temporary folder (its path; created by newTemporaryFolder). */
export function runTempDir(): string {
  const { pid, start } = ownProcess();
  return path.join(tmpdir(), `${PREFIX}${pid}.${start}`);
}

/** A new, empty folder inside this run's temporary folder; remove it with removeTemporaryFolder(). */
export async function newTemporaryFolder(name: string): Promise<string> {
  const dir = runTempDir();
  if (!hooked) {
    hooked = true;
    // Registered before the folder exists: an exit between the two cannot leave it.
    atExit(removeRunFolder);
    sweepAbandonedRunFolders();
  }
  for (let attempt = 0; ; attempt++) {
    mkdirSync(dir, { recursive: true }); // synchronous: the folder exists, or not, when an exit handler runs
    try {
      return await mkdtemp(path.join(dir, `${name}-`));
    } catch (err) {
      // removeTemporaryFolder() of another task removed the run's folder in between: make it again.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt > 3) throw err;
    }
  }
}

/** Removes a folder made by newTemporaryFolder(), and the run's folder once it is empty. */
export async function removeTemporaryFolder(folder: string): Promise<void> {
  await rm(folder, { recursive: true, force: true, maxRetries: 3, retryDelay: 10 });
  try {
    rmdirSync(runTempDir()); // fails while another temporary folder is in use: it stays until that one goes
  } catch {
    // not empty, or already gone
  }
}

/** At exit: rename the run's folder out of the way of in-flight writes, then remove it. */
function removeRunFolder(): void {
  const dir = runTempDir();
  const removing = `${dir}.${randomBytes(4).toString('hex')}.removing`;
  try {
    renameSync(dir, removing);
  } catch {
    return; // no such folder: nothing to remove
  }
  rmSync(removing, { recursive: true, force: true, maxRetries: 3, retryDelay: 5 });
}

/**
 * Removes the temporary folders of runs whose process is gone (killed, crashed). Returns the names removed.
 * Folders of live processes, this one's included, are left alone.
 */
export function sweepAbandonedRunFolders(root = tmpdir()): string[] {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  const own = ownProcess();
  const removed: string[] = [];
  for (const name of names) {
    const m = RUN_FOLDER.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    const start = m[2]!;
    if (pid === own.pid && start === own.start) continue;
    if (isProcessAlive(pid, start)) continue;
    try {
      rmSync(path.join(root, name), { recursive: true, force: true });
      removed.push(name);
    } catch {
      // another user's, or being removed: left for later
    }
  }
  removed.push(...sweepAbandonedOnnxruntimeLogs(root));
  return removed;
}

const ONNXRUNTIME_DEBUG_LOG = /^mat-debug-(\d+)\.log$/;

/** A line of the telemetry SDK's own diagnostics: `<ISO time>|<pid>|<level>|EventsSDK.<component>|<message>`. */
const EVENTS_SDK_LINE = /^\d{4}-\d\d-\d\dT[\d:.]+Z\|\d+\|[A-Z]\|EventsSDK\.[A-Za-z.]+\|/;

/**
 * Whether onnxruntime's mat-debug log holds nothing worth keeping: empty, or only lines of its telemetry SDK's own
 * diagnostics (seen when several processes start at once in one TMPDIR: "Failed to query database ... (database is
 * locked)" about the SDK's offline store). Anything else, or a file over 64 KiB, is kept.
 */
export function isDisposableOnnxruntimeLog(file: string): boolean {
  const st = lstatSync(file);
  if (!st.isFile()) return false;
  if (st.size === 0) return true;
  if (st.size > 64 * 1024) return false;
  const lines = readFileSync(file, 'utf8').split('\n').filter((line) => line.length > 0);
  return lines.every((line) => EVENTS_SDK_LINE.test(line));
}

/**
 * onnxruntime's empty mat-debug-<pid>.log (src/backends/onnxruntime-debug-log.ts) of processes that are gone: the
 * library creates it on a thread of its own, at times after the run's last chance to remove it (or the run was
 * killed). Only an empty one (or one holding only the telemetry SDK's diagnostics, isDisposableOnnxruntimeLog), and
 * only when no process has that pid any more.
 */
export function sweepAbandonedOnnxruntimeLogs(root = tmpdir()): string[] {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = ONNXRUNTIME_DEBUG_LOG.exec(name);
    if (!m || Number(m[1]) === process.pid || isProcessAlive(Number(m[1]), '0')) continue;
    const file = path.join(root, name);
    try {
      if (isDisposableOnnxruntimeLog(file)) {
        unlinkSync(file);
        removed.push(name);
      }
    } catch {
      // gone already, or not ours
    }
  }
  return removed;
}
