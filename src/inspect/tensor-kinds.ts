import { DType, dtypeName } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { constantCones, findLayers } from './layers.js';

/** What an initializer is for, as the size summary groups them. Biases count as weights. */
export const TENSOR_KINDS = ['weights', 'scales', 'zero_points', 'embeddings', 'norms', 'other'] as const;
export type TensorKind = (typeof TENSOR_KINDS)[number];

export interface TensorRow {
  name: string;
  kind: TensorKind;
  dtype: string;
  dims: number[];
  bytes: number;
}

const BYTES: Partial<Record<DType, number>> = {
  [DType.FLOAT]: 4, [DType.UINT8]: 1, [DType.INT8]: 1, [DType.UINT16]: 2, [DType.INT16]: 2, [DType.INT32]: 4,
  [DType.INT64]: 8, [DType.BOOL]: 1, [DType.FLOAT16]: 2, [DType.DOUBLE]: 8, [DType.UINT32]: 4, [DType.UINT64]: 8,
};

/** Bytes of a tensor's data as an ONNX file stores it (INT4 / UINT4: two elements per byte, ONNX IR spec). */
export function tensorBytes(t: Tensor): number {
  if (t.dtype === DType.INT4 || t.dtype === DType.UINT4) return Math.ceil(t.size / 2);
  if (t.dtype === DType.STRING) return 0;
  return t.size * (BYTES[t.dtype] ?? 4);
}

/**
 * Inputs that carry quantization parameters, by op: scales and zero points (ONNX QuantizeLinear /
 * DequantizeLinear; ORT contrib ops per docs/ContribOperators.md: QLinearConv / QLinearMatMul x_scale 1, x_zp 2,
 * w_scale 4, w_zp 5, y_scale 6, y_zp 7; QGemm a 1/2, b 4/5, y 7/8; QLinearAdd A 1/2, B 4/5, C 6/7; MatMulNBits and
 * GatherBlockQuantized scales 2, zero_points 3; MatMulInteger / ConvInteger zero points 2, 3; MatMulIntegerToFloat
 * a_scale 2, b_scale 3, a_zp 4, b_zp 5; DynamicQuantizeMatMul b_scale 2, b_zp 3).
 */
const QUANT_INPUTS: Record<string, { scales: number[]; zeroPoints: number[] }> = {
  QuantizeLinear: { scales: [1], zeroPoints: [2] },
  DequantizeLinear: { scales: [1], zeroPoints: [2] },
  QLinearConv: { scales: [1, 4, 6], zeroPoints: [2, 5, 7] },
  QLinearMatMul: { scales: [1, 4, 6], zeroPoints: [2, 5, 7] },
  QGemm: { scales: [1, 4, 7], zeroPoints: [2, 5, 8] },
  QLinearAdd: { scales: [1, 4, 6], zeroPoints: [2, 5, 7] },
  MatMulNBits: { scales: [2], zeroPoints: [3] },
  GatherBlockQuantized: { scales: [2], zeroPoints: [3] },
  MatMulInteger: { scales: [], zeroPoints: [2, 3] },
  ConvInteger: { scales: [], zeroPoints: [2, 3] },
  MatMulIntegerToFloat: { scales: [2, 3], zeroPoints: [4, 5] },
  DynamicQuantizeMatMul: { scales: [2], zeroPoints: [3] },
  // qatkit's own fake-quant ops (training graphs): scale and zero point inputs; an observer's min/max give the scale.
  FakeQuantize: { scales: [1], zeroPoints: [2] },
  RangeObserver: { scales: [0, 1], zeroPoints: [] },
};

const NORM_OPS = new Set(['LayerNormalization', 'BatchNormalization', 'InstanceNormalization', 'GroupNormalization', 'RMSNormalization', 'SimplifiedLayerNormalization', 'SkipLayerNormalization', 'SkipSimplifiedLayerNormalization', 'BatchNormTrain', 'LayerNormTrain']);

/**
 * Every initializer with its kind and stored bytes. The kind follows how the graph uses the tensor: read as a
 * scale (or computed only into one) -> scales, as a zero point -> zero_points; the table of an embedding Gather -> embeddings;
 * a normalisation's scale, shift or statistics -> norms; anything a Conv / Gemm / MatMul weight or bias is
 * computed from -> weights; the rest (normalisation constants of the input, shape constants) -> other.
 */
export function tensorKinds(graph: Graph): TensorRow[] {
  const kinds = new Map<string, TensorKind>();
  const cones = constantCones(graph);
  const mark = (value: string | undefined, kind: TensorKind) => {
    for (const init of (value && cones.get(value)) || []) if (!kinds.has(init)) kinds.set(init, kind);
  };
  const layers = findLayers(graph);
  const kindOf = (opType: string): TensorKind => (opType === 'Gather' || opType === 'GatherBlockQuantized' ? 'embeddings' : 'weights');
  // The largest tensor a layer's weight comes from is its weight (codes); a minmax scale computed from it, or a
  // folded weight's BN statistics, must not claim it first.
  for (const layer of layers) {
    const primary = layer.weightInitializers.reduce((a, b) => ((graph.initializers.get(b)?.size ?? 0) > (graph.initializers.get(a)?.size ?? 0) ? b : a));
    // A tied table (embedding Gather and LM head) stays an embedding.
    if (kinds.get(primary) !== 'embeddings') kinds.set(primary, kindOf(layer.node.opType));
  }
  for (const n of graph.nodes) if (NORM_OPS.has(n.opType)) for (const i of n.inputs.slice(1)) mark(i, 'norms');
  for (const n of graph.nodes) for (const i of QUANT_INPUTS[n.opType]?.zeroPoints ?? []) mark(n.inputs[i], 'zero_points');
  for (const n of graph.nodes) for (const i of QUANT_INPUTS[n.opType]?.scales ?? []) mark(n.inputs[i], 'scales');
  for (const layer of layers) for (const init of layer.weightInitializers) if (!kinds.has(init)) kinds.set(init, isNormName(init) ? 'norms' : kindOf(layer.node.opType));
  return [...graph.initializers].map(([name, t]) => ({
    name,
    kind: kinds.get(name) ?? (isNormName(name) ? 'norms' : 'other'),
    dtype: dtypeName[t.dtype] ?? String(t.dtype),
    dims: [...t.dims],
    bytes: tensorBytes(t),
  }));
}

/** Norm parameters built from primitive ops (an RMSNorm as ReduceMean / Sqrt / Mul) are known only by their names. */
function isNormName(name: string): boolean {
  return /(^|[./_])(ln_?\w*|norm\w*|layernorm\w*|rmsnorm\w*|bn\d*)([./_]|$)/i.test(name) && !/weight\/(folded|int|uint|packed)/.test(name) && !/\/(scale|zero_point)$/.test(name);
}

/** Bytes per kind and the total. */
export function bytesByKind(rows: TensorRow[]): Record<TensorKind | 'total', number> {
  const out = Object.fromEntries([...TENSOR_KINDS, 'total'].map((k) => [k, 0])) as Record<TensorKind | 'total', number>;
  for (const r of rows) {
    out[r.kind] += r.bytes;
    out.total += r.bytes;
  }
  return out;
}
