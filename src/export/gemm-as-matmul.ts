/**
 * Gemm(A, B, C) as MatMul(A, B) [+ Add C] for the weight-fusing kernels: ORT's QDQ optimizer fuses
 * DequantizeLinear -> MatMul (not Gemm) into MatMulNBits, and MatMulNBits / MatMulIntegerToFloat replace a MatMul.
 * Transformers' Conv1D (GPT-2: torch.addmm on x.view(-1, C)) and an nn.Linear on 2-D rows export as Gemm.
 * Only the plain form maps exactly (ONNX Gemm: Y = alpha A' B' + beta C): transA = 0, alpha = beta = 1.
 */
import { attrFloat, attrInt, Node } from '../ir/graph.js';
import { Emitter } from './emitter.js';

/** Whether Gemm `node` is A x B' (+ C) with no scaling and an untransposed A. */
export function plainGemm(node: Node): boolean {
  return node.opType === 'Gemm' && attrInt(node, 'transA', 0) === 0 && attrFloat(node, 'alpha', 1) === 1 && attrFloat(node, 'beta', 1) === 1;
}

/**
 * Rewrites plain Gemm `node` in place into a MatMul of the same name (transB = 1: B read through a Transpose) and,
 * with a bias, an Add writing the Gemm's output; returns the MatMul.
 */
export function gemmAsMatMul(em: Emitter, node: Node): Node {
  if (!plainGemm(node)) throw new Error(`export: Gemm '${node.name}' has transA, alpha or beta; only a plain Gemm is a MatMul`);
  const [a, b, c] = node.inputs;
  const weight = attrInt(node, 'transB', 0) === 1 ? em.node('Transpose', [b], { perm: [1, 0] }, undefined, `${node.name}/weight_transposed`) : b;
  const output = node.outputs[0];
  node.opType = 'MatMul';
  node.attrs = {};
  node.inputs = [a, weight];
  if (c) {
    node.outputs = [em.unique(`${output}/product`)];
    em.graph.types.set(node.outputs[0], em.graph.typeOf(output));
    em.node('Add', [node.outputs[0], c], {}, output, `${node.name}/bias`);
  }
  return node;
}
