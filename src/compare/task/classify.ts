/**
 * Classification in its own terms: top-1 agreement with FP32 (the fraction of images whose argmax is FP32's) and,
 * with labels (folders or a path,label CSV), top-1 accuracy. The same argmax as the output comparison
 * (src/compare/metrics.ts: the first index on ties, NaN never wins), so the numbers are those compare reported
 * before tasks existed.
 */
import path from 'node:path';
import type { Tensor } from '../../tensor.js';
import { argmax, floatValues } from '../metrics.js';
import type { BatchOutputs, ImageGeometry, TaskEvaluator, TaskMetrics } from './types.js';

export interface ClassifyOptions {
  /** The [N, C] scores output. */
  output: string;
  /** Class index by dataset file (path.resolve'd); files not in the map are unlabelled. */
  labels?: ReadonlyMap<string, number>;
}

interface Counts {
  images: number;
  agree: number;
  labelled: number;
  correct: number;
}

export function createClassifyEvaluator(options: ClassifyOptions): TaskEvaluator {
  const { output } = options;
  const labels = options.labels === undefined ? undefined : new Map([...options.labels].map(([f, l]) => [path.resolve(f), l]));
  // FP32's top-1 per image, in pass order (one number per image: all the metric needs).
  const reference: number[] = [];
  const counts = new Map<string, Counts & { next: number }>();

  const top1s = (outputs: BatchOutputs, n: number, who: string): number[] => {
    const t: Tensor | undefined = outputs[output];
    if (t === undefined) throw new Error(`${who} did not return output ${JSON.stringify(output)}.`);
    const values = floatValues(t, `${who}'s output ${JSON.stringify(output)}`);
    const classes = n === 0 ? 0 : values.length / n;
    if (!Number.isInteger(classes) || classes < 1) throw new Error(`${who}'s output ${JSON.stringify(output)} is not ${n} rows of scores.`);
    return Array.from({ length: n }, (_, i) => argmax(values, i * classes, classes));
  };

  return {
    kind: 'classify',
    outputs: [output],
    addReference(outputs: BatchOutputs, images: readonly ImageGeometry[]): void {
      reference.push(...top1s(outputs, images.length, 'The reference run'));
    },
    addVariant(variant: string, outputs: BatchOutputs, images: readonly ImageGeometry[]): void {
      let c = counts.get(variant);
      if (c === undefined) {
        c = { images: 0, agree: 0, labelled: 0, correct: 0, next: 0 };
        counts.set(variant, c);
      }
      const top1 = top1s(outputs, images.length, `Variant ${variant}`);
      top1.forEach((t, i) => {
        const ref = reference[c.next + i];
        if (ref === undefined) throw new Error(`Variant ${variant} was given images before the reference.`);
        if (t === ref) c.agree++;
        const label = labels?.get(path.resolve(images[i]!.file));
        if (label !== undefined) {
          c.labelled++;
          if (t === label) c.correct++;
        }
      });
      c.next += top1.length;
      c.images += top1.length;
    },
    toState(): unknown {
      return [...counts].map(([name, c]) => [name, [c.images, c.agree, c.labelled, c.correct]]);
    },
    addState(state: unknown): void {
      for (const [name, [images, agree, labelled, correct]] of state as Array<[string, number[]]>) {
        const c = counts.get(name) ?? { images: 0, agree: 0, labelled: 0, correct: 0, next: 0 };
        c.images += images!;
        c.agree += agree!;
        c.labelled += labelled!;
        c.correct += correct!;
        counts.set(name, c);
      }
    },
    finish(): Map<string, TaskMetrics> {
      const out = new Map<string, TaskMetrics>();
      for (const [name, c] of counts) {
        const agreement = c.images === 0 ? 0 : c.agree / c.images;
        const m: TaskMetrics = { kind: 'classify', metric: 'top-1 agreement', value: agreement, classify: { top1Agreement: agreement } };
        if (labels !== undefined && c.labelled > 0) {
          const top1 = c.correct / c.labelled;
          m.valueLabels = top1;
          m.classify!.top1 = top1;
          m.classify!.top1Labels = top1;
        }
        out.set(name, m);
      }
      return out;
    },
  };
}
