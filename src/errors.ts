/**
 * Error classes shared by the library and the CLI.
 *
 * UserError: something the user can fix (a missing file, a bad option, a corrupt cache). The CLI prints
 * its message alone, no stack trace, and exits 1.
 * GateError: an accuracy gate (`--max-drop`) failed; exit 2.
 * Anything else is an internal error: printed with its stack trace, exit 3.
 */
export class UserError extends Error {
  override name = 'UserError';
  /** Optional hint printed on its own line under the message: what to do next. */
  readonly hint?: string;
  constructor(message: string, options?: { hint?: string; cause?: unknown }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.hint = options?.hint;
  }
}

export class GateError extends Error {
  override name = 'GateError';
}

export const EXIT = {
  ok: 0,
  user: 1,
  gate: 2,
  internal: 3,
} as const;

/** One error shape for argument validation, as sharp does: "Expected X for Y but received Z". */
export function invalidParameter(name: string, expected: string, received: unknown): UserError {
  return new UserError(`Expected ${expected} for ${name} but received ${describe(received)}`);
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === undefined || value === null) return String(value);
  if (Array.isArray(value)) return `[${value.map(describe).join(', ')}]`;
  if (typeof value === 'object') return JSON.stringify(value);
  return `${String(value)} of type ${typeof value}`;
}

export function isUserError(err: unknown): err is UserError {
  return err instanceof UserError;
}
