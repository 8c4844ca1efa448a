/**
 * Mask overlays for the report: a real photo with FP32's and a variant's binary maps drawn over it, pixel colours
 * checked against the blend worked out by hand, through a letterbox geometry.
 */
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { createSegmentationEvaluator, maskOverlayDataUris, renderMaskOverlay, vocColour } from '../../src/compare/task/segment/index.js';
import { resolvePreprocess } from '../../src/datasets/presets.js';
import { silentReporter } from '../../src/reporter.js';
import type { Tensor } from '../../src/tensor.js';
import { taskGeometry } from './segment-geometry.js';

const HOME = path.resolve(__dirname, '../../test/fixtures/images/opencv_doc__home.jpg'); // 512 x 384

function binaryMap(height: number, width: number, foreground: (row: number, column: number) => boolean): Tensor {
  const data = new Float32Array(height * width);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = foreground(y, x) ? 0.9 : 0.1;
  return { dtype: 'float32', dims: [1, 1, height, width], data };
}

describe('mask overlays', () => {
  it('draws kept, lost and untouched pixels over the photo where the maps put them', async () => {
    const config = resolvePreprocess({ preset: 'raw01', resize: 'letterbox' }, { name: 'x', dims: [1, 3, 64, 64] });
    const g = await taskGeometry(HOME, config);
    // FP32: foreground in input columns 0-31; the variant keeps columns 0-15 only.
    const ev = createSegmentationEvaluator({ output: 'map' });
    ev.addReference({ map: binaryMap(64, 64, (_, x) => x < 32) }, [g]);
    ev.addVariant('int8', { map: binaryMap(64, 64, (_, x) => x < 16) }, [g]);
    const views = ev.worstViews('int8');
    expect(views.map((v) => [v.file, v.width, v.height, v.mode])).toEqual([[HOME, 64, 64, 'binary']]);

    const overlay = await renderMaskOverlay(HOME, views[0]!, 240);
    expect([overlay.width, overlay.height]).toEqual([240, 180]);
    const plain = await sharp(HOME).rotate().resize(240, 240, { fit: 'inside', withoutEnlargement: true }).removeAlpha().raw().toBuffer();
    // Thumbnail column u is original x = (u + 0.5) * 512 / 240, input column x / 8: u < 60 -> input < 16 (both:
    // green at 0.45), 60 <= u < 120 -> input 16-31 (lost: red at 0.75), u >= 120 -> background, untouched.
    const at = (u: number, v: number) => [...overlay.rgb.subarray((v * 240 + u) * 3, (v * 240 + u) * 3 + 3)];
    const photo = (u: number, v: number) => [...plain.subarray((v * 240 + u) * 3, (v * 240 + u) * 3 + 3)];
    const blend = (p: number[], c: number[], a: number) => p.map((x, k) => Math.round(x * (1 - a) + c[k]! * a));
    for (const v of [0, 90, 179]) {
      expect(at(30, v)).toEqual(blend(photo(30, v), [0, 200, 0], 0.45));
      expect(at(59, v)).toEqual(blend(photo(59, v), [0, 200, 0], 0.45));
      expect(at(60, v)).toEqual(blend(photo(60, v), [230, 0, 0], 0.75));
      expect(at(119, v)).toEqual(blend(photo(119, v), [230, 0, 0], 0.75));
      expect(at(120, v)).toEqual(photo(120, v));
      expect(at(239, v)).toEqual(photo(239, v));
    }

    const uris = await maskOverlayDataUris(views);
    expect(uris.get(HOME)).toMatch(/^data:image\/jpeg;base64,/);
    const warnings: string[] = [];
    const missing = await maskOverlayDataUris([{ ...views[0]!, file: '/no/such/photo.jpg' }], { reporter: { ...silentReporter, warn: (m: string) => void warnings.push(m) } });
    expect(missing.size).toBe(0);
    expect(warnings[0]).toMatch(/No mask overlay for \/no\/such\/photo.jpg/);
  });

  it('uses Pascal VOC colours for agreeing classes', () => {
    expect(vocColour(0)).toEqual([0, 0, 0]);
    expect(vocColour(1)).toEqual([128, 0, 0]);
    expect(vocColour(15)).toEqual([192, 128, 128]);
    expect(vocColour(255)).toEqual([224, 224, 192]);
  });
});
