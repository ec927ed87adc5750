/**
 * The quantized weights of a language-model export, for both of its graph forms (the zoo KV-cache decoder,
 * lm-decoder.ts, and an imported model's own graph, lm-recompute.ts): each weight quantizer's trained codes
 * (lm-weight-codes.ts) written into every layer that reads it, in the kernel the format names:
 * - fp32: the fake-quantized values as a float initializer;
 * - int4: an INT4 DequantizeLinear (blocked, opset 21) feeding the MatMul or the Gather, one per MatMul (a tied
 *   head gets its own, of the transposed codes): the form ORT's QDQ optimizer fuses into MatMulNBits;
 * - matmulnbits: com.microsoft MatMulNBits (a tied table's Gather reads the head's codes: lm-embeddings.ts);
 * - qdq: com.microsoft MatMulIntegerToFloat over the per-token int8 codes of the layer's input (lm-integer-matmul.ts).
 * Layers arrive as MatMul(x, B) or Gather(table, ids); the parameter is [K, N] ('kn', B itself) or [N, K] ('nk':
 * a token table, or a weight the graph transposes before its MatMul), and every kernel gets the codes in the
 * orientation it reads, so a transposed copy is never stored in float.
 */
import { DType } from '../ir/dtype.js';
import { Graph, Node } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { Quantizer } from '../quant/prepare.js';
import { InputError } from '../validate/schema.js';
import { Model } from '../models/model.js';
import { Emitter } from './emitter.js';
import { fetchValues } from './fetch-values.js';
import { emitQuantizedEmbedding, emitSharedNBitsEmbedding } from './lm-embeddings.js';
import { emitIntegerMatMul, perHeadOutputShape, tokenQuantizerOf, TokenCodes } from './lm-integer-matmul.js';
import { BlockedWeightCodes, blockedWeightCodes, dequantizeBlocked } from './lm-weight-codes.js';
import { emitMatMulNBits, matMulNBitsInitializers, storageBits } from './matmul-nbits.js';
import { packInt4 } from './weight-storage.js';

export type LmWeightFormat = 'fp32' | 'int4' | 'matmulnbits' | 'qdq';

/** One quantized weight of the export: how it is stored and which kernel reads it. */
export interface LmExportedWeight {
  tensor: string;
  layers: string[];
  bits: number;
  /** Container bits of the stored codes (3-bit codes ship in 4-bit blocks). */
  storage_bits: number;
  block_size: number;
  granularity: BlockedWeightCodes['granularity'];
  /** What runs each layer: MatMulNBits, DequantizeLinear -> MatMul, DequantizeLinear -> Gather, or float. */
  kernels: string[];
  /** How a grid that is not plain integers is stored (ParetoQ's SEQ). */
  grid?: string;
}

export interface LmWeightEmission {
  format: LmWeightFormat;
  /** Token embeddings: 'quantized' (the format's quantized table) or 'float'. */
  embeddings?: 'quantized' | 'float';
  blockSize?: number;
  weightType?: 'uint8' | 'int8';
  /** The token-id input: a Gather reading it is the token table (named in the report's `embeddings`). */
  tokenIds: string;
  /** Layers whose input quantizer MatMulNBits computes at accuracy_level 4 (lm-level4.ts). */
  levelFourLayers: ReadonlySet<string>;
  /** Heads of a per-head activation quantizer (qdq's integer product over [B, H, T, D] codes). */
  headsOf: (quantizer: Node) => number;
  /** How each weight's parameter is laid out: [K, N] ('kn') or [N, K] ('nk'). */
  layoutOf: (q: Quantizer) => 'kn' | 'nk';
}

export function nodeNamed(graph: Graph, name: string): Node {
  const n = graph.nodes.find((x) => x.name === name);
  if (!n) throw new Error(`export: the export graph has no node '${name}' (the training graph's layer)`);
  return n;
}

