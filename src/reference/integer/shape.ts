import { DType } from '../../ir/dtype.js';
import { attrInt, Node } from '../../ir/graph.js';
import { Tensor } from '../../ir/tensor.js';
import { IntegerKernel } from './kernel.js';
import { IntValue, perTensorInput, tensorInput, withCodes } from './values.js';

// Ops that only move codes: Identity, Flatten, Reshape (per-tensor quantization, so no axis to follow).

function moved(node: Node, inputs: (IntValue | undefined)[], dims: number[]): IntValue[] {
  const x = inputs[0]!;
  if (x.kind === 'tensor') return [{ kind: 'tensor', tensor: new Tensor(x.tensor.dtype, dims, x.tensor.data) }];
  // Per-channel codes (a layer's unrequantized accumulator, which ORT runs in float) have no axis to follow here.
  const q = perTensorInput(node, inputs, 0);
  return [withCodes(q, dims, q.codes)];
}

function dimsOf(node: Node, inputs: (IntValue | undefined)[]): number[] {
  const x = inputs[0];
  if (!x) throw new Error(`node '${node.name}' (${node.opType}) is missing input 0`);
  return x.kind === 'tensor' ? x.tensor.dims : x.dims;
}

export const integerIdentity: IntegerKernel = (node, inputs) => {
  const x = inputs[0];
  if (!x) throw new Error(`node '${node.name}' (Identity) is missing input 0`);
  return [x];
};

export const integerFlatten: IntegerKernel = (node, inputs) => {
  const dims = dimsOf(node, inputs);
  const raw = attrInt(node, 'axis', 1);
  const axis = raw < 0 ? raw + dims.length : raw;
  const prod = (d: number[]) => d.reduce((p, q) => p * q, 1);
  return moved(node, inputs, [prod(dims.slice(0, axis)), prod(dims.slice(axis))]);
};

export const integerReshape: IntegerKernel = (node, inputs) => {
  const dims = dimsOf(node, inputs);
  const shape = tensorInput(node, inputs, 1, [DType.INT64]).toNumbers();
  const total = dims.reduce((p, q) => p * q, 1);
  const out = shape.map((d, i) => (d === 0 && attrInt(node, 'allowzero', 0) === 0 ? dims[i] : d));
  const known = out.filter((d) => d !== -1).reduce((p, q) => p * q, 1);
  const resolved = out.map((d) => (d === -1 ? total / known : d));
  if (resolved.reduce((p, q) => p * q, 1) !== total) throw new Error(`node '${node.name}' (Reshape): cannot reshape [${dims}] to [${shape}]`);
  return moved(node, inputs, resolved);
};
