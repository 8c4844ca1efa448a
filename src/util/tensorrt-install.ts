/**
 * Where TensorRT is installed: the one detection the native build, `doctor`, the TensorRT backend and the cache
 * version use (native/find-tensorrt.js, plain JavaScript because binding.gyp runs it before anything is built).
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { findTensorRT, type TensorRTDetection } from '../../native/find-tensorrt.js';

export type { TensorRTDetection };
export { versionFromHeader } from '../../native/find-tensorrt.js';

export function findTensorRTInstall(env: NodeJS.ProcessEnv = process.env): TensorRTDetection {
  return findTensorRT(env);
}

/**
 * libnvinfer.so.X.Y.Z in the library folders the detection searched: the runtime can be there without the
 * headers (runtime-only packages), and its file name still says the version.
 */
export function findTensorRTLibraryFile(detection: TensorRTDetection | undefined): string | undefined {
  for (const dir of detection?.searched.tensorrtLib ?? []) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    const lib = names.find((n) => /^libnvinfer\.so\.\d+\.\d+\.\d+$/.test(n));
    if (lib) return path.join(dir, lib);
  }
  return undefined;
}
