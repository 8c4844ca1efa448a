/**
 * The quantization-noise pass of sensitivity analysis through onnxruntime's C API: the FP32 model with a counting
 * node after each measured tensor's producer (withCountingNodes), whose kernel sums the tensor's INT8 and FP16
 * rounding noise image by image (native/src/stats/noise.cc) while it is in cache. Nothing is copied out of
 * onnxruntime; a run returns only the sums.
 *
 * Why: through onnxruntime-node, exposing MobileNetV2's 55 quantized layer inputs and summing them in JavaScript took
 * 3.0-3.8 s for 43 images against 0.2 s for the plain runs (1.6 s of it the copies out of onnxruntime-node, the rest
 * the JavaScript loop); here the same sums cost about one exposed run.
 *
 * The sums are those of src/sensitivity/noise.ts TensorNoise, bit for bit: the tensors stay in NCHW order (no
 * blocked-layout export, whose order would change the float64 sums) and each image is one call, as addImages
 * makes it (test/unit/noise-native.test.ts). Where the library cannot be loaded, the caller keeps the
 * onnxruntime-node path and the JavaScript loop.
 */
import { availableParallelism } from 'node:os';
import { checkFeed, loadFailure, nativeSessionConfig, onnxruntimeLibraryPath, runFailure } from './onnxruntime.js';
import { withCountingNodes } from './onnxruntime-collect.js';
import { removeOnnxruntimeDebugLog, removeOnnxruntimeDebugLogAtExit } from './onnxruntime-debug-log.js';
import type { TensorInfo } from './types.js';
import { loadNative, type OrtCollector } from '../native.js';
import { exposeTensors } from '../onnx/expose.js';
import { describeInputs } from '../onnx/graph.js';
import { saveOnnxModel, type OnnxModel } from '../onnx/model.js';

/**
 * Images per run of the native noise pass. Its graph holds every measured tensor beside the model (the proxy pass:
 * each layer, its INT8 twin and their difference), and smaller runs keep more of them in cache while they are
 * counted: MobileNetV2's proxy pass over 43 photos, 3 interleaved runs each, 1.43-1.45 s in runs of 4 images against
 * 1.58-1.64 s in runs of 8 (1.63-1.70 in runs of 1, 1.45-1.61 in runs of 2).
 */
export const NOISE_PASS_BATCH = 4;

/** The 9 sums of one tensor, in native/src/stats/noise.h's order (TensorNoise.fromSums reads them). */
export const NOISE_SUMS = 9;

export interface NoisePassConfig {
  modelFile: string;
  model: OnnxModel;
  inputName: string;
  /** Measured tensors and their INT8 scale (undefined: FP16 and the range only). */
  tensors: ReadonlyArray<{ name: string; scale?: number }>;
  threads?: number;
}

/** Why the native noise pass cannot run here (undefined: it can). TRT_CALIB_COLLECTOR=worker forces the other path. */
export function nativeNoiseUnsupported(config: Pick<NoisePassConfig, 'model' | 'inputName' | 'tensors'>): string | undefined {
  if (process.env.TRT_CALIB_COLLECTOR === 'worker') return 'TRT_CALIB_COLLECTOR=worker';
  if (!onnxruntimeLibraryPath()) return `onnxruntime-node ships no onnxruntime library for ${process.platform}-${process.arch}`;
  const inputs = new Set(describeInputs(config.model).map((i) => i.name));
  const other = config.tensors.find((t) => inputs.has(t.name) && t.name !== config.inputName);
  if (other) return `graph input '${other.name}' is not the one fed with images`;
  return undefined;
}

export class NativeNoisePass {
  readonly #file: string;
  readonly #inputName: string;
  readonly #inputs: TensorInfo[];
  readonly #count: number;
  #collector: OrtCollector | undefined;
  #closed = false;

  private constructor(config: NoisePassConfig) {
    this.#file = config.modelFile;
    this.#inputName = config.inputName;
    this.#inputs = describeInputs(config.model, config.modelFile);
    this.#count = config.tensors.length;
  }

