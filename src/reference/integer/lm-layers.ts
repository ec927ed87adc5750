/**
 * The integer layers of an exported language-model decoder, recomputed in TypeScript from their stored codes and
 * compared with ONNX Runtime layer by layer (docs/export-formats.md, "Integer reference evaluator"):
 * - MatMulNBits (ContribOperators.md): B's codes unpacked low bits first, minus the zero point (default
 *   2^(bits - 1)), times the block's scale; accuracy_level 0 multiplies the float input by those values,
 *   accuracy_level 4 first quantizes each row of the input per block of block_size (scale absmax / 127, codes
 *   round(x / scale)) and sums int8 x intN products per block, times both scales (MLAS's CompInt8 path);
 * - GatherBlockQuantized: the gathered rows' codes minus the zero point, times their block's scale;
 * - MatMulIntegerToFloat: sum (a - a_zero)(b - b_zero) over K in integers, times a_scale (per token) and b_scale
 *   (per output feature); a [H, K / H, N] weight is a batched product per head;
 * - a blocked QuantizeLinear (the per-token activation codes of `qdq`): saturate(round_half_even(x / s) + z);
 * - MatMul reading an INT4 DequantizeLinear (the `int4` format): the dequantized blocks times the float input.
 * Each layer is fed ONNX Runtime's own input (every layer's input and output are fetched as extra graph outputs),
 * so one difference does not spread, and its result is compared with ORT's output: relative to the layer's
 * largest output for float results, in codes (at most one step, a rounding tie) for QuantizeLinear.
 */
import * as ort from '../../runtime/ort.js';
import { DType } from '../../ir/dtype.js';
import { attrInt, Graph, Node, topologicalOrder } from '../../ir/graph.js';
import { Tensor } from '../../ir/tensor.js';
import { foldedConstant } from '../../ir/folded-constant.js';
import { encodeModel, UNKNOWN_SHAPE } from '../../onnx/model-io.js';
import { roundHalfEven } from '../../quant/spec.js';
import { fromOrtTensor } from '../../runtime/tensors.js';
import { unpackInt4 } from './cast.js';

/** Relative tolerance of a float layer: float32 rounding of K-long sums (and, at level 4, of the block scales). */
export const LM_LAYER_TOLERANCE = { float: 1e-4, int8Compute: 2e-3 } as const;

export interface LmLayerComparison {
  node: string;
  opType: string;
  /** What the reference computes: 'float' (level 0, dequantized weights), 'int8' (level 4 / MatMulIntegerToFloat), 'codes'. */
  compute: 'float' | 'int8' | 'codes';
  elements: number;
  /** Largest |reference - ORT| (codes: steps), and relative to the layer's largest |output| (float layers). */
  maxDiff: number;
  relativeDiff: number;
  passed: boolean;
}

export interface LmIntegerComparison {
  layers: LmLayerComparison[];
  /** The first layer (graph order) beyond its tolerance. */
  firstMismatch?: LmLayerComparison;
  passed: boolean;
}

/** A constant input as ORT folds it (ir/folded-constant.ts); anything else is an error naming it. */
function constantOf(graph: Graph, producers: Map<string, Node>, name: string): Tensor {
  const t = foldedConstant(graph, producers, name);
  if (t) return t;
  const p = producers.get(name);
  throw new Error(`integer reference: '${name}' is not a constant the evaluator can read (produced by ${p ? `${p.opType} '${p.name}'` : 'nothing'})`);
}

/** Unsigned `bits`-bit codes packed low bits first (MatMulNBits / GatherBlockQuantized uint8 data). */
function unpackUnsigned(data: Uint8Array, bits: number, count: number): Int32Array {
  const out = new Int32Array(count);
  const perByte = 8 / bits;
  const mask = (1 << bits) - 1;
  for (let i = 0; i < count; i++) out[i] = (data[Math.floor(i / perByte)] >> (bits * (i % perByte))) & mask;
  return out;
}

