import * as ort from './ort.js';
import { DType, dtypeFromOrt, ortTypeOf } from '../ir/dtype.js';
import { Tensor } from '../ir/tensor.js';

export function toOrtTensor(t: Tensor): ort.Tensor {
  const type = ortTypeOf[t.dtype];
  if (!type) throw new Error(`tensor type ${t.dtype} cannot be passed to ONNX Runtime`);
  if (t.dtype === DType.BOOL) return new ort.Tensor('bool', t.data as Uint8Array, t.dims);
  return new ort.Tensor(type as any, t.data as any, t.dims);
}

export function fromOrtTensor(t: ort.Tensor): Tensor {
  const dtype = dtypeFromOrt(t.type);
  return new Tensor(dtype, [...t.dims], t.data as any);
}
