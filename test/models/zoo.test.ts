import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import { lenet, zooModel, ZOO_MODELS } from '../../src/models/zoo';
import { parameterCount } from '../../src/models/model';
import { Trainer } from '../../src/train/trainer';
import { defaultOptimizer } from '../../src/train/optimizer';
import { Rng } from '../../src/train/rng';

const input = { channels: 1, height: 28, width: 28, mean: [0.1307], std: [0.3081] };

test('lenet is exactly the architecture of the issue', () => {
  const m = lenet({ input });
  const layers = m.graph.nodes.filter((n) => ['Conv', 'BatchNormalization', 'Relu', 'MaxPool', 'Flatten', 'Gemm'].includes(n.opType)).map((n) => n.opType);
  assert.deepEqual(layers, ['Conv', 'BatchNormalization', 'Relu', 'MaxPool', 'Conv', 'BatchNormalization', 'Relu', 'MaxPool', 'Flatten', 'Gemm', 'Relu', 'Gemm']);
  const dims = (n: string) => m.graph.initializers.get(n)!.dims;
  assert.deepEqual(dims('conv0.weight'), [32, 1, 3, 3]);
  assert.deepEqual(dims('conv1.weight'), [64, 32, 3, 3]);
  assert.deepEqual(dims('fc0.weight'), [128, 3136]);
  assert.deepEqual(dims('fc1.weight'), [10, 128]);
  assert.equal(parameterCount(m), 32 * 9 + 64 * 32 * 9 + 4 * (32 + 64) / 2 + 3136 * 128 + 128 + 1280 + 10);
});

test('initialisation follows PyTorch defaults: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), BN scale 1 and shift 0', () => {
  const m = lenet({ input, seed: 3 });
  const w = m.graph.initializers.get('fc0.weight')!.data as Float32Array;
  const bound = 1 / Math.sqrt(3136);
  assert.ok(w.every((v) => Math.abs(v) <= bound));
  assert.ok(w.reduce((m, v) => Math.max(m, v), -Infinity) > 0.95 * bound);
  assert.ok((m.graph.initializers.get('bn0.weight')!.data as Float32Array).every((v) => v === 1));
  assert.ok((m.graph.initializers.get('bn0.bias')!.data as Float32Array).every((v) => v === 0));
  assert.deepEqual(lenet({ input, seed: 3 }).graph.initializers.get('fc0.weight')!.data, w);
});

for (const name of ZOO_MODELS) {
  test(`${name} trains: loss falls over a few steps on a fixed batch`, async () => {
    const m = zooModel(name, { input, classes: 10, seed: 0 });
    const t = await Trainer.create(m, { batchSize: 8, classes: 10, optimizer: defaultOptimizer('adamw') });
    const rng = new Rng(1);
    t.batchImages.set(Float32Array.from({ length: 8 * 784 }, () => rng.uniform()));
    t.batchLabels.set(BigInt64Array.from({ length: 8 }, (_, i) => BigInt(i % 10)));
    const first = await t.trainStep(3e-3);
    let last = first;
    for (let i = 0; i < 7; i++) last = await t.trainStep(3e-3);
    assert.ok(last.loss < first.loss, `${name}: ${first.loss} -> ${last.loss}`);
    await t.release();
  });
}
