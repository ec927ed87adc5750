import { DType } from '../../ir/dtype.js';
import { attrInt } from '../../ir/graph.js';
import { IntegerKernel } from './kernel.js';
import { quantParams } from './quant-params.js';
import { Quantized, tensorInput } from './values.js';

/**
 * DequantizeLinear does no arithmetic here: it attaches its (scale, zero point) to the codes, and the
 * consumer (Conv, Gemm, MaxPool, a requantizing QuantizeLinear) works on the codes. Reals are formed only
 * where a graph output needs them (the evaluator dequantizes those at the end).
 */
export const dequantizeLinear: IntegerKernel = (node, inputs) => {
  const x = inputs[0];
  const params = quantParams(node, inputs, 1, 2, attrInt(node, 'axis', 1));
  let dims: number[];
  let codes: Int32Array;
  let type: DType;
  if (x?.kind === 'quantized') {
    [dims, codes, type] = [x.dims, x.codes, x.type];
  } else {
    const t = tensorInput(node, inputs, 0, [DType.UINT8, DType.INT8, DType.INT32]);
    [dims, codes, type] = [t.dims, Int32Array.from(t.data as ArrayLike<number>), t.dtype];
  }
  const axis = params.axis === undefined ? undefined : params.axis < 0 ? params.axis + dims.length : params.axis;
  if (axis !== undefined && dims[axis] !== params.scale.length) {
    throw new Error(`node '${node.name}' (DequantizeLinear): ${params.scale.length} scales for axis ${axis} of [${dims}]`);
  }
  const out: Quantized = { kind: 'quantized', dims: [...dims], codes, scale: params.scale, floatScale: params.floatScale, zeroPoint: params.zeroPoint, axis, type };
  return [out];
};
