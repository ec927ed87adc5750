import { test } from 'node:test';
import assert from 'node:assert/strict';
import onnxProto from 'onnx-proto';
import { DType } from '../../src/ir/dtype';
import { Attr, Graph } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { decodeModel, encodeModel } from '../../src/onnx/model-io';

const { onnx } = onnxProto;

const tensors: Record<string, Tensor> = {
  f32: Tensor.float([2, 2], [1.5, -2.25, 3e-8, 1e30]),
  i64: Tensor.int64([3], [-(2 ** 40), 0, 7]),
  i8: new Tensor(DType.INT8, [4], Int8Array.from([-128, -1, 0, 127])),
  u8: new Tensor(DType.UINT8, [2], Uint8Array.from([0, 255])),
  f64: Tensor.double([], [Math.PI]),
};

function graphWithEveryAttribute(): Graph {
  const g = new Graph();
  g.name = 'roundtrip';
  g.opsets = { '': 17, 'ai.qatkit': 1 };
  g.metadata = { author: 'test' };
  g.inputs.push({ name: 'x', dtype: DType.FLOAT, shape: ['N', 3] });
  g.outputs.push({ name: 'y', dtype: DType.FLOAT, shape: ['N', 3] });
  for (const [name, t] of Object.entries(tensors)) g.initializers.set(name, t);
  const attrs: Record<string, Attr> = {
    an_int: { kind: 'int', value: -3 },
    a_float: { kind: 'float', value: 0.25 },
    a_string: { kind: 'string', value: 'héllo' },
    some_ints: { kind: 'ints', value: [1, -2, 2 ** 40] },
    some_floats: { kind: 'floats', value: [0.5, -1.5] },
    some_strings: { kind: 'strings', value: ['a', 'bc'] },
    a_tensor: { kind: 'tensor', value: tensors.i8 },
    a_graph: { kind: 'graph', value: { name: 'body', node: [{ opType: 'Identity', input: ['a'], output: ['b'] }] } },
  };
  g.nodes.push({ opType: 'Custom', domain: 'ai.qatkit', name: 'n0', inputs: ['x', '', 'f32'], outputs: ['y'], attrs });
  return g;
}

test('encode then decode keeps graph structure, every attribute kind and tensor dtype', () => {
  const g = graphWithEveryAttribute();
  const back = decodeModel(encodeModel(g));
  assert.equal(back.name, 'roundtrip');
  assert.deepEqual(back.opsets, g.opsets);
  assert.deepEqual(back.metadata, g.metadata);
  assert.deepEqual(back.inputs, g.inputs);
  assert.deepEqual(back.outputs, g.outputs);
  const n = back.nodes[0];
  assert.deepEqual({ ...n, attrs: undefined }, { ...g.nodes[0], attrs: undefined });
  const a = n.attrs;
  assert.deepEqual(a.an_int, { kind: 'int', value: -3 });
  assert.deepEqual(a.a_float, { kind: 'float', value: 0.25 });
  assert.deepEqual(a.a_string, { kind: 'string', value: 'héllo' });
  assert.deepEqual(a.some_ints, { kind: 'ints', value: [1, -2, 2 ** 40] });
  assert.deepEqual(a.some_floats, { kind: 'floats', value: [0.5, -1.5] });
  assert.deepEqual(a.some_strings, { kind: 'strings', value: ['a', 'bc'] });
  assert.equal(a.a_tensor.kind, 'tensor');
  assert.deepEqual(a.a_tensor.kind === 'tensor' && a.a_tensor.value.toNumbers(), [-128, -1, 0, 127]);
  assert.equal(a.a_graph.kind, 'graph');
  const body = (a.a_graph as { value: { name: string; node: { opType: string }[] } }).value;
  assert.equal(body.name, 'body');
  assert.equal(body.node[0].opType, 'Identity');
  for (const [name, t] of Object.entries(tensors)) {
    const d = back.initializers.get(name)!;
    assert.equal(d.dtype, t.dtype, name);
    assert.deepEqual(d.dims, t.dims, name);
    assert.deepEqual(Array.from(d.data as ArrayLike<unknown>), Array.from(t.data as ArrayLike<unknown>), name);
  }
});

test('decode reads typed data fields (float_data, int64_data, int32_data, double_data), not only raw_data', () => {
  const bytes = onnx.ModelProto.encode({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'typed',
      initializer: [
        { name: 'f', dims: [2], dataType: DType.FLOAT, floatData: [1.5, -2] },
        { name: 'l', dims: [2], dataType: DType.INT64, int64Data: [5, -6] },
        { name: 'b', dims: [3], dataType: DType.INT8, int32Data: [-1, 2, 3] },
        { name: 'd', dims: [1], dataType: DType.DOUBLE, doubleData: [0.1] },
      ],
      input: [],
      output: [],
    },
  }).finish();
  const g = decodeModel(bytes);
  assert.deepEqual(Array.from(g.initializers.get('f')!.data as Float32Array), [1.5, -2]);
  assert.deepEqual(g.initializers.get('l')!.toNumbers(), [5, -6]);
  assert.deepEqual(Array.from(g.initializers.get('b')!.data as Int8Array), [-1, 2, 3]);
  assert.deepEqual(Array.from(g.initializers.get('d')!.data as Float64Array), [0.1]);
});

test('decode keeps a dim_value of 0 and names dims that have neither value nor param', () => {
  const bytes = onnx.ModelProto.encode({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      input: [{ name: 'x', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 0 }, { dimParam: 'N' }, {}] } } } }],
      output: [],
    },
  }).finish();
  assert.deepEqual(decodeModel(bytes).inputs[0].shape, [0, 'N', 'x_dim2']);
});

test('decode refuses a graph input without a shape, naming it', () => {
  const bytes = onnx.ModelProto.encode({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: { input: [{ name: 'pixels', type: { tensorType: { elemType: 1 } } }], output: [] },
  }).finish();
  assert.throws(() => decodeModel(bytes, { source: 'm.onnx' }), /m\.onnx: graph input 'pixels' has no shape/);
});

test('decode of bytes that are not a model names the source', () => {
  assert.throws(() => decodeModel(Uint8Array.from([0xff, 0xff, 0xff]), { source: 'junk.onnx' }), /junk\.onnx: not a valid ONNX model/);
});
