import { DType, dtypeName } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { constantCones, findLayers } from './layers.js';

/** What an initializer is for, as the size summary groups them. Biases count as weights. */
export const TENSOR_KINDS = ['weights', 'scales', 'embeddings', 'norms', 'other'] as const;
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
 * Inputs that carry quantization parameters, by op (ONNX QuantizeLinear / DequantizeLinear; ORT contrib ops per
 * docs/ContribOperators.md: QLinearConv x_scale, x_zp, w_scale, w_zp, y_scale, y_zp; QGemm a/b/y scale and zero
 * point; MatMulNBits scales, zero_points; GatherBlockQuantized scales, zero_points).
 */
const SCALE_INPUTS: Record<string, number[]> = {
  QuantizeLinear: [1, 2],
  DequantizeLinear: [1, 2],
  QLinearConv: [1, 2, 4, 5, 6, 7],
  QLinearMatMul: [1, 2, 4, 5, 6, 7],
  QGemm: [1, 2, 4, 5, 7, 8],
  QLinearAdd: [1, 2, 4, 5, 6, 7],
  MatMulNBits: [2, 3],
  GatherBlockQuantized: [2, 3],
  MatMulInteger: [2, 3],
  ConvInteger: [2, 3],
  MatMulIntegerToFloat: [2, 3, 4, 5],
  DynamicQuantizeMatMul: [2, 3],
  // qatkit's own fake-quant ops (training graphs): scale and zero point inputs.
  FakeQuantize: [1, 2],
  RangeObserver: [0, 1],
};

const NORM_OPS = new Set(['LayerNormalization', 'BatchNormalization', 'InstanceNormalization', 'GroupNormalization', 'RMSNormalization', 'SimplifiedLayerNormalization', 'SkipLayerNormalization', 'SkipSimplifiedLayerNormalization', 'BatchNormTrain', 'LayerNormTrain']);

/**
 * Every initializer with its kind and stored bytes. The kind follows how the graph uses the tensor: read as a
 * scale or zero point (or computed only into one) -> scales; the table of an embedding Gather -> embeddings;
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
    kinds.set(primary, kindOf(layer.node.opType));
  }
  for (const n of graph.nodes) if (NORM_OPS.has(n.opType)) for (const i of n.inputs.slice(1)) mark(i, 'norms');
  for (const n of graph.nodes) for (const i of SCALE_INPUTS[n.opType] ?? []) mark(n.inputs[i], 'scales');
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
