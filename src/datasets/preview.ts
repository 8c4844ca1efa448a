/**
 * Contact sheet of preprocessed images: each tensor is mapped back to pixels by undoing the
 * normalisation ((x * std + mean) / scale, channel order back to RGB), tiled with its file name under it,
 * and the per-channel statistics of the tensor values (what the model will see) are computed on the way.
 * Wrong preprocessing (BGR for RGB, a missing /255, a bad crop) is the first cause of bad calibration;
 * this shows it at a glance.
 */
import path from 'node:path';
import sharp, { type OverlayOptions } from 'sharp';
import { configureSharp } from './preprocess.js';
import type { BatchOptions, Dataset, PreprocessConfig } from './types.js';

export interface ChannelStats {
  /** R, G, B in the output order (B first for BGR), or Y for one channel. */
  name: string;
  min: number;
  max: number;
  mean: number;
}

export interface PreviewOptions extends Pick<BatchOptions, 'onSkip' | 'onImage' | 'signal'> {
  /** Images to show (the first ones that decode, in file order). */
  count: number;
  /** Tiles larger than this on their long side are scaled down to it for display (default 320). */
  maxTileSide?: number;
}

export interface PreviewResult {
  png: Buffer;
  width: number;
  height: number;
  columns: number;
  rows: number;
  tile: { width: number; height: number };
  files: string[];
  channels: ChannelStats[];
}

export const SHEET = { gap: 6, label: 18, background: '#202020' } as const;

export function channelNames(config: PreprocessConfig): string[] {
  if (config.channels === 1) return ['Y'];
  return config.channelOrder === 'BGR' ? ['B', 'G', 'R'] : ['R', 'G', 'B'];
}

/** Display pixels (interleaved RGB, H x W x 3) of the image tensor at `offset`. */
export function tensorToRgb(data: Float32Array, offset: number, config: PreprocessConfig): Uint8Array {
  const { height: H, width: W, channels: C } = config;
  const HW = H * W;
  const out = new Uint8Array(HW * 3);
  const nchw = config.layout === 'NCHW';
  for (let oc = 0; oc < C; oc++) {
    const std = config.std[oc]!;
    const mean = config.mean[oc]!;
    const scale = config.scale;
    // Output channel oc is source channel rgb: identity for RGB, reversed for BGR; gray fills all three.
    const targets = C === 1 ? [0, 1, 2] : [config.channelOrder === 'BGR' ? 2 - oc : oc];
    for (let i = 0; i < HW; i++) {
      const x = data[offset + (nchw ? oc * HW + i : i * C + oc)]!;
      const v = Math.round((x * std + mean) / scale);
      const byte = v < 0 ? 0 : v > 255 ? 255 : v;
      for (const t of targets) out[i * 3 + t] = byte;
    }
  }
  return out;
}

function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** Shortens a label to about `maxChars`, keeping the end (the extension and the distinctive tail). */
function fitLabel(name: string, maxChars: number): string {
  if (name.length <= maxChars) return name;
  return `…${name.slice(name.length - Math.max(1, maxChars - 1))}`;
}

/** The sheet's size for `n` tiles of tileW x tileH: ceil(sqrt(n)) columns. */
export function sheetLayout(n: number, tileW: number, tileH: number) {
  const columns = Math.max(1, Math.ceil(Math.sqrt(n)));
  const rows = Math.max(1, Math.ceil(n / columns));
  return {
    columns,
    rows,
    width: columns * tileW + (columns + 1) * SHEET.gap,
    height: rows * (tileH + SHEET.label) + (rows + 1) * SHEET.gap,
  };
}

/** The tile size shown for a tensor of H x W: the tensor's own size, or scaled down to maxSide. */
export function tileSize(config: PreprocessConfig, maxSide = 320): { width: number; height: number } {
  const longest = Math.max(config.height, config.width);
  if (longest <= maxSide) return { width: config.width, height: config.height };
  const s = maxSide / longest;
  return { width: Math.max(1, Math.round(config.width * s)), height: Math.max(1, Math.round(config.height * s)) };
}

