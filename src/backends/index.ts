/**
 * Backends by name. onnxruntime-node is the default; the TensorRT backend registers here when it exists.
 */
import { invalidParameter } from '../errors.js';
import { onnxruntimeBackend } from './onnxruntime.js';
import type { Backend } from './types.js';

export type { Backend, CollectingSession, Session, SessionOptions, TensorInfo } from './types.js';
export { onnxruntimeBackend } from './onnxruntime.js';

const BACKENDS = new Map<string, Backend>([[onnxruntimeBackend.name, onnxruntimeBackend]]);

export function registerBackend(backend: Backend): void {
  BACKENDS.set(backend.name, backend);
}

export function getBackend(name = 'onnxruntime'): Backend {
  const b = BACKENDS.get(name);
  if (!b) throw invalidParameter('--backend', `one of ${[...BACKENDS.keys()].join(', ')}`, name);
  return b;
}
