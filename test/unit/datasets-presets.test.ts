import { describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { PRESETS, inferLayout, resolveBatchSize, resolvePreprocess } from '../../src/datasets/presets.js';
import { parseShapes, parseSize } from '../../src/datasets/shapes.js';

describe('presets', () => {
  it('imagenet: RGB, 256 -> 224 center crop, x/255, ImageNet mean/std, bilinear, NCHW', () => {
    expect(resolvePreprocess({ preset: 'imagenet' })).toEqual({
      preset: 'imagenet',
      height: 224,
      width: 224,
      channels: 3,
      resize: 'center-crop',
      shorterSide: 256,
      interpolation: 'bilinear',
      padValue: 0,
      channelOrder: 'RGB',
      scale: 1 / 255,
      mean: [0.485, 0.456, 0.406],
      std: [0.229, 0.224, 0.225],
      layout: 'NCHW',
      autoOrient: true,
      background: [255, 255, 255],
    });
  });

  it('imagenet is the default preset', () => {
    expect(resolvePreprocess({}).preset).toBe('imagenet');
  });

  it('inception: x/127.5 - 1 (scale 1/255, mean 0.5, std 0.5) and shorter side floor(size/0.875)', () => {
    const c = resolvePreprocess({ preset: 'inception' });
    expect([c.height, c.shorterSide]).toEqual([299, 341]);
    // 255 -> 1, 0 -> -1, 127.5 -> 0
    expect((255 * c.scale - c.mean[0]!) / c.std[0]!).toBeCloseTo(1, 12);
    expect((0 * c.scale - c.mean[0]!) / c.std[0]!).toBeCloseTo(-1, 12);
    const d = resolvePreprocess({ preset: 'inception' }, { name: 'x', dims: [1, 3, 224, 224] });
    expect(d.shorterSide).toBe(256);
  });

  it('imagenet-caffe, yolo, raw01, paddleocr-det', () => {
    expect(resolvePreprocess({ preset: 'imagenet-caffe' })).toMatchObject({ channelOrder: 'BGR', scale: 1, mean: [103.939, 116.779, 123.68], std: [1, 1, 1] });
    expect(resolvePreprocess({ preset: 'yolo' })).toMatchObject({ resize: 'letterbox', height: 640, width: 640, padValue: 114, scale: 1 / 255 });
    expect(resolvePreprocess({ preset: 'raw01' })).toMatchObject({ resize: 'stretch', scale: 1 / 255, mean: [0, 0, 0] });
    expect(resolvePreprocess({ preset: 'paddleocr-det' })).toMatchObject({ resize: 'fit-multiple-of', multipleOf: 32, height: 960, channelOrder: 'BGR' });
    expect(Object.keys(PRESETS)).toEqual(expect.arrayContaining(['imagenet', 'imagenet-caffe', 'inception', 'yolo', 'raw01']));
  });

  it('every field is overridable', () => {
    const c = resolvePreprocess({
      preset: 'imagenet',
      size: '192x256',
      resize: 'letterbox',
      interpolation: 'lanczos3',
      padValue: 7,
      channelOrder: 'BGR',
      scale: 1,
      mean: [1, 2, 3],
      std: [4, 5, 6],
      layout: 'NHWC',
      autoOrient: false,
      background: [1, 2, 3],
    });
    expect(c).toMatchObject({ height: 192, width: 256, resize: 'letterbox', interpolation: 'lanczos3', padValue: 7, channelOrder: 'BGR', scale: 1 });
    expect(c).toMatchObject({ mean: [1, 2, 3], std: [4, 5, 6], layout: 'NHWC', autoOrient: false, background: [1, 2, 3] });
    expect(c.shorterSide).toBeUndefined();
    expect(resolvePreprocess({ preset: 'imagenet', shorterSide: 300 }).shorterSide).toBe(300);
    expect(resolvePreprocess({ preset: 'raw01', mean: [0.5], std: [0.25] })).toMatchObject({ mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] });
  });

  it('rejects bad values with "Expected ... for ... but received ..."', () => {
    expect(() => resolvePreprocess({ preset: 'nope' })).toThrow(/Expected one of imagenet, .* for preset but received "nope"/);
    expect(() => resolvePreprocess({ mean: [1, 2] })).toThrow(/Expected 3 value\(s\) .* for mean but received "1,2"/);
    expect(() => resolvePreprocess({ std: [1, 0, 1] })).toThrow(/non-zero values for std/);
    expect(() => resolvePreprocess({ scale: -1 })).toThrow(/positive number for scale/);
    expect(() => resolvePreprocess({ padValue: 300 })).toThrow(/from 0 to 255 for padValue/);
    expect(() => resolvePreprocess({ size: 'big' })).toThrow(/for size but received "big"/);
    expect(() => resolvePreprocess({ background: [1, 2] })).toThrow(/for background/);
  });
});