/** Codes [K, N] / scales [K / block, N] of a blocked weight, for DequantizeLinear along axis 0 of a MatMul weight. */
function kMajor(w: BlockedWeightCodes): { codes: Int32Array; scales: Float32Array } {
  const blocks = w.k / w.blockSize;
  const codes = new Int32Array(w.n * w.k);
  const scales = new Float32Array(w.n * blocks);
  for (let row = 0; row < w.n; row++) {
    for (let col = 0; col < w.k; col++) codes[col * w.n + row] = w.codes[row * w.k + col];
    for (let b = 0; b < blocks; b++) scales[b * w.n + row] = w.scales[row * blocks + b];
  }
  return { codes, scales };
}

/** INT4 DequantizeLinear of a blocked weight: [K, N] blocks along axis 0 (a MatMul's B) or [N, K] along axis 1 (a Gather's table). */
function emitInt4Dequantize(em: Emitter, w: BlockedWeightCodes, orientation: 'kn' | 'nk', suffix: string): string {
  if (storageBits(w) > 4) throw new InputError(`--format int4: weight '${w.tensor}' has ${w.bits}-bit codes, more than int4 holds; use --format matmulnbits`);
  const blocks = w.k / w.blockSize;
  const { codes, scales } = orientation === 'kn' ? kMajor(w) : { codes: w.codes, scales: w.scales };
  const dims = orientation === 'kn' ? [w.k, w.n] : [w.n, w.k];
  const sdims = orientation === 'kn' ? [blocks, w.n] : [w.n, blocks];
  const tag = `${w.tensor}${suffix}`;
  const q = em.initializer(`${tag}/int4`, new Tensor(DType.INT4, dims, packInt4(codes)));
  const s = em.initializer(`${tag}/scales`, new Tensor(DType.FLOAT, sdims, scales));
  const z = em.initializer(`${tag}/zero_point`, new Tensor(DType.INT4, sdims, packInt4(new Int32Array(w.n * blocks))));
  return em.node('DequantizeLinear', [q, s, z], { axis: orientation === 'kn' ? 0 : 1, block_size: w.blockSize }, undefined, `${tag}/dequantize`);
}

function transpose2d(t: Tensor): Tensor {
  const [r, c] = t.dims;
  const src = t.data as Float32Array;
  const out = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = src[i * c + j];
  return new Tensor(DType.FLOAT, [c, r], out);
}

/** What emitLanguageModelWeights reads of each weight quantizer (parameter, fake-quantized value, scale, zero point), from ONNX Runtime. */
export async function fetchWeightValues(model: Model, quantizers: readonly Quantizer[], threads?: number): Promise<Map<string, Tensor>> {
  const names = quantizers.flatMap((q) => [q.tensor, q.output, ...(q.scale ? [q.scale] : []), ...(q.zeroPoint ? [q.zeroPoint] : [])]);
  return names.length ? fetchValues(model, names, threads) : new Map<string, Tensor>();
}

/**
 * Writes every weight quantizer's codes into its layers of `graph` (see the module comment). `values`: the
 * trained values fetched from ONNX Runtime (weights, fake-quantized weights, scales). Returns the report's rows,
 * the token table's kernel, and the accuracy levels of the MatMulNBits written.
 */
