/**
 * Which process left a file behind, and whether it is still running. A pid alone is not enough: pids are reused,
 * so a lock or a temporary folder also records the process's start time, and a live process with another start
 * time is a different process. The start time is the kernel's (Linux: field 22 of /proc/<pid>/stat, in clock
 * ticks since boot); where there is no /proc it is unknown ('0') and only the pid is checked.
 */
import { readFileSync } from 'node:fs';

/** The start time of `pid` as the kernel states it, or '0' where it cannot be read. */
export function processStartTime(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const start = fields[19]; // field 22 overall; fields[0] is field 3 (state)
    return start && /^\d+$/.test(start) ? start : '0';
  } catch {
    return '0';
  }
}

let own: string | undefined;

/** This process: pid and start time, as recorded in the names of its temporary files and in its locks. */
export function ownProcess(): { pid: number; start: string } {
  own ??= processStartTime(process.pid);
  return { pid: process.pid, start: own };
}

/** Whether the process that recorded (pid, start) is still running. A pid of another user's process counts as alive. */
export function isProcessAlive(pid: number, start: string): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (start === '0') return true;
  const now = processStartTime(pid);
  return now === '0' || now === start;
}
