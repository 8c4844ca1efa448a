import { randomBytes } from 'node:crypto';
import { close, fsync, openSync, promises as fsp, readdirSync, rmSync, write } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { UserError } from '../errors.js';
import { releaseAtExit, removeAtExit } from './cleanup.js';
import { isProcessAlive, ownProcess } from './process-identity.js';

const writeFd = promisify(write);
const fsyncFd = promisify(fsync);
const closeFd = promisify(close);

/**
 * Writes a file atomically: the data goes to a temporary file in the same folder, is flushed to disk,
 * then renamed over the target. An interrupted run leaves either the old file or the new one, never half.
 *
 * The temporary file is named .<name>.<pid>-<start time>.<hex>.tmp, so that one left by a killed run is known as
 * abandoned by the next run into the folder (sweepAbandonedTemporaryFiles). It is created synchronously, after
 * being registered for removal at exit: when an exit handler runs, the file either exists and is removed, or was
 * never made. Writes, fsync and the rename still in flight on other threads at that moment create no new name.
 * `option` names the option that set the path, for the message when the folder cannot be written.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array, option = '--out'): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  try {
    await fsp.mkdir(dir, { recursive: true });
  } catch (err) {
    throw new UserError(`Cannot create the output folder ${dir}: ${(err as Error).message}`, { hint: `Choose another path with ${option}.`, cause: err });
  }
  const { pid, start } = ownProcess();
  const tmp = path.join(dir, `.${path.basename(file)}.${pid}-${start}.${randomBytes(4).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    removeAtExit(tmp);
    fd = openSync(tmp, 'wx', 0o666);
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    for (let offset = 0; offset < bytes.length; ) offset += (await writeFd(fd, bytes, offset, bytes.length - offset)).bytesWritten;
    await fsyncFd(fd);
    const closing = fd;
    fd = undefined;
    await closeFd(closing);
    await fsp.rename(tmp, file);
    releaseAtExit(tmp);
  } catch (err) {
    if (fd !== undefined) await closeFd(fd).catch(() => {});
    await fsp.unlink(tmp).catch(() => {});
    releaseAtExit(tmp);
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || code === 'ENOSPC' || code === 'EISDIR' || code === 'ENOTDIR') {
      throw new UserError(`Cannot write ${file}: ${(err as Error).message}`, { hint: `Choose another output path with ${option}.`, cause: err });
    }
    throw err;
  }
}

/** writeFileAtomic's temporary files: .<name>.<pid>-<start>.<hex>.tmp, and .<name>.<pid>.<hex>.tmp of older versions. */
const TEMPORARY_FILE = /^\..+\.(\d+)(?:-(\d+))?\.[0-9a-f]{8}\.tmp$/;

/**
 * Removes from `dir` the temporary files of writeFileAtomic left by runs whose process is gone (killed during their
 * final writes). Returns the names removed. Files of live processes are left alone.
 */
export function sweepAbandonedTemporaryFiles(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = TEMPORARY_FILE.exec(name);
    if (!m || isProcessAlive(Number(m[1]), m[2] ?? '0')) continue;
    try {
      rmSync(path.join(dir, name), { force: true });
      removed.push(name);
    } catch {
      // not ours to remove (permissions): left alone
    }
  }
  return removed;
}

/** Reads a file the user named, turning "not found" and friends into a UserError that names the option. */
export async function readUserFile(file: string, what: string): Promise<Buffer> {
  try {
    return await fsp.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`${what} ${file} does not exist.`, { hint: 'Check the path.' });
    if (code === 'EISDIR') throw new UserError(`${what} ${file} is a folder, not a file.`);
    if (code === 'EACCES') throw new UserError(`${what} ${file} cannot be read: permission denied.`);
    throw new UserError(`${what} ${file} cannot be read: ${(err as Error).message}`, { cause: err });
  }
}