export function emitLanguageModelWeights(graph: Graph, em: Emitter, quantizers: readonly Quantizer[], values: Map<string, Tensor>, o: LmWeightEmission): { weights: LmExportedWeight[]; embeddings: string; levels: Set<0 | 4> } {
  const { format } = o;
  const weights: LmExportedWeight[] = [];
  let embeddings = 'float';
  const tokenCodes = new TokenCodes(em);
  const levels = new Set<0 | 4>(format === 'int4' ? [0] : []);
  for (const q of quantizers) {
    const layout = o.layoutOf(q);
    const nodes = q.layers.map((l) => nodeNamed(graph, l));
    const table = nodes.some((n) => n.opType === 'Gather');
    const w = blockedWeightCodes(q, values, layout, o.blockSize);
    const kernels: string[] = [];
    const dequantized = new Tensor(DType.FLOAT, layout === 'nk' ? [w.n, w.k] : [w.k, w.n], dequantizeBlocked(w));
    // matmulnbits: a tied table and its head read one copy of the codes (the head's MatMulNBits B and scales).
    const tied = format === 'matmulnbits' && table && o.embeddings !== 'float' && nodes.some((n) => n.opType === 'MatMul');
    const shared = tied ? matMulNBitsInitializers(em, w, `${q.tensor}/lm_head`) : undefined;
    const suffix = table ? '/lm_head' : layout === 'nk' ? '/transposed' : '';
    for (const node of nodes) {
      if (node.opType === 'Gather') {
        // The token table names the export's embeddings; a position table (int8 rows) is one more quantized Gather.
        const tokens = node.inputs[1] === o.tokenIds;
        if (format === 'int4' && o.embeddings !== 'float' && storageBits(w) <= 4) {
          node.inputs[0] = emitInt4Dequantize(em, w, 'nk', '/embedding');
          kernels.push('DequantizeLinear -> Gather');
          if (tokens) embeddings = 'int4 DequantizeLinear -> Gather';
        } else if (shared) {
          const kernel = emitSharedNBitsEmbedding(em, node, w, shared);
          kernels.push(kernel);
          if (tokens) embeddings = kernel;
        } else if (format !== 'fp32' && o.embeddings !== 'float') {
          const kernel = emitQuantizedEmbedding(em, node, w);
          kernels.push(kernel);
          if (tokens) embeddings = kernel;
        } else {
          node.inputs[0] = em.initializer(`${q.tensor}/float`, dequantized);
          kernels.push('Gather (float)');
        }
        continue;
      }
      if (node.opType !== 'MatMul') throw new Error(`export: layer '${node.name}' is a ${node.opType}; language-model weights feed MatMul or Gather`);
      if (format === 'fp32') {
        // A [N, K] parameter (a tied head's table): transposed, as the training graph reads it.
        node.inputs[1] = em.initializer(`${q.tensor}/float${layout === 'nk' ? '_transposed' : ''}`, layout === 'nk' ? transpose2d(dequantized) : dequantized);
        kernels.push('MatMul (float)');
      } else if (format === 'int4') {
        node.inputs[1] = emitInt4Dequantize(em, w, 'kn', suffix);
        kernels.push('DequantizeLinear -> MatMul');
      } else if (format === 'qdq') {
        const found = tokenQuantizerOf(graph, node);
        if (!found) {
          throw new InputError(`--format qdq: layer '${node.name}' has no 8-bit per-token activation quantizer at its input; qdq runs int8 x int8 products (train with --quant w8a8 or b158), export weight-only runs with --format matmulnbits`);
        }
        const weightType = o.weightType ?? 'uint8';
        emitIntegerMatMul(em, node, tokenCodes.of(found), w, suffix, weightType, found.perHead ? o.headsOf(found.quantizer) : undefined, perHeadOutputShape(em, found, node.inputs[0], w.n));
        kernels.push(`MatMulIntegerToFloat (${weightType === 'int8' ? 'u8s8' : 'u8u8'})`);
      } else {
        graph.nodes.splice(graph.nodes.indexOf(node), 1);
        const level = o.levelFourLayers.has(node.name) ? 4 : 0;
        levels.add(level);
        emitMatMulNBits(em, node.inputs[0], w, { accuracyLevel: level, name: `${node.name}NBits`, output: node.outputs[0], suffix, initializers: shared });
        kernels.push('MatMulNBits');
      }
    }
    weights.push({
      tensor: q.tensor, layers: q.layers, bits: w.trainedBits ?? w.bits, storage_bits: format === 'fp32' ? 32 : format === 'qdq' ? 8 : storageBits(w), block_size: w.blockSize, granularity: w.granularity, kernels,
      ...(w.trainedBits !== undefined ? { grid: `seq: levels (q + 1/2) s stored as odd ${w.bits}-bit codes 2q + 1 at s / 2` } : {}),
    });
  }
  return { weights, embeddings, levels };
}
