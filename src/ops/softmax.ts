import type { GraphBuilder } from '../ir/builder';
import { attrInt, Node } from '../ir/graph';
import { inferSame } from './elementwise';
import { defineOps, OpDef, VjpContext } from './registry';
import { normalizeAxis } from './shape-utils';

/**
 * The axes one softmax normalizes over. Opset 13 changed the semantics: from 13 on, one axis (default -1);
 * before, the input is coerced to 2-D at `axis` (default 1), so every axis from `axis` on is normalized.
 */
export function softmaxAxes(node: Node, b: GraphBuilder, rank: number): number[] {
  const opset = b.graph.opsets[''] ?? b.graph.opsets['ai.onnx'] ?? 17;
  if (opset >= 13) return [normalizeAxis(attrInt(node, 'axis', -1), rank, node)];
  const first = normalizeAxis(attrInt(node, 'axis', 1), rank, node);
  return Array.from({ length: rank - first }, (_, i) => first + i);
}

function softmaxVjp(c: VjpContext) {
  const { b } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const y = c.output(0);
  const axes = softmaxAxes(c.node, b, b.rank(y));
  // Softmax: dx = y * (dy - sum(dy * y)); LogSoftmax: dx = dy - exp(y) * sum(dy) (sums over the axes).
  if (c.node.opType === 'Softmax') return [b.mul(y, b.sub(dy, b.reduceSum(b.mul(dy, y), axes)))];
  return [b.sub(dy, b.mul(b.exp(y), b.reduceSum(dy, axes)))];
}

export const softmaxOps: OpDef[] = [
  { opType: 'Softmax', domain: '', infer: inferSame, vjp: softmaxVjp },
  { opType: 'LogSoftmax', domain: '', infer: inferSame, vjp: softmaxVjp },
];

defineOps(softmaxOps);