/** MatMulNBits on x [..., K] -> [..., N]. */
export function referenceMatMulNBits(node: Node, x: Float32Array, b: Tensor, scales: Tensor, zeroPoints?: Tensor): Float32Array {
  const k = attrInt(node, 'K', 0);
  const n = attrInt(node, 'N', 0);
  const bits = attrInt(node, 'bits', 4);
  const block = attrInt(node, 'block_size', 32);
  const level = attrInt(node, 'accuracy_level', 0);
  const blocks = Math.ceil(k / block);
  const blob = (block * bits) / 8;
  const codes = unpackUnsigned(b.data as Uint8Array, bits, n * blocks * block);
  const zero = zeroPoints ? unpackUnsigned(zeroPoints.data as Uint8Array, bits, n * blocks) : undefined;
  const s = scales.data as Float32Array;
  if (b.size !== n * blocks * blob) throw new Error(`integer reference: MatMulNBits '${node.name}' B holds ${b.size} bytes, not N x blocks x blob = ${n * blocks * blob}`);
  // Centred codes w[n][k] = code - zero point.
  const w = new Int32Array(n * k);
  for (let row = 0; row < n; row++) {
    for (let j = 0; j < blocks; j++) {
      const z = zero ? zero[row * blocks + j] : 2 ** (bits - 1);
      for (let i = 0; i < block && j * block + i < k; i++) w[row * k + j * block + i] = codes[(row * blocks + j) * block + i] - z;
    }
  }
  const m = x.length / k;
  const y = new Float32Array(m * n);
  const qa = new Int32Array(k);
  const sa = new Float64Array(blocks);
  for (let r = 0; r < m; r++) {
    const xr = x.subarray(r * k, (r + 1) * k);
    if (level === 4) {
      for (let j = 0; j < blocks; j++) {
        let amax = 0;
        for (let i = j * block; i < Math.min(k, (j + 1) * block); i++) amax = Math.max(amax, Math.abs(xr[i]));
        const scale = Math.fround(amax / 127);
        sa[j] = scale;
        const inv = scale ? Math.fround(1 / scale) : 0;
        for (let i = j * block; i < Math.min(k, (j + 1) * block); i++) qa[i] = Math.max(-127, Math.min(127, Math.round(Math.fround(xr[i] * inv))));
      }
    }
    for (let col = 0; col < n; col++) {
      let acc = 0;
      for (let j = 0; j < blocks; j++) {
        let part = 0;
        const end = Math.min(k, (j + 1) * block);
        if (level === 4) for (let i = j * block; i < end; i++) part += qa[i] * w[col * k + i];
        else for (let i = j * block; i < end; i++) part += xr[i] * w[col * k + i];
        acc += part * s[col * blocks + j] * (level === 4 ? sa[j] : 1);
      }
      y[r * n + col] = acc;
    }
  }
  return y;
}

/** GatherBlockQuantized (gather_axis 0, quantize_axis 1) of rows `ids` of data [R, C]. */
export function referenceGatherBlockQuantized(node: Node, data: Tensor, ids: ArrayLike<number | bigint>, scales: Tensor): Float32Array {
  const block = attrInt(node, 'block_size', 128);
  const int4 = data.dtype === DType.INT4 || data.dtype === DType.UINT4;
  const bits = int4 ? 4 : attrInt(node, 'bits', 4);
  const rows = data.dims[0];
  // uint8 data holds packed codes: [R, C * bits / 8] bytes.
  const c = int4 ? data.dims[1] : (data.dims[1] * 8) / bits;
  const codes = int4 ? unpackInt4(data.data as Uint8Array, rows * c) : unpackUnsigned(data.data as Uint8Array, bits, rows * c);
  const zero = int4 ? 0 : 2 ** (bits - 1);
  const s = scales.data as Float32Array;
  const blocks = Math.ceil(c / block);
  const out = new Float32Array(ids.length * c);
  for (let t = 0; t < ids.length; t++) {
    const row = Number(ids[t]);
    for (let i = 0; i < c; i++) out[t * c + i] = (codes[row * c + i] - zero) * s[row * blocks + Math.floor(i / block)];
  }
  return out;
}

/** MatMulIntegerToFloat(A codes, B codes, a_scale, b_scale, a_zero, b_zero). */
export function referenceMatMulIntegerToFloat(a: Tensor, b: Tensor, aScale: Float32Array, bScale: Float32Array, aZero: number, bZero: number): Float32Array {
  const k = a.dims.at(-1)!;
  const n = b.dims.at(-1)!;
  const heads = b.dims.length === 3 ? b.dims[0] : 1;
  const ad = a.data as ArrayLike<number>;
  const bd = b.data as ArrayLike<number>;
  // A [..., (H,) M, K] against B [(H,) K, N]: with a per-head B, A is [B, H, T, K] and row r is head (r / T) mod H.
  const rows = ad.length / k;
  const out = new Float32Array(rows * n);
  const rowsPerHead = a.dims.at(-2)!;
  for (let r = 0; r < rows; r++) {
    const h = heads === 1 ? 0 : Math.floor(r / rowsPerHead) % heads;
    for (let col = 0; col < n; col++) {
      let acc = 0;
      for (let i = 0; i < k; i++) acc += (ad[r * k + i] - aZero) * (bd[(h * k + i) * n + col] - bZero);
      out[r * n + col] = acc * aScale[r] * bScale[col];
    }
  }
  return out;
}

