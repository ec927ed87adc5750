/**
 * The `qdq` form of a language model's w8a8 Linear: per-token symmetric int8 activations (codes computed in the
 * graph by exactly the float ops of the trained AbsmaxQuantize: s = max(max|x|, 1e-8) / 127 per row,
 * q = clip(round(x / s), -128, 127)) times 8-bit weight codes, accumulated in int32 by ONNX Runtime's
 * com.microsoft.MatMulIntegerToFloat (docs/ContribOperators.md), which scales each row by its own a_scale
 * ([..., 1], the per-token scale) and each column by b_scale ([N], the per-channel weight scale).
 *
 * The activation codes go in as uint8 around the zero point 128 (u = q + 128). The weight codes are stored as the
 * export's weight type (weight-type.ts): uint8 around 128 (u8u8: MLAS widens to int16 before multiplying, exact on
 * every CPU), or int8 with zero point 0 (u8s8: exact only with VNNI / AMX or ARM dot products; on AVX2 MLAS sums
 * pairs of u8 x s8 products in int16 with saturation, vpmaddubsw). Where u8s8 is exact it is the faster kernel
 * (25M gpt, prefill of 8 x 128 tokens on an AMX CPU, `bench/lm-export.ts`: 1.86-1.93x fp32, against 0.69x for
 * u8u8 with the codes as float ops; docs/export-formats.md). MLAS's s8s8 kernel has no
 * AVX2 path (measured ~10x slower than u8u8), so the activations stay uint8.
 */
import { DType } from '../ir/dtype.js';
import { Graph, Node } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { QATKIT } from '../quant/fake-quantize-op.js';
import { MS_DOMAIN } from '../runtime/lower.js';
import { InputError } from '../validate/schema.js';
import { Emitter } from './emitter.js';
import { BlockedWeightCodes } from './lm-weight-codes.js';

/**
 * The trained per-token quantizer that feeds a Linear's activation input, and the Reshapes between them
 * (`reshapes`, outermost first). `perHead`: a Transpose (0, 2, 1, 3) of the attention output [B, H, T, D] sits
 * below the innermost Reshape, which merges the heads (prepare.ts walks back through value-preserving ops to place
 * the quantizer there, so each token has one scale per head). An imported Conv1D / Gemm also flattens the rows
 * ([B, T, C] -> [B x T, C]).
 */
export interface TokenInput {
  quantizer: Node;
  perHead: boolean;
  reshapes: Node[];
}

/** The per-token quantizer behind `node`'s input 0, when it is one the integer kernel reproduces. */
export function tokenQuantizerOf(graph: Graph, node: Node): TokenInput | undefined {
  const producers = graph.producers();
  const reshapes: Node[] = [];
  let p = producers.get(node.inputs[0]);
  while (p?.opType === 'Reshape') {
    reshapes.push(p);
    p = producers.get(p.inputs[0]);
  }
  let perHead = false;
  const perm = p?.attrs.perm;
  if (p?.opType === 'Transpose' && reshapes.length > 0 && perm?.kind === 'ints' && perm.value.join() === '0,2,1,3') {
    perHead = true;
    p = producers.get(p.inputs[0]);
  } else if (reshapes.length > 0) {
    // Row views only: the same last axis (the quantizer's rows) before and after.
    const width = (v: string) => graph.types.get(v)?.shape.at(-1);
    const [before, after] = [width(reshapes.at(-1)!.inputs[0]), width(node.inputs[0])];
    if (typeof before !== 'number' || before !== after) return undefined;
  }
  if (!p || p.domain !== QATKIT || p.opType !== 'AbsmaxQuantize') return undefined;
  const attr = (name: string, fallback: number) => (p.attrs[name]?.kind === 'int' ? (p.attrs[name] as { value: number }).value : fallback);
  if (attr('bits', 8) !== 8 || attr('per_token', 1) !== 1 || attr('block_size', 0) !== 0) return undefined;
  return { quantizer: p, perHead, reshapes };
}

/** `nodes` (innermost first) applied again to `x`: the same view of another value of the same shape. */
function replayViews(em: Emitter, x: string, nodes: Node[]): string {
  let v = x;
  for (const n of nodes) {
    v = em.node(n.opType, [v, ...n.inputs.slice(1)], { ...n.attrs }, undefined, `${n.name}/codes_view`);
    const t = em.graph.types.get(n.outputs[0]);
    if (t) em.graph.types.set(v, t);
  }
  return v;
}

/** uint8 codes (q + 128) and scales [..., 1] of a per-token quantizer's input, shared by every Linear it feeds. */
export class TokenCodes {
  private made = new Map<string, { codes: string; scale: string }>();
  constructor(private em: Emitter) {}

  /**
   * The codes of `input`'s rows in the layout its Linear reads: the quantizer's own input viewed as the layer's
   * input (a row view: per-row codes are the same), or per head ([B, H, T, D]) for MatMulIntegerToFloat by heads.
   */
  of(input: TokenInput): { codes: string; scale: string } {
    const source = input.quantizer.inputs[0];
    const key = input.perHead ? source : `${source}|${input.reshapes.map((r) => r.name).join('|')}`;
    const known = this.made.get(key);
    if (known) return known;
    const x = input.perHead ? source : replayViews(this.em, source, [...input.reshapes].reverse());
    const out = this.codesOf(x);
    this.made.set(key, out);
    return out;
  }

