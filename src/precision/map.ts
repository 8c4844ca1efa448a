/**
 * The precision map: which quantizable layer runs in INT8, FP16 or FP32. It is the one source of truth for mixed
 * precision: `quantize` honours it (no Q/DQ on layers kept out of INT8, FP16 casts where asked), the TensorRT
 * bridge reads it for per-layer precisions, and `sensitivity --max-drop` / `--mixed auto` write it.
 *
 * File: `calib-cache/<model>.precision.json`, one flat JSON object, layer name -> "int8" | "fp16" | "fp32":
 *
 *   {
 *     "bn_Conv1": "int8",
 *     "expanded_conv_depthwise_BN": "fp16"
 *   }
 *
 * Layer names are ONNX node names; an unnamed node is named `Op:firstOutput` (as src/onnx/opset.ts nodeLabel
 * does). A layer missing from the map runs in INT8. The file is parsed by a small strict JSON reader of our own,
 * so that every error names the line and column (JSON.parse's messages give neither in Node 20), duplicate keys
 * are refused instead of silently keeping the last one, and a bad value names its layer and line.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import { READ_LIMITS, readUserFile, writeFileAtomic } from '../util/fs.js';

export type LayerPrecision = 'int8' | 'fp16' | 'fp32';
export const LAYER_PRECISIONS: readonly LayerPrecision[] = ['int8', 'fp16', 'fp32'];

/** Layer name -> precision. Iteration order is the file's order (or the order it was built in). */
export type PrecisionMap = ReadonlyMap<string, LayerPrecision>;

const HINT = 'A precision map is one JSON object mapping layer names to "int8", "fp16" or "fp32", e.g. {"conv1": "fp16"}.';

export function isLayerPrecision(value: unknown): value is LayerPrecision {
  return typeof value === 'string' && (LAYER_PRECISIONS as readonly string[]).includes(value);
}

/** The default path: `<outDir>/<model base name>.precision.json`. */
export function precisionMapPath(modelFile: string, outDir = 'calib-cache'): string {
  return path.join(outDir, `${path.basename(modelFile).replace(/\.onnx$/i, '')}.precision.json`);
}

// ---------------------------------------------------------------------------------------------------------------
// A strict JSON reader that keeps positions.

interface Entry {
  key: string;
  value: unknown;
  line: number;
  column: number;
}

class JsonReader {
  private pos = 0;
  constructor(
    private readonly text: string,
    private readonly source: string,
  ) {}

