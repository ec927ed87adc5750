import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { Session } from '../../src/runtime/session';
import { Emitter } from '../../src/export/emitter';
import { WeightCodes } from '../../src/export/weight-codes';
import { emitWeightCodes, packCodes, packedLayout, packInt4, unpackCodes, WeightStorage } from '../../src/export/weight-storage';

function codesOf(method: WeightCodes['method'], qmin: number, qmax: number, dims: number[], pick: (i: number) => number): WeightCodes {
  const n = dims.reduce((a, b) => a * b, 1);
  return { tensor: 'w', dims, codes: Int32Array.from({ length: n }, (_, i) => pick(i)), qmin, qmax, scale: Float32Array.of(1, 1, 1), zeroPoint: new Int32Array(3), axis: 0, method };
}

const cases: { name: string; w: WeightCodes; levels: number; perByte: number }[] = [
  // 3 x 7 = 21 codes: not a multiple of the codes per byte, so the last byte is partial.
  { name: 'ternary: 5 codes per byte (3^5 = 243)', w: codesOf('ternary', -1, 1, [3, 7], (i) => ((i * 7) % 3) - 1), levels: 3, perByte: 5 },
  { name: 'binary: 8 codes per byte', w: codesOf('binary', -1, 1, [3, 7], (i) => ((i * 5) % 2 ? 1 : -1)), levels: 2, perByte: 8 },
  { name: '2-bit: 4 codes per byte', w: codesOf('lsq', -2, 1, [3, 7], (i) => ((i * 3) % 4) - 2), levels: 4, perByte: 4 },
  { name: '4-bit: 2 codes per byte', w: codesOf('lsq', -8, 7, [3, 7], (i) => ((i * 11) % 16) - 8), levels: 16, perByte: 2 },
];

for (const c of cases) {
  test(`packing ${c.name}: layout, TypeScript round trip and the ONNX unpack graph in ORT`, async () => {
    const layout = packedLayout(c.w)!;
    assert.equal(layout.levels, c.levels);
    assert.equal(layout.perByte, c.perByte);
    const bytes = packCodes(c.w.codes, layout);
    assert.equal(bytes.length, Math.ceil(c.w.codes.length / c.perByte));
    assert.deepEqual(unpackCodes(bytes, c.w.codes.length, layout), c.w.codes);
    // The graph the exported model carries must unpack the same codes in ONNX Runtime.
    const graph = new Graph();
    const em = new Emitter(graph);
    const { codes } = emitWeightCodes(em, c.w, 'packed');
    graph.outputs = [{ name: codes, dtype: DType.INT8, shape: c.w.dims }];
    const session = await Session.create(graph);
    const out = (await session.run({}, [codes]))[codes];
    await session.release();
    assert.deepEqual([...out.dims], c.w.dims);
    assert.deepEqual(Array.from(out.data as Int8Array), Array.from(c.w.codes));
    assert.ok(graph.initializers.get('w/packed')!.data.byteLength === bytes.length);
  });
}

test('packCodes refuses a code off the grid, naming it', () => {
  const layout = packedLayout(codesOf('binary', -1, 1, [3, 1], () => 1))!;
  assert.throws(() => packCodes(Int32Array.of(1, 0, -1), layout), /code 0 at 1/);
});

test('int4 packing: low nibble first, two\'s complement; DequantizeLinear (opset 21) reads it in ORT', async () => {
  const codes = Int32Array.of(-8, 7, -1, 0, 3);
  assert.deepEqual(Array.from(packInt4(codes)), [0x78, 0x0f, 0x03]);
  const w = codesOf('lsq', -8, 7, [5], (i) => codes[i]);
  w.axis = undefined;
  w.scale = Float32Array.of(0.5);
  w.zeroPoint = Int32Array.of(0);
  const graph = new Graph();
  graph.opsets = { '': 21 };
  const em = new Emitter(graph);
  const storage: WeightStorage = 'int4';
  const q = emitWeightCodes(em, w, storage);
  const y = em.node('DequantizeLinear', [q.codes, em.initializer('s', Tensor.float([], [0.5])), q.zeroPoint], {}, 'y');
  graph.outputs = [{ name: y, dtype: DType.FLOAT, shape: [5] }];
  const session = await Session.create(graph);
  const out = (await session.run({}, [y]))[y];
  await session.release();
  assert.deepEqual(Array.from(out.data as Float32Array), [-4, 3.5, -0.5, 0, 1.5]);
});
