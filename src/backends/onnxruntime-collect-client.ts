/**
 * The main-thread side of ./onnxruntime-collect-worker.ts: feeds batches (at most two in flight), and returns the statistics.
 */
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { UserError } from '../errors.js';
import { PACKAGE_ROOT } from '../native.js';
import type { CollectWorkerData, FromWorker, SerializedError, ToWorker } from './onnxruntime-collect-worker.js';
import type { TensorStatistics } from '../stats/types.js';
import type { CollectingSession } from './types.js';

/** Batches handed over and not yet counted: enough to keep the worker busy, few enough to bound memory. */
const MAX_IN_FLIGHT = 2;

function revive(e: SerializedError): Error {
  const err = e.name === 'UserError' ? new UserError(e.message, e.hint ? { hint: e.hint } : undefined) : new Error(e.message);
  if (e.name !== 'UserError' && e.stack) err.stack = e.stack;
  return err;
}

export class StatisticsWorker implements CollectingSession {
  private readonly worker: Worker;
  private inFlight = 0;
  private failure: Error | undefined;
  private wake: Array<() => void> = [];
  private result: Promise<TensorStatistics[]>;
  private ready: Promise<void>;

  constructor(config: CollectWorkerData) {
    // The compiled worker, also when the caller runs from the TypeScript sources (tests): `npm test` builds first.
    const entry = path.join(PACKAGE_ROOT, 'dist', 'backends', 'onnxruntime-collect-worker.js');
    this.worker = new Worker(entry, { workerData: config });
    let resolveReady!: () => void;
    let resolveResult!: (t: TensorStatistics[]) => void;
    let reject!: (e: Error) => void;
    this.ready = new Promise<void>((r) => (resolveReady = r));
    this.result = new Promise<TensorStatistics[]>((res, rej) => {
      resolveResult = res;
      reject = rej;
    });
    const failWith = (err: Error) => {
      this.failure ??= err;
      reject(this.failure);
      resolveReady();
      for (const w of this.wake.splice(0)) w();
    };
    this.worker.on('message', (m: FromWorker) => {
      if (m.type === 'ready') resolveReady();
      else if (m.type === 'done') {
        this.inFlight--;
        this.wake.shift()?.();
      } else if (m.type === 'result') resolveResult(m.tensors);
      else failWith(revive(m.error));
    });
    this.worker.on('error', (err) => failWith(err));
    this.worker.on('exit', (code) => failWith(new Error(`the statistics worker stopped (exit code ${code})`)));
    this.result.catch(() => undefined);
  }

  /** Resolves once the model is loaded in the worker (or rejects with why it could not be). */
  async start(): Promise<void> {
    await this.ready;
    if (this.failure) throw this.failure;
  }

  /** Hands a batch over: a copy goes to the worker, so `data` is free again once this resolves. */
  async add(dims: number[], data: Float32Array): Promise<void> {
    while (this.inFlight >= MAX_IN_FLIGHT && !this.failure) await new Promise<void>((r) => this.wake.push(r));
    if (this.failure) throw this.failure;
    this.inFlight++;
    const copy = data.slice();
    this.worker.postMessage({ type: 'batch', dims, data: copy } satisfies ToWorker, [copy.buffer as ArrayBuffer]);
  }

  /** Every tensor's statistics, sorted by name, once all batches are counted. */
  async finish(): Promise<TensorStatistics[]> {
    if (this.failure) throw this.failure;
    this.worker.postMessage({ type: 'end' } satisfies ToWorker);
    return this.result;
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}
