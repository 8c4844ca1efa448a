/**
 * docs/scale-out/: the Kubernetes, Slurm and GitHub Actions files that docs/scale-out.md shows. Each is valid YAML or
 * bash, its trt-calib commands parse with the real CLI's option parser, its shards are 1..N of the N it declares,
 * and the merge's files are the ones the shards write.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { compareShardPath } from '../../src/app/compare.js';
import { parseShard, shardStatsName } from '../../src/app/shard.js';
import { parseAlgorithms } from '../../src/calibrators/registry.js';
import { buildProgram } from '../../src/cli/program.js';

const ROOT = path.resolve(__dirname, '../..');
const DIR = path.join(ROOT, 'docs/scale-out');
const read = (name: string) => readFileSync(path.join(DIR, name), 'utf8');

function yaml(name: string): any {
  const doc = parseDocument(read(name), { prettyErrors: true });
  expect(doc.errors.map(String)).toEqual([]);
  return doc.toJS();
}

/** The words of a shell command line, as bash splits them (no globbing), with `vars` set. */
function shellWords(line: string, vars: Record<string, string> = {}): string[] {
  const out = execFileSync('bash', ['--norc', '-c', `set -f; printf '%s\\0' ${line}`], { env: { PATH: process.env.PATH, ...vars }, encoding: 'utf8' });
  return out.split('\0').slice(0, -1);
}

interface Parsed {
  command: string;
  opts: Record<string, any>;
  operands: string[];
}

/** Parses argv with the real program (every option parser and check), with the actions replaced by a capture. */
async function parseWithCli(argv: string[]): Promise<Parsed> {
  expect(argv[0]).toBe('trt-calib');
  const program = await buildProgram();
  let parsed: Parsed | undefined;
  for (const cmd of program.commands) {
    cmd.action((...args: unknown[]) => {
      const self = args[args.length - 1] as Command;
      parsed = { command: self.name(), opts: self.opts(), operands: self.args };
    });
  }
  await program.parseAsync(argv.slice(1), { from: 'user' });
  if (!parsed) throw new Error(`no command ran for ${argv.join(' ')}`);
  return parsed;
}

function globRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*')}$`);
}

/** The shards' commands write every <model>.stats.<K>of<N>.msgpack that the merge's glob names, for that model. */
function expectMergeOfShards(shard: Parsed, merge: Parsed, count: number) {
  expect(shard.command).toBe('calibrate');
  expect(merge.command).toBe('merge');
  expect(merge.opts.model).toBe(shard.opts.model);
  expect(merge.operands).toHaveLength(1);
  const glob = globRegExp(merge.operands[0]!);
  const base = path.basename(shard.opts.model).replace(/\.onnx$/i, '');
  for (let k = 1; k <= count; k++) expect(path.posix.join(shard.opts.outDir, shardStatsName(base, { index: k, count }))).toMatch(glob);
  expect(path.posix.join(shard.opts.outDir, shardStatsName(base, { index: 1, count: count + 1 }))).not.toMatch(glob);
  expect(parseAlgorithms(merge.opts.algo).length).toBeGreaterThan(0);
  expect(merge.opts.trtVersion).toMatch(/^\d+\.\d+\.\d+$/);
}

