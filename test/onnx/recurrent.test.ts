import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from '../../src/runtime/ort';
import { DType } from '../../src/ir/dtype';
import { Attr, Graph } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { decodeModel, encodeModel } from '../../src/onnx/model-io';
import { prepareImportedGraph } from '../../src/onnx/import';
import { Rng } from '../../src/train/rng';

// The unrolled LSTM / GRU (src/onnx/recurrent.ts) against ONNX Runtime's own LSTM and GRU kernels on the same
// weights: every output of every variant torch.onnx.export or another exporter writes.

interface Variant {
  name: string;
  cell: 'LSTM' | 'GRU';
  direction?: string;
  layout?: number;
  initial?: boolean;
  bias?: boolean;
  linearBeforeReset?: number;
}

const variants: Variant[] = [
  { name: 'LSTM forward, bias (nn.LSTM)', cell: 'LSTM' },
  { name: 'LSTM bidirectional with initial h and c', cell: 'LSTM', direction: 'bidirectional', initial: true },
  { name: 'LSTM reverse without bias, layout 1 (batch first)', cell: 'LSTM', direction: 'reverse', bias: false, layout: 1, initial: true },
  { name: 'GRU linear_before_reset=1 (nn.GRU)', cell: 'GRU', linearBeforeReset: 1 },
  { name: 'GRU linear_before_reset=0 (the ONNX default) with initial h', cell: 'GRU', initial: true },
  { name: 'GRU bidirectional linear_before_reset=1 with initial h, layout 1', cell: 'GRU', direction: 'bidirectional', linearBeforeReset: 1, initial: true, layout: 1 },
  { name: 'GRU reverse linear_before_reset=0 without initial h', cell: 'GRU', direction: 'reverse' },
];

const [T, B, I, H] = [5, 3, 4, 6];

/**
 * The graph of variant v. `reference`: ORT has no kernel for layout 1 (batch first), so the reference runs the
 * layout-0 node between Transposes (ONNX's definition of layout 1).
 */
function recurrentGraph(v: Variant, rng: Rng, reference = false): Graph {
  const g = new Graph();
  g.name = v.name;
  g.opsets = { '': 17 };
  const dirs = v.direction === 'bidirectional' ? 2 : 1;
  const gates = v.cell === 'LSTM' ? 4 : 3;
  const layout = v.layout ?? 0;
  const rand = (dims: number[]) => Tensor.float(dims, Array.from({ length: dims.reduce((p, q) => p * q, 1) }, () => rng.range(-0.6, 0.6)));
  g.inputs = [{ name: 'x', dtype: DType.FLOAT, shape: layout ? ['B', T, I] : [T, 'B', I] }];
  g.initializers.set('W', rand([dirs, gates * H, I]));
  g.initializers.set('R', rand([dirs, gates * H, H]));
  if (v.bias !== false) g.initializers.set('Bias', rand([dirs, 2 * gates * H]));
  const inputs = ['x', 'W', 'R', v.bias !== false ? 'Bias' : '', ''];
  if (v.initial) {
    g.inputs.push({ name: 'h0', dtype: DType.FLOAT, shape: layout ? ['B', dirs, H] : [dirs, 'B', H] });
    inputs.push('h0');
    if (v.cell === 'LSTM') {
      g.inputs.push({ name: 'c0', dtype: DType.FLOAT, shape: layout ? ['B', dirs, H] : [dirs, 'B', H] });
      inputs.push('c0');
    }
  }
  const outputs = v.cell === 'LSTM' ? ['y', 'y_h', 'y_c'] : ['y', 'y_h'];
  const attrs: Record<string, Attr> = { hidden_size: { kind: 'int', value: H }, layout: { kind: 'int', value: layout } };
  if (v.direction) attrs.direction = { kind: 'string', value: v.direction };
  if (v.linearBeforeReset !== undefined) attrs.linear_before_reset = { kind: 'int', value: v.linearBeforeReset };
  g.outputs = outputs.map((name) => ({ name, dtype: DType.FLOAT, shape: [] }));
  if (reference && layout === 1) {
    const transpose = (from: string, to: string, perm: number[]) => g.nodes.push({ opType: 'Transpose', domain: '', name: `t_${to}`, inputs: [from], outputs: [to], attrs: { perm: { kind: 'ints', value: perm } } });
    for (const i of [0, 5, 6]) {
      if (!inputs[i]) continue;
      transpose(inputs[i], `${inputs[i]}_t`, [1, 0, 2]);
      inputs[i] = `${inputs[i]}_t`;
    }
    attrs.layout = { kind: 'int', value: 0 };
    g.nodes.push({ opType: v.cell, domain: '', name: '/rnn/' + v.cell, inputs, outputs: outputs.map((o) => `${o}_t`), attrs });
    outputs.forEach((o, k) => transpose(`${o}_t`, o, k === 0 ? [2, 0, 1, 3] : [1, 0, 2]));
    return g;
  }
  g.nodes.push({ opType: v.cell, domain: '', name: '/rnn/' + v.cell, inputs, outputs, attrs });
  return g;
}

