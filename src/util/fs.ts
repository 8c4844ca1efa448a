import { randomBytes } from 'node:crypto';
import { constants as bufferConstants } from 'node:buffer';
import { close, constants as fsConstants, fsync, openSync, promises as fsp, readdirSync, rmSync, write } from 'node:fs';
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

/** Describes what a non-regular file is, for the message. */
function kindOf(st: import('node:fs').Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isFIFO()) return 'a pipe (FIFO)';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(n % 2 ** 30 === 0 ? 0 : 1)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(n % 2 ** 20 === 0 ? 0 : 1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(n % 1024 === 0 ? 0 : 1)} KiB`;
  return `${n} bytes`;
}

function openError(file: string, what: string, err: unknown): UserError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new UserError(`${what} ${file} does not exist.`, { hint: 'Check the path.' });
  if (code === 'EISDIR') return new UserError(`${what} ${file} is a folder, not a file.`);
  if (code === 'EACCES') return new UserError(`${what} ${file} cannot be read: permission denied.`);
  return new UserError(`${what} ${file} cannot be read: ${(err as Error).message}`, { cause: err });
}

/**
 * Opens a file the user named for reading, after checking that it is a regular file of at most `maxBytes`.
 * Devices, pipes and sockets are refused (`/dev/zero` would be read forever); O_NONBLOCK keeps open() itself from
 * waiting on a FIFO with no writer. The caller closes the handle.
 */
export async function openUserFile(file: string, what: string, maxBytes: number): Promise<{ handle: fsp.FileHandle; size: number }> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (err) {
    throw openError(file, what, err);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) {
      throw new UserError(`${what} ${file} is ${kindOf(st)}, not a regular file.`, { hint: 'Give the path of a file.' });
    }
    if (st.size > maxBytes) {
      throw new UserError(`${what} ${file} is ${formatBytes(st.size)}, more than the ${formatBytes(maxBytes)} such a file can hold.`, {
        hint: 'Check that the path names the right file.',
      });
    }
    return { handle, size: st.size };
  } catch (err) {
    await handle.close().catch(() => {});
    throw err;
  }
}

/**
 * Reads a file the user named: a regular file of at most `maxBytes` (each reader states the bound its format
 * implies), with "not found" and friends turned into a UserError that names it. Reads at most maxBytes even if
 * the file grows meanwhile.
 */
export async function readUserFile(file: string, what: string, maxBytes: number): Promise<Buffer> {
  const { handle, size } = await openUserFile(file, what, maxBytes);
  try {
    const buf = Buffer.alloc(size);
    let filled = 0;
    while (filled < size) {
      const { bytesRead } = await handle.read(buf, filled, size - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return filled === size ? buf : buf.subarray(0, filled);
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw openError(file, what, err);
  } finally {
    await handle.close().catch(() => {});
  }
}

/**
 * What each format can hold, the bounds passed to readUserFile. Stated once so that the arithmetic is in one place.
 *
 * - calibrationCache: a line is "<name>: <8 hex digits>\n". Names are the ONNX tensor names, rarely beyond 100
 *   characters ("/model/layers.79/self_attn/q_proj/MatMul_output_0" is 50); the largest networks have a few
 *   thousand activations (a 70B-parameter LLM with 80 layers and ~40 tensors per layer: ~3,200). 64 MiB holds
 *   262,144 lines of 256 bytes: 80 times that tensor count with 2.5 times that name length.
 * - rangeTable: the same tensors as JSON ("name": amax, up to ~30 characters per number): the same 64 MiB.
 * - onnxModel: protobuf messages are limited to 2 GiB (2^31 - 1 bytes); larger models keep their weights in
 *   external data files, which are read tensor by tensor within the sizes the model declares (src/onnx/model.ts).
 * - statistics: see maxStatisticsBytes in src/stats/store.ts (tensors x bins).
 * - precisionMap: one line per layer, like a cache: 64 MiB.
 * - labels: a CSV of path,label, a class list, a keys file, a YOLO txt or OCR text file; 1 GiB is 4 million rows of
 *   256 bytes. COCO annotation JSON files are the largest (instances_train2017.json is 448 MiB): the same 1 GiB.
 * - report: a sensitivity report's JSON (one row per layer and measure): 1 GiB.
 * - mask: a segmentation label PNG, one byte (or two) per pixel before compression: 1 GiB is a 500-megapixel mask
 *   stored uncompressed.
 * - timingCache, engine: TensorRT's own binary files; the largest engines are GPU-memory sized, so the bound is
 *   the largest buffer Node can allocate.
 */
export const READ_LIMITS = {
  calibrationCache: 64 * 2 ** 20,
  rangeTable: 64 * 2 ** 20,
  onnxModel: 2 ** 31 - 1,
  precisionMap: 64 * 2 ** 20,
  labels: 2 ** 30,
  mask: 2 ** 30,
  report: 2 ** 30,
  listFile: 2 ** 30,
  binary: bufferConstants.MAX_LENGTH,
} as const;
