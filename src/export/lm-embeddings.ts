/**
 * Quantized embedding tables of a language-model export (tokens, and learned positions), read by their Gather:
 * - codes of at most 4 bits: com.microsoft.GatherBlockQuantized (docs/ContribOperators.md) over the INT4 table
 *   [V, C] with scales [V, C / block] (gather_axis 0, quantize_axis 1, zero point 0): only the looked-up rows
 *   are dequantized;
 * - 8-bit codes with one scale per row (w8a8, per channel): standard DequantizeLinear(int8 [V, C], scales [V],
 *   axis 0) -> Gather.
 * The stored codes are the trained ones (lm-weight-codes.ts), so the rows equal the fake-quantized table's.
 */
import { DType } from '../ir/dtype.js';
import { Node } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { MS_DOMAIN } from '../runtime/lower.js';
import { InputError } from '../validate/schema.js';
import { Emitter } from './emitter.js';
import { BlockedWeightCodes } from './lm-weight-codes.js';
import { MatMulNBitsInitializers, storageBits } from './matmul-nbits.js';
import { packInt4 } from './weight-storage.js';

/** Replaces Gather `node` (table, ids) by com.microsoft GatherBlockQuantized(data, ids, scales) over rows (axis 0) quantized along axis 1. */
function replaceWithGatherBlockQuantized(em: Emitter, node: Node, data: string, scales: string, attrs: { block_size: number; bits?: number }): void {
  const graph = em.graph;
  graph.nodes.splice(graph.nodes.indexOf(node), 1);
  em.node('GatherBlockQuantized', [data, node.inputs[1], scales], { gather_axis: 0, quantize_axis: 1, ...attrs }, node.outputs[0], node.name);
  graph.nodes.at(-1)!.domain = MS_DOMAIN;
  graph.opsets[MS_DOMAIN] = 1;
}

/**
 * A tied token table in a `matmulnbits` file: the Gather reads the head's own MatMulNBits codes and scales, so the
 * table is stored once. GatherBlockQuantized over uint8 data follows MatMulNBits' conventions (ORT's
 * contrib_ops/cpu/quantization/gather_block_quantized.cc: codes packed low bits first, default zero point
 * 2^(bits - 1), scales [N, blocks]); B [N, blocks, blob] is the same bytes as [N, blocks * blob], a Reshape.
 */
export function emitSharedNBitsEmbedding(em: Emitter, node: Node, w: BlockedWeightCodes, init: MatMulNBitsInitializers): string {
  const shape = em.initializer(`${w.tensor}/embedding_rows_shape`, Tensor.int64([2], [w.n, (w.k * init.bits) / 8]));
  const rows = em.node('Reshape', [init.b, shape], {}, undefined, `${w.tensor}/embedding_rows`);
  replaceWithGatherBlockQuantized(em, node, rows, init.scales, { block_size: w.blockSize, bits: init.bits });
  return `GatherBlockQuantized (uint8, ${init.bits}-bit codes shared with the head's MatMulNBits)`;
}

/** Rewrites Gather `node` (table, ids) to read `w`'s codes; returns the kernel label for the report. */
export function emitQuantizedEmbedding(em: Emitter, node: Node, w: BlockedWeightCodes): string {
  const blocks = w.k / w.blockSize;
  if (storageBits(w) <= 4) {
    const data = em.initializer(`${w.tensor}/embedding_int4`, new Tensor(DType.INT4, [w.n, w.k], packInt4(w.codes)));
    const scales = em.initializer(`${w.tensor}/embedding_scales`, new Tensor(DType.FLOAT, [w.n, blocks], w.scales));
    replaceWithGatherBlockQuantized(em, node, data, scales, { block_size: w.blockSize });
    return 'GatherBlockQuantized (int4)';
  }
  if (w.granularity === 'group') {
    throw new InputError(`export: embedding table '${w.tensor}' has ${w.bits}-bit codes in groups of ${w.blockSize}; quantized embeddings take at most 4-bit groups or 8-bit rows (pass --embeddings float)`);
  }
  const scales = new Float32Array(w.n);
  for (let row = 0; row < w.n; row++) scales[row] = w.scales[row * blocks];
  const q = em.initializer(`${w.tensor}/embedding_int8`, new Tensor(DType.INT8, [w.n, w.k], Int8Array.from(w.codes)));
  const s = em.initializer(`${w.tensor}/embedding_scales`, new Tensor(DType.FLOAT, [w.n], scales));
  node.inputs[0] = em.node('DequantizeLinear', [q, s], { axis: 0 }, undefined, `${w.tensor}/embedding_dequantize`);
  return 'DequantizeLinear (int8) -> Gather';
}
