import { Command } from 'commander';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { addPreprocessOptions, datasetFromOptions, describePreprocess, preprocessOptionsFrom, trackSkips, type PreprocessCliValues } from '../../src/cli/preprocess-options.js';
import type { Reporter } from '../../src/reporter.js';

const IMAGES = path.resolve(__dirname, '../fixtures/images');

function parse(args: string[]): PreprocessCliValues {
  const cmd = addPreprocessOptions(new Command('x').exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} }));
  cmd.parse(args, { from: 'user' });
  return cmd.opts<PreprocessCliValues>();
}

describe('shared preprocessing flags', () => {
  it('turn every flag into library options, leaving unset ones to the preset', () => {
    const o = preprocessOptionsFrom(
      parse([
        '--data', 'imgs', '--preset', 'yolo', '--size', '480x640', '--resize', 'letterbox', '--interpolation', 'bicubic',
        '--pad-value', '0', '--channel-order', 'bgr', '--scale', '1/255', '--mean', '0.1,0.2,0.3', '--std', '0.5',
        '--layout', 'NHWC', '--channels', '3', '--no-auto-orient', '--background', '0,0,0', '--batch', '4',
        '--max-images', '10', '--seed', '3', '--strict', '--concurrency', '2',
      ]),
    );
    expect(o).toEqual({
      data: 'imgs',
      preprocess: {
        preset: 'yolo',
        size: '480x640',
        resize: 'letterbox',
        interpolation: 'bicubic',
        padValue: 0,
        channelOrder: 'BGR',
        scale: 1 / 255,
        mean: [0.1, 0.2, 0.3],
        std: [0.5],
        layout: 'NHWC',
        channels: 3,
        autoOrient: false,
        background: [0, 0, 0],
      },
      batch: 4,
      maxImages: 10,
      seed: 3,
      strict: true,
      concurrency: 2,
    });
    expect(preprocessOptionsFrom(parse(['--data', 'x'])).preprocess).toEqual({ preset: 'imagenet', autoOrient: true });
  });

  it('reject malformed values naming the flag', () => {
    expect(() => parse(['--data', 'x', '--mean', '1,2'])).toThrow(/'--mean <a,b,c>' argument '1,2' is invalid/);
    expect(() => parse(['--data', 'x', '--size', '12y'])).toThrow(/--size/);
    expect(() => parse(['--data', 'x', '--channel-order', 'rbg'])).toThrow(/Allowed choices are rgb, bgr/);
    expect(() => parse(['--data', 'x', '--preset', 'vgg'])).toThrow(/Allowed choices are imagenet/);
    expect(() => parse(['--data', 'x', '--background', '0,0,256'])).toThrow(/--background/);
    expect(() => parse(['--data', 'x', '--scale', '0'])).toThrow(/positive number/);
    expect(() => parse(['--preset', 'yolo'])).toThrow(/required option '--data <path>' not specified/);
  });

  it('build a dataset against a model input and echo the configuration', async () => {
    const o = preprocessOptionsFrom(parse(['--data', IMAGES, '--preset', 'imagenet', '--max-images', '3']));
    const { dataset, config } = await datasetFromOptions(o, { name: 'images', dims: ['N', 3, 160, 160] }, 2);
    expect(dataset.inputName).toBe('images');
    expect(dataset.batchSize).toBe(2);
    expect(dataset.size).toBe(3);
    expect(config).toMatchObject({ height: 160, shorterSide: 182 });
    expect(describePreprocess(config)).toBe(
      'preprocess: imagenet: RGB, shorter side 182 then center crop 160x160, bilinear, x*0.00392157 mean 0.485,0.456,0.406 std 0.229,0.224,0.225, NCHW',
    );
  });

  it('trackSkips warns through the reporter and summarises', () => {
    const warnings: string[] = [];
    const reporter: Reporter = { start() {}, update() {}, stop() {}, info() {}, warn: (m) => warnings.push(m) };
    const t = trackSkips(reporter);
    t.onSkip({ file: 'a.jpg', reason: 'empty file (0 bytes)' });
    expect(warnings).toEqual(['skipped a.jpg: empty file (0 bytes)']);
    expect(t.summary(5)).toBe('1 of 6 image(s) skipped:\n  a.jpg: empty file (0 bytes)');
  });
});
