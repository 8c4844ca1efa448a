import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import { releaseAtExit, removeAtExit } from './cleanup.js';

/**
 * Writes a file atomically: the data goes to a temporary file in the same folder, is flushed to disk,
 * then renamed over the target. An interrupted run leaves either the old file or the new one, never half.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  try {
    await fsp.mkdir(dir, { recursive: true });
  } catch (err) {
    throw new UserError(`Cannot create the output folder ${dir}: ${(err as Error).message}`, { cause: err });
  }
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let handle: fsp.FileHandle | undefined;
  removeAtExit(tmp);
  try {
    handle = await fsp.open(tmp, 'w');
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fsp.rename(tmp, file);
    releaseAtExit(tmp);
  } catch (err) {
    await handle?.close().catch(() => {});
    await fsp.unlink(tmp).catch(() => {});
    releaseAtExit(tmp);
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EROFS' || code === 'ENOSPC' || code === 'EISDIR' || code === 'ENOTDIR') {
      throw new UserError(`Cannot write ${file}: ${(err as Error).message}`, { hint: 'Choose another output path with --out.', cause: err });
    }
    throw err;
  }
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
