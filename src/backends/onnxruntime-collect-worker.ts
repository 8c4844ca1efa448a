/**
 * Worker thread that runs the model with every activation exposed and counts the statistics: the fallback path,
 * through onnxruntime-node, where onnxruntime's C API cannot be used directly (./onnxruntime-collect.ts is the usual
 * path, and gives the same bytes).
 *
 * onnxruntime-node runs a session synchronously on the thread that calls it: on the main thread, each run (30 ms
 * per image for MobileNetV2 with its 112 activations exposed) would stop the image pipeline from handing over
 * decoded images and starting new decodes. Here the model runs beside the decoding. Measured on 2 cores, 43
 * images: 1.9 s instead of 2.5 s on the main thread. Each batch is counted (native kernels on the libuv pool)
 * before the next run, which writes into the same output buffers: overlapping the two, with fresh buffers per run,
 * was 5% faster but doubled the peak memory (1.25 GB instead of 0.6). Batches are processed strictly in order,
 * so the statistics are the same as on one thread.
 *
 * Protocol (see ./onnxruntime-collect-client.ts): in: {type:'batch', dims, data} (a copy, transferred), {type:'end'};
 * out: {type:'ready'}, {type:'done'} per batch, {type:'result', tensors}, {type:'error', error}.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { onnxruntimeBackend } from './onnxruntime.js';
import { UserError } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { StatisticsCollector } from '../stats/collector.js';
import { padZeros, type CollectionPlan, type DerivedTensor } from './collection-plan.js';

export interface CollectWorkerData {
  modelFile: string;
  inputName: string;
  /** Tensors onnxruntime exports, and those counted from them (./collection-plan.ts). */
  plan: CollectionPlan;
  threads: number;
}

export type ToWorker = { type: 'batch'; dims: number[]; data: Float32Array } | { type: 'end' };
export type SerializedError = { name: string; message: string; hint?: string; stack?: string };
export type FromWorker =
  | { type: 'ready' }
  | { type: 'done' }
  | { type: 'result'; tensors: ReturnType<StatisticsCollector['result']> }
  | { type: 'error'; error: SerializedError };

function serialize(err: unknown): SerializedError {
  const e = err instanceof Error ? err : new Error(String(err));
  return { name: e instanceof UserError ? 'UserError' : e.name, message: e.message, ...(e instanceof UserError && e.hint ? { hint: e.hint } : {}), ...(e.stack ? { stack: e.stack } : {}) };
}

async function main(port: NonNullable<typeof parentPort>, config: CollectWorkerData): Promise<void> {
  const { exported, derived } = config.plan;
  const session = await onnxruntimeBackend.open({ path: config.modelFile }, { threads: config.threads, expose: exported });
  const byRoot = new Map<string, DerivedTensor[]>();
  for (const d of derived) byRoot.set(d.root, [...(byRoot.get(d.root) ?? []), d]);
  const collector = new StatisticsCollector();
  let chain: Promise<void> = Promise.resolve();
  let failed = false;
  const fail = (err: unknown) => {
    if (failed) return;
    failed = true;
    port.postMessage({ type: 'error', error: serialize(err) } satisfies FromWorker);
  };
  port.on('message', (m: ToWorker) => {
    chain = chain
      .then(async () => {
        if (failed) return;
        if (m.type === 'batch') {
          const pending: Promise<void>[] = [];
          await session.runEach(
            { [config.inputName]: { dtype: 'float32', dims: m.dims, data: m.data } },
            exported,
            (name, t: Tensor) => {
              const values = t.data instanceof Float32Array || (t.dtype === 'float16' && t.data instanceof Uint16Array) ? t.data : Float32Array.from(t.data as Float64Array);
              pending.push(collector.add(name, values));
              // Clip/Relu/Pad outputs counted from this tensor's values (./collection-plan.ts; float32 roots only).
              for (const d of byRoot.get(name) ?? []) {
                pending.push(collector.add(d.name, values as Float32Array, d.clamp));
                if (d.pads) pending.push(collector.addZeros(d.name, padZeros(t.dims, d.pads)));
              }
            },
            { reuseOutputs: true },
          );
          // The next run writes into the same output buffers: count this batch first.
          await Promise.all(pending);
          port.postMessage({ type: 'done' } satisfies FromWorker);
        } else {
          await collector.flush();
          const tensors = collector.result();
          await session.release();
          port.postMessage({ type: 'result', tensors } satisfies FromWorker, tensors.map((t) => t.hist.buffer as ArrayBuffer));
        }
      })
      .catch(fail);
  });
  port.postMessage({ type: 'ready' } satisfies FromWorker);
}

if (parentPort) {
  const port = parentPort;
  main(port, workerData as CollectWorkerData).catch((err) => port.postMessage({ type: 'error', error: serialize(err) } satisfies FromWorker));
}
