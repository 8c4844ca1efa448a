#!/usr/bin/env node
/**
 * Finds TensorRT and CUDA for the optional TensorRT bridge (native/src/tensorrt), for binding.gyp and for
 * `trt-calib doctor`.
 *
 * Looks in $TENSORRT_ROOT (also $TRT_ROOT, $TENSORRT_HOME) and $CUDA_HOME (also $CUDA_PATH) first, then the places
 * NVIDIA's packages install to (/usr/include/<arch>-linux-gnu and /usr/lib/<arch>-linux-gnu for the .deb/.rpm
 * packages, /usr/local/TensorRT* and /opt/tensorrt for the tar files, /usr/local/cuda for CUDA).
 * The bridge needs TensorRT 8.6 or newer with its headers (NvInfer.h, NvInferVersion.h, NvOnnxParser.h),
 * libnvinfer and libnvonnxparser, and CUDA's runtime (cuda_runtime_api.h, libcudart).
 * TRT_CALIB_SKIP_TENSORRT=1 skips the bridge even when TensorRT is there.
 *
 * binding.gyp asks (the output is for gyp: one item per line):
 *   node find-tensorrt.js enabled        "true" or "false"; when false, says once on stderr why and how to enable it
 *   node find-tensorrt.js include_dirs   TensorRT and CUDA include folders
 *   node find-tensorrt.js libraries      the libraries to link (full paths) and, on Linux, their run-time path
 *   node find-tensorrt.js defines        TRTCALIB_TENSORRT_VERSION="x.y.z"
 * and `node find-tensorrt.js --json` prints the whole detection (what doctor shows).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const MIN_VERSION = { major: 8, minor: 6 };

function isDir(p) {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function unique(list) {
  return [...new Set(list.filter((x) => typeof x === 'string' && x.length > 0))];
}

function listDir(dir) {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** TensorRT tar files unpack to folders such as /usr/local/TensorRT-10.3.0.26 or /opt/TensorRT-8.6.1.6. */
function tarballRoots() {
  const roots = [];
  for (const parent of ['/usr/local', '/opt', '/usr/src']) {
    for (const name of listDir(parent)) {
      if (/^tensorrt/i.test(name)) roots.push(path.join(parent, name));
    }
  }
  return roots.sort().reverse(); // newest version first
}

/** NV_TENSORRT_MAJOR/MINOR/PATCH/BUILD, or the TRT_*_ENTERPRISE numbers they point to since 10.x. */
export function versionFromHeader(text) {
  const get = (field) => {
    const direct = new RegExp(`#define\\s+NV_TENSORRT_${field}\\s+(\\d+)`).exec(text);
    if (direct) return Number(direct[1]);
    const enterprise = new RegExp(`#define\\s+TRT_${field}_ENTERPRISE\\s+(\\d+)`).exec(text);
    if (enterprise) return Number(enterprise[1]);
    return undefined;
  };
  const major = get('MAJOR');
  const minor = get('MINOR');
  const patch = get('PATCH');
  if (major === undefined || minor === undefined || patch === undefined) return undefined;
  return { major, minor, patch, build: get('BUILD') };
}

function findLibrary(dirs, base, platform) {
  for (const dir of dirs) {
    if (platform === 'win32') {
      // nvinfer.lib (TensorRT 8) or nvinfer_10.lib (TensorRT 10 on Windows).
      const lib = listDir(dir).find((n) => new RegExp(`^${base}(_\\d+)?\\.lib$`, 'i').test(n));
      if (lib) return path.join(dir, lib);
      continue;
    }
    const names = listDir(dir);
    if (names.includes(`lib${base}.so`)) return path.join(dir, `lib${base}.so`);
    // Only the runtime package is installed (libnvinfer.so.10, no -dev symlink): link the versioned file directly.
    const versioned = names
      .filter((n) => new RegExp(`^lib${base}\\.so\\.\\d+$`).test(n))
      .sort((a, b) => Number(b.split('.').pop()) - Number(a.split('.').pop()));
    if (versioned.length > 0) return path.join(dir, versioned[0]);
    if (platform === 'darwin' && names.includes(`lib${base}.dylib`)) return path.join(dir, `lib${base}.dylib`);
  }
  return undefined;
}

function archTriplets() {
  return process.arch === 'arm64' ? ['aarch64-linux-gnu', 'aarch64-linux'] : ['x86_64-linux-gnu', 'x86_64-linux'];
}

