import { DType } from '../../ir/dtype.js';
import { Tensor } from '../../ir/tensor.js';
import { IntegerKernel } from './kernel.js';
import { channelIndexer, floatInput, zeroAt } from './values.js';

/**
 * Relu on codes is max(q, z): the code of a real 0 (exact for any positive scale). On an int32 accumulator
 * (z = 0) it is the fused activation of QLinearConv: max(acc, 0) before requantization, which the following
 * QuantizeLinear's saturation makes the same as clamping at z_out afterwards.
 */
export const integerRelu: IntegerKernel = (node, inputs) => {
  const x = inputs[0];
  if (x?.kind === 'quantized') {
    const channel = channelIndexer(x.dims, x.axis);
    return [{ ...x, codes: x.codes.map((q, i) => Math.max(q, zeroAt(x, channel(i)))) }];
  }
  const t = floatInput(node, inputs, 0);
  return [{ kind: 'tensor', tensor: new Tensor(DType.FLOAT, [...t.dims], (t.data as Float32Array).map((v) => Math.max(v, 0))) }];
};
