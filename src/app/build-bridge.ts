/**
 * `trt-calib build-bridge`: compiles the TensorRT bridge (native/src/tensorrt) on this machine against its
 * TensorRT and CUDA, which the prebuilt package cannot ship (it links the user's libnvinfer and needs its headers).
 * Runs native/install.js --force, the same source build as `npm run build:native` in a clone: node-gyp builds the
 * base addon too, and src/native.ts then prefers that source build to the prebuilt binary.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import { findTensorRTInstall } from '../util/tensorrt-install.js';
import { PACKAGE_ROOT, tensorrtBridgePath } from '../native.js';

export interface BuildBridgeResult {
  bridge: string;
  tensorrt: string;
  seconds: number;
}

export async function buildTensorRTBridge(options: { verbose?: boolean } = {}): Promise<BuildBridgeResult> {
  // Cheap first: without TensorRT's headers and CUDA there is nothing to compile against.
  const detection = findTensorRTInstall();
  if (!detection.found) {
    throw new UserError(`Cannot build the TensorRT bridge: ${detection.reason ?? 'TensorRT was not found'}.`, { hint: detection.hint });
  }
  const started = Date.now();
  const script = path.join(PACKAGE_ROOT, 'native', 'install.js');
  const args = [script, '--force', ...(options.verbose ? ['--verbose'] : [])];
  // install.js prints its own lines (and node-gyp's log when the build fails) on stderr.
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: PACKAGE_ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('close', (c) => resolve(c ?? 1));
  });
  if (code !== 0) {
    throw new UserError(`Building the TensorRT bridge failed (native/install.js exit ${code}); its log is above.`, {
      hint: 'It needs python3, make and a C++17 compiler as well as TensorRT and CUDA; `trt-calib build-bridge --verbose` shows the whole compiler log.',
    });
  }
  const bridge = tensorrtBridgePath();
  if (!existsSync(bridge)) {
    throw new UserError(`The build finished but ${bridge} is not there: node-gyp skipped the bridge.`, {
      hint: 'Run `trt-calib build-bridge --verbose` and look for the trt-calib: lines about TensorRT; `trt-calib doctor` shows what was found.',
    });
  }
  return { bridge, tensorrt: detection.versionString ?? 'unknown', seconds: (Date.now() - started) / 1000 };
}
