/** Runs the built CLI (`npm test` runs tsc first, so dist/ exists). Not a test file. */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

export const ROOT = path.resolve(__dirname, '../..');
export const BIN = path.join(ROOT, 'bin/trt-calib.js');
export const FIXTURES = path.join(ROOT, 'test/fixtures');
export const MOBILENET = path.join(FIXTURES, 'models/mobilenet_v2_nsfw_224.onnx');
export const PPOCR = path.join(FIXTURES, 'models/ppocr_v4_det.onnx');
export const IMAGES = path.join(FIXTURES, 'images');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function assertBuilt(): void {
  if (!existsSync(path.join(ROOT, 'dist/cli/main.js'))) throw new Error('dist/ is missing: run `npx tsc -p tsconfig.json` (npm test does)');
}

export function runCli(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: options.cwd ?? ROOT, env: { ...process.env, ...options.env }, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 99) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/**
 * Three real photos in two class folders (Drawing/a.jpg, Neutral/b.jpg, Neutral/c.jpg) under `dir`, and a class
 * list for MobileNetV2-NSFW's five classes: labelled data for --labels folders --classes.
 */
export async function labelledPhotos(dir: string): Promise<{ data: string; classes: string }> {
  const { copyFile, mkdir, writeFile } = await import('node:fs/promises');
  const data = path.join(dir, 'labelled');
  await mkdir(path.join(data, 'Drawing'), { recursive: true });
  await mkdir(path.join(data, 'Neutral'), { recursive: true });
  await copyFile(path.join(IMAGES, 'opencv_doc__aero1.jpg'), path.join(data, 'Drawing', 'a.jpg'));
  await copyFile(path.join(IMAGES, 'opencv_doc__home.jpg'), path.join(data, 'Neutral', 'b.jpg'));
  await copyFile(path.join(IMAGES, 'opencv_doc__apple.jpg'), path.join(data, 'Neutral', 'c.jpg'));
  const classes = path.join(dir, 'classes.txt');
  await writeFile(classes, 'Drawing\nHentai\nNeutral\nPorn\nSexy\n');
  return { data, classes };
}
