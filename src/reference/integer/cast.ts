import { DType } from '../../ir/dtype.js';
import { attrInt } from '../../ir/graph.js';
import { Tensor } from '../../ir/tensor.js';
import { IntegerKernel } from './kernel.js';
import { tensorInput } from './values.js';

/** Signed INT4 (ONNX: two's complement nibbles, low nibble first) as integers. */
export function unpackInt4(data: Uint8Array, count: number): Int32Array {
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const nibble = (data[i >> 1] >> (4 * (i & 1))) & 0xf;
    out[i] = nibble >= 8 ? nibble - 16 : nibble;
  }
  return out;
}

/**
 * Cast of stored codes between integer types, as the int4 format widens its INT4 weights to int8 for ORT's 8-bit
 * kernels (export/weight-storage.ts). Values must fit the target type: a widening cast, not a saturating one.
 */
export const integerCast: IntegerKernel = (node, inputs) => {
  const x = tensorInput(node, inputs, 0, [DType.INT4, DType.INT8, DType.UINT8, DType.INT32]);
  const to = attrInt(node, 'to', 0);
  if (to !== DType.INT8 && to !== DType.INT32) throw new Error(`node '${node.name}' (Cast): the integer evaluator casts stored codes to int8 or int32, not to type ${to}`);
  const values = x.dtype === DType.INT4 ? unpackInt4(x.data as Uint8Array, x.size) : Int32Array.from(x.data as ArrayLike<number>);
  const [lo, hi] = to === DType.INT8 ? [-128, 127] : [-(2 ** 31), 2 ** 31 - 1];
  const outside = values.findIndex((v) => v < lo || v > hi);
  if (outside >= 0) throw new Error(`node '${node.name}' (Cast): element ${outside} (${values[outside]}) does not fit type ${to}`);
  return [{ kind: 'tensor', tensor: new Tensor(to, x.dims, to === DType.INT8 ? Int8Array.from(values) : values) }];
};
