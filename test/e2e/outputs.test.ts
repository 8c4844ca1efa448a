/**
 * Issue 12, items 2, 4, 5, 8 and 9, through the built CLI: no output may be an input or another output; every output
 * location is checked before the first image is decoded; --threads is capped at the cores; a killed run's leftovers
 * are removed by the next run, SIGHUP leaves nothing; two runs into one folder cannot mix their outputs.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, symlinkSync, watch, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeStatistics } from '../../src/stats/store.js';
import { BIN, IMAGES, MOBILENET, assertBuilt, runCli, type CliResult } from './cli.js';

let tmp: string;
let model: string;
let modelSha: string;
beforeAll(async () => {
  assertBuilt();
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-outputs-'));
  model = path.join(tmp, 'm.onnx');
  copyFileSync(MOBILENET, model);
  modelSha = sha(model);
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const calib = ['--data', IMAGES, '--preset', 'raw01', '--max-images', '2', '--trt-version', '10.3.0', '--algo', 'minmax'];

function expectRefused(r: CliResult, message: RegExp): void {
  expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(message);
  // Refused before the pass: no image was decoded.
  expect(r.stderr).not.toMatch(/calibrating on|comparing /);
}

/** runCli with a time limit: a run that would hang (Node's recursive mkdir under /proc never returns) is killed. */
function runCliBounded(args: string[], ms: number): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: ms, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : error.killed ? 124 : 99) : 0, stdout, stderr });
    });
  });
}

