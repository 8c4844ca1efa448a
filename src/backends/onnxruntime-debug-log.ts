/**
 * onnxruntime's Linux and macOS builds create an empty `mat-debug-<pid>.log` in the temporary folder ($TMPDIR, else
 * /tmp) when their environment starts (the first session of a process; the string sits in libonnxruntime beside
 * its telemetry's trace-folder setting), keep it open and never write to it or remove it: every run left one
 * behind. Nothing reads it, and no session option turns it off, so it is removed right after a session opens; the
 * library's open handle keeps working on an unlinked file.
 */
import { unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { atExit } from '../util/cleanup.js';
import { isDisposableOnnxruntimeLog } from '../util/run-temp.js';

/** The debug log onnxruntime creates for this process, by the temporary-folder rule it follows. */
export function onnxruntimeDebugLogPath(pid = process.pid): string {
  return path.join(tmpdir(), `mat-debug-${pid}.log`);
}

let removalAtExit = false;

/**
 * Removes this process's debug log when it is there and empty (never anything that holds data), now and once more
 * when the process exits: the library does not always create it before the first session returns (a run that
 * opened sessions still left one now and then).
 */
export function removeOnnxruntimeDebugLog(): void {
  removeOnnxruntimeDebugLogAtExit();
  removeEmptyLog();
}

/**
 * Called before the library may start (a session opens): the log is removed at exit, also should the run end
 * (Ctrl-C, SIGTERM, SIGHUP) between the library's start and removeOnnxruntimeDebugLog. A run killed outright
 * leaves it; the next run removes it (sweepAbandonedOnnxruntimeLogs in src/util/run-temp.ts).
 */
export function removeOnnxruntimeDebugLogAtExit(): void {
  if (removalAtExit) return;
  removalAtExit = true;
  atExit(removeEmptyLog);
}

function removeEmptyLog(): void {
  const file = onnxruntimeDebugLogPath();
  try {
    if (isDisposableOnnxruntimeLog(file)) unlinkSync(file);
  } catch {
    // Not created (yet, or on this platform), or already gone.
  }
}
