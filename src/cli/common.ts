import { Command, InvalidArgumentError, Option } from 'commander';
import type { Reporter } from '../reporter.js';
import { createReporter } from './reporters.js';

/** Options every command takes. */
export interface CommonOptions {
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

export function addCommonOptions(cmd: Command): Command {
  return cmd
    .option('--json', 'machine-readable JSON on stdout; no progress bar')
    .option('-q, --quiet', 'print nothing but warnings and errors')
    .option('--verbose', 'more detail, and stack traces on errors');
}

export function reporterFor(opts: CommonOptions): Reporter {
  return createReporter({ json: opts.json, quiet: opts.quiet });
}

/** Write a result: JSON when asked, otherwise the human text. */
export function emit(opts: CommonOptions, json: unknown, text: () => string): void {
  if (opts.json) process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
  else if (!opts.quiet) {
    const out = text();
    if (out.length > 0) process.stdout.write(out.endsWith('\n') ? out : `${out}\n`);
  }
}

/** Commander argument parsers that reject bad values with the option's name. */
export function parseInteger(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    if (!/^[+-]?\d+$/.test(value.trim())) throw new InvalidArgumentError(`Expected an integer from ${min} to ${max}.`);
    const n = Number.parseInt(value, 10);
    if (n < min || n > max) throw new InvalidArgumentError(`Expected an integer from ${min} to ${max}.`);
    return n;
  };
}

export function parseNumber(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`Expected a number from ${min} to ${max}.`);
    }
    return n;
  };
}

export function choice<T extends string>(flags: string, description: string, choices: readonly T[]): Option {
  return new Option(flags, description).choices(choices as unknown as string[]);
}
