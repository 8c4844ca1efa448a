/**
 * Parsing of the shape options: `--size 224`, `--size 480x640` (height x width) and trtexec-style
 * `--shapes input:1x3x640x640[,other:1x10]`.
 */
import { UserError, invalidParameter } from '../errors.js';

export const MAX_SIDE = 16384;

/** `N` or `HxW` (height first, as in the tensor dims). */
export function parseSize(value: string | number | readonly [number, number]): { height: number; width: number } {
  if (typeof value === 'number') {
    checkSide('size', value);
    return { height: value, width: value };
  }
  if (Array.isArray(value)) {
    const [height, width] = value as readonly [number, number];
    checkSide('size', height);
    checkSide('size', width);
    return { height, width };
  }
  const text = String(value).trim();
  const m = /^(\d+)(?:\s*[xX]\s*(\d+))?$/.exec(text);
  if (!m) throw invalidParameter('size', 'N or HxW, e.g. 224 or 480x640 (height x width)', value);
  const height = Number(m[1]);
  const width = m[2] !== undefined ? Number(m[2]) : height;
  checkSide('size', height);
  checkSide('size', width);
  return { height, width };
}

function checkSide(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1 || v > MAX_SIDE) throw invalidParameter(name, `sides that are integers from 1 to ${MAX_SIDE}`, v);
}

/**
 * trtexec's `--shapes` syntax: comma-separated `name:d0xd1x...`. The name is everything before the
 * last colon, so TensorFlow-style names such as `input_1:0` work (`input_1:0:1x224x224x3`).
 */
export function parseShapes(spec: string): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  const entries = spec.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (entries.length === 0) throw invalidParameter('shapes', 'name:1x3x224x224 (trtexec style)', spec);
  for (const entry of entries) {
    const colon = entry.lastIndexOf(':');
    const name = colon > 0 ? entry.slice(0, colon).trim().replace(/^['"]|['"]$/g, '') : '';
    const dimsText = colon > 0 ? entry.slice(colon + 1).trim() : '';
    if (name === '' || !/^\d+(x\d+)*$/i.test(dimsText)) {
      throw invalidParameter('shapes', 'entries like input:1x3x224x224 (name, colon, dims joined by x)', entry);
    }
    const dims = dimsText.split(/x/i).map(Number);
    if (dims.some((d) => d < 1)) throw invalidParameter('shapes', 'dims of at least 1', entry);
    if (shapes.has(name)) throw new UserError(`--shapes names the input ${JSON.stringify(name)} twice.`);
    shapes.set(name, dims);
  }
  return shapes;
}