/** A process's pid that is certainly gone. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await new Promise((resolve) => child.on('exit', resolve));
  return child.pid!;
}

describe('an output that is an input is refused before any work (item 2)', () => {
  it('calibrate: --out or --stats-out on the model (the path, a symlink, a hard link), or --out and --stats-out the same', async () => {
    // A copy of its own: on a tool without these checks, it is the one destroyed.
    const model = path.join(tmp, 'victim', 'm.onnx');
    mkdirSync(path.dirname(model));
    copyFileSync(MOBILENET, model);
    const link = path.join(path.dirname(model), 'link.onnx');
    const hard = path.join(path.dirname(model), 'hard.onnx');
    symlinkSync(model, link);
    linkSync(model, hard);
    const dir = path.join(tmp, 'calib-out');
    expectRefused(await runCli(['--model', model, ...calib, '--out', model, '--out-dir', dir]), /--out .*m\.onnx is --model .*: writing it would destroy an input/);
    expectRefused(await runCli(['--model', model, ...calib, '--stats-out', link, '--out-dir', dir]), /--stats-out .*link\.onnx is --model .*through a link/);
    expectRefused(await runCli(['--model', model, ...calib, '--out', hard, '--out-dir', dir]), /--out .*hard\.onnx is --model .*hard link/);
    const same = path.join(tmp, 'same.bin');
    expectRefused(await runCli(['--model', model, ...calib, '--out', same, '--stats-out', same, '--out-dir', dir]), /--stats-out .*same\.bin and --out .*same\.bin are the same file/);
    expect(sha(model)).toBe(modelSha);
    expect(existsSync(same)).toBe(false);
    expect(existsSync(dir)).toBe(false);
  });

  it('quantize --out on the model or the cache, cache convert onto its input, preview onto its list, compare onto a cache', async () => {
    const model = path.join(tmp, 'victim2', 'm.onnx');
    mkdirSync(path.dirname(model));
    copyFileSync(MOBILENET, model);
    const dir = path.join(tmp, 'q');
    const made = await runCli(['--model', model, ...calib, '--out-dir', dir, '-q']);
    expect(made.code).toBe(0);
    const cache = path.join(dir, 'm.minmax.cache');
    const cacheSha = sha(cache);
    expectRefused(await runCli(['quantize', '--model', model, '--cache', cache, '--out', model]), /--out .* is --model /);
    expectRefused(await runCli(['quantize', '--model', model, '--cache', cache, '--out', cache]), /--out .* is --cache /);
    expectRefused(await runCli(['cache', 'convert', cache, '--out', cache]), /--out .* is the input /);
    const list = path.join(tmp, 'list.txt');
    writeFileSync(list, `${path.join(IMAGES, 'opencv_doc__apple.jpg')}\n`);
    expectRefused(await runCli(['preview', '--data', list, '--out', list]), /--out .*list\.txt is --data /);
    // A cache kept where the report goes: the report would replace it.
    const reportDir = path.join(tmp, 'report');
    mkdirSync(reportDir);
    copyFileSync(cache, path.join(reportDir, 'report.json'));
    expectRefused(
      await runCli(['compare', '--model', model, '--data', IMAGES, '--preset', 'raw01', '--max-images', '2', '--cache', path.join(reportDir, 'report.json'), '--report-dir', reportDir]),
      /--report-dir .*report\.json is --cache /,
    );
    expect(sha(model)).toBe(modelSha);
    expect(sha(cache)).toBe(cacheSha);
    expect(readFileSync(list, 'utf8')).toMatch(/apple\.jpg/);
  });
});

describe('every output location is checked before the first image (item 4)', () => {
  it('an --out-dir that is a file, or under one, or where nothing can be created (/proc); an --out that is a folder', async () => {
    const file = path.join(tmp, 'a-file');
    writeFileSync(file, 'x');
    const started = performance.now();
    expectRefused(await runCli(['--model', model, ...calib, '--out-dir', file]), /--out-dir: cannot create the folder .*a-file: .*a-file is a file, not a folder/);
    expectRefused(await runCli(['--model', model, ...calib, '--out-dir', path.join(file, 'sub')]), /--out-dir: cannot create the folder .*a-file is a file/);
    // Even root cannot create files in /proc (permission bits would not stop root).
    expectRefused(await runCliBounded(['--model', model, ...calib, '--out-dir', '/proc/trt-calib-test'], 20_000), /--out-dir: cannot create the folder \/proc\/trt-calib-test/);
    expectRefused(await runCli(['--model', model, ...calib, '--out-dir', path.join(tmp, 'ok'), '--stats-out', '/proc/stats.msgpack']), /--stats-out: cannot write in \/proc/);
    const folder = path.join(tmp, 'a-folder');
    mkdirSync(folder);
    expectRefused(await runCli(['--model', model, ...calib, '--out', folder]), /--out .*a-folder is a folder; it must name a file/);
    expectRefused(await runCli(['quantize', '--model', model, '--data', IMAGES, '--max-images', '2', '--out', folder]), /--out .*a-folder is a folder/);
    expectRefused(await runCli(['compare', '--model', model, '--data', IMAGES, '--max-images', '2', '--precisions', 'fp32,fp16', '--report-dir', file]), /--report-dir: cannot create the folder/);
    expect(performance.now() - started).toBeLessThan(60_000);
    expect(readdirSync(folder)).toEqual([]);
    expect(existsSync(path.join(tmp, 'ok'))).toBe(false); // made for the check, removed as the run left it empty
  });
});

describe('--threads beyond the cores (item 5)', () => {
  it('is capped at the number of cores with a one-line warning', async () => {
    const dir = path.join(tmp, 'threads');
    const started = performance.now();
    const r = await runCliBounded(['--model', model, ...calib, '--out-dir', dir, '--threads', '999', '-q'], 30_000);
    const seconds = (performance.now() - started) / 1000;
    expect(r.code).toBe(0);
    const cores = availableParallelism();
    expect(r.stderr.split('\n').filter((l) => /--threads/.test(l))).toEqual([`warning: --threads 999 is more than the ${cores} cores of this machine: using ${cores} (threads beyond the cores only slow onnxruntime down)`]);
    expect(seconds).toBeLessThan(30);
    // compare records the threads it ran with
    const c = await runCliBounded(['compare', '--model', model, '--data', IMAGES, '--preset', 'raw01', '--max-images', '2', '--precisions', 'fp32,fp16', '--no-layers', '--out-dir', dir, '--threads', '999', '-q'], 30_000);
    expect(c.code).toBe(0);
    const report = JSON.parse(readFileSync(path.join(dir, 'm.report', 'report.json'), 'utf8'));
    expect(report.settings.threads).toBe(cores);
    expect(c.stderr).toMatch(/warning: --threads 999 is more than/);
    const help = await runCli(['calibrate', '--help']);
    expect(help.stdout.replace(/\s+/g, ' ')).toMatch(/at most the number of cores \(\d+ here\)/);
  }, 90_000);
});

/** Starts the CLI with its own TMPDIR; resolves once `ready(scratch)` holds (polled), or the child exits. */
function startWhen(args: string[], scratch: string, ready: () => boolean): { child: ChildProcess; reached: Promise<boolean>; done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> } {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, TMPDIR: scratch }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += String(d)));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stderr })));
  const reached = new Promise<boolean>((resolve) => {
    const timer = setInterval(() => {
      if (ready()) {
        clearInterval(timer);
        resolve(true);
      }
    }, 2);
    void done.then(() => {
      clearInterval(timer);
      resolve(false);
    });
  });
  return { child, reached, done };
}

const runFolders = (scratch: string) => readdirSync(scratch).filter((f) => f.startsWith('trt-calib-run.'));

