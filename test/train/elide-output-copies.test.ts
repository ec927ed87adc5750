import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import '../../src/ops';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { Session } from '../../src/runtime/session';
import { elideOutputCopies } from '../../src/train/elide-output-copies';

/** x, p inputs; outputs: `p/next` (a copy of a computed value also read downstream), `q/next` (a second name
 * for the same value: must keep its copy), `x/next` (a copy of a graph input: kept), `y` (reads the value). */
function graphWithCopies(): Graph {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, [2, 3]);
  const p = b.input('p', DType.FLOAT, [2, 3]);
  const updated = b.add(x, p);
  b.op1('Identity', [updated], {}, { outputs: ['p/next'] });
  b.op1('Identity', [updated], {}, { outputs: ['q/next'] });
  b.op1('Identity', [x], {}, { outputs: ['x/next'] });
  b.op1('Mul', [updated, updated], {}, { outputs: ['y'] });
  for (const o of ['p/next', 'q/next', 'x/next', 'y']) b.output(o);
  return g;
}

async function outputsOf(graph: Graph): Promise<Record<string, number[]>> {
  const s = await Session.create(graph);
  const feed = (v: number[]) => new ort.Tensor('float32', Float32Array.from(v), [2, 3]);
  const r = await s.run({ x: feed([1, 2, 3, 4, 5, 6]), p: feed([0.5, -1, 2, 0, 1, -3]) });
  await s.release();
  return Object.fromEntries(Object.entries(r).map(([k, t]) => [k, Array.from(t.data as Float32Array)]));
}

test('elideOutputCopies renames the producer to the output and keeps every output value', async () => {
  const before = graphWithCopies();
  const expected = await outputsOf(before);
  const after = graphWithCopies();
  assert.equal(elideOutputCopies(after), 1);
  assert.equal(after.nodes.filter((n) => n.opType === 'Identity').length, 2, 'the second name and the input copy keep their Identity');
  const add = after.nodes.find((n) => n.opType === 'Add')!;
  assert.deepEqual(add.outputs, ['p/next']);
  assert.ok(after.nodes.find((n) => n.opType === 'Mul')!.inputs.every((i) => i === 'p/next'), 'readers of the value read the output name');
  assert.deepEqual(await outputsOf(after), expected);
});

test('elideOutputCopies leaves a graph without output copies alone', () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, [2]);
  b.op1('Relu', [x], {}, { outputs: ['y'] });
  b.output('y');
  assert.equal(elideOutputCopies(g), 0);
  assert.equal(g.nodes.length, 1);
});
