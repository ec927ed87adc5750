import { DType } from '../../ir/dtype.js';
import { Tensor } from '../../ir/tensor.js';
import { IntegerKernel } from './kernel.js';
import { channelIndexer, floatInput, scaleAt, tensorInput, zeroAt } from './values.js';

/**
 * Clip to a grid narrower than the storage type (e.g. 4-bit codes in uint8). With bounds of the codes' own type
 * (the exporter's form: QuantizeLinear -> Clip -> DequantizeLinear) it clamps the codes. With real bounds: on an
 * int32 accumulator they wait for the requantizing QuantizeLinear (clip then round equals round then clamp, round
 * being monotonic); on codes they must lie on the codes' grid; on floats they clamp.
 */
export const integerClip: IntegerKernel = (node, inputs) => {
  const x = inputs[0];
  const given = [1, 2].map((i) => (node.inputs[i] ? inputs[i] : undefined)).find((v) => v?.kind === 'tensor');
  const boundType = given?.kind === 'tensor' ? given.tensor.dtype : undefined;
  if (x?.kind === 'quantized' && (boundType === DType.UINT8 || boundType === DType.INT8)) {
    if (boundType !== x.type) throw new Error(`node '${node.name}' (Clip): bounds of type ${DType[boundType]} on ${DType[x.type]} codes`);
    const code = (i: number, fallback: number) => (node.inputs[i] ? Number((tensorInput(node, inputs, i, [boundType]).data as Uint8Array | Int8Array)[0]) : fallback);
    const [qlo, qhi] = [code(1, -Infinity), code(2, Infinity)];
    return [{ ...x, codes: x.codes.map((q) => Math.min(qhi, Math.max(qlo, q))) }];
  }
  const bound = (i: number, fallback: number) => (node.inputs[i] ? (tensorInput(node, inputs, i, [DType.FLOAT]).data as Float32Array)[0] : fallback);
  const [lo, hi] = [bound(1, -Infinity), bound(2, Infinity)];
  if (x?.kind !== 'quantized') {
    const t = floatInput(node, inputs, 0);
    return [{ kind: 'tensor', tensor: new Tensor(DType.FLOAT, [...t.dims], (t.data as Float32Array).map((v) => Math.min(hi, Math.max(lo, v)))) }];
  }
  if (x.type === DType.INT32) {
    const [plo, phi] = x.clampReal ?? [-Infinity, Infinity];
    return [{ ...x, clampReal: [Math.max(lo, plo), Math.min(hi, phi)] }];
  }
  const channel = channelIndexer(x.dims, x.axis);
  const onGrid = (v: number, c: number) => {
    if (!Number.isFinite(v)) return v;
    const steps = v / scaleAt(x, c);
    if (Math.abs(steps - Math.round(steps)) > 1e-4) throw new Error(`node '${node.name}' (Clip): the integer evaluator needs clip bounds on the codes' grid, got ${v} for scale ${scaleAt(x, c)}`);
    return Math.round(steps) + zeroAt(x, c);
  };
  const bounds = Array.from({ length: x.scale.length }, (_, c) => [onGrid(lo, c), onGrid(hi, c)]);
  return [{ ...x, codes: x.codes.map((q, i) => { const [l, h] = bounds[x.scale.length === 1 ? 0 : channel(i)]; return Math.min(h, Math.max(l, q)); }) }];
};
