/**
 * Size limits checked before anything is allocated (docs/robustness.md lists them). They bound what a crafted
 * file can make qatkit allocate: a tensor is never larger than the bytes that back it, and never larger than these.
 */

/** Largest ONNX file read into memory (protobuf's own limit is 2 GiB; larger models keep weights as external data). */
export const MAX_MODEL_FILE_BYTES = 2 ** 31 - 1;
/** Largest single tensor (inline or external data). */
export const MAX_TENSOR_BYTES = 2 ** 31 - 1;
/** Largest sum of all initializers of one model. */
export const MAX_TOTAL_TENSOR_BYTES = 2 ** 33;
/** Largest tensor rank (ONNX Runtime's CPU kernels go to 8 on most ops; qatkit's models use at most 5). */
export const MAX_RANK = 8;
/** Largest number of nodes, initializers, inputs or outputs in one graph. */
export const MAX_GRAPH_ITEMS = 1_000_000;
/** Longest name of a node, value, tensor or attribute. */
export const MAX_NAME_LENGTH = 4096;
/** Largest checkpoint read (Node's Buffer limit on 64-bit platforms is 4 GiB). */
export const MAX_CHECKPOINT_BYTES = 2 ** 32 - 1;
/** Largest JSON header of a checkpoint. */
export const MAX_CHECKPOINT_HEADER_BYTES = 64 * 2 ** 20;
/** Largest ONNX Runtime thread count accepted when the machine's core count is not the limit (see cli/options.ts). */
export const MAX_THREADS = 256;