describe('leftovers of killed and hung-up runs (item 8)', () => {
  it('a run killed mid-way (SIGKILL) leaves its temporary folder; the next run removes it', async () => {
    const scratch = await mkdtemp(path.join(tmp, 'tmpdir-'));
    const out = path.join(tmp, 'killed');
    // Killed as soon as its temporary folder has something in it (the blocked-layout model is being written).
    const run = startWhen(['--model', model, ...calib, '--out-dir', out], scratch, () => runFolders(scratch).some((f) => readdirSync(path.join(scratch, f)).length > 0));
    const reached = await run.reached;
    run.child.kill('SIGKILL');
    const first = await run.done;
    if (process.arch !== 'x64') return; // no blocked-layout model elsewhere: no temporary folder to leave
    expect(reached).toBe(true);
    expect(first.signal).toBe('SIGKILL');
    const left = runFolders(scratch);
    expect(left).toEqual([`trt-calib-run.${run.child.pid}.${left[0]!.split('.')[2]}`]);
    // Its lock is left too; the next run takes it over, and removes the folder.
    expect(readdirSync(out)).toEqual(['.trt-calib.lock']);
    const next = await runCli(['--model', model, ...calib, '--out-dir', out, '-q'], { env: { TMPDIR: scratch } });
    expect(next.code).toBe(0);
    expect(runFolders(scratch)).toEqual([]);
    expect(readdirSync(out).sort()).toEqual(['m.minmax.cache', 'm.stats.msgpack']);
  });

  it('temporary files of a run killed during its final writes are removed by the next run into the folder', async () => {
    const out = path.join(tmp, 'final-writes');
    mkdirSync(out);
    const dead = await deadPid();
    const leftovers = [`.m.stats.msgpack.${dead}-12345.0badc0de.tmp`, `.m.minmax.cache.${dead}.0badc0de.tmp`]; // this version's name, and the name before it
    // One of a live process (this one, start time unknown): not touched.
    const live = `.m.other.cache.${process.pid}-0.cafef00d.tmp`;
    for (const f of [...leftovers, live]) writeFileSync(path.join(out, f), 'partial');
    const r = await runCli(['--model', model, ...calib, '--out-dir', out, '-q']);
    expect(r.code).toBe(0);
    expect(readdirSync(out).sort()).toEqual([live, 'm.minmax.cache', 'm.stats.msgpack'].sort());
  });

  it('SIGHUP (terminal closed) exits 129 like SIGTERM and leaves nothing behind', async () => {
    const scratch = await mkdtemp(path.join(tmp, 'tmpdir-'));
    const out = path.join(tmp, 'hangup');
    const run = startWhen(['--model', model, ...calib, '--out-dir', out], scratch, () => runFolders(scratch).length > 0);
    const reached = await run.reached;
    run.child.kill('SIGHUP');
    const r = await run.done;
    expect(reached).toBe(true);
    expect(r.code).toBe(129);
    expect(r.stderr).toMatch(/interrupted \(SIGHUP\)/);
    expect(runFolders(scratch)).toEqual([]);
    expect(existsSync(out) ? readdirSync(out) : []).toEqual([]);
  });
});

describe('two runs into one folder (item 9)', () => {
  it('the second is refused while the first holds the folder; the first writes one consistent set', async () => {
    const out = path.join(tmp, 'concurrent');
    const scratch = await mkdtemp(path.join(tmp, 'tmpdir-'));
    const lock = path.join(out, '.trt-calib.lock');
    // Run A: every image; run B starts once A holds the folder, with other settings (2 images, another algorithm).
    const a = startWhen(['--model', model, '--data', IMAGES, '--preset', 'raw01', '--trt-version', '10.3.0', '--algo', 'minmax,percentile', '--out-dir', out], scratch, () => existsSync(lock));
    expect(await a.reached).toBe(true);
    // A is held still while B runs (a stopped process is alive): however slow B starts, A still holds the folder.
    a.child.kill('SIGSTOP');
    const b = await runCli(['--model', model, ...calib, '--algo', 'minmax', '--out-dir', out]);
    a.child.kill('SIGCONT');
    const ra = await a.done;
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(new RegExp(`Another trt-calib run \\(pid ${a.child.pid}, since .*\\) is writing into ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    expect(b.stderr).toMatch(/choose another folder with --out-dir/);
    expect(ra.code).toBe(0);
    // All of A's: the statistics of every image, and its two caches; no lock left.
    expect(readdirSync(out).sort()).toEqual(['m.minmax.cache', 'm.percentile.cache', 'm.stats.msgpack']);
    const stats = decodeStatistics(readFileSync(path.join(out, 'm.stats.msgpack')), 'm.stats.msgpack');
    expect(stats.provenance.imageCount).toBe(readdirSync(IMAGES).filter((f) => f.endsWith('.jpg') || f.endsWith('.png')).length);
  });

  it('a lock left by a process that is gone is taken over', async () => {
    const out = path.join(tmp, 'stale');
    mkdirSync(out);
    const pid = await deadPid();
    writeFileSync(path.join(out, '.trt-calib.lock'), `${JSON.stringify({ pid, start: '1', token: 'f00d', since: '2026-01-01T00:00:00.000Z', command: 'trt-calib' })}\n`);
    const r = await runCli(['--model', model, ...calib, '--out-dir', out, '-q']);
    expect(r.code).toBe(0);
    expect(readdirSync(out).sort()).toEqual(['m.minmax.cache', 'm.stats.msgpack']);
  });
});
