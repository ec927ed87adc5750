/**
 * Activation quantizers that MatMulNBits computes itself at accuracy_level 4 (ORT contrib op, ContribOperators.md;
 * MLAS's SQNBitGemm "CompInt8" path): it quantizes its input A per row and per block of block_size along K,
 * symmetric, scale = absmax / 127, and runs int8 x intN dot products. A run trained with exactly that quantizer at
 * a Linear's input (per-token-per-block absmax, 8 bits, its block the layer's weight block: quant/spec.ts
 * `per-token` with `blockSize`, lowered by quant/low-bit-ops.ts AbsmaxQuantize) exports that Linear as one
 * MatMulNBits at level 4 with no quantizer nodes left in the graph: the int8 compute the model trained for.
 *
 * A quantizer placed on the attention output before its heads merge ([B, H, T, D], one row per token and head)
 * has the same blocks as the merged [B, T, C] input the kernel sees when D is a multiple of the block (C = h x D
 * + d, so each block of C lies in one head): its training already refused a D the block does not divide.
 */
import { attrInt } from '../ir/graph.js';
import { Model } from '../models/model.js';
import { plainGemm } from './gemm-as-matmul.js';
import { Quantizer } from '../quant/prepare.js';
import { nbitsBlockSize } from './lm-weight-codes.js';

export interface LevelFourActivations {
  /** Quantizer nodes the kernel computes (left out of the exported graph). */
  quantizers: Set<string>;
  /** The MatMul layers they feed, exported at accuracy_level 4. */
  layers: Set<string>;
}

/** The activation quantizers of `model` that a `matmulnbits` export leaves to MatMulNBits accuracy_level 4. */
export function levelFourActivations(model: Model, maxBlock?: number): LevelFourActivations {
  const quantizers = model.quant?.quantizers ?? [];
  const weightOf = new Map<string, Quantizer>();
  for (const q of quantizers) if (q.role === 'weight') for (const l of q.layers) weightOf.set(l, q);
  const out: LevelFourActivations = { quantizers: new Set(), layers: new Set() };
  for (const a of quantizers) {
    const g = a.spec.granularity;
    if (a.role !== 'activation' || a.spec.bits !== 8 || a.spec.method !== 'absmax' || g.kind !== 'per-token' || g.blockSize === undefined) continue;
    // BitLinear's RMSNorm sits between the tensor and its quantizer: the kernel would quantize the unnormalised input.
    const node = model.graph.nodes.find((n) => n.name === a.node);
    if (!node || node.inputs[0] !== a.tensor) continue;
    const fits = a.layers.every((layer) => {
      const w = weightOf.get(layer);
      const matmul = model.graph.nodes.find((n) => n.name === layer);
      // A MatMul weight is [K, N]; a tied head reads the token table [V, C] transposed (K = C), an imported Gemm
      // with transB its [N, K] weight. (lm-recompute.ts writes such a Gemm as a MatMul.)
      const dims = w ? model.graph.initializers.get(w.tensor)?.dims : undefined;
      const table = w?.layers.some((l) => model.graph.nodes.find((n) => n.name === l)?.opType === 'Gather');
      const linear = matmul?.opType === 'MatMul' || (matmul !== undefined && plainGemm(matmul));
      const transposed = table || (matmul?.opType === 'Gemm' && attrInt(matmul, 'transB', 0) === 1);
      const k = dims ? (transposed ? dims[1] : dims[0]) : undefined;
      return w !== undefined && linear && k !== undefined && nbitsBlockSize(w, k, maxBlock) === g.blockSize;
    });
    if (!fits) continue;
    out.quantizers.add(a.node);
    for (const l of a.layers) out.layers.add(l);
  }
  return out;
}
