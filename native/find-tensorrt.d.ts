// Types of native/find-tensorrt.js (plain JavaScript, because binding.gyp runs it before anything is compiled).
export interface TensorRTDetection {
  found: boolean;
  version?: { major: number; minor: number; patch: number; build?: number };
  versionString?: string;
  headers?: string;
  includeDirs: string[];
  libraries: string[];
  libDirs: string[];
  cuda: { found: boolean; includeDir?: string; library?: string; version?: string };
  searched: { tensorrtInclude: string[]; tensorrtLib: string[]; cudaInclude: string[]; cudaLib: string[] };
  reason?: string;
  hint: string;
}
export function findTensorRT(env?: NodeJS.ProcessEnv, platform?: NodeJS.Platform): TensorRTDetection;
export function versionFromHeader(text: string): { major: number; minor: number; patch: number; build?: number } | undefined;
