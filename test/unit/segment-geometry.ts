/**
 * Test helper: the task's ImageGeometry of a file under a preprocessing config, from the exact geometry rules of
 * src/datasets/preprocess.ts (computeGeometry) and the file's oriented size. input = original * scale + offset.
 */
import sharp from 'sharp';
import { computeGeometry } from '../../src/datasets/preprocess.js';
import type { PreprocessConfig } from '../../src/datasets/types.js';
import type { ImageGeometry } from '../../src/compare/task/types.js';

export async function taskGeometry(file: string, config: PreprocessConfig): Promise<ImageGeometry> {
  const meta = await sharp(file).metadata();
  const width = config.autoOrient ? meta.autoOrient.width : meta.width;
  const height = config.autoOrient ? meta.autoOrient.height : meta.height;
  const g = computeGeometry(width, height, config);
  return {
    file,
    width,
    height,
    inputWidth: config.width,
    inputHeight: config.height,
    scaleX: g.resizeWidth / width,
    scaleY: g.resizeHeight / height,
    offsetX: g.left - (g.crop?.left ?? 0),
    offsetY: g.top - (g.crop?.top ?? 0),
  };
}
