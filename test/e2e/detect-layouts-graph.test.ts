/**
 * Issue 13's second "must show": the SSD fixture re-exported by graph edits in the layouts of other detector
 * families (test/unit/ssd-layouts.ts: YOLOv8, transposed YOLOv8, YOLOv5, NMS in the graph) is the same network, so
 * `trt-calib compare` (the built CLI) must give the same FP32 detections and the same INT8 mAP whatever the layout,
 * and `--task auto` must recognise each layout or say what to pass.
 *
 * One INT8 cache for all: calibrated once on the original SSD. The edits only append layout ops after the SSD's
 * `boxes` and `scores`, so every tensor the cache names that the edited graph still has is the same tensor with the
 * same values; the ops the edit adds (layout_*) have no scale and stay in float, as TensorRT runs a tensor without a
 * scale in a higher precision. Re-calibrating each model instead would give those head tensors scales of their own
 * (the concatenated YOLO head's amax ~300 collapses the scores, the case protect.test.ts covers) and then the INT8
 * numbers would differ for a reason that is not the layout. Cache entries for tensors an edit pruned (the SSD's
 * raw_* outputs' tails) name nothing in the edited graph and are ignored by compare.
 *
 * Two bugs this found, fixed at their cause: the implicit bound lost the rounding of `boxes` in the edited models
 * (read only by a Reshape whose output has no scale; src/onnx/qdq.ts), and compare exited 3 when INT8 changed the
 * row count of the NMS-in-graph output (src/compare/metrics.ts now compares such outputs zero-padded).
 */
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { removeOnnxruntimeDebugLog } from '../../src/backends/onnxruntime-debug-log.js';
import { boxIou } from '../../src/compare/task/detect/nms.js';
import { imageDims, preprocessImage } from '../../src/datasets/preprocess.js';
import type { PreprocessConfig } from '../../src/datasets/types.js';
import { makeNode, makeValueInfo } from '../../src/onnx/build.js';
import { ELEM, graphOf, loadOnnxModel, makeTensor, tensorToProto, withGraph, writeOnnxModel } from '../../src/onnx/model.js';
import { referenceCocoMap, type RefBox } from '../unit/coco-reference.js';
import { SSD_ANCHORS, SSD_MODEL, STREET, writeSsdLayout, type SsdLayout } from '../unit/ssd-layouts.js';
import { IMAGES, assertBuilt, runCli, type CliResult } from './cli.js';

// The SSD's preprocessing: RGB stretched to 300 x 300, x * 2/255 - 1.
const SSD_PRE = ['--preset', 'raw01', '--size', '300', '--scale', String(2 / 255), '--mean', '1,1,1', '--std', '1,1,1'];
const FRAMES = ['vtest_001.jpg', 'vtest_003.jpg', 'vtest_005.jpg', 'vtest_007.jpg'];

type Model = 'ssd' | SsdLayout | 'nms-loose';

let tmp: string;
let cache: string;
const file: Partial<Record<Model | 'ambiguous', string>> = {};
const reports: Partial<Record<Model, any>> = {};
const refusals: Partial<Record<'yolov5' | 'yolov8t' | 'ambiguous', CliResult>> = {};

const detsDir = (m: Model) => path.join(tmp, `dets-${m}`);

function compareArgs(m: Model, extra: string[] = [], precisions = 'fp32,int8'): string[] {
  return [
    'compare', '--model', file[m]!, '--data', STREET, ...SSD_PRE, '--task', 'auto', '--precisions', precisions, ...(precisions.includes('int8') ? ['--cache', cache] : []), '--no-layers',
    '--save-detections', detsDir(m), '--out-dir', path.join(tmp, `out-${m}`), '--report-dir', path.join(tmp, `report-${m}`), '--json', ...extra,
  ];
}