/** A blocked QuantizeLinear along the last axis: one scale and zero point per block (here per row). */
export function referenceQuantizeLinear(x: Float32Array, scale: Float32Array, zero: ArrayLike<number>, block: number, lo: number, hi: number): Int32Array {
  const out = new Int32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const b = Math.floor(i / block);
    out[i] = Math.min(hi, Math.max(lo, roundHalfEven(Math.fround(x[i] / scale[b])) + Number(zero[b])));
  }
  return out;
}

/** Float32 x [M, K] times the dequantized INT4 [K, N] blocks (DequantizeLinear axis 0, block_size along K). */
function referenceInt4MatMul(dq: Node, x: Float32Array, codes: Tensor, scales: Tensor): Float32Array {
  const [k, n] = codes.dims;
  const block = attrInt(dq, 'block_size', 32);
  const q = unpackInt4(codes.data as Uint8Array, k * n);
  const s = scales.data as Float32Array;
  const m = x.length / k;
  const y = new Float32Array(m * n);
  for (let r = 0; r < m; r++) {
    for (let col = 0; col < n; col++) {
      let acc = 0;
      for (let i = 0; i < k; i++) acc += x[r * k + i] * q[i * n + col] * s[Math.floor(i / block) * n + col];
      y[r * n + col] = acc;
    }
  }
  return y;
}

interface Probe {
  node: Node;
  compute: LmLayerComparison['compute'];
  /** Values fetched from ORT for this layer: its inputs and its output. */
  fetch: string[];
  reference(values: Map<string, Tensor>): { ours: ArrayLike<number>; ort: ArrayLike<number> };
}

/** The integer layers of `graph` with how to recompute each from ORT's inputs. */
function probes(graph: Graph): Probe[] {
  const producers = graph.producers();
  const constant = (name: string) => constantOf(graph, producers, name);
  const out: Probe[] = [];
  for (const node of topologicalOrder(graph)) {
    const [x, y] = [node.inputs[0], node.outputs[0]];
    if (node.opType === 'MatMulNBits') {
      const zero = node.inputs[3] ? constant(node.inputs[3]) : undefined;
      out.push({
        node, compute: attrInt(node, 'accuracy_level', 0) === 4 ? 'int8' : 'float', fetch: [x, y],
        reference: (v) => ({ ours: referenceMatMulNBits(node, v.get(x)!.data as Float32Array, constant(node.inputs[1]), constant(node.inputs[2]), zero), ort: v.get(y)!.data as Float32Array }),
      });
    } else if (node.opType === 'GatherBlockQuantized') {
      const ids = node.inputs[1];
      out.push({
        node, compute: 'float', fetch: [ids, y],
        reference: (v) => ({ ours: referenceGatherBlockQuantized(node, constant(x), v.get(ids)!.data as ArrayLike<number | bigint>, constant(node.inputs[2])), ort: v.get(y)!.data as Float32Array }),
      });
    } else if (node.opType === 'MatMulIntegerToFloat') {
      const [a, b, as, bs, az, bz] = node.inputs;
      out.push({
        node, compute: 'int8', fetch: [a, as, y],
        reference: (v) => ({
          ours: referenceMatMulIntegerToFloat(v.get(a)!, constant(b), v.get(as)!.data as Float32Array, constant(bs).data as Float32Array, az ? constant(az).toNumbers()[0] : 0, bz ? constant(bz).toNumbers()[0] : 0),
          ort: v.get(y)!.data as Float32Array,
        }),
      });
    } else if (node.opType === 'QuantizeLinear' && attrInt(node, 'block_size', 0) > 0 && !graph.initializers.has(x)) {
      const [, s, z] = node.inputs;
      out.push({
        node, compute: 'codes', fetch: [x, s, z, y],
        reference: (v) => {
          const xs = v.get(x)!;
          const block = attrInt(node, 'block_size', 0);
          const codes = v.get(y)!;
          const [lo, hi] = codes.dtype === DType.UINT8 ? [0, 255] : [-128, 127];
          return { ours: referenceQuantizeLinear(xs.data as Float32Array, v.get(s)!.data as Float32Array, v.get(z)!.data as ArrayLike<number>, block, lo, hi), ort: codes.data as ArrayLike<number> };
        },
      });
    } else if (node.opType === 'MatMul') {
      const dq = producers.get(node.inputs[1]);
      const codes = dq?.opType === 'DequantizeLinear' ? graph.initializers.get(dq.inputs[0]) : undefined;
      if (!dq || codes?.dtype !== DType.INT4 || attrInt(dq, 'axis', 1) !== 0) continue;
      out.push({
        node, compute: 'float', fetch: [x, y],
        reference: (v) => ({ ours: referenceInt4MatMul(dq, v.get(x)!.data as Float32Array, codes, constant(dq.inputs[1])), ort: v.get(y)!.data as Float32Array }),
      });
    }
  }
  return out;
}

