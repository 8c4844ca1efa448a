/**
 * Temporary files and folders to remove should the process end before their owner removes them: an interrupted
 * run (Ctrl-C: bin/trt-calib.js exits with 130 on SIGINT, 143 on SIGTERM, which runs 'exit' handlers) leaves
 * neither a half-written output's temporary file nor the weights of the blocked-layout model (src/stats/
 * native-collect.ts) behind. Removal at exit is synchronous, as 'exit' handlers must be.
 */
import { rmSync } from 'node:fs';

const pending = new Set<string>();
let hooked = false;

/** Removes `file` (a file or a folder, recursively) at exit unless released first. */
export function removeAtExit(file: string): void {
  pending.add(file);
  if (hooked) return;
  hooked = true;
  process.once('exit', removePending);
}

/** `file` was removed (or kept on purpose) by its owner. */
export function releaseAtExit(file: string): void {
  pending.delete(file);
}

function removePending(): void {
  for (const file of pending) {
    try {
      rmSync(file, { recursive: true, force: true });
    } catch {
      // nothing more can be done at exit
    }
  }
  pending.clear();
}
