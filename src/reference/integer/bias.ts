import { DType } from '../../ir/dtype.js';
import type { Node } from '../../ir/graph.js';
import { IntValue, quantizedInput, scaleAt } from './values.js';

/**
 * The int32 bias of a quantized Conv / Gemm, checked to be in the accumulator's units: zero point 0 and
 * scale fround(s_x * s_w[c]) (Jacob et al. 2018, section 2.4; ORT's QLinearConv / QGemm take it as is).
 */
export function int32Bias(node: Node, inputs: (IntValue | undefined)[], index: number, channels: number, accScale: (c: number) => number): Int32Array | undefined {
  if (!inputs[index]) return undefined;
  const b = quantizedInput(node, inputs, index);
  if (b.type !== DType.INT32 || b.codes.length !== channels) throw new Error(`node '${node.name}' (${node.opType}): bias must be ${channels} int32 codes, got ${DType[b.type]} [${b.dims}]`);
  for (let c = 0; c < channels; c++) {
    const want = Math.fround(accScale(c));
    const got = scaleAt(b, c);
    if (b.zeroPoint[b.zeroPoint.length === 1 ? 0 : c] !== 0 || Math.abs(got - want) > 1e-6 * Math.abs(want)) {
      throw new Error(`node '${node.name}' (${node.opType}): bias channel ${c} has scale ${got} (zero point ${b.zeroPoint[0]}); integer accumulation needs s_x * s_w = ${want}, zero point 0`);
    }
  }
  return b.codes;
}

const INT32_MAX = 2 ** 31 - 1;

/** Engines accumulate in int32: a sum outside it is an error of the model, named with its node. */
export function checkInt32(node: Node, acc: number): number {
  if (acc > INT32_MAX || acc < -INT32_MAX - 1) throw new Error(`node '${node.name}' (${node.opType}): int32 accumulator overflows (${acc})`);
  return acc;
}
