import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Packr } from 'msgpackr';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { StatisticsCollector } from '../../src/stats/collector.js';
import { emptyStatistics } from '../../src/stats/histogram.js';
import { decodeStatistics, encodeStatistics, encodeVarints, loadStatistics, saveStatistics } from '../../src/stats/store.js';
import type { StoredStatistics } from '../../src/stats/types.js';

const dir = mkdtempSync(path.join(tmpdir(), 'trt-calib-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SHA_A = 'a'.repeat(12) + '0123456789abcdef'.repeat(3) + '0123';
const SHA_B = 'b'.repeat(64);

async function sample(): Promise<StoredStatistics> {
  const c = new StatisticsCollector();
  const relu = new Float32Array(200_000);
  for (let i = 0; i < relu.length; i++) relu[i] = Math.max(0, Math.sin(i * 0.37) * 3 + (i % 97) / 50);
  relu[5] = 1234.5;
  const neg = Float32Array.from(relu, (v, i) => (i % 3 ? -v : v) / 7);
  neg[9] = NaN;
  neg[10] = -Infinity;
  await Promise.all([c.add('conv1/relu', relu), c.add('input', neg), c.add('zeros', new Float32Array(1000))]);
  return {
    format: 'trt-calib-stats',
    formatVersion: 1,
    provenance: {
      tool: 'trt-calib',
      toolVersion: '0.1.0',
      modelFile: 'mobilenet.onnx',
      modelSha256: SHA_A,
      shapes: { input: [8, 3, 224, 224] },
      preprocess: { preset: 'raw01', mean: [0, 0, 0] },
      imageCount: 43,
      skippedCount: 1,
      imageListSha256: SHA_B,
      histogramBins: 8192,
      createdBy: 'test',
    },
    tensors: [...c.result(), emptyStatistics('never-ran')],
  };
}

describe('statistics store', () => {
  it('round-trips exactly, writes the same bytes twice, and stays compact', async () => {
    const stored = await sample();
    const file = path.join(dir, 'm.stats.msgpack');
    await saveStatistics(file, stored);
    const loaded = await loadStatistics(file, { expectModelSha256: SHA_A.toUpperCase() });
    expect(loaded.provenance).toEqual(stored.provenance);
    const sorted = [...stored.tensors].sort((a, b) => (a.name < b.name ? -1 : 1));
    expect(loaded.tensors.map((t) => t.name)).toEqual(['conv1/relu', 'input', 'never-ran', 'zeros']);
    for (let i = 0; i < sorted.length; i++) {
      const { hist: h1, ...rest1 } = loaded.tensors[i]!;
      const { hist: h2, ...rest2 } = sorted[i]!;
      expect(rest1).toEqual(rest2);
      expect(Buffer.from(h1.buffer).equals(Buffer.from(h2.buffer))).toBe(true);
    }
    expect(loaded.tensors[1]).toMatchObject({ nanCount: 1, negInfCount: 1 });
    const again = path.join(dir, 'again.msgpack');
    await saveStatistics(again, loaded);
    expect(readFileSync(again).equals(readFileSync(file))).toBe(true);
    // 4 tensors x 8192 float64 bins would be 256 KiB raw; trimmed varints take a fraction of it
    expect(statSync(file).size).toBeLessThan(40_000);
    // atomic write: no temporary file left behind
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('encodes counts beyond 2^32 exactly', async () => {
    const h = new Float64Array([2 ** 40 + 3, 0, 127, 128, 2 ** 45 + 1, 0, 0, 0]);
    // varint sizes: 2^40+3 -> 6 bytes, 0 -> 1, 127 -> 1, 128 -> 2, 2^45+1 -> 7; trailing zeros dropped
    expect(encodeVarints(h, 5).length).toBe(6 + 1 + 1 + 2 + 7);
    const stored = await sample();
    stored.provenance = { ...stored.provenance, histogramBins: 8 };
    const big = emptyStatistics('big', 8);
    big.hist.set(h);
    // bins of width 1 over [0, 8): values in (0, 1) .. [4, 5), absMax 4.5
    Object.assign(big, { count: h.reduce((a, b) => a + b, 0), min: 0.5, max: 4.5, absMax: 4.5, range: 8 });
    stored.tensors = [big];
    const back = decodeStatistics(encodeStatistics(stored), 'big.msgpack').tensors[0]!;
    expect(Array.from(back.hist)).toEqual(Array.from(h));
    expect(back.count).toBe(2 ** 40 + 2 ** 45 + 259);
  });

  it('refuses a file that is not statistics: text, JSON, random bytes, another msgpack', async () => {
    const cases: Array<[string, Buffer]> = [
      ['text.msgpack', Buffer.from('hello world\n')],
      ['json.msgpack', Buffer.from(JSON.stringify({ format: 'trt-calib-stats' }))],
      ['random.msgpack', Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 73 + 11) & 255))],
      ['other.msgpack', new Packr({ useRecords: false }).pack({ format: 'something-else', formatVersion: 1 })],
      ['empty.msgpack', Buffer.alloc(0)],
    ];
    for (const [name, bytes] of cases) {
      const file = path.join(dir, name);
      writeFileSync(file, bytes);
      const err = await loadStatistics(file).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UserError);
      expect((err as Error).message).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not a trt-calib statistics file \\(.+\\); re-run calibration$`));
    }
  });

  it('refuses a truncated file wherever it is cut', async () => {
    const bytes = encodeStatistics(await sample());
    for (const cut of [1, 10, 100, Math.floor(bytes.length / 3), Math.floor(bytes.length / 2), bytes.length - 2, bytes.length - 1]) {
      expect(() => decodeStatistics(bytes.subarray(0, cut), 'cut.msgpack')).toThrow(/^cut\.msgpack is not a trt-calib statistics file \(.+\); re-run calibration$/);
    }
    // and with trailing garbage
    expect(() => decodeStatistics(Buffer.concat([bytes, Buffer.from([1])]), 'long.msgpack')).toThrow(/trailing data/);
  });

  it('refuses statistics whose numbers do not add up (a corrupt count or histogram)', async () => {
    const packr = new Packr({ useRecords: false });
    const good = packr.unpack(encodeStatistics(await sample())) as { tensors: Array<Record<string, unknown>> };
    const badCount = structuredClone(good);
    badCount.tensors[0]!.count = (badCount.tensors[0]!.count as number) + 1;
    expect(() => decodeStatistics(packr.pack(badCount), 'f')).toThrow(/tensor "conv1\/relu": the histogram holds \d+ values but count is \d+/);
    const badRange = structuredClone(good);
    badRange.tensors[1]!.range = 1024;
    expect(() => decodeStatistics(packr.pack(badRange), 'f')).toThrow(/tensor "input": range is not the smallest power of two above absMax/);
    const badHist = structuredClone(good);
    const h = Buffer.from(badHist.tensors[0]!.hist as Uint8Array);
    h[h.length - 1] = 0x80; // a varint that never ends
    badHist.tensors[0]!.hist = h;
    expect(() => decodeStatistics(packr.pack(badHist), 'f')).toThrow(/not a trt-calib statistics file \(tensor "conv1\/relu": histogram data ends/);
  });

  it('refuses statistics of another model, naming both hashes', async () => {
    const file = path.join(dir, 'a.stats.msgpack');
    await saveStatistics(file, await sample());
    const err = await loadStatistics(file, { expectModelSha256: SHA_B, modelFile: 'other.onnx' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toBe(
      `${file} was collected on model sha256 aaaaaaaaaaaa... (mobilenet.onnx), not on other.onnx (bbbbbbbbbbbb...); re-run calibration or pass the right --model`,
    );
  });

  it('refuses to write statistics that could not be read back', async () => {
    const stored = await sample();
    stored.provenance = { ...stored.provenance, modelSha256: '' };
    expect(() => encodeStatistics(stored)).toThrow(/provenance is incomplete: modelSha256 is not a sha256/);
  });

  it('refuses a newer format version with an upgrade hint, and a missing file clearly', async () => {
    const packr = new Packr({ useRecords: false });
    const v = packr.unpack(encodeStatistics(await sample())) as Record<string, unknown>;
    v.formatVersion = 7;
    expect(() => decodeStatistics(packr.pack(v), 'new.msgpack')).toThrow(/new\.msgpack was written by a newer trt-calib \(statistics format 7; this version reads format 1\)/);
    await expect(loadStatistics(path.join(dir, 'nope.msgpack'))).rejects.toThrow(/does not exist/);
  });
});
