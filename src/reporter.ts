/**
 * Progress and results go through a Reporter, never console.log in the core (cspell's habit).
 * The CLI picks an implementation (progress bar on a TTY, plain lines otherwise, JSON, quiet);
 * the library API defaults to the silent one.
 */
export interface ProgressUpdate {
  /** Units done so far (images, layers...). */
  done: number;
  /** Optional free text shown beside the bar, e.g. the current file. */
  detail?: string;
}

export interface Reporter {
  /** A long task begins; `total` is in `unit`s (e.g. images). */
  start(task: string, total: number, unit?: string): void;
  update(progress: ProgressUpdate): void;
  /** The current task ended. */
  stop(): void;
  /** A line of information (effective configuration, chosen versions...). */
  info(message: string): void;
  /** Something the user should know but that does not stop the work (a skipped image). */
  warn(message: string): void;
}

export const silentReporter: Reporter = {
  start() {},
  update() {},
  stop() {},
  info() {},
  warn() {},
};
