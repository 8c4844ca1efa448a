/**
 * A lock on an output folder, so that the outputs one run writes there form one consistent set: a second run into
 * the same folder (with the caches of run A and the statistics of run B, both exiting 0) is refused instead.
 *
 * The lock is the file <folder>/.trt-calib.lock holding the holder's pid, start time (src/util/process-identity.ts)
 * and command line. It is created atomically with its content (written to a temporary file, then link()ed to the
 * lock's name, which fails when the name exists), so no run ever reads a half-written lock. A lock whose process is
 * gone (killed) is stale and taken over: renamed away (only one of two runs taking it over at once can rename it),
 * checked to be the stale one, then replaced. Locks are re-entrant within a process (quantize --data runs calibrate
 * into the same folder) and released at the end of the run, or at exit.
 */
import { randomBytes } from 'node:crypto';
import { linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import { atExit } from './cleanup.js';
import { isProcessAlive, ownProcess } from './process-identity.js';

export const LOCK_FILE = '.trt-calib.lock';

interface LockContent {
  pid: number;
  start: string;
  token: string;
  since: string;
  command: string;
}

interface Held {
  count: number;
  file: string;
  token: string;
  unhook: () => void;
}

const held = new Map<string, Held>();

export interface FolderLock {
  readonly folder: string;
  release(): void;
}

/**
 * Locks `folder` (which exists) for this process. `option` names the option that chose the folder, for the hint.
 * Throws a UserError naming the folder and the other process when a live run holds it.
 */
export function lockFolder(folder: string, option: string): FolderLock {
  const existing = held.get(folder);
  if (existing) {
    existing.count++;
    return handle(folder);
  }
  const file = path.join(folder, LOCK_FILE);
  const { pid, start } = ownProcess();
  const content: LockContent = {
    pid,
    start,
    token: randomBytes(8).toString('hex'),
    since: new Date().toISOString(),
    command: process.argv.slice(1).join(' ').slice(0, 500),
  };
  const text = `${JSON.stringify(content)}\n`;
  for (let attempt = 0; attempt < 5; attempt++) {
    const tmp = `${file}.${pid}-${start}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(tmp, text, { flag: 'wx' });
    try {
      linkSync(tmp, file);
      const entry: Held = { count: 1, file, token: content.token, unhook: () => {} };
      held.set(folder, entry);
      entry.unhook = atExit(() => releaseFile(file, content.token));
      return handle(folder);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      unlinkSync(tmp);
    }
    const other = readLock(file);
    if (other === 'gone') continue;
    if (other !== 'unreadable' && isProcessAlive(other.pid, other.start)) {
      throw new UserError(
        `Another trt-calib run (pid ${other.pid}, since ${other.since}: ${other.command}) is writing into ${folder}; two runs into one folder would leave a mixed set of outputs.`,
        { hint: `Wait for it to finish, or choose another folder with ${option}. (The lock is ${file}.)` },
      );
    }
    takeOver(file, other);
  }
  throw new UserError(`Could not lock ${folder}: other runs keep taking it.`, { hint: `Try again, or choose another folder with ${option}.` });
}

function handle(folder: string): FolderLock {
  let released = false;
  return {
    folder,
    release() {
      if (released) return;
      released = true;
      const entry = held.get(folder);
      if (!entry || --entry.count > 0) return;
      held.delete(folder);
      entry.unhook();
      releaseFile(entry.file, entry.token);
    },
  };
}

/** Removes the lock file if it is still this process's (its token). */
function releaseFile(file: string, token: string): void {
  const now = readLock(file);
  if (now === 'gone' || now === 'unreadable' || now.token !== token) return;
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}

function readLock(file: string): LockContent | 'gone' | 'unreadable' {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'gone' : 'unreadable';
  }
  try {
    const c = JSON.parse(text) as LockContent;
    if (typeof c.pid === 'number' && typeof c.start === 'string' && typeof c.token === 'string') return c;
  } catch {
    // not a lock this tool wrote
  }
  return 'unreadable';
}

/**
 * Moves a stale lock out of the way. Renaming is atomic: of two runs taking over at once, the second renames
 * nothing (ENOENT) or the first one's fresh lock; that one is put back.
 */
function takeOver(file: string, stale: LockContent | 'unreadable'): void {
  const moved = `${file}.${randomBytes(4).toString('hex')}.stale`;
  try {
    renameSync(file, moved);
  } catch {
    return; // someone else moved it: try again
  }
  const got = readLock(moved);
  const isStale = stale === 'unreadable' ? got === 'unreadable' : got !== 'gone' && got !== 'unreadable' && got.token === stale.token;
  if (!isStale) {
    try {
      linkSync(moved, file); // a live run's lock: give it back
    } catch {
      // a third run has locked meanwhile; the live lock we moved is lost, and its run finishes unaware
    }
  }
  try {
    unlinkSync(moved);
  } catch {
    // gone
  }
}
