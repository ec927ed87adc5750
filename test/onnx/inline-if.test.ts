// If nodes at import (src/onnx/inline-if.ts): replaced by the branch the input shapes decide, refused with the
// node's name where the condition is a run-time value. test/fixtures/torch_hf_llama.onnx has torch.onnx.export's
// If per squeeze of the sliced rotary caches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { Graph, Node } from '../../src/ir/graph';
import { DType } from '../../src/ir/dtype';
import { Tensor } from '../../src/ir/tensor';
import { decodeModel, encodeModel, encodeTensor } from '../../src/onnx/model-io';
import { importModel, importNotes, prepareImportedGraph } from '../../src/onnx/import';
import { Session } from '../../src/runtime/session';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures');

test('torch_hf_llama: its If nodes (squeeze of a dim the trace could not prove static) are replaced by their branches', async () => {
  const file = path.join(FIXTURES, 'torch_hf_llama.onnx');
  const raw = decodeModel(fs.readFileSync(file));
  assert.equal(raw.nodes.filter((n) => n.opType === 'If').length, 4);
  const g = importModel(file);
  assert.deepEqual(g.nodes.filter((n) => n.opType === 'If').map((n) => n.name), []);
  assert.ok(importNotes(g).some((line) => /^4 If node\(s\) replaced/.test(line)), importNotes(g).join('\n'));
});

/** x [N, 3] -> If(cond) { then: x * 2 (a branch Constant and initializer), else: x + 1 } -> y [N, 3]. */
function ifModel(cond: { static: boolean }): Graph {
  const g = new Graph();
  g.opsets = { '': 17 };
  g.inputs = [{ name: 'x', dtype: DType.FLOAT, shape: ['N', 3] }];
  g.outputs = [{ name: 'y', dtype: DType.FLOAT, shape: ['N', 3] }];
  const node = (opType: string, inputs: string[], outputs: string[], attrs: Node['attrs'] = {}): Node => ({ opType, domain: '', name: outputs[0] + '_node', inputs, outputs, attrs });
  g.initializers.set('axis1', Tensor.int64([1], [1]));
  g.initializers.set('three', Tensor.int64([], [3]));
  g.initializers.set('zero', Tensor.int64([1], [0]));
  // static: dim 1 (3) == 3; run time: dim 0 (N) == 3.
  g.nodes = [
    node('Shape', ['x'], ['shape']),
    node('Gather', ['shape', cond.static ? 'axis1' : 'zero'], ['dim']),
    node('Equal', ['dim', 'three'], ['eq']),
    node('Cast', ['eq'], ['eq_int'], { to: { kind: 'int', value: DType.INT64 } }),
    node('ReduceMin', ['eq_int'], ['cond'], { keepdims: { kind: 'int', value: 0 } }),
    node('Cast', ['cond'], ['cond_bool'], { to: { kind: 'int', value: DType.BOOL } }),
    node('If', ['cond_bool'], ['y'], {
      then_branch: { kind: 'graph', value: {
        name: 'then', node: [
          { opType: 'Constant', input: [], output: ['two'], attribute: [{ name: 'value', type: 4, t: encodeTensor('two', Tensor.float([], [2])) }] },
          { opType: 'Mul', input: ['x', 'two'], output: ['doubled'], name: 'double' },
          { opType: 'Add', input: ['doubled', 'zero_f'], output: ['then_y'], name: 'then_add' },
        ],
        initializer: [encodeTensor('zero_f', Tensor.float([], [0]))],
        output: [{ name: 'then_y' }],
      } },
      else_branch: { kind: 'graph', value: { name: 'else', node: [{ opType: 'Add', input: ['x', 'one_f'], output: ['else_y'], name: 'inc' }], initializer: [encodeTensor('one_f', Tensor.float([], [1]))], output: [{ name: 'else_y' }] } },
    }),
  ];
  return decodeModel(encodeModel(g));
}

test('an If whose condition the input shapes decide is its branch: same values as ONNX Runtime running the If', async () => {
  const model = ifModel({ static: true });
  const x = new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
  const ortSession = await ort.InferenceSession.create(encodeModel(model));
  const expected = Array.from((await ortSession.run({ x })).y.data as Float32Array);
  await ortSession.release();
  assert.deepEqual(expected, [2, 4, 6, 8, 10, 12]);
  const g = prepareImportedGraph(model, { source: 'if.onnx' });
  assert.deepEqual(g.nodes.map((n) => n.opType).filter((op) => op === 'If' || op === 'Add'), ['Add']);
  const s = await Session.create(g, { threads: 1 });
  const out = await s.run({ x });
  await s.release();
  assert.deepEqual(Array.from(out.y.data as Float32Array), expected);
});

test('an If whose condition is a run-time value is refused in one line naming the node', () => {
  assert.throws(() => prepareImportedGraph(ifModel({ static: false }), { source: 'if.onnx' }), (e: Error) => {
    assert.match(e.message, /^if\.onnx: If node 'y_node': its condition 'cond_bool' is only known at run time/);
    assert.equal(e.message.includes('\n'), false);
    return true;
  });
});

test('an If without branches, or with a malformed one, is refused naming the file and the node (fuzz regression)', () => {
  const model = ifModel({ static: true });
  const bare = decodeModel(encodeModel(model));
  delete bare.nodes.find((n) => n.opType === 'If')!.attrs.then_branch;
  assert.throws(() => prepareImportedGraph(bare, { source: 'm.onnx' }), /^Error: m\.onnx: If node 'y_node' has no then_branch graph/);
  const renamed = decodeModel(encodeModel(model));
  renamed.nodes.find((n) => n.opType === 'Mul' || n.opType === 'Shape')!.opType = 'If';
  assert.throws(() => prepareImportedGraph(renamed, { source: 'm.onnx' }), /^Error: m\.onnx: If node '.*' has no then_branch graph/);
});
