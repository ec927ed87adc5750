import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BatchLoader, BatchLoaderOptions } from '../../src/data/loader';
import { Dataset, toDataset } from '../../src/data/dataset';

const SHAPE: [number, number, number] = [2, 4, 5];
const SS = 2 * 4 * 5;

/** Sample i has every pixel equal to i/255, so a batch row tells which sample it is. */
function indexed(count: number): Dataset {
  return toDataset({
    name: 'indexed',
    pixels: Uint8Array.from({ length: count * SS }, (_, p) => Math.floor(p / SS)),
    labels: Uint8Array.from({ length: count }, (_, i) => i % 3),
    count,
    shape: SHAPE,
    classes: 3,
  });
}

/** Every pixel distinct and nonzero, so a shifted copy is recognisable. */
function textured(count: number): Dataset {
  return toDataset({
    name: 'textured',
    pixels: Uint8Array.from({ length: count * SS }, (_, p) => 1 + ((p * 7) % 250)),
    labels: new Uint8Array(count),
    count,
    shape: SHAPE,
    classes: 1,
  });
}

const data = indexed(23);

function sampleIds(loader: BatchLoader, start = 0): number[][] {
  const out: number[][] = [];
  for (const b of loader.batches(start)) {
    const ids: number[] = [];
    for (let j = 0; j < b.size; j++) {
      const id = Math.round(b.images[j * SS] * 255);
      assert.equal(b.labels[j], BigInt(id % 3), `label of sample ${id}`);
      ids.push(id);
    }
    out.push(ids);
  }
  return out;
}

const opts = (o: Partial<BatchLoaderOptions> = {}) => ({ batchSize: 5, shuffle: true, seed: 7, epoch: 0, ...o });

test('loader: the order depends only on (seed, epoch)', () => {
  const a = sampleIds(new BatchLoader(data, opts()));
  assert.deepEqual(sampleIds(new BatchLoader(data, opts())), a);
  assert.notDeepEqual(sampleIds(new BatchLoader(data, opts({ epoch: 1 }))), a);
  assert.notDeepEqual(sampleIds(new BatchLoader(data, opts({ seed: 8 }))), a);
  const moved = new BatchLoader(data, opts({ epoch: 3 }));
  moved.setEpoch(0);
  assert.deepEqual(sampleIds(moved), a);
  assert.deepEqual(sampleIds(new BatchLoader(data, opts({ shuffle: false }))).flat(), Array.from({ length: 23 }, (_, i) => i));
});

test('loader: every sample exactly once per epoch without dropLast; dropLast drops the short batch', () => {
  const keep = new BatchLoader(data, opts());
  assert.equal(keep.batchesPerEpoch, 5);
  const ids = sampleIds(keep);
  assert.deepEqual(ids.map((b) => b.length), [5, 5, 5, 5, 3]);
  assert.deepEqual(ids.flat().sort((x, y) => x - y), Array.from({ length: 23 }, (_, i) => i));
  const drop = new BatchLoader(data, opts({ dropLast: true }));
  assert.equal(drop.batchesPerEpoch, 4);
  const dropped = sampleIds(drop).flat();
  assert.equal(dropped.length, 20);
  assert.equal(new Set(dropped).size, 20);
  assert.deepEqual(sampleIds(new BatchLoader(indexed(3), opts())), [sampleIds(new BatchLoader(indexed(3), opts()))[0]]);
  assert.equal(new BatchLoader(indexed(3), opts()).batchesPerEpoch, 1);
  assert.equal(new BatchLoader(indexed(3), opts({ dropLast: true })).batchesPerEpoch, 0);
});

test('loader: batch buffers are allocated once and reused', () => {
  const loader = new BatchLoader(data, opts());
  const batches = [...loader.batches()];
  const full = batches.slice(0, 4);
  for (const b of full) {
    assert.equal(b.images, full[0].images);
    assert.equal(b.labels, full[0].labels);
    assert.equal(b.images.length, 5 * SS);
  }
  const tail = batches[4];
  assert.equal(tail.images.length, 3 * SS);
  assert.equal(tail.labels.length, 3);
  assert.equal(tail.images.buffer, full[0].images.buffer, 'the short batch is a view of the same memory');
  loader.setEpoch(1);
  assert.equal([...loader.batches()][0].images, full[0].images, 'buffers survive epochs');
  assert.equal([...loader.batches()][4].images, tail.images, 'the tail view is made once');
});

test('loader: starting at batch k gives the batches of a full pass after skipping k', () => {
  for (const augment of [undefined, { maxShift: 2 }]) {
    const copy = (l: BatchLoader, k: number) => [...l.batches(k)].map((b) => [b.index, Array.from(b.images), Array.from(b.labels)]);
    const all = copy(new BatchLoader(data, opts({ epoch: 4, augment })), 0);
    for (const k of [1, 3, 5]) assert.deepEqual(copy(new BatchLoader(data, opts({ epoch: 4, augment })), k), all.slice(k), `start ${k}`);
  }
  assert.throws(() => [...new BatchLoader(data, opts()).batches(6)], /startBatch must be an integer in 0\.\.5, got 6/);
});

test('loader: augmentation shifts each sample by at most maxShift with zero fill, deterministically per seed', () => {
  const tex = textured(12);
  const run = (o: Partial<BatchLoaderOptions>) => [...new BatchLoader(tex, opts({ batchSize: 4, augment: { maxShift: 1 }, ...o })).batches()].map((b) => Array.from(b.images));
  const a = run({});
  assert.deepEqual(run({}), a);
  assert.notDeepEqual(run({ seed: 99 }), a);
  assert.notDeepEqual(run({ epoch: 1 }), a);

  // Each output sample is some input sample shifted by (dy, dx) in [-1, 1]^2; count that shifts really happen.
  const [c, h, w] = SHAPE;
  const shifted = (s: number, dy: number, dx: number) => {
    const out: number[] = [];
    for (let ch = 0; ch < c; ch++)
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) {
          const sy = y - dy, sx = x - dx;
          out.push(sy >= 0 && sy < h && sx >= 0 && sx < w ? tex.images[s * SS + ch * h * w + sy * w + sx] : 0);
        }
    return out;
  };
  let moved = 0;
  for (const batch of a) {
    for (let j = 0; j < 4; j++) {
      const got = batch.slice(j * SS, (j + 1) * SS);
      const match = [...Array(tex.count).keys()].flatMap((s) => [-1, 0, 1].flatMap((dy) => [-1, 0, 1].map((dx) => ({ s, dy, dx }))))
        .find(({ s, dy, dx }) => shifted(s, dy, dx).every((v, i) => v === got[i]));
      assert.ok(match, 'every augmented sample is a bounded, zero-filled shift of an input sample');
      if (match.dy !== 0 || match.dx !== 0) moved++;
    }
  }
  assert.ok(moved >= 6, `only ${moved} of 12 samples were shifted`);
});

test('loader: invalid options name the option and the valid range', () => {
  assert.throws(() => new BatchLoader(data, { batchSize: 0 }), /batchSize must be an integer in 1\.\./);
  assert.throws(() => new BatchLoader(data, { batchSize: 2, augment: { maxShift: 4 } }), /augment\.maxShift must be an integer in 0\.\.3, got 4/);
  assert.throws(() => new BatchLoader(data, { batchSize: 2, epoch: -1 }), /epoch must be an integer in 0\.\./);
});
