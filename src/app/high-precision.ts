/**
 * `--high-precision fp16` for the commands that write or measure an INT8 model (quantize, compare): which tensors
 * stay FP32 (src/precision/fp16-safety.ts on the stored statistics, and the tensors protected from INT8), and the
 * options src/precision/apply.ts builds the INT8 + FP16 model with.
 */
import { UserError } from '../errors.js';
import type { HighPrecisionFp16 } from '../precision/apply.js';
import { tensorsUnsafeInFp16 } from '../precision/fp16-safety.js';
import type { ProtectedTensor } from '../precision/protect.js';
import { loadStatistics } from '../stats/store.js';
import type { TensorStatistics } from '../stats/types.js';

export type HighPrecision = 'fp16' | 'fp32';

/**
 * The statistics the FP16 range rules read. They are required: without max |x| and the histograms an activation
 * beyond FP16's range would silently overflow in the written model.
 */
export async function statisticsForFp16(file: string, modelSha256: string, modelFile: string): Promise<readonly TensorStatistics[]> {
  try {
    return (await loadStatistics(file, { expectModelSha256: modelSha256, modelFile })).tensors;
  } catch (err) {
    if (err instanceof UserError) {
      throw new UserError(`--high-precision fp16 needs the activation statistics of ${modelFile} to keep tensors beyond FP16's range in FP32: ${err.message}`, {
        hint: 'run trt-calib calibrate on the model first (it writes <out-dir>/<model>.stats.msgpack), pass --stats FILE, or use --data to calibrate here',
      });
    }
    throw err;
  }
}

/** The tensors kept in FP32, with the reason: out of FP16's range by the statistics, then the protected ones. */
export function fp32TensorReasons(statistics: readonly TensorStatistics[], protectedTensors: readonly ProtectedTensor[]): Map<string, string> {
  const out = tensorsUnsafeInFp16(statistics);
  for (const p of protectedTensors) if (!out.has(p.tensor)) out.set(p.tensor, `protected from INT8 (${p.kind}): ${p.reason}`);
  return out;
}

export function highPrecisionOptions(statistics: readonly TensorStatistics[], protectedTensors: readonly ProtectedTensor[], options: { ioFp16?: boolean; emulateOnCpu?: boolean } = {}): HighPrecisionFp16 {
  return { fp32Tensors: fp32TensorReasons(statistics, protectedTensors), ioFp16: options.ioFp16 ?? false, emulateOnCpu: options.emulateOnCpu ?? false };
}