describe('docs/scale-out', () => {
  it('Kubernetes: an Indexed Job of N pods, each --shard auto/N, then the merge', async () => {
    const job = yaml('kubernetes-shards.yaml');
    expect(job).toMatchObject({ apiVersion: 'batch/v1', kind: 'Job', spec: { completionMode: 'Indexed' } });
    const count: number = job.spec.completions;
    const [container] = job.spec.template.spec.containers;
    const shard = await parseWithCli(container.command);
    expect(shard.opts.shard).toBe(`auto/${count}`);
    const indices = Array.from({ length: count }, (_, i) => parseShard(shard.opts.shard, { JOB_COMPLETION_INDEX: String(i) }).index);
    expect(indices).toEqual(Array.from({ length: count }, (_, i) => i + 1));

    const mergeJob = yaml('kubernetes-merge.yaml');
    const [sh, dashC, line] = mergeJob.spec.template.spec.containers[0].command;
    expect([sh, dashC]).toEqual(['sh', '-c']);
    expectMergeOfShards(shard, await parseWithCli(shellWords(line)), count);
    expect(mergeJob.spec.template.spec.volumes).toEqual(job.spec.template.spec.volumes);
  });

  it('Slurm: an array script (bash -n) whose tasks map to shards 1..N and whose first task queues the merge', async () => {
    const file = path.join(DIR, 'slurm-array.sh');
    execFileSync('bash', ['-n', file]);
    const text = read('slurm-array.sh');
    const array = /^#SBATCH --array=(\d+)-(\d+)$/m.exec(text)!;
    const [min, max] = [Number(array[1]), Number(array[2])];
    const count = max - min + 1;
    const vars = Object.fromEntries([...text.matchAll(/^([A-Z_]+)=(\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
    const calibrateLines = text.split('\n').filter((l) => l.trim().startsWith('trt-calib '));
    const mergeLines = [...text.matchAll(/--wrap "(trt-calib [^"]*)"/g)].map((m) => m[1]!);
    expect(calibrateLines).toHaveLength(1);
    expect(mergeLines).toHaveLength(1);
    const shard = await parseWithCli(shellWords(calibrateLines[0]!, vars));
    const slurm = (id: number) => ({ SLURM_ARRAY_TASK_ID: String(id), SLURM_ARRAY_TASK_MIN: String(min), SLURM_ARRAY_TASK_MAX: String(max), SLURM_ARRAY_TASK_COUNT: String(count) });
    const indices = Array.from({ length: count }, (_, i) => parseShard(shard.opts.shard, slurm(min + i)));
    expect(indices.map((s) => [s.index, s.count])).toEqual(Array.from({ length: count }, (_, i) => [i + 1, count]));
    expectMergeOfShards(shard, await parseWithCli(shellWords(mergeLines[0]!, vars)), count);
  });

  it('GitHub Actions: a matrix of N shards, each --shard K/N, then a merge job that needs them', async () => {
    const workflow = yaml('github-actions.yaml');
    const values: number[] = workflow.jobs.shard.strategy.matrix.shard;
    const runs = (job: any): string[] => job.steps.filter((s: any) => typeof s.run === 'string' && s.run.startsWith('trt-calib ')).map((s: any) => s.run);
    const [shardLine] = runs(workflow.jobs.shard);
    const [mergeLine] = runs(workflow.jobs.merge);
    const shards = await Promise.all(values.map((v) => parseWithCli(shellWords(shardLine!.replaceAll('${{ matrix.shard }}', String(v))))));
    const specs = shards.map((s) => parseShard(s.opts.shard, {}));
    expect(specs.map((s) => [s.index, s.count])).toEqual(values.map((_, i) => [i + 1, values.length]));
    expect(workflow.jobs.merge.needs).toBe('shard');
    expectMergeOfShards(shards[0]!, await parseWithCli(shellWords(mergeLine!)), values.length);
    // each shard uploads the file it writes
    const upload = workflow.jobs.shard.steps.find((s: any) => s.uses?.startsWith('actions/upload-artifact'));
    expect(path.posix.join(shards[0]!.opts.outDir, shardStatsName('model', specs[0]!))).toBe(upload.with.path.replaceAll('${{ matrix.shard }}', '1'));
  });

  it('GitHub Actions: compare in a matrix of N shards, each --shard K/N, then the merge of their report.<K>of<N>.msgpack', async () => {
    const workflow = yaml('github-actions-compare.yaml');
    const values: number[] = workflow.jobs.shard.strategy.matrix.shard;
    const runs = (job: any): string[] => job.steps.filter((s: any) => typeof s.run === 'string' && s.run.startsWith('trt-calib ')).map((s: any) => s.run);
    const [shardLine] = runs(workflow.jobs.shard);
    const [mergeLine] = runs(workflow.jobs.merge);
    const shards = await Promise.all(values.map((v) => parseWithCli(shellWords(shardLine!.replaceAll('${{ matrix.shard }}', String(v))))));
    expect(shards.every((s) => s.command === 'compare')).toBe(true);
    expect(shards[0]!.opts.maxDrop).toBeGreaterThan(0);
    expect(shards[0]!.opts.task).toBe('classify'); // auto would decide from each shard's first batch
    const specs = shards.map((s) => parseShard(s.opts.shard, {}));
    expect(specs.map((s) => [s.index, s.count])).toEqual(values.map((_, i) => [i + 1, values.length]));
    expect(workflow.jobs.merge.needs).toBe('shard');
    const merge = await parseWithCli(shellWords(mergeLine!));
    expect(merge.command).toBe('merge');
    expect(merge.operands).toHaveLength(1);
    const glob = globRegExp(merge.operands[0]!);
    const reportDir = shards[0]!.opts.reportDir;
    for (const s of specs) expect(compareShardPath(reportDir, s).split(path.sep).join('/')).toMatch(glob);
    expect(compareShardPath(reportDir, { index: 1, count: values.length + 1 })).not.toMatch(glob);
    // each shard uploads the file it writes, the merge downloads them where its glob looks
    const upload = workflow.jobs.shard.steps.find((s: any) => s.uses?.startsWith('actions/upload-artifact'));
    expect(compareShardPath(reportDir, specs[0]!)).toBe(upload.with.path.replaceAll('${{ matrix.shard }}', '1'));
    const download = workflow.jobs.merge.steps.find((s: any) => s.uses?.startsWith('actions/download-artifact'));
    expect(download.with.path).toBe(reportDir);
    // the report is uploaded even when the gate failed the merge step
    const report = workflow.jobs.merge.steps.filter((s: any) => s.uses?.startsWith('actions/upload-artifact')).pop();
    expect(report.if).toBe('always()');
    expect(report.with.path.replace(/\/$/, '')).toBe(merge.opts.reportDir);
  });

  it('docs/scale-out.md shows each file as it is', () => {
    const doc = readFileSync(path.join(ROOT, 'docs/scale-out.md'), 'utf8');
    for (const name of ['kubernetes-shards.yaml', 'kubernetes-merge.yaml', 'slurm-array.sh', 'github-actions.yaml', 'github-actions-compare.yaml']) {
      expect(doc, name).toContain(`\n${read(name)}\`\`\``);
      expect(doc).toContain(`docs/scale-out/${name}`);
    }
  });
});
