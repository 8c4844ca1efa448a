/**
 * `--task auto` for OCR: a CTC recogniser has one [N, T, C] sequence output. The shape alone does not tell it from a
 * detector's [N, 4+C, A] or [N, A, 5+C] layout, so it is taken only with evidence: rows along C that sum to 1 in
 * one batch of FP32 outputs (a softmax over classes, as PP-OCR rec exports end), or a text-line input (height at
 * most 64 pixels and width at least twice the height, as PP-OCR rec's 3x48x320 and CRNN's 1x32x100).
 */
import type { Tensor } from '../../../tensor.js';
import { floatValues } from '../../metrics.js';
import type { OcrOptions } from './evaluator.js';

type OutputInfo = { name: string; dims: readonly (number | string)[] };

export interface OcrEvidence {
  /** One batch of FP32 outputs. */
  sample?: Readonly<Record<string, Tensor>>;
  /** The image input's dims ([N, C, H, W] or [N, H, W, C]). */
  input?: { dims: readonly (number | string)[]; layout?: 'NCHW' | 'NHWC' };
}

function describe(o: OutputInfo): string {
  return `${o.name} [${o.dims.join(', ')}]`;
}

/** True when every row along the last axis sums to 1 (within 1e-3) and has no negative value. */
function rowsAreDistributions(t: Tensor): boolean {
  const classes = t.dims[t.dims.length - 1]!;
  if (!(classes > 1)) return false;
  const v = floatValues(t, 'the sample');
  if (v.length === 0) return false;
  for (let r = 0; r < v.length; r += classes) {
    let sum = 0;
    for (let k = 0; k < classes; k++) {
      const x = v[r + k]!;
      if (!(x >= 0)) return false;
      sum += x;
    }
    if (Math.abs(sum - 1) > 1e-3) return false;
  }
  return true;
}

function isTextLineInput(input: OcrEvidence['input']): string | undefined {
  if (input === undefined || input.dims.length !== 4) return undefined;
  const [h, w] = input.layout === 'NHWC' ? [input.dims[1], input.dims[2]] : [input.dims[2], input.dims[3]];
  if (typeof h !== 'number' || h <= 0 || h > 64) return undefined;
  if (typeof w === 'number' && w > 0 && w < 2 * h) return undefined;
  return `the input is a text line (height ${h}, width ${w})`;
}

export function recognizeOcr(outputs: readonly OutputInfo[], evidence: OcrEvidence = {}): { options?: OcrOptions; reason: string } {
  const candidates = outputs.filter((o) => {
    if (o.dims.length !== 3) return false;
    const [, t, c] = o.dims;
    const steps = typeof t !== 'number' || t < 0 || t >= 2;
    return steps && typeof c === 'number' && c >= 3;
  });
  if (candidates.length === 0) return { reason: `no output is a CTC sequence [N, T, C] with a fixed class count: ${outputs.map(describe).join(', ')}` };
  if (candidates.length > 1) return { reason: `several outputs are [N, T, C] sequences (${candidates.map(describe).join(', ')}); name the one to decode` };
  const o = candidates[0]!;
  const why: string[] = [];
  const t = evidence.sample?.[o.name];
  if (t !== undefined && rowsAreDistributions(t)) why.push('each time step is a probability distribution over the classes (a softmax)');
  const line = isTextLineInput(evidence.input);
  if (line !== undefined) why.push(line);
  if (why.length === 0) {
    return { reason: `${describe(o)} could be a CTC recogniser's [N, T, C] or a detector's layout: neither a softmax over C nor a text-line input says which` };
  }
  return { options: { output: o.name, blank: 0 }, reason: `${describe(o)}: a CTC sequence (${o.dims[2]} classes, blank 0), since ${why.join(' and ')}` };
}