describe('shapes from the model', () => {
  it('takes H and W from a static NCHW input', () => {
    expect(resolvePreprocess({ preset: 'imagenet' }, { name: 'input', dims: [1, 3, 256, 320] })).toMatchObject({ height: 256, width: 320, layout: 'NCHW', shorterSide: 365 });
  });

  it('infers NHWC from [N,H,W,3]', () => {
    expect(inferLayout([1, 224, 224, 3])).toBe('NHWC');
    expect(inferLayout(['N', 3, 'H', 'W'])).toBe('NCHW');
    expect(inferLayout([1, 3, 3, 3])).toBeUndefined();
    expect(resolvePreprocess({ preset: 'imagenet' }, { name: 'in', dims: ['batch', 224, 224, 3] })).toMatchObject({ layout: 'NHWC', height: 224 });
  });

  it('a dynamic size needs --size or --shapes', () => {
    const input = { name: 'x', dims: ['N', 3, 'H', 'W'] };
    expect(() => resolvePreprocess({ preset: 'paddleocr-det' }, input)).toThrow(UserError);
    expect(() => resolvePreprocess({ preset: 'paddleocr-det' }, input)).toThrow(/"x" \[N, 3, H, W\] has a dynamic height or width/);
    expect(resolvePreprocess({ preset: 'paddleocr-det', size: 640 }, input)).toMatchObject({ height: 640, width: 640 });
    expect(resolvePreprocess({ preset: 'paddleocr-det', shapes: 'x:1x3x640x960' }, input)).toMatchObject({ height: 640, width: 960 });
  });

  it('rejects shapes that cannot be satisfied', () => {
    const gray = { name: 'input', dims: [1, 1, 28, 28] };
    expect(() => resolvePreprocess({ preset: 'raw01', channels: 3 }, gray)).toThrow(/3 channels were requested but the input "input" \[1, 1, 28, 28\] has 1/);
    expect(resolvePreprocess({ preset: 'raw01' }, gray)).toMatchObject({ channels: 1, mean: [0], std: [1] });
    expect(() => resolvePreprocess({ preset: 'imagenet' }, gray)).toThrow(/3-channel mean but the input has 1/);
    expect(() => resolvePreprocess({ size: 320 }, { name: 'input', dims: [1, 3, 224, 224] })).toThrow(/--size 320x320 cannot be satisfied/);
    expect(() => resolvePreprocess({}, { name: 'input', dims: [1, 4, 224, 224] })).toThrow(/4 channels/);
    expect(() => resolvePreprocess({}, { name: 'input', dims: [1, 3, 224] })).toThrow(/has 3 dims/);
    expect(() => resolvePreprocess({ shapes: 'input:1x3x320x320' }, { name: 'input', dims: [1, 3, 224, 224] })).toThrow(/dim 2 is fixed at 224/);
    expect(() => resolvePreprocess({ shapes: 'other:1x3x320x320' }, { name: 'input', dims: [1, 3, 'H', 'W'] })).toThrow(/model's image input is "input"/);
    expect(() => resolvePreprocess({ preset: 'imagenet', shorterSide: 200 })).toThrow(/center crop 224x224 is bigger than the resized image/);
    expect(() => resolvePreprocess({ preset: 'paddleocr-det', size: 650 })).toThrow(/not a multiple of 32/);
    expect(() => resolvePreprocess({ preset: 'raw01', shorterSide: 300 })).toThrow(/only applies to --resize center-crop/);
  });
});

describe('batch size', () => {
  it('follows the model, --shapes and --batch, and rejects conflicts', () => {
    expect(resolveBatchSize({}, { name: 'x', dims: [4, 3, 224, 224] })).toBe(4);
    expect(resolveBatchSize({}, { name: 'x', dims: ['N', 3, 224, 224] })).toBe(1);
    expect(resolveBatchSize({}, { name: 'x', dims: ['N', 3, 224, 224] }, 8)).toBe(8);
    expect(resolveBatchSize({ batch: 16 }, { name: 'x', dims: ['N', 3, 224, 224] })).toBe(16);
    expect(resolveBatchSize({ shapes: 'x:2x3x224x224' }, { name: 'x', dims: ['N', 3, 224, 224] })).toBe(2);
    expect(() => resolveBatchSize({ batch: 8 }, { name: 'x', dims: [1, 3, 224, 224] })).toThrow(/fixed batch of 1/);
    expect(() => resolveBatchSize({ batch: 8, shapes: 'x:2x3x224x224' }, { name: 'x', dims: ['N', 3, 224, 224] })).toThrow(/disagrees/);
    expect(() => resolveBatchSize({ batch: 0 })).toThrow(/positive integer for batch/);
  });
});

describe('parsers', () => {
  it('parses --size N and HxW', () => {
    expect(parseSize('224')).toEqual({ height: 224, width: 224 });
    expect(parseSize('480x640')).toEqual({ height: 480, width: 640 });
    expect(() => parseSize('0')).toThrow(/integers from 1/);
    expect(() => parseSize('224x')).toThrow();
  });

  it('parses trtexec --shapes, with colons in names', () => {
    const s = parseShapes('input_1:0:1x224x224x3, mask:1x10');
    expect([...s.entries()]).toEqual([
      ['input_1:0', [1, 224, 224, 3]],
      ['mask', [1, 10]],
    ]);
    expect(() => parseShapes('input')).toThrow(/name, colon, dims/);
    expect(() => parseShapes('a:1x3,a:1x3')).toThrow(/twice/);
  });
});
