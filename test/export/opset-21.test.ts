import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as ort from '../../src/runtime/ort';
import { loadDataset } from '../../src/data';
import { DType } from '../../src/ir/dtype';
import { Graph, Node } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { ModelBuilder } from '../../src/models/builder';
import { encodeModel } from '../../src/onnx/model-io';
import { checkParity } from '../../src/export/parity';
import { raiseToOpset21 } from '../../src/export/opset-21';
import { exportQdq } from '../../src/export/qdq';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run';
import { scratchDir } from '../helpers/scratch.js';

async function runGraph(g: Graph, x: Float32Array, dims: number[]): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(encodeModel(g), { logSeverityLevel: 3 });
  try {
    const out = await session.run({ x: new ort.Tensor('float32', x, dims) });
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
  } finally {
    await session.release();
  }
}

test('raiseToOpset21: Reduce axes become inputs and an even Split gets num_outputs; ORT computes the same at 21 as at 17', async () => {
  const g = new Graph();
  g.name = 'opset_upgrade';
  g.inputs = [{ name: 'x', dtype: DType.FLOAT, shape: [2, 6, 4] }];
  const node = (opType: string, inputs: string[], outputs: string[], attrs: Node['attrs'] = {}) => g.nodes.push({ opType, domain: '', name: outputs[0], inputs, outputs, attrs });
  node('ReduceMean', ['x'], ['mean'], { axes: { kind: 'ints', value: [2] }, keepdims: { kind: 'int', value: 0 } });
  node('ReduceMax', ['x'], ['max'], { axes: { kind: 'ints', value: [1, 2] }, keepdims: { kind: 'int', value: 1 } });
  node('ReduceSumSquare', ['x'], ['all'], { keepdims: { kind: 'int', value: 0 } });
  node('Split', ['x'], ['a', 'b', 'c'], { axis: { kind: 'int', value: 1 } });
  g.outputs = ['mean', 'max', 'all', 'a', 'b', 'c'].map((name) => ({ name, dtype: DType.FLOAT, shape: [] }));
  g.opsets = { '': 17 };
  const x = Float32Array.from({ length: 48 }, (_, i) => Math.sin(i * 0.7) * 3);
  const at17 = await runGraph(g, x, [2, 6, 4]);
  raiseToOpset21(g);
  assert.equal(g.opsets[''], 21);
  const reduces = g.nodes.filter((n) => n.opType.startsWith('Reduce'));
  assert.ok(reduces.every((n) => !n.attrs.axes), 'no axes attribute left');
  assert.deepEqual(g.initializers.get(reduces[1].inputs[1])!.toNumbers(), [1, 2]);
  assert.equal(reduces[2].inputs.length, 1, 'a reduction over all axes keeps no axes input');
  assert.deepEqual(g.nodes.find((n) => n.opType === 'Split')!.attrs.num_outputs, { kind: 'int', value: 3 });
  const at21 = await runGraph(g, x, [2, 6, 4]);
  for (const k of Object.keys(at17)) assert.deepEqual(Array.from(at21[k]), Array.from(at17[k]), k);
});

test('an int4 export of a CNN that pools with ReduceMean (opset 21) loads in ORT and equals the fake-quant model', async () => {
  // x.mean([2, 3]) in PyTorch: ReduceMean with an axes attribute in the imported (opset <= 17) graph.
  const m = new ModelBuilder('mean_pool', { channels: 1, height: 28, width: 28, mean: [0.1307], std: [0.3081] }, 3);
  m.conv(8, 3, { stride: 2, pad: 1, name: 'conv' });
  m.relu();
  m.current = m.b.op1('ReduceMean', [m.current], { axes: [2, 3], keepdims: 0 }, { name: 'spatial_mean' });
  m.linear(10, { name: 'fc' });
  const work = scratchDir('qatkit-opset21-');
  const base = { ...DEFAULT_TRAIN_CONFIG, model: m.finish(), batch: 32, threads: 2, checkpointEvery: 0, evalEvery: 0 };
  await train({ ...base, steps: 20, lr: 1e-2 }, path.join(work, 'fp32'));
  await train({ ...base, from: path.join(work, 'fp32'), quant: 'w4a4', steps: 10, calibBatches: 1, lr: 2e-3 }, path.join(work, 'qat'));
  const qat = loadCheckpoint(path.join(work, 'qat', 'checkpoint.qat')).model;
  const { graph } = await exportQdq(qat, { format: 'int4' });
  assert.equal(graph.opsets[''], 21);
  assert.ok(graph.initializers.get(graph.nodes.find((n) => n.opType === 'ReduceMean')!.inputs[1]), 'axes as an input');
  const parity = await checkParity(qat, graph, loadDataset('mnist').test, { limit: 500 });
  assert.ok(parity.argmax_agreement >= 0.998, JSON.stringify(parity));
});