  private codesOf(x: string): { codes: string; scale: string } {
    const em = this.em;
    const c = (name: string, v: number) => em.initializer(`${x}/${name}`, Tensor.float([], [v]));
    const absmax = em.node('ReduceMax', [em.node('Abs', [x])], { axes: [-1], keepdims: 1 });
    const scale = em.node('Div', [em.node('Max', [absmax, c('epsilon', 1e-8)]), c('qmax', 127)], {}, undefined, `${x}/token_scale`);
    const width = em.graph.typeOf(x).shape.at(-1);
    let codes: string;
    if (typeof width === 'number') {
      // One blocked QuantizeLinear (opset 21, a block = the whole row): saturate(round_half_even(x / s) + 128), the
      // same values as Div -> Round -> Clip(-128, 127) -> Add 128 -> Cast, in one pass over the activations.
      // A blocked zero point has the scale's shape ([..., 1]: the token count is known only at run time).
      const zero = em.node('Expand', [em.initializer(`${x}/code_zero_point`, new Tensor(DType.UINT8, [], Uint8Array.of(128))), em.node('Shape', [scale])]);
      codes = em.node('QuantizeLinear', [x, scale, zero], { axis: -1, block_size: width }, undefined, `${x}/token_codes`);
    } else {
      const q = em.node('Clip', [em.node('Round', [em.node('Div', [x, scale])]), c('qmin_code', -128), c('qmax_code', 127)]);
      codes = em.node('Cast', [em.node('Add', [q, c('offset', 128)])], { to: DType.UINT8 }, undefined, `${x}/token_codes`);
    }
    return { codes, scale };
  }
}

/**
 * Where a per-head product ([B, T, N] after the heads are summed) feeds a Linear whose input the graph flattened
 * further (an imported Gemm's [B x T, C]): the shape its output must take, `layerInput`'s leading dimensions and N.
 * Rows as -1 where the layer input is 2-D (the views keep the element count and the last axis, so the rows are
 * B x T); otherwise read from the layer input's Shape. Undefined where the heads' merge is the only view.
 */
export function perHeadOutputShape(em: Emitter, input: TokenInput, layerInput: string, n: number): string | undefined {
  if (!input.perHead || input.reshapes.length <= 1) return undefined;
  const tag = `${input.quantizer.name}/rows`;
  if (em.graph.types.get(layerInput)?.shape.length === 2) return em.initializer(`${tag}/output_shape`, Tensor.int64([2], [-1, n]));
  const leading = em.node('Slice', [em.node('Shape', [layerInput]), em.initializer(`${tag}/start`, Tensor.int64([1], [0])), em.initializer(`${tag}/end`, Tensor.int64([1], [-1]))]);
  return em.node('Concat', [leading, em.initializer(`${tag}/features_${n}`, Tensor.int64([1], [n]))], { axis: 0 }, undefined, `${tag}/output_shape`);
}

/**
 * Replaces weight MatMul `node` (activation x weight [K, N]) by MatMulIntegerToFloat over `codes`: the weight must
 * have one scale per output feature (per-channel or per-tensor; ternary included) and codes within int8. With
 * `heads` (per-head activation scales, codes [B, H, T, K / H]), the weight goes in as [H, K / H, N], each head's
 * product is scaled by its own rows' scales, and the heads are summed (ReduceSum over axis 1).
 */
export function emitIntegerMatMul(em: Emitter, node: Node, activation: { codes: string; scale: string }, w: BlockedWeightCodes, suffix: string, weightType: 'uint8' | 'int8', heads?: number, outputShape?: string): void {
  if (w.granularity === 'group') {
    throw new InputError(`--format qdq: weight '${w.tensor}' is quantized in groups of ${w.blockSize}; MatMulIntegerToFloat takes one scale per output feature (w8a8, b158); export grouped weights with --format matmulnbits`);
  }
  const blocks = w.k / w.blockSize;
  const signed = weightType === 'int8';
  const b = signed ? new Int8Array(w.k * w.n) : new Uint8Array(w.k * w.n);
  const offset = signed ? 0 : 128;
  const scales = new Float32Array(w.n);
  for (let row = 0; row < w.n; row++) {
    scales[row] = w.scales[row * blocks];
    for (let col = 0; col < w.k; col++) {
      const code = w.codes[row * w.k + col];
      if (code < -128 || code > 127) throw new Error(`export: weight '${w.tensor}' code ${code} does not fit int8`);
      b[col * w.n + row] = code + offset;
    }
  }
  const tag = `${w.tensor}${suffix}`;
  if (heads !== undefined && w.k % heads !== 0) throw new Error(`export: weight '${w.tensor}' has ${w.k} input features, not divisible by ${heads} heads`);
  const dims = heads === undefined ? [w.k, w.n] : [heads, w.k / heads, w.n];
  const weight = em.initializer(`${tag}/${weightType}`, new Tensor(signed ? DType.INT8 : DType.UINT8, dims, b));
  const weightScale = em.initializer(`${tag}/scales`, new Tensor(DType.FLOAT, [w.n], scales));
  const zero = em.initializer(`${tag}/zero_point`, new Tensor(DType.UINT8, [], Uint8Array.of(128)));
  const weightZero = signed ? em.initializer(`${tag}/weight_zero_point`, new Tensor(DType.INT8, [], Int8Array.of(0))) : zero;
  const graph = em.graph;
  graph.nodes.splice(graph.nodes.indexOf(node), 1);
  const out = em.node('MatMulIntegerToFloat', [activation.codes, weight, activation.scale, weightScale, zero, weightZero], {}, heads === undefined ? node.outputs[0] : undefined, `${node.name}Integer`);
  graph.nodes.at(-1)!.domain = MS_DOMAIN;
  graph.opsets[MS_DOMAIN] = 1;
  if (heads === undefined) return;
  const summed = em.node('ReduceSum', [out, em.initializer(`${tag}/head_axis`, Tensor.int64([1], [1]))], { keepdims: 0 }, outputShape ? undefined : node.outputs[0], `${node.name}Heads`);
  if (outputShape) em.node('Reshape', [summed, outputShape], {}, node.outputs[0], `${node.name}Rows`);
}
