import { CommanderError } from 'commander';
import { EXIT, GateError, UserError } from '../errors.js';
import { buildProgram } from './program.js';

/**
 * Runs the CLI and maps every outcome to an exit code:
 * 0 success, 1 user error (message only), 2 accuracy gate failed, 3 internal error (with stack trace).
 */
export async function main(argv: string[]): Promise<number> {
  const verbose = argv.includes('--verbose');
  try {
    const program = await buildProgram();
    await program.parseAsync(argv);
    return EXIT.ok;
  } catch (err) {
    return report(err, verbose);
  }
}

function report(err: unknown, verbose: boolean): number {
  if (err instanceof CommanderError) {
    // Commander has already printed its message (unknown option, missing argument...).
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT.ok;
    return err.exitCode === 0 ? EXIT.ok : EXIT.user;
  }
  if (err instanceof UserError) {
    process.stderr.write(`trt-calib: error: ${err.message}\n`);
    if (err.hint) process.stderr.write(`  ${err.hint}\n`);
    if (verbose && err.stack) process.stderr.write(`${err.stack}\n`);
    return EXIT.user;
  }
  if (err instanceof GateError) {
    process.stderr.write(`trt-calib: ${err.message}\n`);
    return EXIT.gate;
  }
  const e = err instanceof Error ? err : new Error(String(err));
  process.stderr.write(`trt-calib: internal error: ${e.message}\n${e.stack ?? ''}\n`);
  process.stderr.write('This is a bug in trt-calib; please report it with the command line above.\n');
  return EXIT.internal;
}
