import { Command } from 'commander';
import { collectDoctorReport, type DoctorReport } from '../app/doctor.js';
import { addCommonOptions, emit, type CommonOptions } from './common.js';

const MARK = { ok: 'ok     ', warning: 'warning', missing: 'missing' } as const;

export function register(program: Command): void {
  const cmd = program
    .command('doctor')
    .description('show what this machine has (Node, sharp/libvips, onnxruntime, the native addon, CUDA, TensorRT, GPUs) and what each missing piece costs');
  addCommonOptions(cmd).action(async (opts: CommonOptions) => {
    const report = await collectDoctorReport();
    emit(opts, report, () => render(report));
  });
}

function render(report: DoctorReport): string {
  const lines: string[] = [];
  const width = Math.max(...report.checks.map((c) => c.title.length));
  for (const c of report.checks) {
    lines.push(`${MARK[c.status]}  ${c.title.padEnd(width)}  ${c.found ?? ''}`);
    if (c.consequence) lines.push(`${' '.repeat(width + 11)}${c.consequence}`);
    if (c.hint) lines.push(`${' '.repeat(width + 11)}-> ${c.hint}`);
  }
  const missing = report.checks.filter((c) => c.status !== 'ok').length;
  lines.push(missing === 0 ? 'Everything trt-calib can use is here.' : `${missing} item(s) missing or to check; the commands that do not need them work.`);
  return lines.join('\n');
}
