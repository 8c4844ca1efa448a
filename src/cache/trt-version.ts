/**
 * TensorRT versions as they appear in calibration cache headers (`TRT-<NV_TENSORRT_VERSION>-<Algorithm>`).
 *
 * NV_TENSORRT_VERSION is encoded differently by era (read from NvInferVersion.h / NvInferRuntimeBase.h):
 *   up to 9.x:  major * 1000  + minor * 100 + patch   (8.6.1  -> 8601)
 *   10.x on:    major * 10000 + minor * 100 + patch   (10.3.0 -> 100300)
 * TensorRT ignores a cache whose header does not match its own version and silently recalibrates, so the version
 * is never guessed: it is given (--trt-version) or detected from an installed TensorRT.
 */
import path from 'node:path';
import { UserError } from '../errors.js';
import { findTensorRTInstall, findTensorRTLibraryFile, versionFromHeader } from '../util/tensorrt-install.js';

export interface TrtVersion {
  major: number;
  minor: number;
  patch: number;
}

export function encodeTrtVersion(v: TrtVersion): number {
  return v.major >= 10 ? v.major * 10000 + v.minor * 100 + v.patch : v.major * 1000 + v.minor * 100 + v.patch;
}

export function decodeTrtVersion(encoded: number): TrtVersion {
  if (!Number.isInteger(encoded) || encoded <= 0) throw new RangeError(`not a TensorRT version number: ${encoded}`);
  if (encoded >= 100000) {
    return { major: Math.floor(encoded / 10000), minor: Math.floor((encoded % 10000) / 100), patch: encoded % 100 };
  }
  return { major: Math.floor(encoded / 1000), minor: Math.floor((encoded % 1000) / 100), patch: encoded % 100 };
}

export function formatTrtVersion(v: TrtVersion): string {
  return `${v.major}.${v.minor}.${v.patch}`;
}

/**
 * Parses what a user types: "10.3", "10.3.0", "8.6.1.6" (the build number is ignored), or the encoded
 * header number itself ("100300", "8601").
 */
export function parseTrtVersion(text: string, option = '--trt-version'): TrtVersion {
  const t = text.trim();
  const dotted = /^(\d+)\.(\d+)(?:\.(\d+))?(?:\.\d+)?$/.exec(t);
  let v: TrtVersion | undefined;
  if (dotted) {
    v = { major: Number(dotted[1]), minor: Number(dotted[2]), patch: Number(dotted[3] ?? 0) };
  } else if (/^\d{4,6}$/.test(t)) {
    v = decodeTrtVersion(Number(t));
  }
  if (!v || v.major < 5 || v.major > 99 || v.minor > 99 || v.patch > 99) {
    throw new UserError(
      `Expected a TensorRT version like 10.3.0, 8.6.1 or 100300 for ${option} but received ${JSON.stringify(text)}`,
    );
  }
  return v;
}

/** The oldest TensorRT whose caches the tool is made and checked for (DESIGN.md: 8.6 to 10.x). */
export const OLDEST_CACHE_TRT: TrtVersion = { major: 8, minor: 6, patch: 0 };

/**
 * A cache for TensorRT 11 or later is refused: TensorRT 11 removed implicit quantization, so it reads no
 * calibration cache at all and the file would be silently useless. Before 8.6, a warning: the line format is
 * the same, but those versions are outside what the tool is checked against.
 */
export function checkCacheVersion(r: { version: TrtVersion; source: string }): { version: TrtVersion; source: string; warning?: string } {
  const v = r.version;
  if (v.major >= 11) {
    throw new UserError(`TensorRT ${formatTrtVersion(v)} (${r.source}) reads no calibration cache: TensorRT 11 removed implicit quantization.`, {
      hint: 'Write a Q/DQ model instead (explicit quantization, which TensorRT 11 builds): trt-calib quantize --model m.onnx --cache m.entropy2.cache (or --data DIR). For a machine with TensorRT 8.6 to 10.x, pass its version with --trt-version.',
    });
  }
  const older = v.major < OLDEST_CACHE_TRT.major || (v.major === OLDEST_CACHE_TRT.major && v.minor < OLDEST_CACHE_TRT.minor);
  if (older) {
    return {
      ...r,
      warning: `TensorRT ${formatTrtVersion(v)} is older than ${OLDEST_CACHE_TRT.major}.${OLDEST_CACHE_TRT.minor}, the oldest this tool writes caches for: the cache is written, but the tool is checked only against TensorRT 8.6 to 10.x.`,
    };
  }
  return r;
}

export interface DetectedTrt {
  version: TrtVersion;
  /** Where it was found (a header or library path). */
  source: string;
}

/**
 * Finds an installed TensorRT with the same detection as the native build and `doctor`: NvInferVersion.h under
 * TENSORRT_ROOT, the tar-file folders or the system include folders, else the version in a libnvinfer.so.X.Y.Z
 * file name (runtime-only installs). Returns undefined when none is found.
 */
export function detectTensorRt(env: NodeJS.ProcessEnv = process.env): DetectedTrt | undefined {
  const detection = findTensorRTInstall(env);
  if (detection.version && detection.headers) {
    const { major, minor, patch } = detection.version;
    return { version: { major, minor, patch }, source: path.join(detection.headers, 'NvInferVersion.h') };
  }
  const lib = findTensorRTLibraryFile(detection);
  const m = lib ? /\.so\.(\d+)\.(\d+)\.(\d+)$/.exec(lib) : null;
  return m ? { version: { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]) }, source: lib! } : undefined;
}

export { versionFromHeader };

/**
 * The version a cache header is written for: the one given, else the detected one, else a UserError that says
 * what to do. Returns where it came from so the CLI can print the choice.
 */
export function resolveTrtVersion(given: string | undefined, env: NodeJS.ProcessEnv = process.env): { version: TrtVersion; source: string; warning?: string } {
  if (given !== undefined) return checkCacheVersion({ version: parseTrtVersion(given), source: '--trt-version' });
  const detected = detectTensorRt(env);
  if (detected) return checkCacheVersion({ version: detected.version, source: `detected at ${detected.source}` });
  throw new UserError('No TensorRT was found on this machine, so the calibration cache header version is unknown: pass --trt-version.', {
    hint:
      'Pass the TensorRT version of the machine that will read the cache, e.g. --trt-version 10.3.0 ' +
      '(TensorRT ignores a cache written for another version and silently recalibrates), or set TENSORRT_ROOT.',
  });
}
