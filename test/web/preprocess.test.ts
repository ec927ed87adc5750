import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadDataset } from '../../src/data/index.js';
import { runningMean, ticks } from '../../web/loss-chart.js';
import { areaResample, argmax, inkFromRgba, softmax, toMnistInput } from '../../web/preprocess.js';

// The page's drawing -> 28x28 preprocessing (web/preprocess.js) and the loss chart's data functions, in Node.

const PAD = 280;

/** A 28x28 image blown up 10x by nearest neighbour: what DrawPad.paint puts on the 280x280 pad. */
function upscale(img: ArrayLike<number>): Float32Array {
  const big = new Float32Array(PAD * PAD);
  for (let y = 0; y < PAD; y++) for (let x = 0; x < PAD; x++) big[y * PAD + x] = img[Math.floor(y / 10) * 28 + Math.floor(x / 10)];
  return big;
}

test('a filled 40x100 rectangle becomes an 8x20 block whose centre of mass is the field centre', () => {
  const ink = new Float32Array(PAD * PAD);
  for (let y = 30; y < 130; y++) for (let x = 200; x < 240; x++) ink[y * PAD + x] = 1;
  const out = toMnistInput(ink, PAD, PAD)!;
  // Scale 100/20 = 5: 8x20 target; centre of mass (3.5, 9.5) moved to 13.5 -> columns 10..17, rows 4..23.
  for (let y = 0; y < 28; y++) {
    for (let x = 0; x < 28; x++) {
      const inside = x >= 10 && x <= 17 && y >= 4 && y <= 23;
      assert.equal(out[y * 28 + x], inside ? 1 : 0, `pixel (${x}, ${y})`);
    }
  }
});

test('an empty pad gives no input (nothing to classify)', () => {
  assert.equal(toMnistInput(new Float32Array(PAD * PAD), PAD, PAD), undefined);
});

test('MNIST test digits painted on the pad come back as themselves, up to a one-pixel shift of the centre', () => {
  // MNIST's digits already fill a 20x20 box centred by mass; re-preprocessing must not change them beyond the
  // rounding of the centre of mass (ours rounds the offset, MNIST's own rounding is not documented).
  const data = loadDataset('mnist').test;
  const count = 200;
  let same = 0;
  for (let k = 0; k < count; k++) {
    const img = data.images.subarray(k * 784, (k + 1) * 784);
    const out = toMnistInput(upscale(img), PAD, PAD)!;
    let matched = false;
    for (let dy = -1; dy <= 1 && !matched; dy++) {
      for (let dx = -1; dx <= 1 && !matched; dx++) {
        let worst = 0;
        for (let y = 0; y < 28; y++) {
          for (let x = 0; x < 28; x++) {
            const [sy, sx] = [y + dy, x + dx];
            const v = sy >= 0 && sy < 28 && sx >= 0 && sx < 28 ? img[sy * 28 + sx] : 0;
            worst = Math.max(worst, Math.abs(out[y * 28 + x] - v));
          }
        }
        matched = worst < 1e-6;
      }
    }
    if (matched) same++;
  }
  // Measured: 186 of the first 200.
  assert.ok(same >= 0.9 * count, `${same}/${count} reproduced up to a one-pixel shift`);
});

test('area resampling averages each footprint: 2x2 blocks to their means, a 3-wide row to thirds of 2', () => {
  const src = [1, 0, 0.5, 0.5, 0, 0, 0.5, 0.5];
  assert.deepEqual(Array.from(areaResample(src, 4, 0, 0, 4, 2, 2, 1)), [0.25, 0.5]);
  // 3 source pixels onto 2: footprints [0, 1.5) and [1.5, 3).
  const row = areaResample([1, 1, 0], 3, 0, 0, 3, 1, 2, 1);
  assert.ok(Math.abs(row[0] - 1) < 1e-7 && Math.abs(row[1] - 1 / 3) < 1e-7, String(Array.from(row)));
});

test('the pad reads ink from the red channel of RGBA bytes', () => {
  assert.deepEqual(Array.from(inkFromRgba([255, 255, 255, 255, 0, 0, 0, 255, 51, 0, 0, 255], 3, 1)), [1, 0, Math.fround(0.2)]);
});

test('softmax sums to one and keeps the order of the logits; argmax takes the first maximum', () => {
  const p = softmax([1000, 1001, 999]);
  assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-12);
  assert.ok(Math.abs(p[1] - Math.E / (1 + Math.E + Math.exp(-1))) < 1e-12, `p = ${p}`);
  assert.ok(p[1] > p[0] && p[0] > p[2]);
  assert.equal(argmax([0, 3, 3, 1]), 1);
});

test('loss chart: trailing running mean and round ticks', () => {
  assert.deepEqual(runningMean([4, 2, 6, 0], 2), [4, 3, 4, 3]);
  assert.deepEqual(ticks(0, 0.62, 4), [0, 0.2, 0.4, 0.6]);
  assert.deepEqual(ticks(1, 300, 6), [50, 100, 150, 200, 250, 300]);
});