  /** Line and column (1-based) of an offset. */
  where(offset: number): { line: number; column: number } {
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < offset && i < this.text.length; i++) {
      if (this.text.charCodeAt(i) === 10) {
        line++;
        lineStart = i + 1;
      }
    }
    return { line, column: offset - lineStart + 1 };
  }

  fail(offset: number, reason: string): never {
    const { line, column } = this.where(offset);
    throw new UserError(`${this.source}:${line}:${column}: ${reason}`, { hint: HINT });
  }

  private found(): string {
    if (this.pos >= this.text.length) return 'the end of the file';
    return JSON.stringify(this.text.slice(this.pos, this.pos + 12));
  }

  private skip(): void {
    while (this.pos < this.text.length && ' \t\r\n'.includes(this.text[this.pos]!)) this.pos++;
  }

  /** The top-level object's entries, in file order. */
  topLevel(): Entry[] {
    // A UTF-8 byte order mark is not JSON but editors write it; accept it.
    if (this.text.charCodeAt(0) === 0xfeff) this.pos = 1;
    this.skip();
    if (this.text[this.pos] !== '{') this.fail(this.pos, `expected a JSON object "{ ... }" but found ${this.found()}`);
    const entries = this.object(true) as Entry[];
    this.skip();
    if (this.pos < this.text.length) this.fail(this.pos, `unexpected ${this.found()} after the closing "}"`);
    return entries;
  }

  private value(): unknown {
    this.skip();
    const c = this.text[this.pos];
    if (c === '{') return this.object(false);
    if (c === '[') return this.array();
    if (c === '"') return this.string();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.number();
    for (const [word, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        return v;
      }
    }
    return this.fail(this.pos, `expected a value but found ${this.found()}`);
  }

  private object(top: boolean): Entry[] | Record<string, unknown> {
    this.pos++; // {
    const entries: Entry[] = [];
    this.skip();
    if (this.text[this.pos] === '}') {
      this.pos++;
      return top ? entries : {};
    }
    for (;;) {
      this.skip();
      if (this.text[this.pos] !== '"') this.fail(this.pos, `expected a layer name in double quotes but found ${this.found()}`);
      const at = this.where(this.pos);
      const key = this.string();
      this.skip();
      if (this.text[this.pos] !== ':') this.fail(this.pos, `expected ":" after ${JSON.stringify(key)} but found ${this.found()}`);
      this.pos++;
      const value = this.value();
      entries.push({ key, value, line: at.line, column: at.column });
      this.skip();
      const c = this.text[this.pos];
      if (c === ',') {
        this.pos++;
        this.skip();
        if (this.text[this.pos] === '}') this.fail(this.pos, 'trailing comma before "}" (JSON does not allow it)');
        continue;
      }
      if (c === '}') {
        this.pos++;
        break;
      }
      this.fail(this.pos, `expected "," or "}" but found ${this.found()}`);
    }
    return top ? entries : Object.fromEntries(entries.map((e) => [e.key, e.value]));
  }

  private array(): unknown[] {
    this.pos++; // [
    const out: unknown[] = [];
    this.skip();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return out;
    }
    for (;;) {
      out.push(this.value());
      this.skip();
      const c = this.text[this.pos];
      if (c === ',') {
        this.pos++;
        continue;
      }
      if (c === ']') {
        this.pos++;
        return out;
      }
      this.fail(this.pos, `expected "," or "]" but found ${this.found()}`);
    }
  }

  private string(): string {
    const start = this.pos;
    this.pos++; // "
    let out = '';
    for (;;) {
      if (this.pos >= this.text.length) this.fail(start, 'string not closed');
      const c = this.text[this.pos]!;
      if (c === '"') {
        this.pos++;
        return out;
      }
      if (c === '\n') this.fail(start, 'string not closed before the end of the line');
      if (c < ' ') this.fail(this.pos, 'control character inside a string (escape it)');
      if (c === '\\') {
        const e = this.text[this.pos + 1];
        const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
        if (e !== undefined && e in simple) {
          out += simple[e];
          this.pos += 2;
          continue;
        }
        if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(this.text.slice(this.pos + 2, this.pos + 6))) {
          out += String.fromCharCode(Number.parseInt(this.text.slice(this.pos + 2, this.pos + 6), 16));
          this.pos += 6;
          continue;
        }
        this.fail(this.pos, `bad escape ${JSON.stringify(this.text.slice(this.pos, this.pos + 2))} in a string`);
      }
      out += c;
      this.pos++;
    }
  }

  private number(): number {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(this.text.slice(this.pos));
    if (!m) this.fail(this.pos, `bad number ${this.found()}`);
    this.pos += m![0].length;
    return Number(m![0]);
  }
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * Parses a precision map. Syntax errors, duplicate layers and values other than "int8", "fp16", "fp32" are
 * UserErrors of the form `<source>:<line>:<column>: <reason>`.
 */
export function parsePrecisionMap(text: string, source = 'precision map'): Map<string, LayerPrecision> {
  const reader = new JsonReader(text, source);
  const entries = reader.topLevel();
  const map = new Map<string, LayerPrecision>();
  const lines = new Map<string, number>();
  for (const e of entries) {
    const at = `${source}:${e.line}:${e.column}`;
    if (e.key === '') throw new UserError(`${at}: empty layer name`, { hint: HINT });
    const first = lines.get(e.key);
    if (first !== undefined) throw new UserError(`${at}: layer ${JSON.stringify(e.key)} appears twice (first on line ${first})`, { hint: 'Keep one entry per layer.' });
    lines.set(e.key, e.line);
    if (!isLayerPrecision(e.value)) {
      const got = typeof e.value === 'string' ? JSON.stringify(e.value) : e.value === null ? 'null' : Array.isArray(e.value) ? 'an array' : typeof e.value === 'object' ? 'an object' : String(e.value);
      const lower = typeof e.value === 'string' ? e.value.trim().toLowerCase() : '';
      const suggestion = isLayerPrecision(lower) ? ` (did you mean "${lower}"?)` : '';
      throw new UserError(`${at}: layer ${JSON.stringify(e.key)}: expected "int8", "fp16" or "fp32" but found ${got}${suggestion}`, { hint: HINT });
    }
    map.set(e.key, e.value);
  }
  return map;
}

/** The line of each layer in a map's text (for messages about layers that parse but do not fit the model). */
export function precisionMapLines(text: string, source = 'precision map'): Map<string, number> {
  return new Map(new JsonReader(text, source).topLevel().map((e) => [e.key, e.line]));
}

