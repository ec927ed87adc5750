// Registers qatkit's quantization ops (domain ai.qatkit) and exports the quantization API.
import './fake-quantize-op';
import './low-bit-ops';
import './observer-op';
export * from './spec';
export { QATKIT } from './fake-quantize-op';
export { toTrainingObservers, OBSERVE_INPUT } from './observer-op';