/** Runs the jobs side by side and waits for all of them (a failure must not leave a CLI run going), then throws the first failure. */
async function together(...jobs: Array<Promise<unknown>>): Promise<void> {
  const settled = await Promise.allSettled(jobs);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

async function compare(m: Model, extra: string[] = [], precisions?: string): Promise<void> {
  const r = await runCli(compareArgs(m, extra, precisions));
  if (r.code !== 0) throw new Error(`compare ${m} exited ${r.code}: ${r.stderr}`);
  reports[m] = JSON.parse(r.stdout);
}

beforeAll(async () => {
  assertBuilt();
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-detect-layouts-'));
  const calib = await runCli(['calibrate', '--model', SSD_MODEL, '--data', IMAGES, ...SSD_PRE, '--algo', 'entropy2', '--trt-version', '10.3.0', '--out-dir', path.join(tmp, 'calib'), '--json']);
  if (calib.code !== 0) throw new Error(`calibration failed: ${calib.stderr}`);
  cache = JSON.parse(calib.stdout).caches[0].file;
  file.ssd = SSD_MODEL;
  for (const l of ['yolov8', 'yolov8t', 'yolov5', 'nms'] as const) file[l] = await writeSsdLayout(l, path.join(tmp, `ssd_${l}.onnx`));
  file['nms-loose'] = await writeSsdLayout('nms', path.join(tmp, 'ssd_nms_loose.onnx'), { nms: { iouThreshold: 0.95, scoreThreshold: 0.05 } });
  file.ambiguous = await writeAmbiguous(path.join(tmp, 'ssd_ambiguous.onnx'));
  // Two at a time: the machine has two cores.
  await together(compare('ssd'), compare('yolov8'));
  const refuse = (m: 'yolov5' | 'yolov8t' | 'ambiguous') =>
    runCli(['compare', '--model', file[m]!, '--data', STREET, ...SSD_PRE, '--task', 'auto', '--precisions', 'fp32', '--no-layers', '--report-dir', path.join(tmp, `refused-${m}`)]).then((r) => (refusals[m] = r));
  await together(refuse('yolov5'), refuse('yolov8t'));
  await refuse('ambiguous');
  await together(compare('yolov5', ['--det-layout', 'yolov5']), compare('yolov8t', ['--det-layout', 'yolov8-transposed']));
  await together(compare('nms'), compare('nms-loose', [], 'fp32'));
}, 300_000);

afterAll(async () => {
  // graphRowCounts opens sessions in this process; onnxruntime may create its empty debug log after the backend
  // removed it at open (src/backends/onnxruntime-debug-log.ts).
  removeOnnxruntimeDebugLog();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/**
 * The SSD with its boxes reshaped to [1, 1917, 4] (ymin, xmin, ymax, xmax normalised, but nothing in the shape says
 * so) beside its scores [1, 1917, 90]: boxes [N, A, 4] can be in any of four formats, pixels or normalised, so auto
 * must not guess.
 */
async function writeAmbiguous(out: string): Promise<string> {
  const source = await loadOnnxModel(SSD_MODEL);
  const g = graphOf(source);
  const shape = tensorToProto('ambiguous_boxes_shape', makeTensor('int64', [3], [1n, BigInt(SSD_ANCHORS), 4n] as never));
  const reshape = makeNode('Reshape', ['boxes', 'ambiguous_boxes_shape'], ['bboxes'], { name: 'ambiguous_boxes_reshape' });
  await writeOnnxModel(
    out,
    withGraph(source, {
      ...g,
      node: [...g.node, reshape],
      initializer: [...g.initializer, shape],
      output: [makeValueInfo('bboxes', ELEM.FLOAT, [1, SSD_ANCHORS, 4]), makeValueInfo('scores', ELEM.FLOAT, [1, SSD_ANCHORS, 90])],
      valueInfo: [],
    }),
  );
  return out;
}

interface Row {
  image_id: string;
  category_id: number;
  bbox: [number, number, number, number];
  score: number;
}

async function detections(m: Model, variant: string): Promise<Row[]> {
  return JSON.parse(await readFile(path.join(detsDir(m), `${variant}.json`), 'utf8')) as Row[];
}

/** A results file as the reference's boxes, grouped by frame (FRAMES order), optionally only scores >= minScore. */
function refBoxes(rows: readonly Row[], minScore = 0, classShift = 0): RefBox[][] {
  return FRAMES.map((f) =>
    rows
      .filter((r) => r.image_id === f && r.score >= minScore)
      .map((r) => ({ x1: r.bbox[0], y1: r.bbox[1], x2: r.bbox[0] + r.bbox[2], y2: r.bbox[1] + r.bbox[3], classId: r.category_id + classShift, score: r.score })),
  );
}

/** Per frame, highest score first (the saved order; stable ties), as [x1, y1, x2, y2, score, classId]. */
const truthOf = (frames: RefBox[][]) => frames.map((im) => im.map(({ score: _s, ...b }) => b));

function byFrame(rows: readonly Row[], classShift = 0): number[][][] {
  return refBoxes(rows, 0, classShift).map((im) => im.map((b) => [b.x1, b.y1, b.x2, b.y2, b.score!, b.classId]));
}

/**
 * Equal detections: the same count per frame, in the same order, with the same class, scores to 1e-6 and corners
 * to 1e-3 original pixels. Scores pass through the edits untouched (Transpose/Concat/Gather copy them), but boxes
 * go through float32 arithmetic the SSD does not do (x 300, (x1 + x2) / 2, x2 - x1, then back to corners in the
 * decoder): a few float32 ulps of a value up to 300, ~3e-5 input pixels, x 2.56 to the 768-pixel frame; 1e-3 px
 * is 30x that and still far below anything that would change an IoU a detector cares about.
 */
function expectSameDetections(actual: number[][][], expected: number[][][], what: string): void {
  expect(actual.map((im) => im.length), what).toEqual(expected.map((im) => im.length));
  actual.forEach((im, f) =>
    im.forEach((d, k) => {
      const e = expected[f]![k]!;
      const at = `${what}, ${FRAMES[f]} #${k}`;
      expect(d[5], at).toBe(e[5]);
      expect(Math.abs(d[4]! - e[4]!), at).toBeLessThanOrEqual(1e-6);
      for (let c = 0; c < 4; c++) expect(Math.abs(d[c]! - e[c]!), `${at} corner ${c}`).toBeLessThanOrEqual(1e-3);
    }),
  );
}

/**
 * Runs a model file on the street frames in onnxruntime, each preprocessed exactly as the compare run did it (the
 * config its report.json records), and returns output0's row counts per frame.
 */
async function graphRowCounts(model: string, config: PreprocessConfig): Promise<number[]> {
  const session = await onnxruntimeBackend.open({ path: model }, { threads: 1 });
  try {
    const counts: number[] = [];
    for (const f of FRAMES) {
      const input = { dtype: 'float32' as const, dims: [1, ...imageDims(config)], data: await preprocessImage(path.join(STREET, f), config) };
      counts.push((await session.run({ [session.inputs[0]!.name]: input }))['output0']!.dims[1]!);
    }
    return counts;
  } finally {
    await session.release();
  }
}

const reportOf = async (m: Model) => JSON.parse(await readFile(path.join(tmp, `report-${m}`, 'report.json'), 'utf8'));
const variantOf = (report: any, name: string) => report.variants.find((v: any) => v.name === name);
/** The YOLO layouts number classes from 0 (auto's class offset 0, as ultralytics' exports); the SSD's score column i is COCO id i + 1. */
const YOLO_CLASS_SHIFT = 1;

describe('the SSD re-exported in other layouts: --task auto and the layout it recognised', () => {
  it('report.json says detect and names the layout: boxes-scores, yolov8, nms recognised; yolov5 and yolov8t as --det-layout says', async () => {
    const expected: Record<Model, { layout: string; transposed?: boolean; reason: RegExp; classOffset: number }> = {
      ssd: { layout: 'boxes-scores', reason: /^auto: 'boxes' \[1, 1917, 1, 4\] and 'scores' \[1, 1917, 90\] have the TensorFlow Object Detection API's signature/, classOffset: 1 },
      yolov8: { layout: 'yolov8', transposed: false, reason: /^auto: 'output0' \[1, 94, 1917\] is ultralytics YOLOv8\/YOLO11's layout/, classOffset: 0 },
      yolov8t: { layout: 'yolov8', transposed: true, reason: /^auto: detection layout yolov8 as the flags give it/, classOffset: 0 },
      yolov5: { layout: 'yolov5', reason: /^auto: detection layout yolov5 as the flags give it/, classOffset: 0 },
      nms: { layout: 'nms', reason: /^auto: 'output0' \[1, K, 6\] is NMS in the graph: as many rows as survive \(\d+ in the sample\)/, classOffset: 0 },
      'nms-loose': { layout: 'nms', reason: /is NMS in the graph/, classOffset: 0 },
    };
    for (const [m, e] of Object.entries(expected) as Array<[Model, (typeof expected)[Model]]>) {
      const report = await reportOf(m);
      expect(report, m).toEqual(reports[m]); // what --json printed is what report.json holds
      const task = report.settings.task;
      expect(task.kind, m).toBe('detect');
      expect(task.requested, m).toBe('auto');
      expect(task.reason, m).toMatch(e.reason);
      expect(task.options.spec.layout, m).toBe(e.layout);
      if (e.transposed !== undefined) expect(task.options.spec.transposed, m).toBe(e.transposed);
      expect(task.options.classOffset, m).toBe(e.classOffset);
      for (const v of report.variants) expect(v.task.kind, `${m} ${v.name}`).toBe('detect');
    }
    expect(reports.ssd.settings.task.outputs).toEqual(['boxes', 'scores']);
    for (const m of ['yolov8', 'yolov8t', 'yolov5', 'nms'] as const) expect(reports[m].settings.task.outputs, m).toEqual(['output0']);
  });

  it('auto on YOLOv5 [1, 1917, 95] and transposed YOLOv8 [1, 1917, 94] (the same shape) says what to pass, and writes nothing', () => {
    for (const m of ['yolov5', 'yolov8t'] as const) {
      const r = refusals[m]!;
      expect(r.code, m).toBe(1);
      expect(r.stderr, m).toMatch(/--task auto: the outputs look like a detector's, but 'output0' \[1, 1917, 9[45]\] is either YOLOv5's layout .* or YOLOv8's transposed/);
      expect(r.stderr, m).toContain('pass --det-layout yolov5 or --det-layout yolov8-transposed');
      expect(r.stderr, m).not.toMatch(/\n\s+at /);
      expect(existsSync(path.join(tmp, `refused-${m}`)), m).toBe(false);
    }
  });

  it('auto on ambiguous outputs (boxes [1, 1917, 4] of no telling format beside scores) refuses, naming --boxes, --scores and --det-layout', () => {
    const r = refusals.ambiguous!;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--task auto: the outputs look like a detector's, but 'bboxes' \[1, 1917, 4\] looks like boxes for the scores 'scores', but their format .* cannot be told from the shape/);
    expect(r.stderr).toContain('--boxes NAME:FORMAT[:norm] --scores NAME');
    expect(r.stderr).toContain('--det-layout yolov5|yolov8|yolov8-transposed|nms|efficient-nms');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(path.join(tmp, 'refused-ambiguous'))).toBe(false);
  });
});

describe('the same network, the same detections and the same mAP whatever the layout', () => {
  it('FP32 detections of YOLOv8, transposed YOLOv8 and YOLOv5 are the SSD\'s: classes, scores to 1e-6, boxes to 1e-3 px', async () => {
    const ssd = byFrame(await detections('ssd', 'fp32'));
    // 300 per frame: the cap on detections, reached by the 0.001 score floor on 1917 anchors.
    expect(ssd.map((im) => im.length)).toEqual([300, 300, 300, 300]);
    for (const m of ['yolov8', 'yolov8t', 'yolov5'] as const) expectSameDetections(byFrame(await detections(m, 'fp32'), YOLO_CLASS_SHIFT), ssd, m);
  });

  it('INT8 (explicit Q/DQ and the implicit bound) gives the same mAP and mAP@.5 against FP32, to 1e-9, in every layout', () => {
    for (const name of ['int8-entropy2', 'int8-entropy2-implicit']) {
      const base = variantOf(reports.ssd, name).task;
      expect(base.map, name).toBeGreaterThan(0.1);
      expect(base.map, name).toBeLessThan(1);
      for (const m of ['yolov8', 'yolov8t', 'yolov5'] as const) {
        const t = variantOf(reports[m], name).task;
        expect(Math.abs(t.map - base.map), `${m} ${name} mAP`).toBeLessThanOrEqual(1e-9);
        expect(Math.abs(t.map50 - base.map50), `${m} ${name} mAP@.5`).toBeLessThanOrEqual(1e-9);
        expect(t.detection.lost, `${m} ${name}`).toBe(base.detection.lost);
        expect(t.detection.gained, `${m} ${name}`).toBe(base.detection.gained);
      }
    }
    // The implicit bound is the pessimistic one: it rounds more than the explicit placement.
    expect(variantOf(reports.ssd, 'int8-entropy2-implicit').task.map).toBeLessThan(variantOf(reports.ssd, 'int8-entropy2').task.map);
  });

  it('NMS in the graph: its FP32 detections are the SSD\'s above the graph\'s 0.25, and scored as truth they give the SSD\'s INT8 the same mAP', async () => {
    const nmsRows = await detections('nms', 'fp32');
    const ssdRows = await detections('ssd', 'fp32');
    // The graph keeps scores > 0.25 per class (ONNX NonMaxSuppression, IoU 0.7 as compare's own NMS), so one anchor
    // may come out in two classes where compare's decoder takes each anchor's best class (ultralytics'
    // multi_label=False). So: every SSD detection above 0.25 is the graph's, and each extra row of the graph is the
    // box of one of those in another class, with a lower score.
    const above = ssdRows.filter((r) => r.score > 0.25);
    expect(above.length).toBeGreaterThan(20);
    const nms = byFrame(nmsRows, YOLO_CLASS_SHIFT);
    const ssd = byFrame(above);
    const close = (a: number[], b: number[]) => a[5] === b[5] && Math.abs(a[4]! - b[4]!) <= 1e-6 && [0, 1, 2, 3].every((c) => Math.abs(a[c]! - b[c]!) <= 1e-3);
    const sameBox = (a: number[], b: number[]) => [0, 1, 2, 3].every((c) => Math.abs(a[c]! - b[c]!) <= 1e-3);
    let extra = 0;
    const kept: number[][][] = nms.map(() => []);
    nms.forEach((im, f) => {
      const matched = ssd[f]!.map((d) => im.findIndex((g) => close(g, d)));
      ssd[f]!.forEach((d, k) => expect(matched[k], `${FRAMES[f]}: SSD detection ${JSON.stringify(d)} not in the graph's`).toBeGreaterThanOrEqual(0));
      im.forEach((g, k) => {
        if (matched.includes(k)) return kept[f]!.push(g);
        extra++;
        expect(ssd[f]!.some((d) => sameBox(d, g) && d[5] !== g[5] && d[4]! >= g[4]!), `${FRAMES[f]}: graph row ${JSON.stringify(g)}`).toBe(true);
      });
    });
    expect(extra).toBe(nmsRows.length - above.length);
    expect(extra).toBeGreaterThan(0); // on these frames: 3 anchors above 0.25 in two classes

    // The NMS model's own INT8 mAP legitimately differs from the other layouts' (its predictions stop at the graph's
    // 0.25, theirs at the 0.001 floor, and it is multi-label), so, as the issue allows: the SSD's INT8 detections,
    // re-scored by the independent COCO reference against the NMS model's FP32 detections as truth, give the mAP
    // compare reported for the SSD, to 1e-9. The truth is the graph's rows less the second-class rows above: boxes
    // best-class decoding never predicts, so with them the mAP is lower.
    const int8 = refBoxes(await detections('ssd', 'int8-entropy2'));
    const asTruth = (frames: number[][][]) => frames.map((im) => im.map(([x1, y1, x2, y2, , classId]) => ({ x1: x1!, y1: y1!, x2: x2!, y2: y2!, classId: classId! })));
    const fromNms = referenceCocoMap(asTruth(kept), int8);
    const withExtras = referenceCocoMap(asTruth(nms), int8);
    const reported = variantOf(reports.ssd, 'int8-entropy2').task;
    for (const [k, v] of [['map', reported.map], ['map50', reported.map50]] as const) {
      expect(Math.abs(fromNms[k] - v), k).toBeLessThanOrEqual(1e-9);
      expect(withExtras[k], k).toBeLessThan(v);
    }
  });

  it('NMS in the graph, INT8: rows whose count differs from FP32\'s are compared (zero-padded), and the mAP is its saved detections\'', async () => {
    const fp32 = await detections('nms', 'fp32');
    for (const name of ['int8-entropy2', 'int8-entropy2-implicit']) {
      const rows = await detections('nms', name);
      const t = variantOf(reports.nms, name).task;
      const ref = referenceCocoMap(truthOf(refBoxes(fp32, 0.25)), refBoxes(rows));
      expect(Math.abs(ref.map - t.map), name).toBeLessThanOrEqual(1e-9);
      expect(Math.abs(ref.map50 - t.map50), name).toBeLessThanOrEqual(1e-9);
      expect(t.map, name).toBeGreaterThan(0);
      expect(t.map, name).toBeLessThan(1);
    }
    // On these frames INT8 changes how many rows survive the graph's NMS: the case that made compare exit 3.
    const perFrame = (rows: Row[]) => FRAMES.map((f) => rows.filter((r) => r.image_id === f).length);
    const counts = await Promise.all(['int8-entropy2', 'int8-entropy2-implicit'].map(async (n) => perFrame(await detections('nms', n))));
    expect(counts.some((c) => c.join() !== perFrame(fp32).join()), JSON.stringify([perFrame(fp32), ...counts])).toBe(true);
    for (const name of ['int8-entropy2', 'int8-entropy2-implicit']) expect(variantOf(reports.nms, name).outputs[0], name).toMatchObject({ name: 'output0', images: 4 });
  });

  it('NMS in the graph gets no second NMS: the detections are the graph\'s rows, overlaps a second NMS would remove included', async () => {
    // The loose graph (IoU 0.95, scores > 0.05) keeps same-class boxes overlapping by more than compare's 0.7.
    const rows = await graphRowCounts(file['nms-loose']!, reports['nms-loose'].settings.preprocess);
    const saved = byFrame(await detections('nms-loose', 'fp32'));
    expect(saved.map((im) => im.length)).toEqual(rows);
    let overlapping = 0;
    for (const im of saved) {
      for (let i = 0; i < im.length; i++) {
        for (let j = i + 1; j < im.length; j++) {
          const [a, b] = [im[i]!, im[j]!];
          if (a[5] === b[5] && boxIou({ x1: a[0]!, y1: a[1]!, x2: a[2]!, y2: a[3]! }, { x1: b[0]!, y1: b[1]!, x2: b[2]!, y2: b[3]! }) > 0.7) overlapping++;
        }
      }
    }
    expect(overlapping).toBeGreaterThan(0);
    // The default graph too: as many detections as rows.
    expect(byFrame(await detections('nms', 'fp32')).map((im) => im.length)).toEqual(await graphRowCounts(file.nms!, reports.nms.settings.preprocess));
  });
});
