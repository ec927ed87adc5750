import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadDataset, DATASET_NAMES } from '../../src/data/index';
import { loadFashionMnistRaw } from '../../src/data/fashion-mnist';
import { Dataset } from '../../src/data/dataset';

function labelCounts(d: Dataset): number[] {
  const counts = new Array(d.classes).fill(0);
  for (let i = 0; i < d.count; i++) counts[d.labels[i]]++;
  return counts;
}

function pixelRange(d: Dataset): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  const px = d.images;
  for (let i = 0; i < px.length; i++) {
    const v = px[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

test('MNIST: 60000/10000 samples of [1,28,28] in [0,1], plausible label counts, first labels 5 and 7', () => {
  const { train, test: t } = loadDataset('mnist');
  assert.equal(train.count, 60000);
  assert.equal(t.count, 10000);
  assert.deepEqual(train.shape, [1, 28, 28]);
  assert.equal(train.images.length, 60000 * 784);
  assert.equal(t.images.length, 10000 * 784);
  assert.equal(train.labels.length, 60000);
  assert.deepEqual(pixelRange(train), [0, 1]);
  assert.deepEqual(pixelRange(t), [0, 1]);
  for (const [c, n] of labelCounts(train).entries()) assert.ok(n >= 5000 && n <= 7000, `class ${c}: ${n} train samples`);
  assert.equal(labelCounts(t).reduce((a, b) => a + b), 10000);
  assert.equal(train.labels[0], 5); // the well-known first training digit
  assert.equal(t.labels[0], 7); // and the first test digit
});

test('Fashion-MNIST: 60000/10000, exactly 6000/1000 per class, pixels in [0,1]', () => {
  const { train, test: t } = loadDataset('fashion-mnist');
  assert.equal(train.count, 60000);
  assert.equal(t.count, 10000);
  assert.deepEqual(train.shape, [1, 28, 28]);
  assert.equal(train.classNames?.[9], 'Ankle boot');
  assert.deepEqual(labelCounts(train), new Array(10).fill(6000));
  assert.deepEqual(labelCounts(t), new Array(10).fill(1000));
  assert.deepEqual(pixelRange(train), [0, 1]);
  assert.deepEqual(pixelRange(t), [0, 1]);
});

test('Fashion-MNIST: a second load comes from the binary cache with identical bytes', () => {
  const first = loadFashionMnistRaw();
  const second = loadFashionMnistRaw();
  assert.equal(second.from, 'cache', second.cacheMiss);
  for (const part of ['train', 'test'] as const) {
    assert.ok(Buffer.from(first.split[part].pixels).equals(Buffer.from(second.split[part].pixels)), `${part} pixels`);
    assert.ok(Buffer.from(first.split[part].labels).equals(Buffer.from(second.split[part].labels)), `${part} labels`);
  }
});

test('loadDataset rejects unknown names and lists the valid choices', () => {
  assert.throws(() => loadDataset('cifar10' as never), (e: Error) => e.message.includes("'cifar10'") && e.message.includes(DATASET_NAMES.join(', ')));
});