  /** Opens the session (throws a UserError naming the model when onnxruntime refuses it). */
  static async open(config: NoisePassConfig): Promise<NativeNoisePass> {
    const library = onnxruntimeLibraryPath();
    if (!library) throw new Error(`onnxruntime-node ships no onnxruntime library for ${process.platform}-${process.arch}`);
    const pass = new NativeNoisePass(config);
    const graphInputs = new Set(pass.#inputs.map((i) => i.name));
    const target = (i: number) => ({ noise: i, ...(config.tensors[i]!.scale !== undefined ? { scale: config.tensors[i]!.scale! } : {}) });
    const exposed = config.tensors.map((t, i) => ({ name: t.name, i })).filter((t) => !graphInputs.has(t.name));
    const inputTargets = config.tensors.map((t, i) => ({ name: t.name, i })).filter((t) => t.name === config.inputName).map((t) => target(t.i));
    const counting = exposed.length > 0 ? withCountingNodes(exposeTensors(config.model, exposed.map((t) => t.name), { file: config.modelFile }), exposed.map((t) => t.name)) : undefined;
    // Counting runs between the operators on onnxruntime's thread: every core for the session, no spinning.
    const session = nativeSessionConfig({ threads: config.threads ?? availableParallelism() });
    if (process.env.TRT_CALIB_SPIN !== '1') session.configEntries.push(['session.intra_op.allow_spinning', '0']);
    removeOnnxruntimeDebugLogAtExit();
    try {
      const native = loadNative();
      pass.#collector = new native.OrtCollector(library, counting ? saveOnnxModel(counting.model) : saveOnnxModel(config.model), {
        ...session,
        // No memory pattern: planning it for a graph of hundreds of large intermediates (the proxy pass: each layer,
        // its INT8 twin and their difference) made the first runs and the last, shorter batch 0.4-0.9 s slower on
        // MobileNetV2's 43 photos; the arena still reuses the buffers. TRT_CALIB_MEMPATTERN=1 puts it back.
        ...(process.env.TRT_CALIB_MEMPATTERN === '1' ? {} : { memPattern: false }),
        inputName: config.inputName,
        bins: 2,
        states: 0,
        noiseStates: config.tensors.length,
        inputTargets,
        outputs: exposed.map((t) => ({ name: t.name, targets: [target(t.i)] })),
        ...(counting ? { countOutput: counting.countOutput, countThreads: Math.min(2, availableParallelism()) } : {}),
      });
      await pass.#collector.open();
    } catch (err) {
      pass.close();
      throw loadFailure(config.modelFile, err);
    } finally {
      removeOnnxruntimeDebugLog();
    }
    return pass;
  }

  /**
   * Runs one batch (in order: each image's sums continue from the previous image's), in runs of at most
   * NOISE_PASS_BATCH images where the model's batch dimension is free (the sums are per image: the same bits).
   */
  async add(dims: number[], data: Float32Array): Promise<void> {
    const feed = { [this.#inputName]: { dtype: 'float32' as const, dims, data } };
    checkFeed(this.#file, this.#inputs, feed);
    const batchDim = this.#inputs.find((i) => i.name === this.#inputName)?.dims[0];
    const step = typeof batchDim === 'number' && batchDim > 0 ? Number.POSITIVE_INFINITY : NOISE_PASS_BATCH;
    const images = dims[0] ?? 1;
    try {
      if (images <= step) {
        await this.#started().infer(data, dims);
        return;
      }
      const per = data.length / images;
      for (let k = 0; k < images; k += step) {
        const n = Math.min(step, images - k);
        await this.#started().infer(data.subarray(k * per, (k + n) * per), [n, ...dims.slice(1)]);
      }
    } catch (err) {
      throw runFailure(this.#file, feed, err);
    }
  }

  /** Every tensor's 9 sums (NOISE_SUMS), in the order of config.tensors. */
  async finish(): Promise<Float64Array[]> {
    const c = this.#started();
    await c.drain();
    const all = c.result().noise;
    return Array.from({ length: this.#count }, (_, i) => all.slice(i * NOISE_SUMS, (i + 1) * NOISE_SUMS));
  }

  #started(): OrtCollector {
    if (!this.#collector) throw new Error('NativeNoisePass used before open()');
    return this.#collector;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#collector?.close();
  }
}
