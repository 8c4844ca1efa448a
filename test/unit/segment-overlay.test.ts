/**
 * Mask overlays for the report: a real photo with FP32's and a variant's binary maps drawn over it by the painter
 * report.html uses (maskOverlayDataUri), fed the segmentation evaluator's worst views exactly as compare feeds it,
 * through a letterbox geometry; pixel colours checked against the blend worked out by hand.
 */
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { createSegmentationEvaluator } from '../../src/compare/task/segment/index.js';
import { OVERLAY_COLOURS } from '../../src/compare/html-parts.js';
import { maskOverlayDataUri } from '../../src/compare/thumbnails.js';
import { resolvePreprocess } from '../../src/datasets/presets.js';
import type { Tensor } from '../../src/tensor.js';
import { taskGeometry } from './segment-geometry.js';

const HOME = path.resolve(__dirname, '../../test/fixtures/images/opencv_doc__home.jpg'); // 512 x 384

function binaryMap(height: number, width: number, foreground: (row: number, column: number) => boolean): Tensor {
  const data = new Float32Array(height * width);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = foreground(y, x) ? 0.9 : 0.1;
  return { dtype: 'float32', dims: [1, 1, height, width], data };
}

async function rgb(uri: string): Promise<{ width: number; height: number; data: Buffer }> {
  const { data, info } = await sharp(Buffer.from(uri.slice(uri.indexOf(',') + 1), 'base64')).raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data };
}

describe('mask overlays', () => {
  it("draws kept, lost and untouched pixels over the photo where the evaluator's worst view puts them", async () => {
    const config = resolvePreprocess({ preset: 'raw01', resize: 'letterbox' }, { name: 'x', dims: [1, 3, 64, 64] });
    const g = await taskGeometry(HOME, config);
    // FP32: foreground in input columns 0-31; the variant keeps columns 0-15 only.
    const ev = createSegmentationEvaluator({ output: 'map' });
    ev.addReference({ map: binaryMap(64, 64, (_, x) => x < 32) }, [g]);
    ev.addVariant('int8', { map: binaryMap(64, 64, (_, x) => x < 16) }, [g]);
    const views = ev.worstViews('int8');
    expect(views.map((v) => [v.file, v.width, v.height, v.mode])).toEqual([[HOME, 64, 64, 'binary']]);
    const view = views[0]!;
    const mask = (data: Uint16Array) => ({ width: view.width, height: view.height, data });

    const out = await maskOverlayDataUri(view.file, mask(view.reference), mask(view.variant), { geometry: view.geometry, size: 240 });
    expect([out.width, out.height, out.originalWidth, out.originalHeight]).toEqual([240, 180, 512, 384]);
    const painted = await rgb(out.uri);
    const plain = await sharp(HOME).rotate().resize(240, 240, { fit: 'inside', withoutEnlargement: true }).removeAlpha().raw().toBuffer();
    // Thumbnail column u is original x = (u + 0.5) * 512 / 240, input column x / 8: u < 60 -> input < 16 (both
    // agree: the tint), 60 <= u < 120 -> input 16-31 (FP32 only: lost), u >= 120 -> background, untouched.
    // Away from the edges (JPEG's 8x8 blocks blur across them), each pixel is the blend within JPEG's error.
    const at = (u: number, v: number) => [...painted.data.subarray((v * 240 + u) * 3, (v * 240 + u) * 3 + 3)];
    const photo = (u: number, v: number) => [...plain.subarray((v * 240 + u) * 3, (v * 240 + u) * 3 + 3)];
    const blend = (p: number[], c: { rgb: readonly number[]; alpha: number }) => p.map((x, k) => Math.round(x * (1 - c.alpha) + c.rgb[k]! * c.alpha));
    const near = (a: number[], b: number[]) => a.every((x, k) => Math.abs(x - b[k]!) <= 24);
    let checked = 0;
    for (const v of [20, 90, 160]) {
      for (const u of [10, 30, 50]) expect(near(at(u, v), blend(photo(u, v), OVERLAY_COLOURS.agree)), `agree at ${u},${v}`).toBe(true);
      for (const u of [70, 90, 110]) expect(near(at(u, v), blend(photo(u, v), OVERLAY_COLOURS.lost)), `lost at ${u},${v}`).toBe(true);
      for (const u of [140, 200, 230]) expect(near(at(u, v), photo(u, v)), `untouched at ${u},${v}`).toBe(true);
      checked += 9;
    }
    expect(checked).toBe(27);
    // The lost band is clearly red, the agreeing band clearly green: not the photo with a faint cast.
    const [r, gr] = at(90, 90);
    expect(r! - gr!).toBeGreaterThan(100);
    const [r2, g2] = at(30, 90);
    expect(g2! - r2!).toBeGreaterThan(0);
  });
});
