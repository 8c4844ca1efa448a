/**
 * `trt-calib doctor`: what this machine has for each part of the tool, and what a missing part costs.
 * Looks only; never installs or builds anything. Every probe is bounded (external commands time out) and never
 * throws: a failure is reported as the missing piece it reveals.
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { detectTensorRTInstall, formatTensorRTLibraryVersion, type TensorRTDetection } from '../backends/tensorrt.js';
import { findTensorRTLibraryFile } from '../util/tensorrt-install.js';
import type { TrtInfo } from '../backends/tensorrt-native.js';
import { loadNative, nativeAddonSource, tensorrtBridge } from '../native.js';
import { onnxruntimeLibraryPath } from '../backends/onnxruntime.js';
import { removeOnnxruntimeDebugLog } from '../backends/onnxruntime-debug-log.js';

const require = createRequire(import.meta.url);

export type CheckStatus = 'ok' | 'missing' | 'warning';

export interface DoctorCheck {
  /** Stable key, for --json users: node, sharp, onnxruntime, native-addon, collector, tensorrt-bridge, tensorrt, cuda, gpu. */
  id: string;
  title: string;
  status: CheckStatus;
  /** What was found: versions, paths. */
  found?: string;
  /** When not ok: what does not work because of it. */
  consequence?: string;
  /** When not ok: what to do. */
  hint?: string;
}

export interface GpuInfo {
  index: number;
  name: string;
  memoryMiB?: number;
  computeCapability?: string;
  driver?: string;
}

export interface DoctorReport {
  checks: DoctorCheck[];
  versions: {
    node: string;
    napi?: string;
    sharp?: string;
    libvips?: string;
    onnxruntime?: string;
    tensorrtHeaders?: string;
    tensorrtLibrary?: string;
    bridgeCompiledAgainst?: string;
    cudaToolkit?: string;
    cudaRuntime?: string;
    cudaDriver?: string;
    nvidiaDriver?: string;
  };
  gpus: GpuInfo[];
  tensorrtDetection?: TensorRTDetection;
}

function run(command: string, args: string[], timeoutMs = 5000): Promise<{ ok: boolean; stdout: string; error?: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: timeoutMs, windowsHide: true }, (error, stdout, stderr) => {
      if (error) resolve({ ok: false, stdout: String(stdout ?? ''), error: (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : String(stderr || error.message).trim() });
      else resolve({ ok: true, stdout: String(stdout) });
    });
  });
}

