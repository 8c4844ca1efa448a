import { Command } from 'commander';
import { createRequire } from 'node:module';
import { register as registerBuild } from './build.js';
import { register as registerBuildBridge } from './build-bridge.js';
import { register as registerCache } from './cache.js';
import { register as registerCompare } from './compare.js';
import { register as registerCalibrate } from './calibrate.js';
import { register as registerDoctor } from './doctor.js';
import { register as registerPreview } from './preview.js';
import { register as registerQuantize } from './quantize.js';
import { register as registerSensitivity } from './sensitivity.js';

const require = createRequire(import.meta.url);
const pkg = require('../../package.json') as { version: string };

export const VERSION: string = pkg.version;

const COMMANDS: Array<(program: Command) => void> = [
  registerCalibrate,
  registerPreview,
  registerQuantize,
  registerCompare,
  registerSensitivity,
  registerCache,
  registerBuild,
  registerBuildBridge,
  registerDoctor,
];

/**
 * Builds the commander program. Each command lives in its own file and only declares its options;
 * the work is done by the library API (src/api.ts and the modules behind it).
 */
export async function buildProgram(): Promise<Command> {
  const program = new Command('trt-calib');
  program
    .description('INT8 calibration and quantization for TensorRT and ONNX image models.')
    .version(VERSION, '-V, --version')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage and examples)')
    .configureOutput({ outputError: (str, write) => write(str) })
    .addHelpText(
      'after',
      `
Examples (on the bundled fixtures):
  trt-calib --model test/fixtures/models/mobilenet_v2_nsfw_224.onnx --data test/fixtures/images --preset raw01 --algo all --trt-version 10.3.0
  trt-calib preview --data test/fixtures/images --preset imagenet --out /tmp/grid.png
  trt-calib cache show calib-cache/mobilenet_v2_nsfw_224.entropy2.cache
  trt-calib compare --model test/fixtures/models/mobilenet_v2_nsfw_224.onnx --data test/fixtures/images --preset raw01 \\
                    --cache calib-cache/mobilenet_v2_nsfw_224.entropy2.cache,calib-cache/mobilenet_v2_nsfw_224.minmax.cache
  trt-calib quantize --model test/fixtures/models/mobilenet_v2_nsfw_224.onnx --cache calib-cache/mobilenet_v2_nsfw_224.entropy2.cache

Run trt-calib <command> --help for each command's options and examples.
Exit codes: 0 success, 1 user error (bad input or option; message only, --verbose for a stack trace),
            2 an accuracy gate failed (compare --max-drop, sensitivity --max-drop), 3 internal error (a bug).`,
    );

  // One line per command; each file exports register(program). Order is the order in --help.
  for (const register of COMMANDS) register(program);
  return program;
}
