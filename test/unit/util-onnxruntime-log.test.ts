/**
 * onnxruntime's mat-debug-<pid>.log: removed only when it holds nothing worth keeping (empty, or only its telemetry
 * SDK's own diagnostics, as several processes starting at once in one TMPDIR write), never a log with anything else.
 */
import { mkdtempSync, rmSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isDisposableOnnxruntimeLog, sweepAbandonedOnnxruntimeLogs } from '../../src/util/run-temp.js';

const dir = mkdtempSync(path.join(tmpdir(), 'ort-log-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const LOCKED = '2026-12-02T13:35:11.773Z|00009505|E|EventsSDK.SQLiteStatement|Failed to query database while executing statement #[0x76f1788]: 5 (database is locked)\n';

describe('onnxruntime debug logs', () => {
  it('tells disposable logs from ones that hold anything else', () => {
    const write = (name: string, text: string) => {
      const file = path.join(dir, name);
      writeFileSync(file, text);
      return file;
    };
    expect(isDisposableOnnxruntimeLog(write('empty.log', ''))).toBe(true);
    expect(isDisposableOnnxruntimeLog(write('locked.log', LOCKED + LOCKED))).toBe(true);
    expect(isDisposableOnnxruntimeLog(write('mixed.log', LOCKED + 'something else\n'))).toBe(false);
    expect(isDisposableOnnxruntimeLog(write('other.log', '2026-12-02T13:35:11.773Z|00009505|E|Session|model failed\n'))).toBe(false);
    expect(isDisposableOnnxruntimeLog(write('big.log', LOCKED.repeat(1000)))).toBe(false);
    mkdirSync(path.join(dir, 'folder.log'));
    expect(isDisposableOnnxruntimeLog(path.join(dir, 'folder.log'))).toBe(false);
  });

  it("sweeps a gone process's disposable log and keeps the rest", () => {
    const root = mkdtempSync(path.join(dir, 'root-'));
    // pid 2^22+1 is above Linux's pid_max default: no such process
    writeFileSync(path.join(root, 'mat-debug-4194305.log'), LOCKED);
    writeFileSync(path.join(root, 'mat-debug-4194306.log'), 'a real message\n');
    writeFileSync(path.join(root, `mat-debug-${process.pid}.log`), '');
    expect(sweepAbandonedOnnxruntimeLogs(root)).toEqual(['mat-debug-4194305.log']);
    expect(existsSync(path.join(root, 'mat-debug-4194306.log'))).toBe(true);
    expect(existsSync(path.join(root, `mat-debug-${process.pid}.log`))).toBe(true);
  });
});
