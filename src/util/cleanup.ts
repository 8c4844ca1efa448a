/**
 * What to undo should the process end before the owner of a temporary file, a temporary folder or a lock undoes
 * it: an interrupted run (Ctrl-C, SIGTERM, SIGHUP: bin/trt-calib.js exits through process.exit, which runs 'exit'
 * handlers) leaves neither a half-written output's temporary file, nor its temporary folder (src/util/run-temp.ts),
 * nor a lock on its output folder (src/util/lock.ts). Everything here is synchronous, as 'exit' handlers must be.
 * A run killed outright (SIGKILL) runs none of it: the next run recognises what it left by the pid and start time
 * in the names and removes it.
 */
import { rmSync } from 'node:fs';

const pending = new Set<string>();
const actions = new Set<() => void>();
let hooked = false;

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', runAtExit);
}

/** Removes `file` (a file or a folder, recursively) at exit unless released first. */
export function removeAtExit(file: string): void {
  pending.add(file);
  hook();
}

/** `file` was removed (or kept on purpose) by its owner. */
export function releaseAtExit(file: string): void {
  pending.delete(file);
}

/** Runs `action` (synchronous) at exit unless the returned function is called first. */
export function atExit(action: () => void): () => void {
  actions.add(action);
  hook();
  return () => {
    actions.delete(action);
  };
}

function runAtExit(): void {
  for (const file of pending) {
    try {
      // Retries: a file another thread was creating in a folder being removed makes it ENOTEMPTY once.
      rmSync(file, { recursive: true, force: true, maxRetries: 3, retryDelay: 5 });
    } catch {
      // nothing more can be done at exit; the next run removes it (src/util/run-temp.ts, src/util/fs.ts)
    }
  }
  pending.clear();
  // Locks last: the folder is released once its temporary files are gone.
  for (const action of actions) {
    try {
      action();
    } catch {
      // as above
    }
  }
  actions.clear();
}
