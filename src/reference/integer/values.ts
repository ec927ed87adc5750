import { DType } from '../../ir/dtype.js';
import type { Node } from '../../ir/graph.js';
import { Tensor } from '../../ir/tensor.js';

/**
 * A value of the integer evaluator. Float values exist only before the first QuantizeLinear (the
 * normalisation) and at float outputs. Everything else is a `Quantized` value: integer codes q with
 * real value (q - zeroPoint) * scale, which is what a DequantizeLinear output means; the evaluator never
 * materialises those reals, it keeps the codes and the (scale, zero point) next to them, as an integer engine
 * does.
 */
export type IntValue = TensorValue | Quantized;

/** A plain tensor: float activations before the first QuantizeLinear, and initializers (codes, scales, shapes). */
export interface TensorValue {
  kind: 'tensor';
  tensor: Tensor;
}

export interface Quantized {
  kind: 'quantized';
  dims: number[];
  /** Codes (uint8 / int8 / int4 storage, or int32 accumulators) widened to int32. */
  codes: Int32Array;
  /** One scale, or one per index of `axis`. Float64: products of float32 scales are exact in it. */
  scale: Float64Array;
  zeroPoint: Int32Array;
  axis?: number;
  /** Storage type of the codes: UINT8 / INT8 for activations and weights, INT32 for accumulators and biases. */
  type: DType;
  /**
   * The float32 scale ORT uses when it dequantizes this value to float (for accumulators: fround(s_x * s_w)):
   * kept apart from `scale` so that requantization uses the exact product, as gemmlowp does.
   */
  floatScale?: Float32Array;
  /** Real bounds of a Clip on an int32 accumulator, applied by the QuantizeLinear that requantizes it. */
  clampReal?: [number, number];
}

export const TYPE_RANGE: Partial<Record<DType, [number, number]>> = {
  [DType.UINT8]: [0, 255],
  [DType.INT8]: [-128, 127],
  [DType.UINT4]: [0, 15],
  [DType.INT4]: [-8, 7],
  [DType.INT32]: [-(2 ** 31), 2 ** 31 - 1],
};

export function typeRange(type: DType, node: Node): [number, number] {
  const range = TYPE_RANGE[type];
  if (!range) throw new Error(`node '${node.name}' (${node.opType}): quantized type ${DType[type] ?? type} is not supported; valid: uint8, int8, uint4, int4, int32`);
  return range;
}

export function describe(v: IntValue | undefined): string {
  if (!v) return 'missing';
  return v.kind === 'tensor' ? `a plain ${DType[v.tensor.dtype]} tensor [${v.tensor.dims}]` : `${DType[v.type]} codes [${v.dims}]`;
}

export function quantizedInput(node: Node, inputs: (IntValue | undefined)[], index: number): Quantized {
  const v = inputs[index];
  if (!v || v.kind !== 'quantized') {
    throw new Error(
      `node '${node.name}' (${node.opType}): input ${index} ('${node.inputs[index]}') is ${describe(v)}; the integer evaluator needs it ` +
        `quantized (the output of a DequantizeLinear): only QDQ layers run in integers`,
    );
  }
  return v;
}

/**
 * A quantized input with one scale and zero point. An int32 accumulator with a scale per channel reaches an op
 * only where the layer before it has no QuantizeLinear on its output (ORT runs that layer in float).
 */
export function perTensorInput(node: Node, inputs: (IntValue | undefined)[], index: number): Quantized {
  const q = quantizedInput(node, inputs, index);
  if (!isPerTensor(q)) {
    throw new Error(
      `node '${node.name}' (${node.opType}): input ${index} ('${node.inputs[index]}') is an int32 accumulator with ${q.scale.length} scales (the layer that ` +
        `writes it has no QuantizeLinear on its output); the integer evaluator needs it quantized per tensor`,
    );
  }
  return q;
}

/** A plain tensor input (of one of `dtypes` when given). */
export function tensorInput(node: Node, inputs: (IntValue | undefined)[], index: number, dtypes?: DType[]): Tensor {
  const v = inputs[index];
  if (!v || v.kind !== 'tensor' || (dtypes && !dtypes.includes(v.tensor.dtype))) {
    const want = dtypes ? dtypes.map((d) => DType[d]).join(' / ') : 'plain';
    throw new Error(`node '${node.name}' (${node.opType}): input ${index} ('${node.inputs[index]}') is ${describe(v)}, expected a ${want} tensor`);
  }
  return v.tensor;
}

export const floatInput = (node: Node, inputs: (IntValue | undefined)[], index: number): Tensor => tensorInput(node, inputs, index, [DType.FLOAT]);

/** Scale / zero point of channel c (per-tensor values ignore c). */
export const scaleAt = (q: Quantized, c: number): number => q.scale[q.scale.length === 1 ? 0 : c];
export const zeroAt = (q: Quantized, c: number): number => q.zeroPoint[q.zeroPoint.length === 1 ? 0 : c];

/** The same codes, quantization and type under new dims (for ops that only move codes). */
export function withCodes(q: Quantized, dims: number[], codes: Int32Array): Quantized {
  return { ...q, dims, codes };
}

export function isPerTensor(q: Quantized): boolean {
  return q.scale.length === 1 && q.zeroPoint.length === 1;
}

/** Index of the channel of flat element i along `axis` of dims. */
export function channelIndexer(dims: number[], axis: number | undefined): (i: number) => number {
  if (axis === undefined) return () => 0;
  const a = axis < 0 ? axis + dims.length : axis;
  const inner = dims.slice(a + 1).reduce((p, d) => p * d, 1);
  const count = dims[a];
  return (i) => Math.floor(i / inner) % count;
}

/** Dequantizes to float32 as ORT does: (q - z) * s with s the float32 scale. */
export function dequantize(q: Quantized): Tensor {
  const channel = channelIndexer(q.dims, q.axis);
  const scales = q.floatScale ?? Float32Array.from(q.scale);
  const out = new Float32Array(q.codes.length);
  for (let i = 0; i < out.length; i++) {
    const c = channel(i);
    out[i] = Math.fround(Math.fround(q.codes[i] - q.zeroPoint[q.zeroPoint.length === 1 ? 0 : c]) * scales[scales.length === 1 ? 0 : c]);
  }
  return new Tensor(DType.FLOAT, [...q.dims], out);
}