/** CUDA's version number (12040) as "12.4". */
function cudaVersion(v: number | null | undefined): string | undefined {
  if (!v) return undefined;
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

function packageVersion(name: string): string | undefined {
  try {
    return (require(`${name}/package.json`) as { version: string }).version;
  } catch {
    return undefined;
  }
}

export async function collectDoctorReport(): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  const versions: DoctorReport['versions'] = { node: process.version, napi: process.versions.napi };

  // Node.js
  const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
  const nodeOk = major > 20 || (major === 20 && minor >= 9);
  checks.push({
    id: 'node',
    title: 'Node.js',
    status: nodeOk ? 'ok' : 'warning',
    found: `${process.version} (${process.platform}-${process.arch}, N-API ${process.versions.napi ?? '?'})`,
    ...(nodeOk ? {} : { consequence: 'trt-calib is tested on Node.js 20.9 and newer; older versions may fail in odd places.', hint: 'Use Node.js 20.9 or newer.' }),
  });

  // sharp and libvips
  try {
    const sharp = (await import('sharp')).default as unknown as { versions: Record<string, string> };
    versions.sharp = sharp.versions.sharp ?? packageVersion('sharp');
    versions.libvips = sharp.versions.vips;
    checks.push({ id: 'sharp', title: 'sharp / libvips', status: 'ok', found: `sharp ${versions.sharp}, libvips ${versions.libvips}` });
  } catch (err) {
    checks.push({
      id: 'sharp',
      title: 'sharp / libvips',
      status: 'missing',
      found: (err as Error).message.split('\n')[0],
      consequence: 'images cannot be decoded: calibrate, compare, preview and build --data fail.',
      hint: 'Reinstall with `npm install` (sharp ships prebuilt libvips for most platforms; see sharp\'s install docs otherwise).',
    });
  }

  // onnxruntime-node
  versions.onnxruntime = packageVersion('onnxruntime-node');
  try {
    const ort = (await import('onnxruntime-node')) as unknown as { listSupportedBackends?: () => Array<{ name: string; bundled: boolean }> };
    const backends = ort.listSupportedBackends?.().filter((b) => b.bundled).map((b) => b.name) ?? [];
    checks.push({ id: 'onnxruntime', title: 'onnxruntime-node', status: 'ok', found: `${versions.onnxruntime}${backends.length ? ` (execution providers: ${backends.join(', ')})` : ''}` });
  } catch (err) {
    checks.push({
      id: 'onnxruntime',
      title: 'onnxruntime-node',
      status: 'missing',
      found: (err as Error).message.split('\n')[0],
      consequence: 'ONNX models cannot run: calibrate (statistics), compare and sensitivity fail.',
      hint: 'Reinstall with `npm install`.',
    });
  }

  // The native addon (statistics kernels, the feeder)
  try {
    const native = loadNative();
    const parts = ['statsAccumulate', 'feederSelfTest'].filter((k) => typeof native[k] === 'function');
    const source = nativeAddonSource();
    const origin = source?.kind === 'prebuilt' ? 'prebuilt' : 'built from source';
    checks.push({ id: 'native-addon', title: 'native addon', status: 'ok', found: `${origin}: ${source?.path} (${parts.join(', ')})` });
  } catch (err) {
    checks.push({
      id: 'native-addon',
      title: 'native addon',
      status: 'missing',
      found: (err as Error).message,
      consequence: 'the statistics kernels are unavailable: calibrate and sensitivity fail.',
      hint: (err as { hint?: string }).hint ?? 'Build it with `npm run build:native` (python3, make and a C++17 compiler).',
    });
  }

  // The statistics collector: onnxruntime's C API through the library onnxruntime-node ships (src/backends/onnxruntime-collect.ts).
  const library = onnxruntimeLibraryPath();
  try {
    if (!library) throw new Error(`onnxruntime-node ships no onnxruntime library for ${process.platform}-${process.arch}`);
    const version = loadNative().ortRuntimeVersion(library);
    removeOnnxruntimeDebugLog(); // loading the library made its mat-debug-<pid>.log
    checks.push({ id: 'collector', title: 'statistics collector', status: 'ok', found: `onnxruntime ${version} C API (${library})` });
  } catch (err) {
    checks.push({
      id: 'collector',
      title: 'statistics collector',
      status: 'warning',
      found: (err as Error).message.replace(/^onnxruntime library: /, ''),
      consequence: 'calibration counts statistics through onnxruntime-node in a worker thread instead: the same results, about twice as slow.',
      hint: 'Reinstall with `npm install` so that onnxruntime-node brings its library for this platform.',
    });
  }

  // TensorRT: the installed one, and the bridge built against it.
  const detection = await detectTensorRTInstall().catch(() => undefined);
  const status = tensorrtBridge();
  let bridgeInfo: TrtInfo | undefined;
  if (status.state === 'loaded') {
    try {
      bridgeInfo = status.binding.tensorrtInfo();
    } catch {
      bridgeInfo = undefined;
    }
  }
  versions.tensorrtHeaders = detection?.versionString;
  if (bridgeInfo) {
    versions.bridgeCompiledAgainst = bridgeInfo.compiledAgainst;
    versions.tensorrtLibrary = formatTensorRTLibraryVersion(bridgeInfo.libraryVersion);
    versions.cudaRuntime = cudaVersion(bridgeInfo.cudaRuntimeVersion);
    versions.cudaDriver = cudaVersion(bridgeInfo.cudaDriverVersion);
  }
  const libFile = findTensorRTLibraryFile(detection);
  if (!versions.tensorrtLibrary && libFile) versions.tensorrtLibrary = /\.so\.(\d+\.\d+\.\d+)$/.exec(libFile)?.[1];

  if (detection?.found) {
    checks.push({ id: 'tensorrt', title: 'TensorRT', status: 'ok', found: `${detection.versionString} (headers ${detection.headers}; ${detection.libraries.slice(0, 2).join(', ')})` });
  } else {
    const runtimeOnly = libFile ? ` (its runtime is installed: ${libFile}, but not what building the bridge needs)` : '';
    checks.push({
      id: 'tensorrt',
      title: 'TensorRT',
      status: 'missing',
      found: `${detection?.reason ?? 'not found'}${runtimeOnly}`,
      consequence:
        'engines cannot be built or run on this machine. Calibration caches (for TensorRT 8.6-10) and Q/DQ ONNX models ' +
        '(for TensorRT 11, and onnxruntime) are still made here, for the machine that has TensorRT.',
      hint: detection?.hint ?? 'Install TensorRT and set TENSORRT_ROOT.',
    });
  }

  if (status.state === 'loaded') {
    const mismatch = versions.tensorrtLibrary && bridgeInfo && versions.tensorrtLibrary.split('.')[0] !== bridgeInfo.compiledAgainst.split('.')[0];
    checks.push({
      id: 'tensorrt-bridge',
      title: 'TensorRT bridge',
      status: mismatch ? 'warning' : 'ok',
      found:
        `${status.path}: compiled against TensorRT ${bridgeInfo?.compiledAgainst ?? '?'}, running libnvinfer ${versions.tensorrtLibrary ?? '?'}` +
        `${bridgeInfo ? (bridgeInfo.implicitQuantization ? '; calibrators (implicit INT8) available' : '; no implicit quantization in this TensorRT: build Q/DQ models') : ''}`,
      ...(mismatch ? { consequence: 'the bridge runs with another TensorRT major version than it was built for: builds may fail.', hint: 'Rebuild it: `npx trt-calib build-bridge` (`npm run build:native` in a clone).' } : {}),
    });
  } else if (status.state === 'load-failed') {
    checks.push({
      id: 'tensorrt-bridge',
      title: 'TensorRT bridge',
      status: 'missing',
      found: `${status.path} is built but does not load: ${status.error}`,
      consequence: '`trt-calib build` and the TensorRT backend of compare are unavailable.',
      hint: 'Make libnvinfer, libnvonnxparser and libcudart findable (LD_LIBRARY_PATH / PATH), or rebuild with `npx trt-calib build-bridge` after changing TensorRT.',
    });
  } else {
    checks.push({
      id: 'tensorrt-bridge',
      title: 'TensorRT bridge',
      status: 'missing',
      found: detection?.found
        ? `not built, although TensorRT ${detection.versionString} is installed now`
        : 'not built: TensorRT was not found when the native addon was built',
      consequence: '`trt-calib build` and the TensorRT backend of compare are unavailable; everything else works.',
      hint: detection?.found
        ? 'Build it: `npx trt-calib build-bridge` (`npm run build:native` in a clone).'
        : 'Install TensorRT and CUDA (see above; TENSORRT_ROOT and CUDA_HOME point to them), then `npx trt-calib build-bridge`.',
    });
  }

  // CUDA: toolkit (nvcc), runtime library, driver.
  const cudaHome = process.env.CUDA_HOME ?? process.env.CUDA_PATH;
  const nvccCandidates = [...(cudaHome ? [path.join(cudaHome, 'bin', 'nvcc')] : []), 'nvcc', '/usr/local/cuda/bin/nvcc'];
  for (const nvcc of nvccCandidates) {
    const r = await run(nvcc, ['--version']);
    const m = /release (\d+\.\d+)/.exec(r.stdout);
    if (r.ok && m) {
      versions.cudaToolkit = m[1];
      break;
    }
  }
  const smi = await run('nvidia-smi', ['--query-gpu=index,name,memory.total,compute_cap,driver_version', '--format=csv,noheader,nounits']);
  const gpus: GpuInfo[] = [];
  if (smi.ok) {
    for (const line of smi.stdout.split('\n').map((l) => l.trim()).filter(Boolean)) {
      const [index, name, memory, cc, driver] = line.split(',').map((s) => s.trim());
      gpus.push({ index: Number(index), name: name ?? '?', memoryMiB: Number(memory) || undefined, computeCapability: cc, driver });
      versions.nvidiaDriver ??= driver;
    }
  } else if (bridgeInfo) {
    for (const d of bridgeInfo.devices) gpus.push({ index: d.index, name: d.name, memoryMiB: Math.round(d.memoryBytes / 1048576), computeCapability: d.computeCapability });
  }
  const cudaParts = [
    versions.cudaToolkit ? `toolkit ${versions.cudaToolkit} (nvcc)` : undefined,
    detection?.cuda.includeDir ? `headers ${detection.cuda.version ?? '?'} in ${detection.cuda.includeDir}` : undefined,
    detection?.cuda.library ? `runtime ${detection.cuda.library}` : undefined,
    versions.cudaDriver ? `driver supports CUDA ${versions.cudaDriver}` : undefined,
    versions.nvidiaDriver ? `NVIDIA driver ${versions.nvidiaDriver}` : undefined,
  ].filter((x): x is string => x !== undefined);
  const cudaOk = Boolean(detection?.cuda.found);
  checks.push({
    id: 'cuda',
    title: 'CUDA',
    status: cudaOk ? (versions.nvidiaDriver || versions.cudaDriver ? 'ok' : 'warning') : 'missing',
    found: cudaParts.length > 0 ? cudaParts.join('; ') : 'not found',
    ...(cudaOk
      ? versions.nvidiaDriver || versions.cudaDriver
        ? {}
        : { consequence: 'the CUDA toolkit is here but no NVIDIA driver answered (nvidia-smi): GPU work cannot run on this machine.', hint: 'Install the NVIDIA driver, or use a machine with an NVIDIA GPU.' }
      : {
          consequence: 'the TensorRT bridge cannot be built (it needs cuda_runtime_api.h and libcudart); nothing else needs CUDA.',
          hint: 'Install the CUDA toolkit matching your TensorRT and set CUDA_HOME if it is not in /usr/local/cuda.',
        }),
  });
  checks.push({
    id: 'gpu',
    title: 'GPUs',
    status: gpus.length > 0 ? 'ok' : 'missing',
    found: gpus.length > 0 ? gpus.map((g) => `#${g.index} ${g.name}${g.memoryMiB ? ` ${Math.round(g.memoryMiB / 1024)} GiB` : ''}${g.computeCapability ? ` (sm ${g.computeCapability})` : ''}`).join('; ') : smi.error === 'not found' ? 'nvidia-smi not found' : `none (${smi.error ?? 'nvidia-smi listed none'})`,
    ...(gpus.length > 0
      ? {}
      : {
          consequence: 'no NVIDIA GPU here: TensorRT engines cannot be built or run; statistics, caches and Q/DQ models run on the CPU.',
          hint: 'Build engines on the machine that will run them (TensorRT engines are specific to a GPU and a TensorRT version).',
        }),
  });

  return { checks, versions, gpus, tensorrtDetection: detection };
}