/**
 * Formats a map as pretty JSON, one layer per line: the layers of `order` first, in that order (the model's
 * topological order), then any others sorted by name. The same map always gives the same bytes.
 */
export function formatPrecisionMap(map: PrecisionMap, order: readonly string[] = []): string {
  const keys: string[] = [];
  const seen = new Set<string>();
  for (const k of order) {
    if (map.has(k) && !seen.has(k)) {
      keys.push(k);
      seen.add(k);
    }
  }
  keys.push(...[...map.keys()].filter((k) => !seen.has(k)).sort(compareNames));
  for (const k of keys) {
    const v = map.get(k);
    if (!isLayerPrecision(v)) throw new Error(`precision of ${JSON.stringify(k)} is ${String(v)}; expected int8, fp16 or fp32`);
  }
  if (keys.length === 0) return '{}\n';
  return `{\n${keys.map((k) => `  ${JSON.stringify(k)}: ${JSON.stringify(map.get(k))}`).join(',\n')}\n}\n`;
}

export interface ValidateOptions {
  /** Every layer the map may name (node labels of the model). */
  layers: readonly string[];
  /** The map's text, to give line numbers. */
  text?: string;
  /** The model, for messages. */
  model?: string;
}

/**
 * Checks that every layer of the map exists in the model: a UserError lists the unknown ones with their lines
 * and, where one is close, the layer probably meant.
 */
export function validatePrecisionMap(map: PrecisionMap, source: string, options: ValidateOptions): void {
  const known = new Set(options.layers);
  const unknown = [...map.keys()].filter((k) => !known.has(k));
  if (unknown.length === 0) return;
  const lines = options.text !== undefined ? precisionMapLines(options.text, source) : new Map<string, number>();
  const describe = (name: string) => {
    const line = lines.get(name);
    const near = closest(name, options.layers);
    return `${line !== undefined ? `line ${line}: ` : ''}${JSON.stringify(name)}${near !== undefined ? ` (did you mean ${JSON.stringify(near)}?)` : ''}`;
  };
  const shown = unknown.slice(0, 10).map(describe);
  const more = unknown.length > 10 ? `, and ${unknown.length - 10} more` : '';
  throw new UserError(
    `${source}: ${unknown.length} layer(s) are not in ${options.model ?? 'the model'}: ${shown.join('; ')}${more}`,
    { hint: 'Layer names are the ONNX node names (as Netron shows them); `trt-calib sensitivity` lists the quantizable ones. Was the map written for another model?' },
  );
}

/** Reads, parses and (with `layers`) validates a precision map file. */
export async function readPrecisionMap(file: string, options?: Omit<ValidateOptions, 'text'>): Promise<Map<string, LayerPrecision>> {
  const text = (await readUserFile(file, 'Precision map', READ_LIMITS.precisionMap)).toString('utf8');
  const map = parsePrecisionMap(text, file);
  if (options) validatePrecisionMap(map, file, { ...options, text });
  return map;
}

/** Writes a map atomically (see formatPrecisionMap for the order). */
export async function writePrecisionMap(file: string, map: PrecisionMap, order: readonly string[] = []): Promise<void> {
  await writeFileAtomic(file, formatPrecisionMap(map, order));
}

/** Whether a precision map file exists (for commands that pick it up by default). */
export async function precisionMapExists(file: string): Promise<boolean> {
  try {
    return (await fsp.stat(file)).isFile();
  } catch {
    return false;
  }
}

/** Counts per precision. */
export function countPrecisions(map: PrecisionMap): Record<LayerPrecision, number> {
  const out: Record<LayerPrecision, number> = { int8: 0, fp16: 0, fp32: 0 };
  for (const v of map.values()) out[v]++;
  return out;
}

function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The known name nearest to `name` by edit distance, when it is close (at most a third of the name differs). */
function closest(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Math.max(2, Math.floor(name.length / 3)) + 1;
  for (const c of candidates) {
    if (Math.abs(c.length - name.length) >= bestD) continue;
    const d = editDistance(name, c, bestD);
    if (d < bestD || (d === bestD && best !== undefined && c < best)) {
      best = c;
      bestD = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string, cap: number): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const v = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      cur.push(v);
      if (v < rowMin) rowMin = v;
    }
    if (rowMin > cap) return cap + 1;
    prev = cur;
  }
  return prev[b.length]!;
}
