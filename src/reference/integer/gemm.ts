import { attrInt, Node } from '../../ir/graph.js';
import { checkInt32, int32Bias } from './bias.js';
import { accumulator } from './conv.js';
import { IntegerKernel } from './kernel.js';
import { IntValue, perTensorInput, quantizedInput, scaleAt, zeroAt } from './values.js';

/**
 * Y[i, j] = bias[j] + sum_k (A[i, k] - z_a) * (B[k, j] - z_b[j]) in integers, the int32 accumulator of ORT's
 * QGemm / QLinearMatMul / MatMulInteger, with per-column scale s_a * s_b[j]. B is the weight: per tensor, or per
 * output column (axis 0 of a transposed [N, K] B, axis 1 of a [K, N] B).
 */
function integerMatMul(node: Node, inputs: (IntValue | undefined)[], transA: boolean, transB: boolean, biasIndex: number): IntValue[] {
  const a = perTensorInput(node, inputs, 0);
  const b = quantizedInput(node, inputs, 1);
  if (a.dims.length !== 2 || b.dims.length !== 2) throw new Error(`node '${node.name}' (${node.opType}): the integer evaluator runs 2-D products; A [${a.dims}], B [${b.dims}]`);
  const [rows, k] = transA ? [a.dims[1], a.dims[0]] : a.dims;
  const [kb, cols] = transB ? [b.dims[1], b.dims[0]] : b.dims;
  if (k !== kb) throw new Error(`node '${node.name}' (${node.opType}): A [${a.dims}] and B [${b.dims}] do not multiply (transA=${+transA}, transB=${+transB})`);
  const columnAxis = transB ? 0 : 1;
  if (b.axis !== undefined && b.axis !== columnAxis) throw new Error(`node '${node.name}' (${node.opType}): B must be quantized per tensor or per output column (axis ${columnAxis}), got axis ${b.axis}`);
  const accScale = (j: number) => scaleAt(a, 0) * scaleAt(b, j);
  const bias = int32Bias(node, inputs, biasIndex, cols, accScale);
  const za = zeroAt(a, 0);
  // Row-major [rows, k] and [cols, k] copies with zero points subtracted, so the inner loop is contiguous.
  const as = new Int32Array(rows * k);
  const bs = new Int32Array(cols * k);
  for (let i = 0; i < rows; i++) for (let t = 0; t < k; t++) as[i * k + t] = a.codes[transA ? t * rows + i : i * k + t] - za;
  for (let j = 0; j < cols; j++) for (let t = 0; t < k; t++) bs[j * k + t] = b.codes[transB ? j * k + t : t * cols + j] - zeroAt(b, j);
  const acc = new Int32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      let sum = bias ? bias[j] : 0;
      for (let t = 0; t < k; t++) sum += as[i * k + t] * bs[j * k + t];
      acc[i * cols + j] = checkInt32(node, sum);
    }
  }
  return [accumulator([rows, cols], acc, cols, accScale)];
}

export const integerGemm: IntegerKernel = (node, inputs) => {
  if (attrInt(node, 'alpha', 1) !== 1 || attrInt(node, 'beta', 1) !== 1) throw new Error(`node '${node.name}' (Gemm): alpha and beta must be 1 for integer evaluation`);
  return integerMatMul(node, inputs, attrInt(node, 'transA', 0) === 1, attrInt(node, 'transB', 0) === 1, 2);
};

export const integerMatMulKernel: IntegerKernel = (node, inputs) => integerMatMul(node, inputs, false, false, 99);
