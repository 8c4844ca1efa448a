import { Command } from 'commander';
import { createRequire } from 'node:module';
import { register as registerBuild } from './build.js';
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
    .configureOutput({ outputError: (str, write) => write(str) });

  // One line per command; each file exports register(program). Order is the order in --help.
  for (const register of COMMANDS) register(program);
  return program;
}
