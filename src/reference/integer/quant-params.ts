import { DType } from '../../ir/dtype.js';
import type { Node } from '../../ir/graph.js';
import { IntValue, tensorInput } from './values.js';

const CODE_TYPES = [DType.UINT8, DType.INT8, DType.INT32];

/** (scale, zero point, storage type, axis) of a QuantizeLinear / DequantizeLinear from its initializer inputs. */
export function quantParams(node: Node, inputs: (IntValue | undefined)[], scaleIndex: number, zeroIndex: number, axis: number) {
  const scaleT = tensorInput(node, inputs, scaleIndex, [DType.FLOAT]);
  const scale = Float64Array.from(scaleT.data as Float32Array);
  const zeroT = inputs[zeroIndex] ? tensorInput(node, inputs, zeroIndex, CODE_TYPES) : undefined;
  const zeroPoint = zeroT ? Int32Array.from(zeroT.data as ArrayLike<number>) : new Int32Array(scale.length);
  if (zeroPoint.length !== scale.length) throw new Error(`node '${node.name}' (${node.opType}): ${scale.length} scales but ${zeroPoint.length} zero points`);
  // ONNX: without a zero point the codes are uint8.
  const type = zeroT?.dtype ?? DType.UINT8;
  return { scale, floatScale: scaleT.data as Float32Array, zeroPoint, type, axis: scale.length > 1 ? axis : undefined };
}
