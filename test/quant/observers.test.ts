import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QuantSpec, fakeQuantizeValue, qparamsFromRange, quantRange } from '../../src/quant/spec';
import {
  ChannelRange,
  GrowingHistogram,
  ObserverKind,
  TensorRange,
  calibrateRange,
  createObserver,
  isChannelRange,
  klDivergences,
  klThresholdBins,
} from '../../src/quant/observers';
import { Rng } from '../../src/train/rng';

function spec(overrides: Partial<QuantSpec> = {}): QuantSpec {
  return { bits: 8, signed: true, symmetric: true, narrowRange: false, granularity: { kind: 'per-tensor' }, method: 'minmax', ...overrides };
}

function tensorRange(r: ReturnType<typeof calibrateRange>): TensorRange {
  assert.ok(!isChannelRange(r), 'expected a per-tensor range');
  return r as TensorRange;
}

function channelRange(r: ReturnType<typeof calibrateRange>): ChannelRange {
  assert.ok(isChannelRange(r), 'expected a per-channel range');
  return r as ChannelRange;
}

function gaussian(n: number, seed: number, sigma = 1, mean = 0): Float32Array {
  const rng = new Rng(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = mean + sigma * rng.normal();
  return x;
}

/** Mean squared fake-quantization error, computed here from spec.ts alone (independent of the observer code). */
function mseOf(x: Float32Array, r: TensorRange, s: QuantSpec): number {
  const { scale, zeroPoint } = qparamsFromRange(r.min, r.max, s);
  const { qmin, qmax } = quantRange(s);
  let sum = 0;
  for (const v of x) sum += (v - fakeQuantizeValue(v, scale, zeroPoint, qmin, qmax)) ** 2;
  return sum / x.length;
}

const f32 = (values: number[]) => Float32Array.from(values);

// ---- minmax ----

test('minmax: exact min and max across batches (empty batch ignored)', () => {
  const o = createObserver('minmax', { spec: spec() });
  o.observe(f32([1, -2, 3]));
  o.observe(f32([]));
  o.observe(f32([0.5, 4, -1]), [3]);
  assert.deepEqual(o.range(), { min: -2, max: 4 });
});

test('minmax per-channel on a [2,3,2] tensor along axis 1 matches hand-computed ranges', () => {
  // n0: c0 [1,-1] c1 [2,5] c2 [0,3];  n1: c0 [4,-3] c1 [-2,1] c2 [7,6]
  const x = f32([1, -1, 2, 5, 0, 3, 4, -3, -2, 1, 7, 6]);
  const o = createObserver('minmax', { spec: spec(), perChannelAxis: 1 });
  o.observe(x, [2, 3, 2]);
  let r = channelRange(o.range());
  assert.deepEqual(Array.from(r.min), [-3, -2, 0]);
  assert.deepEqual(Array.from(r.max), [4, 5, 7]);
  // A second batch only moves channel 1's max and channel 2's min.
  o.observe(f32([0, 0, 9, 0, -5, 0]), [1, 3, 2]);
  r = channelRange(o.range());
  assert.deepEqual(Array.from(r.min), [-3, -2, -5]);
  assert.deepEqual(Array.from(r.max), [4, 9, 7]);
});

test('minmax per-channel axis comes from a per-channel spec (weights [O, I] along axis 0, also as axis -2)', () => {
  const w = f32([1, -4, 2, 0.5, 3, -1]); // rows [1,-4,2], [0.5,3,-1]
  const perRow = spec({ granularity: { kind: 'per-channel', axis: 0 } });
  const r = channelRange(calibrateRange('minmax', [{ values: w, shape: [2, 3] }], perRow));
  assert.deepEqual(Array.from(r.min), [-4, -1]);
  assert.deepEqual(Array.from(r.max), [2, 3]);
  const negative = channelRange(calibrateRange('minmax', [{ values: w, shape: [2, 3] }], spec(), { perChannelAxis: -2 }));
  assert.deepEqual(negative, r);
});

// ---- moving average ----

test('moving-average follows min += c (batch_min - min) over three batches', () => {
  const o = createObserver('moving-average', { spec: spec(), momentum: 0.1 });
  o.observe(f32([-1, 2])); // first batch sets [-1, 2]
  o.observe(f32([-3, 4])); // min -1 + 0.1 * (-3 + 1) = -1.2, max 2 + 0.1 * (4 - 2) = 2.2
  o.observe(f32([0, 1])); // min -1.2 + 0.1 * (0 + 1.2) = -1.08, max 2.2 + 0.1 * (1 - 2.2) = 2.08
  const r = tensorRange(o.range());
  assert.ok(Math.abs(r.min - -1.08) < 1e-12, `min ${r.min}`);
  assert.ok(Math.abs(r.max - 2.08) < 1e-12, `max ${r.max}`);
});

test('moving-average default averaging constant is 0.01 (torch)', () => {
  const r = tensorRange(calibrateRange('moving-average', [f32([0, 1]), f32([0, 101])], spec()));
  assert.ok(Math.abs(r.max - 2) < 1e-12, `max ${r.max}`);
  assert.equal(r.min, 0);
});

// ---- percentile ----

const zeroTo9999 = Float32Array.from({ length: 10000 }, (_, i) => i);

test('percentile: 99th percentile of |x| on 0..9999 is within one bin width of 9899', () => {
  const r = tensorRange(calibrateRange('percentile', [zeroTo9999], spec(), { percentile: 99 }));
  const width = 9999 / 2048;
  assert.ok(Math.abs(r.max - 9899) <= width, `max ${r.max}`);
  assert.equal(r.min, -r.max);
});

test('percentile: a histogram grown over four batches still lands within one (final) bin width', () => {
  const o = createObserver('percentile', { spec: spec(), percentile: 99 });
  for (let b = 0; b < 4; b++) o.observe(zeroTo9999.subarray(b * 2500, (b + 1) * 2500));
  // Limits grow 2499 -> 7497 (x3) -> 14994 (x2): final width 14994 / 2048.
  const r = tensorRange(o.range());
  assert.ok(Math.abs(r.max - 9899) <= 14994 / 2048, `max ${r.max}`);
});

test('histogram growth merges old bins exactly and keeps every count', () => {
  const h = new GrowingHistogram(4, 'signed');
  h.add(f32([-1, -0.5, 0, 0.25, 0.9])); // limit 1, width 0.25: bins from -1 in steps of 0.25
  h.add(f32([2.5])); // grows by k = 3: limit 3, width 0.75
  assert.equal(h.limit, 3);
  assert.equal(h.total, 6);
  // new bins: [-3,-2.25) [-2.25,-1.5) [-1.5,-0.75) [-0.75,0) [0,0.75) [0.75,1.5) [1.5,2.25) [2.25,3]
  assert.deepEqual(Array.from(h.counts), [0, 0, 1, 1, 2, 1, 0, 1]);
});

test('percentile ignores one huge outlier while minmax does not', () => {
  const withOutlier = new Float32Array(10001);
  withOutlier.set(zeroTo9999);
  withOutlier[10000] = 1e6;
  const p = tensorRange(calibrateRange('percentile', [withOutlier], spec(), { percentile: 99.9 }));
  const m = tensorRange(calibrateRange('minmax', [withOutlier], spec()));
  assert.equal(m.max, 1e6);
  assert.ok(p.max < 10500, `percentile max ${p.max}`);
});

test('percentile: asymmetric specs cut each tail; unsigned symmetric specs keep the positive side', () => {
  const shifted = zeroTo9999.map((v) => v - 5000); // -5000..4999
  const width = 5000 / 2048;
  const a = tensorRange(calibrateRange('percentile', [shifted], spec({ symmetric: false }), { percentile: 99 }));
  assert.ok(Math.abs(a.min - -4900) <= width, `min ${a.min}`);
  assert.ok(Math.abs(a.max - 4899) <= width, `max ${a.max}`);
  const u = tensorRange(calibrateRange('percentile', [shifted], spec({ signed: false }), { percentile: 99 }));
  // max(x, 0): 5000 zeros and 1..4999; the 99th percentile of 10000 values is 4899.
  assert.equal(u.min, 0);
  assert.ok(Math.abs(u.max - 4899) <= 4999 / 2048, `max ${u.max}`);
});

// ---- mse ----

test('mse (4-bit): Gaussian with outliers clips below max, beats minmax and every coarse ratio', () => {
  const x = gaussian(20000, 7);
  x[0] = 8;
  x[1] = -7.5;
  x[2] = 7;
  const s = spec({ bits: 4 });
  const r = tensorRange(calibrateRange('mse', [x], s));
  const m = Math.max(...x.map(Math.abs));
  assert.ok(r.max < 0.7 * m, `mse clip ${r.max} vs max|x| ${m}`);
  assert.equal(r.min, -r.max);
  const chosen = mseOf(x, r, s);
  const minmax = mseOf(x, tensorRange(calibrateRange('minmax', [x], s)), s);
  assert.ok(chosen < 0.5 * minmax, `mse ${chosen} vs minmax ${minmax}`);
  for (let j = 1; j <= 10; j++) {
    const ratio = j / 10;
    const other = mseOf(x, { min: -ratio * m, max: ratio * m }, s);
    assert.ok(chosen <= other * (1 + 1e-12), `ratio ${ratio}: ${other} < chosen ${chosen}`);
  }
});

test('mse (8-bit): uniform data in [-1, 1] keeps about the full range', () => {
  const rng = new Rng(3);
  const x = Float32Array.from({ length: 20000 }, () => rng.range(-1, 1));
  const r = tensorRange(calibrateRange('mse', [x], spec()));
  const m = Math.max(...x.map(Math.abs));
  assert.ok(r.max >= 0.97 * m && r.max <= m, `clip ${r.max} of ${m}`);
});

test('mse (asymmetric): min and max shrink by the same ratio', () => {
  const x = gaussian(5000, 11, 1, 1);
  x[0] = 12;
  x[1] = -6;
  const r = tensorRange(calibrateRange('mse', [x], spec({ bits: 4, symmetric: false })));
  const lo = Math.min(...x);
  const hi = Math.max(...x);
  assert.ok(r.max < hi, `max ${r.max}`);
  assert.ok(Math.abs(r.min / lo - r.max / hi) < 1e-12, `ratios ${r.min / lo} vs ${r.max / hi}`);
});

// ---- kl ----

const gauss100k = gaussian(100000, 5);

test('kl (8-bit): Gaussian threshold lies between 2 and 6 sigma; deterministic', () => {
  const first = tensorRange(calibrateRange('kl', [gauss100k], spec()));
  assert.ok(first.max >= 2 && first.max <= 6, `threshold ${first.max}`);
  assert.equal(first.min, -first.max);
  const again = tensorRange(calibrateRange('kl', [gauss100k.subarray(0, 50000), gauss100k.subarray(50000)], spec()));
  const oneBatchAgain = tensorRange(calibrateRange('kl', [gauss100k], spec()));
  assert.deepEqual(oneBatchAgain, first);
  assert.ok(again.max >= 2 && again.max <= 6, `two-batch threshold ${again.max}`);
});

test('kl (8-bit): outliers do not stretch the threshold; unsigned uses the positive side', () => {
  const x = Float32Array.from(gauss100k);
  x[0] = 40;
  x[1] = -30;
  const signed = tensorRange(calibrateRange('kl', [x], spec()));
  assert.ok(signed.max >= 2 && signed.max <= 6 && signed.max < 40, `threshold ${signed.max}`);
  const relu = x.map((v) => Math.max(v, 0));
  const unsigned = tensorRange(calibrateRange('kl', [relu], spec({ signed: false, symmetric: false })));
  assert.equal(unsigned.min, 0);
  assert.ok(unsigned.max >= 2 && unsigned.max <= 6, `unsigned threshold ${unsigned.max}`);
});

test('kl (4-bit): zero spikes and spiky histograms do not pull the threshold to the first bins', () => {
  // Post-ReLU tensors are half zeros, and activations of images with constant regions take a few values many
  // times. Before zeros were left out of the search and the histogram merged to 16 bins per level, the
  // heavy-tailed and the spiky cases below kept T = 0.46 and 0.06 (every activation clipped).
  const rng = new Rng(5);
  const cases: [string, () => number, number][] = [
    ['ReLU(gaussian)', () => Math.max(0, rng.normal()), 1.5],
    ['ReLU(gaussian on a 0.05 lattice)', () => Math.max(0, Math.round(rng.normal() * 20) / 20), 1.5],
    ['half zeros, log-normal tail', () => (rng.range(0, 1) < 0.5 ? 0 : Math.exp(rng.normal())), 3],
    ['half zeros, three spikes, |2 gaussian|', () => (rng.range(0, 1) < 0.5 ? 0 : rng.range(0, 1) < 0.3 ? [0.05, 0.1, 0.3][Math.floor(rng.range(0, 3))] : Math.abs(rng.normal()) * 2), 1.5],
  ];
  for (const [name, sample, atLeast] of cases) {
    const x = Float32Array.from({ length: 100000 }, sample);
    const r = tensorRange(calibrateRange('kl', [x], spec({ bits: 4, signed: false, symmetric: false })));
    assert.equal(r.min, 0);
    assert.ok(r.max >= atLeast && r.max < Math.max(...x), `${name}: threshold ${r.max}`);
  }
  const signed = tensorRange(calibrateRange('kl', [gauss100k.map((v, i) => (i % 2 ? 0 : v))], spec({ bits: 4 })));
  assert.ok(signed.max >= 1.5 && signed.max <= 6, `4-bit signed threshold with zeros ${signed.max}`);
});

test('klThresholdBins: closed-form histograms', () => {
  // Data inside the first 128 bins: at i = 128 each level is one bin, Q = P and KL = 0, the first minimum.
  const uniform = new Float64Array(2048).fill(3, 0, 128);
  assert.equal(klThresholdBins(uniform, 128), 128);
  // KL measures shape: a flat histogram stays flat when merged, so keeping a far outlier (i = 2001) is
  // also KL = 0 and beats clipping it into bin 127.
  uniform[2000] = 1;
  assert.equal(klThresholdBins(uniform, 128), 2001);
  // A ramp is flattened by coarser levels, so the outlier is clipped and the 128 fine levels kept.
  const ramp = Float64Array.from({ length: 2048 }, (_, j) => (j < 128 ? 128 - j : 0));
  ramp[2000] = 1;
  assert.equal(klThresholdBins(ramp, 128), 128);
  const d = klDivergences(ramp, 128);
  assert.equal(d.length, 2048 - 128 + 1);
  assert.ok(d[0] < d[2001 - 128], `clip ${d[0]} vs keep ${d[2001 - 128]}`);
});

// ---- per-channel for other kinds, and calibrateRange ----

test('per-channel percentile equals per-tensor percentile on each channel slice', () => {
  const x = gaussian(3 * 4 * 50, 9); // [3, 4, 50] along axis 1
  const pc = channelRange(calibrateRange('percentile', [{ values: x, shape: [3, 4, 50] }], spec(), { perChannelAxis: 1, percentile: 99 }));
  for (let c = 0; c < 4; c++) {
    const slice = new Float32Array(150);
    for (let n = 0; n < 3; n++) slice.set(x.subarray((n * 4 + c) * 50, (n * 4 + c + 1) * 50), n * 50);
    const r = tensorRange(calibrateRange('percentile', [slice], spec(), { percentile: 99 }));
    assert.equal(pc.max[c], Math.fround(r.max));
    assert.equal(pc.min[c], Math.fround(r.min));
  }
});

// ---- errors ----

const errorCases: Array<{ name: string; run: () => unknown; message: RegExp }> = [
  { name: 'unknown kind', run: () => createObserver('median' as ObserverKind, { spec: spec() }), message: /kind "median".*minmax, moving-average, percentile, mse, kl/ },
  { name: 'unknown option', run: () => createObserver('percentile', { spec: spec(), percentil: 99 } as never), message: /option name = "percentil".*percentile, bins/ },
  { name: 'momentum > 1', run: () => createObserver('moving-average', { spec: spec(), momentum: 1.5 }), message: /momentum = 1.5.*\(0, 1\]/ },
  { name: 'momentum 0', run: () => createObserver('moving-average', { spec: spec(), momentum: 0 }), message: /momentum = 0.*\(0, 1\]/ },
  { name: 'momentum on minmax', run: () => createObserver('minmax', { spec: spec(), momentum: 0.1 }), message: /momentum = 0.1.*'moving-average' only/ },
  { name: 'percentile 50', run: () => createObserver('percentile', { spec: spec(), percentile: 50 }), message: /percentile = 50.*\(50, 100\]/ },
  { name: 'percentile 100.5', run: () => createObserver('percentile', { spec: spec(), percentile: 100.5 }), message: /percentile = 100.5.*\(50, 100\]/ },
  { name: 'percentile on kl', run: () => createObserver('kl', { spec: spec(), percentile: 99 }), message: /percentile = 99.*'percentile' only/ },
  { name: 'bins not an integer', run: () => createObserver('percentile', { spec: spec(), bins: 100.5 }), message: /bins = 100.5.*integer in \[16, 16384\]/ },
  { name: 'bins too few', run: () => createObserver('kl', { spec: spec(), bins: 8 }), message: /bins = 8.*integer in \[16, 16384\]/ },
  { name: 'bins on mse', run: () => createObserver('mse', { spec: spec(), bins: 512 }), message: /bins = 512.*'percentile', 'kl' only/ },
  { name: 'kl bins below levels', run: () => createObserver('kl', { spec: spec(), bins: 64 }), message: /bins = 64.*>= 128/ },
  { name: 'kl at 16 bits', run: () => createObserver('kl', { spec: spec({ bits: 16 }) }), message: /bins = 2048.*>= 32768.*'minmax'/ },
  { name: 'bad spec bits', run: () => createObserver('minmax', { spec: spec({ bits: 9 }) }), message: /bits = 9.*2, 3, 4/ },
  { name: 'rangeless method', run: () => createObserver('minmax', { spec: spec({ method: 'binary' }) }), message: /spec.method = "binary".*minmax, lsq, lsq\+, pact/ },
  { name: 'per-group spec', run: () => createObserver('minmax', { spec: spec({ granularity: { kind: 'per-group', axis: 1, size: 32 } }) }), message: /spec.granularity = "per-group".*'per-tensor', 'per-channel'/ },
  { name: 'axis conflicts with spec', run: () => createObserver('minmax', { spec: spec({ granularity: { kind: 'per-channel', axis: 0 } }), perChannelAxis: 1 }), message: /perChannelAxis = 1.*unset or 0/ },
  { name: 'non-integer axis', run: () => createObserver('minmax', { spec: spec(), perChannelAxis: 0.5 }), message: /perChannelAxis = 0.5.*integer axis/ },
  { name: 'per-channel without shape', run: () => createObserver('minmax', { spec: spec(), perChannelAxis: 0 }).observe(f32([1])), message: /per-channel \(axis 0\).*needs the batch shape/ },
  { name: 'axis outside the shape', run: () => createObserver('minmax', { spec: spec(), perChannelAxis: 2 }).observe(f32([1, 2]), [1, 2]), message: /perChannelAxis = 2.*valid: -2\.\.1/ },
  { name: 'channel count changes', run: () => { const o = createObserver('minmax', { spec: spec(), perChannelAxis: 0 }); o.observe(f32([1, 2]), [2]); o.observe(f32([1, 2, 3]), [3]); }, message: /3 channels along axis 0; earlier batches had 2/ },
  { name: 'shape mismatch', run: () => createObserver('kl', { spec: spec() }).observe(f32([1, 2, 3]), [2, 2]), message: /shape \[2,2\] holds 4 values but the batch has 3/ },
  { name: 'NaN in batch', run: () => createObserver('mse', { spec: spec() }).observe(f32([1, NaN])), message: /value NaN at flat index 1 is not finite/ },
];
for (const kind of ['minmax', 'moving-average', 'percentile', 'mse', 'kl'] as const) {
  errorCases.push({ name: `${kind} range before data`, run: () => createObserver(kind, { spec: spec() }).range(), message: new RegExp(`${kind} observer: range\\(\\) called before any value`) });
}

for (const c of errorCases) {
  test(`observer error: ${c.name}`, () => {
    assert.throws(c.run, c.message);
  });
}
