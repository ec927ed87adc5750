// Registers qatkit's quantization ops (domain ai.qatkit) and exports the quantization API.
import './fake-quantize-op.js';
import './low-bit-ops.js';
import './observer-op.js';
export * from './spec.js';
export { QATKIT } from './fake-quantize-op.js';
export { toTrainingObservers, OBSERVE_INPUT } from './observer-op.js';