async function run(bytes: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(bytes, { logSeverityLevel: 3 });
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, t.data as Float32Array]));
  } finally {
    await session.release();
  }
}

for (const v of variants) {
  test(`${v.name}: the unrolled graph computes what ONNX Runtime's ${v.cell} kernel does`, async () => {
    const rng = new Rng(3);
    const original = recurrentGraph(v, rng);
    const bytes = encodeModel(original);
    const referenceBytes = encodeModel(recurrentGraph(v, new Rng(3), true));
    const imported = prepareImportedGraph(decodeModel(bytes));
    assert.ok(!imported.nodes.some((n) => n.opType === v.cell), 'unrolled');
    assert.ok(imported.nodes.filter((n) => n.opType === 'MatMul').every((n) => imported.initializers.has(n.inputs[1]) || !imported.initializers.has(n.inputs[0])), 'gate products read weights as their second input');
    const feeds: Record<string, ort.Tensor> = {};
    for (const input of original.inputs) {
      const dims = input.shape.map((d) => (d === 'B' ? B : d)) as number[];
      feeds[input.name] = new ort.Tensor('float32', Float32Array.from({ length: dims.reduce((p, q) => p * q, 1) }, () => rng.range(-1, 1)), dims);
    }
    const want = await run(referenceBytes, feeds);
    const got = await run(encodeModel(imported), feeds);
    for (const k of Object.keys(want)) {
      assert.equal(got[k].length, want[k].length, k);
      const worst = Math.max(...want[k].map((w, i) => Math.abs(w - got[k][i])));
      assert.ok(worst < 1e-5, `${k}: max |difference| ${worst}`);
    }
  });
}

test('an LSTM it cannot unroll is refused, naming the node and what would be valid', () => {
  const g = recurrentGraph({ name: 'lstm', cell: 'LSTM' }, new Rng(1));
  g.nodes[0].attrs.clip = { kind: 'float', value: 3 };
  assert.throws(() => prepareImportedGraph(decodeModel(encodeModel(g))), /node '\/rnn\/LSTM' \(LSTM\): clip is not supported/);
  const seq = recurrentGraph({ name: 'lstm', cell: 'LSTM' }, new Rng(1));
  seq.inputs[0].shape = ['T', 'B', I];
  assert.throws(() => prepareImportedGraph(decodeModel(encodeModel(seq))), /\(LSTM\): the sequence length must be fixed to unroll/);
});

test("zero initial states as torch.onnx.export writes them (Slice of ConstantOfShape) add no product at step 0", async () => {
  const rng = new Rng(5);
  const g = recurrentGraph({ name: 'lstm zero states', cell: 'LSTM' }, rng);
  g.initializers.set('state_shape', Tensor.int64([3], [2, B, H]));
  for (const [i, name] of [[5, 'h0'], [6, 'c0']] as const) {
    g.nodes.unshift(
      { opType: 'ConstantOfShape', domain: '', name: `${name}_zeros`, inputs: ['state_shape'], outputs: [`${name}_all`], attrs: {} },
      { opType: 'Slice', domain: '', name: `${name}_slice`, inputs: [`${name}_all`, 'start', 'end'], outputs: [name], attrs: {} },
    );
    g.nodes[g.nodes.length - 1].inputs[i] = name;
  }
  g.initializers.set('start', Tensor.int64([1], [0]));
  g.initializers.set('end', Tensor.int64([1], [1]));
  const bytes = encodeModel(g);
  const imported = prepareImportedGraph(decodeModel(bytes));
  // One product of the whole input sequence and T - 1 recurrent ones.
  assert.equal(imported.nodes.filter((n) => n.opType === 'MatMul').length, T);
  const x = new ort.Tensor('float32', Float32Array.from({ length: T * B * I }, () => rng.range(-1, 1)), [T, B, I]);
  const [want, got] = [await run(bytes, { x }), await run(encodeModel(imported), { x })];
  for (const k of Object.keys(want)) assert.ok(Math.max(...want[k].map((w, i) => Math.abs(w - got[k][i]))) < 1e-5, k);
});
