/**
 * --threads is capped at the number of cores (os.availableParallelism()), with a one-line warning, rather than
 * refused: a script or CI config written for a larger machine still runs, and the outputs do not depend on the thread
 * count. Threads beyond the cores buy nothing and cost a lot: onnxruntime's intra-op threads spin while waiting for
 * work, so they take the cores from each other (999 threads on 2 cores turned 0.5 s into 109 s).
 */
import { availableParallelism } from 'node:os';
import type { Reporter } from '../reporter.js';

/** The help text of --threads' limit. */
export function threadsLimitHelp(): string {
  return `at most the number of cores (${availableParallelism()} here): more is capped, with a warning, as threads beyond the cores only slow onnxruntime down`;
}

/** `requested` capped at the number of cores; undefined stays undefined (the command's default). */
export function capThreads(requested: number | undefined, reporter: Pick<Reporter, 'warn'>): number | undefined {
  if (requested === undefined) return undefined;
  const cores = availableParallelism();
  if (requested <= cores) return requested;
  reporter.warn(`--threads ${requested} is more than the ${cores} cores of this machine: using ${cores} (threads beyond the cores only slow onnxruntime down)`);
  return cores;
}