/**
 * Runs the decoder file's graph on ORT (`sessionOptions`: the file's own session config) with every integer
 * layer's inputs and output fetched, recomputes each layer in TypeScript from ORT's inputs, and compares.
 * `feedsFor` builds the feeds from that session (its inputs are the decoder's).
 */
export async function compareLanguageModelLayers(graph: Graph, feedsFor: (session: ort.InferenceSession) => Record<string, ort.Tensor>, sessionOptions: ort.InferenceSession.SessionOptions): Promise<LmIntegerComparison> {
  const layers = probes(graph);
  const inputs = new Set(graph.inputs.map((i) => i.name));
  const fetch = [...new Set(layers.flatMap((p) => p.fetch))].filter((name) => !inputs.has(name));
  const declared = new Set(graph.outputs.map((o) => o.name));
  const producers = graph.producers();
  // Fetched values' dtypes: float activations and outputs, uint8 / int8 codes (from their zero point).
  const dtypeOf = (name: string): DType => {
    const init = graph.initializers.get(name);
    if (init) return init.dtype;
    const p = producers.get(name);
    if (p?.opType === 'QuantizeLinear') return graph.initializers.get(p.inputs[2])?.dtype ?? DType.UINT8;
    if (p?.opType === 'Expand' && graph.initializers.get(p.inputs[0])?.dtype === DType.UINT8) return DType.UINT8;
    return DType.FLOAT;
  };
  const probed = Object.assign(Object.create(Object.getPrototypeOf(graph)), graph) as Graph;
  probed.outputs = [...graph.outputs, ...fetch.filter((w) => !declared.has(w)).map((name) => ({ name, dtype: dtypeOf(name), shape: UNKNOWN_SHAPE }))];
  const session = await ort.InferenceSession.create(encodeModel(probed), sessionOptions);
  let feeds: Record<string, ort.Tensor>;
  let fetched: ort.InferenceSession.OnnxValueMapType;
  try {
    feeds = feedsFor(session);
    fetched = await session.run(feeds, fetch);
  } finally {
    await session.release();
  }
  const values = new Map<string, Tensor>();
  for (const [k, t] of Object.entries(fetched)) values.set(k, fromOrtTensor(t as ort.Tensor));
  for (const [k, t] of Object.entries(feeds)) values.set(k, fromOrtTensor(t));
  const results = layers.map((p): LmLayerComparison => {
    const { ours, ort: theirs } = p.reference(values);
    let maxDiff = 0;
    let largest = 0;
    for (let i = 0; i < ours.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(ours[i] - theirs[i]));
      largest = Math.max(largest, Math.abs(ours[i]));
    }
    const relativeDiff = p.compute === 'codes' ? maxDiff : maxDiff / Math.max(largest, 1e-12);
    const bound = p.compute === 'codes' ? 1 : p.compute === 'int8' ? LM_LAYER_TOLERANCE.int8Compute : LM_LAYER_TOLERANCE.float;
    const sizeOk = ours.length === theirs.length;
    return { node: p.node.name, opType: p.node.opType, compute: p.compute, elements: ours.length, maxDiff, relativeDiff, passed: sizeOk && relativeDiff <= bound };
  });
  const firstMismatch = results.find((r) => !r.passed);
  return { layers: results, ...(firstMismatch ? { firstMismatch } : {}), passed: !firstMismatch };
}
