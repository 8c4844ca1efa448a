/**
 * The checks every command makes on the files it will write, before any work (before the first image is decoded):
 *
 * - no output is an input: an output path that resolves (realpath, links followed; for a path that does not exist
 *   yet, the realpath of its nearest existing folder plus the rest) to an input (the model, its external data, a
 *   cache, statistics or a precision map being read), or that is the same file through a hard link (device and
 *   inode), is refused; so are two outputs of one run that are the same file;
 * - every output can be written: an existing output that is a folder (or not a regular file) is refused; each
 *   output folder is created, and a probe file created, renamed and removed there, so that a folder that is a file,
 *   lies under a file, or cannot be written fails now, with the option that set it, rather than after the pass;
 * - folders made for the outputs are removed again if the run ends leaving them empty (it failed or was stopped);
 * - the output folders are locked for the run (src/util/lock.ts), and what killed runs left there (temporary
 *   files of writeFileAtomic) or in the temporary folder (src/util/run-temp.ts) is removed.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, realpathSync, renameSync, rmdirSync, statSync, unlinkSync, writeFileSync, type Stats } from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import { atExit } from './cleanup.js';
import { sweepAbandonedTemporaryFiles } from './fs.js';
import { lockFolder, type FolderLock } from './lock.js';
import { ownProcess } from './process-identity.js';
import { sweepAbandonedRunFolders } from './run-temp.js';

export interface OutputPath {
  path: string;
  /** The option that set the path ('--out', '--stats-out', or '--out-dir' for a default output), for messages. */
  option: string;
}

export interface InputPath {
  path: string;
  /** What it is, for messages: '--model', 'the external data of --model', '--cache'... */
  what: string;
}

export interface PreparedOutputs {
  /** Releases the output folders' locks (also done at exit). */
  release(): void;
}

interface Resolved {
  /** Real path: of the file itself when it exists, else of its nearest existing folder joined with the rest. */
  real: string;
  stats?: Stats;
}

function resolveLocation(file: string): Resolved {
  const abs = path.resolve(file);
  try {
    const real = realpathSync(abs);
    return { real, stats: statSync(real) };
  } catch {
    // Not there yet (or a dangling link): the nearest folder that exists, resolved, plus the names below it.
  }
  const rest = [path.basename(abs)];
  for (let dir = path.dirname(abs); ; dir = path.dirname(dir)) {
    try {
      return { real: path.join(realpathSync(dir), ...rest) };
    } catch {
      if (path.dirname(dir) === dir) return { real: abs };
      rest.unshift(path.basename(dir));
    }
  }
}

function sameFile(a: Resolved, b: Resolved): boolean {
  if (a.real === b.real) return true;
  return !!a.stats && !!b.stats && a.stats.dev === b.stats.dev && a.stats.ino === b.stats.ino;
}

