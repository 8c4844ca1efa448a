import { Command } from 'commander';
import { buildTensorRTBridge } from '../app/build-bridge.js';
import { addCommonOptions, emit, type CommonOptions } from './common.js';

const EXAMPLES = `
Examples:
  npx trt-calib build-bridge
  TENSORRT_ROOT=/opt/TensorRT-10.3.0.26 CUDA_HOME=/usr/local/cuda-12.4 npx trt-calib build-bridge

Compiles the TensorRT bridge (engines, TensorRT's calibrators) against this machine's TensorRT 8.6+ and CUDA with
node-gyp (python3, make and a C++17 compiler). Exits 1 at once, saying where it looked, when TensorRT is not found.
TRT_CALIB_SKIP_TENSORRT=1 is honoured.`;

export function register(program: Command): void {
  const cmd = program
    .command('build-bridge')
    .description('compile the TensorRT bridge on this machine (needs TensorRT with headers, CUDA and a C++ compiler)');
  addCommonOptions(cmd).addHelpText('after', EXAMPLES);
  cmd.action(async (opts: CommonOptions) => {
    const r = await buildTensorRTBridge({ verbose: opts.verbose });
    emit(opts, r, () => `TensorRT bridge built against TensorRT ${r.tensorrt} in ${r.seconds.toFixed(1)} s: ${r.bridge}`);
  });
}
