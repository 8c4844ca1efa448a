import { Command } from 'commander';
import { writeFileAtomic } from '../util/fs.js';
import { prepareOutputs } from '../util/outputs.js';
import { addCommonOptions, emit, parseInteger, reporterFor, type CommonOptions } from './common.js';
import { addPreprocessOptions, datasetFromOptions, describePreprocess, preprocessOptionsFrom, trackSkips, type PreprocessCliValues } from './preprocess-options.js';

interface PreviewCliValues extends PreprocessCliValues, CommonOptions {
  count: number;
  out: string;
}

const EXAMPLES = `
Examples:
  trt-calib preview --data ./calib --preset imagenet --out /tmp/grid.png
  trt-calib preview --data "photos/**/*.jpg" --preset yolo --count 9 --out yolo.png --json
  trt-calib preview --data list.txt --preset imagenet-caffe --size 227 --shorter-side 256 --out caffe.png
  trt-calib preview --data ./street --preset paddleocr-det --size 640 --out det.png

The sheet shows each tensor mapped back to pixels ((x * std + mean) / scale, as RGB); the statistics are
those of the tensor values themselves, per channel in the output order.`;

function fmt(n: number): string {
  return Number.isFinite(n) ? n.toFixed(4).padStart(9) : String(n).padStart(9);
}

export function register(program: Command): void {
  const cmd = program
    .command('preview')
    .description('run the first images through the exact preprocessing and write a labelled contact sheet PNG')
    .requiredOption('--out <file.png>', 'contact sheet to write (PNG, written atomically)')
    .option('--count <n>', 'images to show', parseInteger(1, 1024), 16);
  addPreprocessOptions(cmd, { batch: false });
  addCommonOptions(cmd)
    .addHelpText('after', EXAMPLES)
    .action(async (opts: PreviewCliValues) => {
      const reporter = reporterFor(opts);
      const options = preprocessOptionsFrom(opts);
      const outputs = prepareOutputs([{ path: opts.out, option: '--out' }], [{ path: opts.data, what: '--data' }]);
      try {
        await preview(opts, options, reporter);
      } finally {
        outputs.release();
      }
    });
}

async function preview(opts: PreviewCliValues, options: ReturnType<typeof preprocessOptionsFrom>, reporter: ReturnType<typeof reporterFor>): Promise<void> {
  const { dataset, config } = await datasetFromOptions(options);
  const skips = trackSkips(reporter);
  const count = Math.min(opts.count, dataset.size);
  reporter.start('preview', count, 'images');
  let done = 0;
  const { renderPreview } = await import('../datasets/preview.js');
  const result = await renderPreview(dataset, {
    count,
    onSkip: skips.onSkip,
    onImage: () => reporter.update({ done: Math.min(++done, count) }),
  });
  reporter.stop();
  await writeFileAtomic(opts.out, result.png);
  emit(
    opts,
    {
      out: opts.out,
      width: result.width,
      height: result.height,
      columns: result.columns,
      rows: result.rows,
      tile: result.tile,
      images: result.files,
      skipped: skips.skipped,
      preprocess: config,
      channels: result.channels,
    },
    () =>
      [
        `wrote ${opts.out}: ${result.files.length} image(s), ${result.columns}x${result.rows} tiles of ${result.tile.width}x${result.tile.height}, ${result.width}x${result.height} px`,
        describePreprocess(config),
        'tensor values per channel (what the model sees):',
        `  channel       min       max      mean`,
        ...result.channels.map((c) => `  ${c.name.padEnd(7)}${fmt(c.min)} ${fmt(c.max)} ${fmt(c.mean)}`),
        ...(skips.skipped.length > 0 ? [skips.summary(result.files.length)] : []),
      ].join('\n'),
  );
}
