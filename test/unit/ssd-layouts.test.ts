/**
 * The SSD re-exported in the YOLO layouts (test/unit/ssd-layouts.ts) runs in onnxruntime and gives, on the street
 * frames, the original network's detections re-laid out: the same numbers to float tolerance.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import type { Session } from '../../src/backends/types.js';
import { graphOutputs } from '../../src/onnx/graph.js';
import { loadOnnxModel, saveOnnxModel, type OnnxModel } from '../../src/onnx/model.js';
import type { Tensor } from '../../src/tensor.js';
import { relayout, SSD_LAYOUTS, SSD_MODEL, ssdInput, ssdLayoutModel, STREET } from './ssd-layouts.js';

describe('SSD re-exported in YOLO layouts', () => {
  let source: OnnxModel;
  let original: Session;
  const frames = readdirSync(STREET).filter((f) => f.endsWith('.jpg')).sort().slice(0, 2);
  const inputs: Tensor[] = [];
  beforeAll(async () => {
    source = await loadOnnxModel(SSD_MODEL);
    original = await onnxruntimeBackend.open({ path: SSD_MODEL }, { threads: 1 });
    for (const f of frames) inputs.push(await ssdInput(path.join(STREET, f)));
  });
  afterAll(async () => {
    await original?.release();
  });

  it.each(SSD_LAYOUTS)('%s: one output, the original detections re-laid out', async (layout) => {
    const model = await ssdLayoutModel(layout, { source });
    expect(graphOutputs(model).map((o) => o.name)).toEqual(['output0']);
    const session = await onnxruntimeBackend.open({ path: `ssd-${layout}.onnx`, bytes: saveOnnxModel(model) }, { threads: 1 });
    try {
      for (const input of inputs) {
        const ref = await original.run({ input }, ['boxes', 'scores']);
        const expected = relayout(layout, ref.boxes!.data as Float32Array, ref.scores!.data as Float32Array);
        const got = (await session.run({ input }))['output0']!;
        expect(got.dims).toEqual(expected.dims);
        const data = got.data as Float32Array;
        let worst = 0;
        for (let i = 0; i < data.length; i++) worst = Math.max(worst, Math.abs(data[i]! - expected.data[i]!));
        expect(worst).toBeLessThan(1e-4); // pixels up to 300 and scores 0..1, float32 arithmetic
        if (layout === 'nms') expect(expected.dims[1]).toBeGreaterThan(0); // the frames have people and cars
      }
    } finally {
      await session.release();
    }
  });
});
