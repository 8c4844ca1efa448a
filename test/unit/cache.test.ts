import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  cacheToRangeTable,
  diffCaches,
  formatCalibrationCache,
  hexToScale,
  parseCalibrationCache,
  rangeTableFromJson,
  scaleFromAmax,
  scaleToHex,
} from '../../src/cache/trt-cache.js';
import { decodeTrtVersion, encodeTrtVersion, parseTrtVersion, resolveTrtVersion, versionFromHeader } from '../../src/cache/trt-version.js';
import { UserError } from '../../src/errors.js';

describe('TensorRT version encoding', () => {
  it('encodes 8.x as M*1000+m*100+p and 10.x as M*10000+m*100+p', () => {
    expect(encodeTrtVersion({ major: 8, minor: 6, patch: 1 })).toBe(8601);
    expect(encodeTrtVersion({ major: 10, minor: 3, patch: 0 })).toBe(100300);
    expect(encodeTrtVersion({ major: 10, minor: 16, patch: 1 })).toBe(101601);
    expect(decodeTrtVersion(8601)).toEqual({ major: 8, minor: 6, patch: 1 });
    expect(decodeTrtVersion(100300)).toEqual({ major: 10, minor: 3, patch: 0 });
  });
  it('parses what users type and rejects nonsense with the option name', () => {
    expect(parseTrtVersion('10.3')).toEqual({ major: 10, minor: 3, patch: 0 });
    expect(parseTrtVersion('8.6.1.6')).toEqual({ major: 8, minor: 6, patch: 1 });
    expect(parseTrtVersion('100300')).toEqual({ major: 10, minor: 3, patch: 0 });
    expect(() => parseTrtVersion('ten')).toThrow(/--trt-version/);
    expect(() => parseTrtVersion('1.2.3')).toThrow(UserError);
  });
  it('reads NvInferVersion.h of both eras', () => {
    expect(versionFromHeader('#define NV_TENSORRT_MAJOR 8 //!< x\n#define NV_TENSORRT_MINOR 6\n#define NV_TENSORRT_PATCH 1\n')).toEqual({ major: 8, minor: 6, patch: 1 });
    const v10 = '#define TRT_MAJOR_ENTERPRISE 10\n#define TRT_MINOR_ENTERPRISE 16\n#define TRT_PATCH_ENTERPRISE 0\n#define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE\n';
    expect(versionFromHeader(v10)).toEqual({ major: 10, minor: 16, patch: 0 });
  });
  it('detects an installed TensorRT with the same detection as the build and doctor, or from a runtime-only library', () => {
    const root = mkdtempSync(path.join(tmpdir(), 'fake-trt-'));
    try {
      mkdirSync(path.join(root, 'include'));
      mkdirSync(path.join(root, 'lib'));
      writeFileSync(path.join(root, 'lib', 'libnvinfer.so.8.6.1'), '');
      // Runtime only (no headers): the version comes from the library's file name.
      expect(resolveTrtVersion(undefined, { TENSORRT_ROOT: root })).toEqual({ version: { major: 8, minor: 6, patch: 1 }, source: `detected at ${path.join(root, 'lib', 'libnvinfer.so.8.6.1')}` });
      writeFileSync(path.join(root, 'include', 'NvInfer.h'), '');
      writeFileSync(path.join(root, 'include', 'NvInferVersion.h'), '#define TRT_MAJOR_ENTERPRISE 10\n#define TRT_MINOR_ENTERPRISE 3\n#define TRT_PATCH_ENTERPRISE 0\n');
      expect(resolveTrtVersion(undefined, { TENSORRT_ROOT: root })).toEqual({ version: { major: 10, minor: 3, patch: 0 }, source: `detected at ${path.join(root, 'include', 'NvInferVersion.h')}` });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
  it('refuses to guess a version when none is given or installed', () => {
    expect(() => resolveTrtVersion(undefined, { TENSORRT_ROOT: '/nonexistent' })).toThrow(/--trt-version/);
    expect(resolveTrtVersion('10.3.0', {}).source).toBe('--trt-version');
  });
});

describe('calibration cache codec', () => {
  it('writes scale = amax/127 as big-endian float32 bits', () => {
    // 1/127 = 0.0078740157...: exponent -7 (biased 120 = 0x78), mantissa round(0.0078740157/2^-7 - 1) * 2^23 = 0x010204
    // -> bits 0 01111000 00000010000001000000100 = 0x3c010204.
    expect(scaleToHex(scaleFromAmax(1))).toBe('3c010204');
    // amax 127 -> scale 1.0 = 0x3f800000; amax 254 -> 2.0 = 0x40000000.
    expect(scaleToHex(scaleFromAmax(127))).toBe('3f800000');
    expect(scaleToHex(scaleFromAmax(254))).toBe('40000000');
    expect(hexToScale('3f800000')).toBe(1);
    expect(hexToScale('0')).toBe(0);
  });

  it('formats a cache TensorRT reads: header, one line per tensor, final newline', () => {
    const text = formatCalibrationCache({
      trtVersion: { major: 10, minor: 3, patch: 0 },
      algorithm: 'EntropyCalibration2',
      entries: [
        { name: 'input', scale: scaleFromAmax(1) },
        { name: 'conv1/convolution:0', scale: scaleFromAmax(127) },
      ],
    });
    expect(text).toBe('TRT-100300-EntropyCalibration2\ninput: 3c010204\nconv1/convolution:0: 3f800000\n');
  });

  it('round-trips and splits names at the last ": "', () => {
    const original = 'TRT-8601-MinMaxCalibration\ninput_1:0: 3c010a14\n(Unnamed Layer* 3) [Shuffle]_output: 3d0b7086\na: b: 3f800000\n';
    const c = parseCalibrationCache(original, 'x.cache');
    expect(c.trtVersion).toBe(8601);
    expect(c.algorithm).toBe('MinMaxCalibration');
    expect(c.entries.map((e) => e.name)).toEqual(['input_1:0', '(Unnamed Layer* 3) [Shuffle]_output', 'a: b']);
    expect(c.entries[2]!.scale).toBe(1);
    expect(c.entries[2]!.amax).toBe(127);
    expect(formatCalibrationCache(c)).toBe(original);
  });

  it('accepts what real TensorRT writes: unpadded hex, zero scales, CRLF, no final newline', () => {
    const real = 'TRT-8401-EntropyCalibration2\r\ninput: 3caa54fc\r\n(Unnamed Layer* 64) [Shuffle]_output: 0\r\n366: 0\r\n395: 3cbe52af';
    const c = parseCalibrationCache(real);
    expect(c.entries).toHaveLength(4);
    expect(c.entries[1]!.scale).toBe(0);
    expect(c.entries[3]!.name).toBe('395');
  });

  it('rejects malformed caches with the line number and the reason', () => {
    const bad = (text: string) => () => parseCalibrationCache(text, 'm.cache');
    expect(bad('')).toThrow(/m\.cache:1: the file is empty/);
    expect(bad('TRT-EntropyCalibration2\n')).toThrow(/m\.cache:1: expected a header/);
    expect(bad('TRT-100300-EntropyCalibration2\ninput 3c010204\n')).toThrow(/m\.cache:2: expected "tensor name: hhhhhhhh"/);
    expect(bad('TRT-100300-EntropyCalibration2\ninput: 3c01020z\n')).toThrow(/m\.cache:2: the scale of "input"/);
    expect(bad('TRT-100300-EntropyCalibration2\ninput: 3c0102041\n')).toThrow(/m\.cache:2/);
    expect(bad('TRT-100300-EntropyCalibration2\ninput: 3c010204\n\nx: 3c010204\n')).toThrow(/m\.cache:3: empty line/);
    expect(bad('TRT-100300-EntropyCalibration2\ninput: 3c010204\ninput: 3c010204\n')).toThrow(/m\.cache:3: tensor "input" already appeared on line 2/);
    // 0x7fc00000 is NaN; 0xbf800000 is -1.
    expect(bad('TRT-100300-EntropyCalibration2\ninput: 7fc00000\n')).toThrow(/m\.cache:2: the scale of "input" is NaN/);
    expect(bad('TRT-100300-EntropyCalibration2\ninput: bf800000\n')).toThrow(/m\.cache:2: the scale of "input" is -1/);
    expect(bad('TRT-100300-EntropyCalibration2\ninput: 3c010204\n')).not.toThrow();
  });

  it('takes a value of fewer than 8 hex digits only as TensorRT writes one (a lone 0): a line cut mid-value is an error with its line', () => {
    const bad = (text: string) => () => parseCalibrationCache(text, 'm.cache');
    // A copy cut short after "3caa" used to parse as a scale of 1.4e-42 for "input".
    expect(bad('TRT-100300-MinMaxCalibration\ninput: 3caa')).toThrow(/m\.cache:2: the scale of "input" has 4 hex digit\(s\), "3caa": the line is cut in the middle of its value/);
    expect(bad('TRT-100300-MinMaxCalibration\ninput: 3caa4a58\nConv1_pad: 3c\n')).toThrow(/m\.cache:3: the scale of "Conv1_pad" has 2 hex digit/);
    expect(bad('TRT-100300-MinMaxCalibration\ninput: 3caa4a58\nConv1_pad: ')).toThrow(/m\.cache:3: the scale of "Conv1_pad" must be 8 hex digits .* or a lone 0, but is ""/);
    expect(bad('TRT-100300-MinMaxCalibration\ninput: 3caa4a58\nConv1_p')).toThrow(/m\.cache:3: expected "tensor name: hhhhhhhh"/);
    expect(bad('TRT-100300-MinMaxCalibration\ninput: 00\n')).toThrow(/m\.cache:2: .*2 hex digit/);
    const ok = parseCalibrationCache('TRT-100300-MinMaxCalibration\ninput: 0\nx: 00000000\ny: 3caa4a58');
    expect(ok.entries.map((e) => e.scale)).toEqual([0, 0, 0.020787402987480164]);
  });

  it('converts to and from a JSON range table', () => {
    const c = parseCalibrationCache('TRT-100300-EntropyCalibration2\ninput: 3c010204\nrelu: 40000000\n');
    const table = cacheToRangeTable(c);
    expect(table.relu).toBe(254);
    expect(table.input).toBeCloseTo(1, 6);
    const back = rangeTableFromJson(JSON.stringify(table));
    expect(formatCalibrationCache({ trtVersion: 100300, algorithm: 'EntropyCalibration2', entries: Object.entries(back).map(([name, amax]) => ({ name, scale: scaleFromAmax(amax) })) })).toBe(
      'TRT-100300-EntropyCalibration2\ninput: 3c010204\nrelu: 40000000\n',
    );
    expect(() => rangeTableFromJson('[1,2]', 'r.json')).toThrow(/r\.json must be a JSON object/);
    expect(() => rangeTableFromJson('{"a": -1}', 'r.json')).toThrow(/range of "a"/);
    expect(() => rangeTableFromJson('{', 'r.json')).toThrow(/r\.json is not valid JSON/);
  });

  it('diffs two caches, largest disagreement first, missing tensors on top', () => {
    const a = parseCalibrationCache('TRT-100300-EntropyCalibration2\nx: 3f800000\ny: 40000000\nonly_a: 3f800000\n');
    const b = parseCalibrationCache('TRT-100300-MinMaxCalibration\nx: 3f800000\ny: 40800000\nonly_b: 3f800000\n');
    const rows = diffCaches(a, b);
    expect(rows.map((r) => r.name)).toEqual(['only_a', 'only_b', 'y', 'x']);
    // y: 2.0 vs 4.0 -> ratio 0.5, one factor of two apart.
    expect(rows[2]!.ratio).toBe(0.5);
    expect(rows[2]!.disagreement).toBe(1);
    expect(rows[3]!.disagreement).toBe(0);
  });
});