/** The checks above; throws a UserError naming the option and the path on the first problem. */
export function prepareOutputs(outputs: readonly OutputPath[], inputs: readonly InputPath[]): PreparedOutputs {
  const resolvedInputs = inputs.map((i) => ({ ...i, at: resolveLocation(i.path) })).filter((i) => i.at.stats);
  const resolvedOutputs = outputs.map((o) => ({ ...o, at: resolveLocation(o.path) }));
  resolvedOutputs.forEach((o, k) => {
    const input = resolvedInputs.find((i) => sameFile(o.at, i.at));
    if (input) {
      const how = o.at.real !== input.at.real ? ' (a hard link to the same file)' : o.at.real !== path.resolve(o.path) || input.at.real !== path.resolve(input.path) ? ` (through a link: both are ${o.at.real})` : '';
      throw new UserError(`${o.option} ${o.path} is ${input.what} ${input.path}${how}: writing it would destroy an input.`, {
        hint: `Choose another path for ${o.option}.`,
      });
    }
    const other = resolvedOutputs.slice(0, k).find((p) => sameFile(o.at, p.at));
    if (other) {
      throw new UserError(`${o.option} ${o.path} and ${other.option} ${other.path} are the same file: one output would replace the other.`, {
        hint: `Give ${o.option} and ${other.option} different paths.`,
      });
    }
    if (o.at.stats?.isDirectory()) throw new UserError(`${o.option} ${o.path} is a folder; it must name a file.`, { hint: `Give ${o.option} a file path, e.g. ${path.join(o.path, 'out')}.` });
    if (o.at.stats && !o.at.stats.isFile()) throw new UserError(`${o.option} ${o.path} is not a regular file (a device, a pipe or a socket); outputs are written to a new file and renamed over the old one.`, { hint: `Give ${o.option} a file path.` });
  });

  // Each output folder, once, under the option of its first output.
  const folders = new Map<string, string>();
  for (const o of outputs) {
    const dir = path.dirname(path.resolve(o.path));
    if (!folders.has(dir)) folders.set(dir, o.option);
  }
  sweepAbandonedRunFolders();
  const locks: FolderLock[] = [];
  // Folders made here are removed again if the run leaves them empty (it failed, or was interrupted).
  const created: string[] = [];
  const removeEmptyFolders = () => {
    for (const dir of created.splice(0).reverse()) {
      try {
        rmdirSync(dir);
      } catch {
        // holds outputs (or something else): kept
      }
    }
  };
  let unhook = () => {};
  const release = () => {
    for (const lock of locks.splice(0)) lock.release();
    removeEmptyFolders();
    unhook();
  };
  try {
    const locked = new Set<string>();
    for (const [dir, option] of folders) {
      checkWritableFolder(dir, option, created);
      const real = realpathSync(dir);
      if (locked.has(real)) continue;
      locked.add(real);
      locks.push(lockFolder(real, option));
      sweepAbandonedTemporaryFiles(real);
    }
    // After the locks' own exit actions: at exit, the locks go first, then the folders they leave empty.
    unhook = atExit(removeEmptyFolders);
  } catch (err) {
    release();
    throw err;
  }
  return { release };
}

/** Creates `dir` and checks that a file can be created and renamed in it. */
function checkWritableFolder(dir: string, option: string, created: string[]): void {
  try {
    makeFolders(dir, created);
  } catch (err) {
    const file = firstNonFolder(dir);
    throw new UserError(
      file ? `${option}: cannot create the folder ${dir}: ${file} is a file, not a folder.` : `${option}: cannot create the folder ${dir}: ${(err as Error).message}`,
      { hint: `Choose another folder with ${option}.`, cause: err },
    );
  }
  const { pid, start } = ownProcess();
  const hex = randomBytes(4).toString('hex');
  // Named as writeFileAtomic names its temporary files: a probe left by a killed run is swept like them.
  const probe = path.join(dir, `.trt-calib-probe.${pid}-${start}.${hex}.tmp`);
  const renamed = path.join(dir, `.trt-calib-probe-renamed.${pid}-${start}.${hex}.tmp`);
  try {
    writeFileSync(probe, '', { flag: 'wx' });
    renameSync(probe, renamed);
    unlinkSync(renamed);
  } catch (err) {
    for (const f of [probe, renamed]) {
      try {
        unlinkSync(f);
      } catch {
        // was not made
      }
    }
    throw new UserError(`${option}: cannot write in ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}.`, { hint: `Choose a folder you can write to with ${option}.`, cause: err });
  }
}

/**
 * mkdir -p, one level at a time: Node's recursive mkdirSync never returns for a folder under /proc (it retries the
 * ENOENT there forever), where this fails at once.
 */
function makeFolders(dir: string, created: string[]): void {
  const missing: string[] = [];
  let at = path.resolve(dir);
  for (;;) {
    try {
      statSync(at);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      missing.unshift(at);
      const up = path.dirname(at);
      if (up === at) break;
      at = up;
    }
  }
  for (const folder of missing) {
    try {
      mkdirSync(folder);
      created.push(folder);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // made by another run meanwhile
    }
  }
  if (!statSync(dir).isDirectory()) throw Object.assign(new Error(`${dir} is not a folder`), { code: 'ENOTDIR' });
}

/** The first existing component of `dir` that is not a folder, if any. */
function firstNonFolder(dir: string): string | undefined {
  const parts = path.resolve(dir).split(path.sep);
  for (let i = 2; i <= parts.length; i++) {
    const p = parts.slice(0, i).join(path.sep) || path.sep;
    try {
      if (!statSync(p).isDirectory()) return p;
    } catch {
      return undefined;
    }
  }
  return undefined;
}
