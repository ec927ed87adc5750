import { DType } from '../../ir/dtype.js';
import type { Node } from '../../ir/graph.js';
import { Tensor } from '../../ir/tensor.js';
import { stridesOf } from '../kernel.js';
import { IntegerKernel } from './kernel.js';
import { floatInput, IntValue } from './values.js';

/**
 * Float32 binary ops with numpy broadcasting, for the float part of a QDQ model (the input normalisation
 * before the first QuantizeLinear): each result is rounded to float32 as ORT's float kernels round it, so the
 * first QuantizeLinear sees the same floats as in ORT.
 */
export function floatBinary(node: Node, inputs: (IntValue | undefined)[], f: (a: number, b: number) => number): IntValue[] {
  const [a, b] = [floatInput(node, inputs, 0), floatInput(node, inputs, 1)];
  const rank = Math.max(a.dims.length, b.dims.length);
  const pad = (d: number[]) => [...Array(rank - d.length).fill(1), ...d];
  const [da, db] = [pad(a.dims), pad(b.dims)];
  const dims = da.map((d, i) => {
    if (d !== db[i] && d !== 1 && db[i] !== 1) throw new Error(`node '${node.name}' (${node.opType}): shapes [${a.dims}] and [${b.dims}] do not broadcast`);
    return Math.max(d, db[i]);
  });
  const [sa, sb, so] = [stridesOf(da), stridesOf(db), stridesOf(dims)];
  const [va, vb] = [a.data as Float32Array, b.data as Float32Array];
  const out = new Float32Array(dims.reduce((p, q) => p * q, 1));
  for (let i = 0; i < out.length; i++) {
    let [ia, ib] = [0, 0];
    for (let ax = 0; ax < rank; ax++) {
      const pos = Math.floor(i / so[ax]) % dims[ax];
      if (da[ax] !== 1) ia += pos * sa[ax];
      if (db[ax] !== 1) ib += pos * sb[ax];
    }
    out[i] = Math.fround(f(va[ia], vb[ib]));
  }
  return [{ kind: 'tensor', tensor: new Tensor(DType.FLOAT, dims, out) }];
}

export const floatSub: IntegerKernel = (node, inputs) => floatBinary(node, inputs, (x, y) => x - y);
export const floatMul: IntegerKernel = (node, inputs) => floatBinary(node, inputs, (x, y) => x * y);
export const floatDiv: IntegerKernel = (node, inputs) => floatBinary(node, inputs, (x, y) => x / y);
