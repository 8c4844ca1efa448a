import cliProgress from 'cli-progress';
import type { ProgressUpdate, Reporter } from '../reporter.js';

export type ReporterKind = 'auto' | 'bar' | 'plain' | 'json' | 'quiet';

export interface ReporterOptions {
  json?: boolean;
  quiet?: boolean;
  /** Stream to draw on; stderr so that stdout stays clean for results and --json. */
  stream?: NodeJS.WriteStream;
}

/**
 * Picks the reporter: a cli-progress bar on a terminal, plain lines (every 10%) elsewhere,
 * nothing but warnings under --quiet, and nothing at all but final JSON on stdout under --json
 * (warnings still go to stderr as plain lines so that they are never lost).
 */
export function createReporter(options: ReporterOptions = {}): Reporter {
  const stream = options.stream ?? process.stderr;
  if (options.json || options.quiet) return new QuietReporter(stream);
  if (stream.isTTY) return new BarReporter(stream);
  return new PlainReporter(stream);
}

class QuietReporter implements Reporter {
  constructor(private readonly stream: NodeJS.WritableStream) {}
  start() {}
  update() {}
  stop() {}
  info() {}
  warn(message: string) {
    this.stream.write(`warning: ${message}\n`);
  }
}

class PlainReporter implements Reporter {
  private task = '';
  private total = 0;
  private unit = 'items';
  private startedAt = 0;
  private lastPrint = 0;
  private done = 0;
  /** The count the last line showed, so that stop() does not repeat a line the last update printed. */
  private printedDone = -1;
  /** Logs (CI, pipes) get a line every few seconds of a long task and one at its end: not one per 10%. */
  static readonly INTERVAL_MS = 2000;
  constructor(private readonly stream: NodeJS.WritableStream) {}
  start(task: string, total: number, unit = 'items') {
    this.task = task;
    this.total = total;
    this.unit = unit;
    this.done = 0;
    this.printedDone = -1;
    this.startedAt = performance.now();
    this.lastPrint = this.startedAt;
  }
  update(progress: ProgressUpdate) {
    this.done = progress.done;
    const now = performance.now();
    if (this.total > 0 && now - this.lastPrint >= PlainReporter.INTERVAL_MS) {
      this.lastPrint = now;
      this.line();
    }
  }
  stop() {
    if (this.total > 0 && this.printedDone !== this.done) this.line();
    this.total = 0;
  }
  info(message: string) {
    this.stream.write(`${message}\n`);
  }
  warn(message: string) {
    this.stream.write(`warning: ${message}\n`);
  }
  private line() {
    this.printedDone = this.done;
    this.stream.write(`${this.task}: ${this.done}/${this.total} ${this.unit} (${rate(this.done, this.startedAt)} ${this.unit}/s)\n`);
  }
}

class BarReporter implements Reporter {
  private bar?: cliProgress.SingleBar;
  private startedAt = 0;
  private unit = 'items';
  private pending: string[] = [];
  constructor(private readonly stream: NodeJS.WriteStream) {}
  start(task: string, total: number, unit = 'items') {
    this.stop();
    this.unit = unit;
    this.startedAt = performance.now();
    this.bar = new cliProgress.SingleBar(
      {
        stream: this.stream,
        format: `${task} |{bar}| {value}/{total} ${unit} | {rate} ${unit}/s | ETA {eta_formatted} {detail}`,
        hideCursor: true,
        clearOnComplete: false,
        etaBuffer: 20,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(total, 0, { rate: '0.0', detail: '' });
  }
  update(progress: ProgressUpdate) {
    this.bar?.update(progress.done, { rate: rate(progress.done, this.startedAt), detail: progress.detail ?? '' });
  }
  stop() {
    if (this.bar) {
      this.bar.stop();
      this.bar = undefined;
      for (const line of this.pending) this.stream.write(line);
      this.pending = [];
    }
  }
  info(message: string) {
    this.write(`${message}\n`);
  }
  warn(message: string) {
    this.write(`warning: ${message}\n`);
  }
  private write(line: string) {
    // Lines written under a live bar would be overwritten; hold them until it stops.
    if (this.bar) this.pending.push(line);
    else this.stream.write(line);
  }
}

function rate(done: number, startedAt: number): string {
  const seconds = (performance.now() - startedAt) / 1000;
  return seconds > 0 ? (done / seconds).toFixed(1) : '0.0';
}