/** Runs the first `count` images of the dataset and renders the contact sheet as a PNG buffer. */
export async function renderPreview(dataset: Dataset, options: PreviewOptions): Promise<PreviewResult> {
  configureSharp();
  const config = dataset.preprocess;
  const C = config.channels;
  const perImage = C * config.height * config.width;
  const tile = tileSize(config, options.maxTileSide);
  const min = new Array<number>(C).fill(Infinity);
  const max = new Array<number>(C).fill(-Infinity);
  const sum = new Array<number>(C).fill(0);
  let valuesPerChannel = 0;
  const files: string[] = [];
  const tiles: Buffer[] = [];
  const nchw = config.layout === 'NCHW';
  const HW = config.height * config.width;

  outer: for await (const batch of dataset.batches({ onSkip: options.onSkip, onImage: options.onImage, signal: options.signal })) {
    for (let b = 0; b < batch.files.length; b++) {
      if (files.length >= options.count) break outer;
      const offset = b * perImage;
      for (let i = 0; i < perImage; i++) {
        const c = nchw ? Math.floor(i / HW) : i % C;
        const v = batch.data[offset + i]!;
        if (v < min[c]!) min[c] = v;
        if (v > max[c]!) max[c] = v;
        sum[c]! += v;
      }
      valuesPerChannel += HW;
      let rgb: Buffer = Buffer.from(tensorToRgb(batch.data, offset, config).buffer);
      if (tile.width !== config.width || tile.height !== config.height) {
        rgb = await sharp(rgb, { raw: { width: config.width, height: config.height, channels: 3 } }).resize(tile.width, tile.height, { fit: 'fill' }).raw().toBuffer();
      }
      tiles.push(rgb);
      files.push(batch.files[b]!);
    }
    if (files.length >= options.count) break;
  }

  const layout = sheetLayout(files.length, tile.width, tile.height);
  const maxChars = Math.max(4, Math.floor((tile.width - 4) / 6.6));
  const labels = files
    .map((file, i) => {
      const x = SHEET.gap + (i % layout.columns) * (tile.width + SHEET.gap) + tile.width / 2;
      const y = SHEET.gap + Math.floor(i / layout.columns) * (tile.height + SHEET.label + SHEET.gap) + tile.height + 13;
      return `<text x="${x}" y="${y}" text-anchor="middle">${escapeXml(fitLabel(path.basename(file), maxChars))}</text>`;
    })
    .join('');
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${layout.width}" height="${layout.height}">` +
    `<style>text{font-family:'DejaVu Sans',Arial,sans-serif;font-size:11px;fill:#e8e8e8}</style>${labels}</svg>`;
  const composites: OverlayOptions[] = tiles.map((input, i) => ({
    input,
    raw: { width: tile.width, height: tile.height, channels: 3 as const },
    left: SHEET.gap + (i % layout.columns) * (tile.width + SHEET.gap),
    top: SHEET.gap + Math.floor(i / layout.columns) * (tile.height + SHEET.label + SHEET.gap),
  }));
  composites.push({ input: Buffer.from(svg), left: 0, top: 0 });
  const png = await sharp({ create: { width: layout.width, height: layout.height, channels: 3, background: SHEET.background } })
    .composite(composites)
    .removeAlpha() // the SVG overlay brings an alpha channel the sheet does not need
    .png()
    .toBuffer();

  const names = channelNames(config);
  return {
    png,
    width: layout.width,
    height: layout.height,
    columns: layout.columns,
    rows: layout.rows,
    tile,
    files,
    channels: names.map((name, c) => ({ name, min: min[c]!, max: max[c]!, mean: valuesPerChannel > 0 ? sum[c]! / valuesPerChannel : Number.NaN })),
  };
}
