/**
 * The task when nothing better is known (--task raw, or what auto falls back to): the model's outputs are only
 * compared as numbers, and the verdict is the mean per-image cosine of one output against FP32 (the same number
 * as that output's cosineMean in the report). It has no labels and no points of anything to gate on.
 */
import { ExactSum } from '../exact-sum.js';
import { PairSums, floatValues } from '../metrics.js';
import type { BatchOutputs, ImageGeometry, TaskEvaluator, TaskMetrics } from './types.js';

export function createRawEvaluator(options: { output: string }): TaskEvaluator {
  const { output } = options;
  // Only the current batch's reference is kept: variants of a batch come right after its reference.
  let reference: Float32Array | Float64Array | undefined;
  const sums = new Map<string, { cosine: ExactSum; images: number }>();
  return {
    kind: 'raw',
    outputs: [output],
    addReference(outputs: BatchOutputs): void {
      const t = outputs[output];
      if (t === undefined) throw new Error(`The reference run did not return output ${JSON.stringify(output)}.`);
      reference = floatValues(t, `The reference's output ${JSON.stringify(output)}`).slice();
    },
    addVariant(variant: string, outputs: BatchOutputs, images: readonly ImageGeometry[]): void {
      const t = outputs[output];
      if (t === undefined) throw new Error(`Variant ${variant} did not return output ${JSON.stringify(output)}.`);
      if (reference === undefined) throw new Error(`Variant ${variant} was given a batch before the reference.`);
      const x = floatValues(t, `Variant ${variant}'s output ${JSON.stringify(output)}`);
      const n = images.length;
      if (x.length !== reference.length) throw new Error(`Variant ${variant}'s output ${JSON.stringify(output)} has ${x.length} values, the reference's ${reference.length}.`);
      const per = n === 0 ? 0 : x.length / n;
      const s = sums.get(variant) ?? { cosine: new ExactSum(), images: 0 };
      for (let i = 0; i < n; i++) s.cosine.add(new PairSums().add(reference, x, i * per, per).cosine);
      s.images += n;
      sums.set(variant, s);
    },
    toState(): unknown {
      return [...sums].map(([name, s]) => [name, s.cosine.toState(), s.images]);
    },
    addState(state: unknown): void {
      for (const [name, cosine, images] of state as Array<[string, ReturnType<ExactSum['toState']>, number]>) {
        const s = sums.get(name) ?? { cosine: new ExactSum(), images: 0 };
        s.cosine.merge(ExactSum.fromState(cosine));
        s.images += images;
        sums.set(name, s);
      }
    },
    finish(): Map<string, TaskMetrics> {
      return new Map([...sums].map(([name, s]) => [name, { kind: 'raw', metric: 'mean cosine', value: s.images === 0 ? 0 : s.cosine.value / s.images }]));
    },
  };
}