function enableHint() {
  return (
    'To build the TensorRT bridge, install TensorRT 8.6 or newer with its headers (the tar file, or the ' +
    'libnvinfer-dev and libnvonnxparsers-dev packages) and CUDA, then set TENSORRT_ROOT to the TensorRT folder ' +
    '(the one holding include/ and lib/) and CUDA_HOME to the CUDA toolkit if they are not in standard places, ' +
    'and build it: npx trt-calib build-bridge (npm run build:native in a clone). (The pip "tensorrt" wheels hold no headers, so they are not enough.)'
  );
}

/**
 * Detects TensorRT and CUDA. Never throws. `found` is true when the bridge can be built.
 * @param {NodeJS.ProcessEnv} [env]
 * @param {NodeJS.Platform} [platform]
 */
export function findTensorRT(env = process.env, platform = process.platform) {
  const result = {
    found: false,
    version: undefined,
    versionString: undefined,
    headers: undefined,
    includeDirs: [],
    libraries: [],
    libDirs: [],
    cuda: { found: false, includeDir: undefined, library: undefined, version: undefined },
    searched: { tensorrtInclude: [], tensorrtLib: [], cudaInclude: [], cudaLib: [] },
    reason: undefined,
    hint: enableHint(),
  };
  if (env.TRT_CALIB_SKIP_TENSORRT === '1' || env.TRT_CALIB_SKIP_TENSORRT === 'true') {
    result.reason = 'TRT_CALIB_SKIP_TENSORRT is set';
    result.hint = 'Unset TRT_CALIB_SKIP_TENSORRT and run `npx trt-calib build-bridge` (`npm run build:native` in a clone) to build the TensorRT bridge.';
    return result;
  }
  if (platform === 'darwin') {
    result.reason = 'TensorRT does not exist for macOS';
    result.hint = 'Use a Linux or Windows machine with an NVIDIA GPU for engine builds; every other command works here.';
    return result;
  }

  const explicitRoots = unique([env.TENSORRT_ROOT, env.TRT_ROOT, env.TENSORRT_HOME]);
  const roots = unique([...explicitRoots, ...tarballRoots()]);
  const triplets = archTriplets();
  const includeCandidates = unique([
    ...roots.map((r) => path.join(r, 'include')),
    ...triplets.map((t) => `/usr/include/${t}`),
    '/usr/include',
    '/usr/local/include',
  ]);
  const libCandidates = unique([
    ...roots.flatMap((r) => [path.join(r, 'lib'), path.join(r, 'lib64'), ...triplets.map((t) => path.join(r, 'targets', t, 'lib'))]),
    ...triplets.map((t) => `/usr/lib/${t}`),
    '/usr/lib64',
    '/usr/lib',
    '/usr/local/lib',
  ]);
  result.searched.tensorrtInclude = includeCandidates;
  result.searched.tensorrtLib = libCandidates;

  for (const root of explicitRoots) {
    if (!isDir(root)) {
      result.reason = `TENSORRT_ROOT (or TRT_ROOT/TENSORRT_HOME) points to ${root}, which is not a folder`;
      return result;
    }
  }

  const includeDir = includeCandidates.find((d) => existsSync(path.join(d, 'NvInfer.h')) && existsSync(path.join(d, 'NvInferVersion.h')));
  if (!includeDir) {
    result.reason = 'TensorRT headers (NvInfer.h, NvInferVersion.h) were not found';
  } else {
    result.headers = includeDir;
    const version = versionFromHeader(readFileSync(path.join(includeDir, 'NvInferVersion.h'), 'utf8'));
    if (version) {
      result.version = version;
      result.versionString = `${version.major}.${version.minor}.${version.patch}`;
    }
  }

  // CUDA: TensorRT's headers include cuda_runtime_api.h and the bridge copies batches with cudaMemcpy.
  const cudaRoots = unique([env.CUDA_HOME, env.CUDA_PATH, env.CUDA_ROOT, '/usr/local/cuda', ...listDir('/usr/local').filter((n) => /^cuda-\d/.test(n)).sort().reverse().map((n) => `/usr/local/${n}`)]);
  const cudaIncludes = unique([
    ...cudaRoots.flatMap((r) => [path.join(r, 'include'), ...triplets.map((t) => path.join(r, 'targets', t, 'include'))]),
    '/usr/include',
  ]);
  const cudaLibs = unique([
    ...cudaRoots.flatMap((r) => [
      path.join(r, 'lib64'),
      path.join(r, 'lib'),
      path.join(r, 'lib', 'x64'),
      ...triplets.map((t) => path.join(r, 'targets', t, 'lib')),
    ]),
    ...triplets.map((t) => `/usr/lib/${t}`),
    '/usr/lib64',
  ]);
  result.searched.cudaInclude = cudaIncludes;
  result.searched.cudaLib = cudaLibs;
  const cudaInclude = cudaIncludes.find((d) => existsSync(path.join(d, 'cuda_runtime_api.h')));
  const cudart = findLibrary(cudaLibs, 'cudart', platform);
  if (cudaInclude) {
    result.cuda.includeDir = cudaInclude;
    const m = /#define\s+CUDART_VERSION\s+(\d+)/.exec(readFileSync(path.join(cudaInclude, 'cuda_runtime_api.h'), 'utf8'));
    if (m) {
      const v = Number(m[1]);
      result.cuda.version = `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
    }
  }
  result.cuda.library = cudart;
  result.cuda.found = Boolean(cudaInclude && cudart);

  if (result.reason) return result;
  if (!result.version) {
    result.reason = `could not read the TensorRT version from ${path.join(includeDir, 'NvInferVersion.h')}`;
    return result;
  }
  const v = result.version;
  if (v.major < MIN_VERSION.major || (v.major === MIN_VERSION.major && v.minor < MIN_VERSION.minor)) {
    result.reason = `TensorRT ${result.versionString} was found in ${includeDir}, but the bridge needs ${MIN_VERSION.major}.${MIN_VERSION.minor} or newer`;
    return result;
  }
  if (!existsSync(path.join(includeDir, 'NvOnnxParser.h'))) {
    result.reason = `TensorRT ${result.versionString} headers were found in ${includeDir}, but not its ONNX parser header (NvOnnxParser.h)`;
    return result;
  }
  const nvinfer = findLibrary(libCandidates, 'nvinfer', platform);
  const parser = findLibrary(libCandidates, 'nvonnxparser', platform);
  if (!nvinfer || !parser) {
    result.reason = `TensorRT ${result.versionString} headers were found in ${includeDir}, but not ${!nvinfer ? 'libnvinfer' : 'libnvonnxparser'}`;
    return result;
  }
  if (!result.cuda.found) {
    result.reason = !cudaInclude
      ? 'CUDA headers (cuda_runtime_api.h) were not found'
      : 'the CUDA runtime library (libcudart) was not found';
    return result;
  }
  result.found = true;
  result.reason = undefined;
  result.includeDirs = unique([includeDir, cudaInclude]);
  result.libraries = [nvinfer, parser, cudart];
  result.libDirs = unique(result.libraries.map((l) => path.dirname(l)));
  return result;
}

function skipMessage(r) {
  return (
    `trt-calib: the TensorRT bridge was skipped: ${r.reason}. ` +
    'Everything else (statistics, caches, Q/DQ ONNX, comparisons with onnxruntime) is built; ' +
    '`trt-calib build` and the TensorRT backend need the bridge.\n' +
    `trt-calib: ${r.hint}\n`
  );
}

function main(argv) {
  const what = argv[2] ?? '--json';
  const r = findTensorRT();
  const lines = (list) => process.stdout.write(list.length > 0 ? `${list.join('\n')}\n` : '');
  switch (what) {
    case 'enabled':
      if (!r.found) process.stderr.write(skipMessage(r));
      else process.stderr.write(`trt-calib: building the TensorRT bridge against TensorRT ${r.versionString} (${r.headers}) and CUDA ${r.cuda.version ?? '?'}\n`);
      process.stdout.write(r.found ? 'true\n' : 'false\n');
      return;
    case 'include_dirs':
      lines(r.found ? r.includeDirs : []);
      return;
    case 'libraries':
      if (!r.found) return lines([]);
      lines(process.platform === 'linux' ? [...r.libraries, ...r.libDirs.map((d) => `-Wl,-rpath,${d}`)] : r.libraries);
      return;
    case 'defines':
      lines(r.found ? [`TRTCALIB_TENSORRT_HEADERS="${r.versionString}"`] : []);
      return;
    case '--json':
      process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      return;
    default:
      process.stderr.write(`usage: node find-tensorrt.js [enabled|include_dirs|libraries|defines|--json]\n`);
      process.exitCode = 2;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main(process.argv);
