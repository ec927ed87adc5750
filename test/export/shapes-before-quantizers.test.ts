// readShapesBeforeQuantizers: shape-only readers of an activation quantizer (Shape, and views read only for
// their shape) read the quantizer's input, so the float fake-quant chain a replaced Linear leaves is pruned.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import { Graph } from '../../src/ir/graph';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Tensor } from '../../src/ir/tensor';
import { Session } from '../../src/runtime/session';
import { toOrtTensor } from '../../src/runtime/tensors';
import { pruneDead } from '../../src/export/emitter';
import { readShapesBeforeQuantizers } from '../../src/export/shapes-before-quantizers';

/** x [N, 3, 4] -> "quantizer" q (Neg stands in: any shape-preserving node) read for its shape in three ways. */
function build(realReader: boolean) {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, ['N', 3, 4]);
  const q = b.neg(x);
  const quantizer = g.producers().get(q)!.name;
  const direct = b.op1('Shape', [q]);
  const transposed = b.op1('Shape', [b.transpose(q, [2, 0, 1])]);
  const viewed = b.op1('Shape', [b.op1('Reshape', [b.transpose(q, [0, 2, 1]), b.ints([-1, 12])])]);
  const y = b.op1('Reshape', [b.relu(x), direct]);
  for (const v of [y, direct, transposed, viewed]) b.output(v);
  if (realReader) b.output(b.add(q, b.scalarLike(1, q)));
  return { g, quantizer };
}

async function outputsOf(g: Graph) {
  const s = await Session.create(g, { threads: 1 });
  const x = Tensor.float([2, 3, 4], Array.from({ length: 24 }, (_, i) => i - 11.5));
  const out = await s.run({ x: toOrtTensor(x) });
  await s.release();
  return g.outputs.map((o) => ({ dims: [...out[o.name].dims], data: Array.from(out[o.name].data as ArrayLike<number | bigint>, Number) }));
}

test('a quantizer read only for its shape is pruned; the shapes and values stay the same', async () => {
  const { g, quantizer } = build(false);
  const before = await outputsOf(g);
  readShapesBeforeQuantizers(g, new Set([quantizer]));
  pruneDead(g);
  assert.equal(g.nodes.some((n) => n.name === quantizer), false, 'the quantizer has no reader left');
  // Shape(Transpose(y)) is Gather(Shape(y), perm): the transpose read only for its shape copies nothing.
  assert.equal(g.nodes.filter((n) => n.opType === 'Transpose').length, 1, g.nodes.map((n) => n.opType).join());
  assert.deepEqual(await outputsOf(g), before);
});

test('a quantizer with a real reader keeps it and loses only its shape readers', async () => {
  const { g, quantizer } = build(true);
  const before = await outputsOf(g);
  readShapesBeforeQuantizers(g, new Set([quantizer]));
  pruneDead(g);
  const q = g.nodes.find((n) => n.name === quantizer)!;
  const readers = g.nodes.filter((n) => n.inputs.includes(q.outputs[0]));
  assert.deepEqual(readers.map((n) => n.opType), ['Add']);
  assert.deepEqual(await outputsOf(g), before);
});
