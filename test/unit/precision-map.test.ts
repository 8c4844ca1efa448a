import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import {
  countPrecisions,
  formatPrecisionMap,
  parsePrecisionMap,
  precisionMapPath,
  readPrecisionMap,
  validatePrecisionMap,
  writePrecisionMap,
} from '../../src/precision/map.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-precision-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** The UserError's message (fails the test when nothing, or something else, is thrown). */
function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UserError);
    return (err as UserError).message;
  }
  throw new Error('expected a UserError');
}

describe('precision map text', () => {
  it('round-trips, in the given layer order then by name, always the same bytes', () => {
    const map = new Map([
      ['z_last', 'int8'],
      ['conv2', 'fp32'],
      ['Conv:out 1', 'fp16'],
      ['a "quoted" layer', 'fp16'],
    ] as const);
    const text = formatPrecisionMap(map, ['conv2', 'not-in-map', 'z_last']);
    expect(text).toBe('{\n  "conv2": "fp32",\n  "z_last": "int8",\n  "Conv:out 1": "fp16",\n  "a \\"quoted\\" layer": "fp16"\n}\n');
    const back = parsePrecisionMap(text, 'm.json');
    expect([...back]).toEqual([
      ['conv2', 'fp32'],
      ['z_last', 'int8'],
      ['Conv:out 1', 'fp16'],
      ['a "quoted" layer', 'fp16'],
    ]);
    expect(formatPrecisionMap(back, ['conv2', 'z_last'])).toBe(text);
    expect(formatPrecisionMap(new Map())).toBe('{}\n');
    expect(countPrecisions(back)).toEqual({ int8: 1, fp16: 2, fp32: 1 });
  });

  it('accepts what editors write: CRLF, a byte order mark, escapes, an empty object', () => {
    expect([...parsePrecisionMap('\ufeff{\r\n  "a\\u0041": "fp16"\r\n}\r\n')]).toEqual([['aA', 'fp16']]);
    expect(parsePrecisionMap('{}').size).toBe(0);
  });

  it('names the line and column of syntax errors', () => {
    expect(errorOf(() => parsePrecisionMap('{\n  "conv1": "fp16",\n  "conv2" "fp32"\n}', 'p.json'))).toBe('p.json:3:11: expected ":" after "conv2" but found "\\"fp32\\"\\n}"');
    expect(errorOf(() => parsePrecisionMap('{\n  "conv1": "fp16",\n}', 'p.json'))).toMatch(/^p\.json:3:1: trailing comma/);
    expect(errorOf(() => parsePrecisionMap('{\n  "conv1": "fp16"', 'p.json'))).toMatch(/^p\.json:2:18: expected "," or "}" but found the end of the file/);
    expect(errorOf(() => parsePrecisionMap('["conv1"]', 'p.json'))).toMatch(/^p\.json:1:1: expected a JSON object/);
    expect(errorOf(() => parsePrecisionMap('{"a": "fp16"} x', 'p.json'))).toMatch(/^p\.json:1:15: unexpected "x" after the closing/);
    expect(errorOf(() => parsePrecisionMap('{\n  conv1: "fp16"\n}', 'p.json'))).toMatch(/^p\.json:2:3: expected a layer name in double quotes/);
    expect(errorOf(() => parsePrecisionMap('{"a\nb": "fp16"}', 'p.json'))).toMatch(/^p\.json:1:2: string not closed/);
  });

  it('refuses bad values and duplicate layers, naming the layer and its line', () => {
    expect(errorOf(() => parsePrecisionMap('{\n  "conv1": "fp16",\n  "conv2": "FP32"\n}', 'p.json'))).toBe(
      'p.json:3:3: layer "conv2": expected "int8", "fp16" or "fp32" but found "FP32" (did you mean "fp32"?)',
    );
    expect(errorOf(() => parsePrecisionMap('{"conv1": 16}', 'p.json'))).toBe('p.json:1:2: layer "conv1": expected "int8", "fp16" or "fp32" but found 16');
    expect(errorOf(() => parsePrecisionMap('{"conv1": {"precision": "fp16"}}', 'p.json'))).toMatch(/found an object$/);
    expect(errorOf(() => parsePrecisionMap('{"conv1": null}', 'p.json'))).toMatch(/found null$/);
    expect(errorOf(() => parsePrecisionMap('{\n "conv1": "fp16",\n "conv1": "fp32"\n}', 'p.json'))).toBe('p.json:3:2: layer "conv1" appears twice (first on line 2)');
    expect(errorOf(() => parsePrecisionMap('{"": "fp16"}', 'p.json'))).toMatch(/empty layer name/);
  });

  it('refuses layers the model does not have, with their lines and the probable layer', () => {
    const text = '{\n  "block_1_expand_BN": "fp16",\n  "block_1_expnad_BN": "fp16",\n  "totally_unknown": "fp32"\n}\n';
    const map = parsePrecisionMap(text, 'p.json');
    const layers = ['bn_Conv1', 'block_1_expand_BN', 'block_1_project_BN'];
    const message = errorOf(() => validatePrecisionMap(map, 'p.json', { layers, text, model: 'm.onnx' }));
    expect(message).toBe('p.json: 2 layer(s) are not in m.onnx: line 3: "block_1_expnad_BN" (did you mean "block_1_expand_BN"?); line 4: "totally_unknown"');
    expect(() => validatePrecisionMap(new Map([['bn_Conv1', 'fp16']]), 'p.json', { layers })).not.toThrow();
  });
});

describe('precision map files', () => {
  it('writes atomically and reads back, validating against the model layers', async () => {
    const file = path.join(tmp, 'sub', 'm.precision.json');
    const map = new Map([
      ['b', 'fp16'],
      ['a', 'int8'],
    ] as const);
    await writePrecisionMap(file, map, ['a', 'b']);
    expect(await readFile(file, 'utf8')).toBe('{\n  "a": "int8",\n  "b": "fp16"\n}\n');
    expect((await readdir(path.dirname(file))).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect([...(await readPrecisionMap(file, { layers: ['a', 'b'] }))]).toEqual([
      ['a', 'int8'],
      ['b', 'fp16'],
    ]);
    await expect(readPrecisionMap(file, { layers: ['a'] })).rejects.toThrow(/1 layer\(s\) are not in the model: line 3: "b"/);
  });

  it('reports a missing or malformed file as a user error naming it', async () => {
    await expect(readPrecisionMap(path.join(tmp, 'nope.json'))).rejects.toThrow(/Precision map .*nope\.json does not exist/);
    const bad = path.join(tmp, 'bad.json');
    await writeFile(bad, '{"a": "int4"}');
    await expect(readPrecisionMap(bad)).rejects.toThrow(`${bad}:1:2: layer "a": expected "int8", "fp16" or "fp32" but found "int4"`);
  });

  it('has a default path beside the caches', () => {
    expect(precisionMapPath('/x/models/mobilenet_v2.onnx')).toBe(path.join('calib-cache', 'mobilenet_v2.precision.json'));
    expect(precisionMapPath('m.ONNX', 'out')).toBe(path.join('out', 'm.precision.json'));
  });
});
