import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gptqQuantize, reconstructionError } from '../../src/quant/ptq-methods/gptq';
import { quantizeCode, roundToNearest, WeightGrid } from '../../src/quant/ptq-methods/weight-grid';

/** Deterministic normal samples (mulberry32 + Box-Muller). */
function normals(n: number, seed: number): Float64Array {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Float64Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(uniform() + 1e-12)) * Math.cos(2 * Math.PI * uniform()));
}

/** Correlated inputs with a few outlier channels, as transformer activations have: X [n, k]. */
function inputs(n: number, k: number, seed: number): Float64Array {
  const z = normals(n * k, seed);
  const x = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < k; j++) x[i * k + j] = z[i * k + j] + 0.8 * z[i * k + ((j + 1) % k)] + (j % 7 === 0 ? 4 * z[i * k + j] : 0);
  }
  return x;
}

function gram(x: Float64Array, n: number, k: number): Float64Array {
  const g = new Float64Array(k * k);
  for (let r = 0; r < n; r++) for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) g[i * k + j] += (x[r * k + i] * x[r * k + j]) / n;
  return g;
}

const grid = (bits: number, groupSize: number): WeightGrid => ({ qmin: -(2 ** (bits - 1)), qmax: 2 ** (bits - 1) - 1, symmetric: true, groupSize, perTensor: false });
const identity = (k: number) => Float64Array.from({ length: k * k }, (_, i) => (i % (k + 1) === 0 ? 1 : 0));

test('GPTQ with H = I is round-to-nearest at min/max scales (no error to propagate)', () => {
  const [rows, cols] = [6, 64];
  const w = normals(rows * cols, 1);
  for (const g of [grid(3, 32), grid(4, 64), grid(2, 16)]) {
    const q = gptqQuantize(w, rows, cols, identity(cols), g);
    const rtn = roundToNearest(w, rows, cols, g);
    assert.deepEqual(Array.from(q.codes), Array.from(rtn.codes));
    assert.deepEqual(Array.from(q.scales), Array.from(rtn.scales));
  }
});

test('GPTQ output error ||XW^T - XQ^T|| is below round-to-nearest on correlated inputs (3 and 4 bits, groups of 32)', () => {
  const [n, rows, cols] = [512, 16, 64];
  const x = inputs(n, cols, 2);
  const h = gram(x, n, cols);
  const w = normals(rows * cols, 3);
  for (const bits of [3, 4]) {
    for (const actOrder of [false, true]) {
      const g = grid(bits, 32);
      const q = gptqQuantize(w, rows, cols, h, g, { actOrder });
      const rtn = roundToNearest(w, rows, cols, g);
      const eq = reconstructionError(w, q.values, rows, cols, h);
      const er = reconstructionError(w, rtn.values, rows, cols, h);
      assert.ok(eq < 0.9 * er, `${bits} bits, act-order ${actOrder}: GPTQ ${eq} vs RTN ${er}`);
    }
  }
});

test('GPTQ values lie on its own per-group grid: value = (code - zero) * scale of the column\'s contiguous group', () => {
  const [rows, cols] = [4, 64];
  const x = inputs(256, cols, 4);
  const w = normals(rows * cols, 5);
  for (const actOrder of [false, true]) {
    const g = grid(3, 16);
    const q = gptqQuantize(w, rows, cols, gram(x, 256, cols), g, { actOrder });
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const s = q.scales[r * 4 + Math.floor(c / 16)];
        assert.equal(q.values[r * cols + c], Math.fround(q.codes[r * cols + c] * s));
        assert.ok(q.codes[r * cols + c] >= g.qmin && q.codes[r * cols + c] <= g.qmax);
        // FakeQuantize of the stored value at the stored scale gives the same code back (export reads it so).
        assert.equal(quantizeCode(q.values[r * cols + c], s, 0, g), q.codes[r * cols + c]);
      }
    }
  }
});

test('lazy batches do not change the result: block sizes 1, 3, 5 and 128 quantize alike (groups straddling blocks included)', () => {
  const [rows, cols] = [5, 48];
  const x = inputs(200, cols, 6);
  const h = gram(x, 200, cols);
  const w = normals(rows * cols, 7);
  const g = grid(3, 16);
  const ref = gptqQuantize(w, rows, cols, h, g, { blockSize: 128 });
  for (const blockSize of [1, 3, 5]) {
    const q = gptqQuantize(w, rows, cols, h, g, { blockSize });
    assert.deepEqual(Array.from(q.codes), Array.from(ref.codes), `block ${blockSize}`);
    assert.deepEqual(Array.from(q.scales), Array.from(ref.scales), `block ${blockSize}`);
  }
});

/** Solves A x = b (n x n, Gaussian elimination with partial pivoting). */
function solve(a: number[][], b: number[]): number[] {
  const n = b.length;
  const m = a.map((row, i) => [...row, b[i]]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r][c]) > Math.abs(m[p][c])) p = r;
    [m[c], m[p]] = [m[p], m[c]];
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m[r][c] / m[c][c];
      for (let k = c; k <= n; k++) m[r][k] -= f * m[c][k];
    }
  }
  return m.map((row, i) => row[n] / row[i]);
}

test('brute force on a 2x4 weight: GPTQ is the greedy quantize-then-refit by least squares, and the exhaustive optimum <= GPTQ <= RTN', () => {
  const [rows, cols, n] = [2, 4, 64];
  const x = inputs(n, cols, 8);
  const h = gram(x, n, cols);
  const w = Float64Array.from([0.31, -0.72, 0.55, 0.12, -0.43, 0.27, 0.66, -0.18]);
  const g = grid(2, cols); // per channel: scales fixed from W before the loop
  for (const blockSize of [1, 2, 128]) {
    const q = gptqQuantize(w, rows, cols, h, g, { percdamp: 0, blockSize });
    const rtn = roundToNearest(w, rows, cols, g);
    const hAt = (i: number, j: number) => h[i * cols + j];
    let optimum = 0;
    for (let r = 0; r < rows; r++) {
      const s = q.scales[r];
      const orig = Array.from(w.subarray(r * cols, (r + 1) * cols));
      // Greedy OBQ: quantize column c, then refit the free columns to minimise (w - v)^T H (w - v) exactly.
      const v = [...orig];
      const fixed: number[] = [];
      for (let c = 0; c < cols; c++) {
        const code = quantizeCode(v[c], s, 0, g);
        assert.equal(q.codes[r * cols + c], code, `row ${r} column ${c} (block ${blockSize})`);
        v[c] = code * s;
        fixed.push(c);
        const free = Array.from({ length: cols - c - 1 }, (_, i) => c + 1 + i);
        if (!free.length) break;
        // d_free = -H_ff^-1 H_fF d_F, with d = w - v.
        const rhs = free.map((i) => -fixed.reduce((acc, j) => acc + hAt(i, j) * (orig[j] - v[j]), 0));
        const dFree = solve(free.map((i) => free.map((j) => hAt(i, j))), rhs);
        free.forEach((i, k) => (v[i] = orig[i] - dFree[k]));
      }
      // Exhaustive search over the 4^4 code vectors of this row on the same grid.
      let best = Infinity;
      for (let m = 0; m < 4 ** cols; m++) {
        const d = Array.from({ length: cols }, (_, c) => orig[c] - (Math.floor(m / 4 ** c) % 4 + g.qmin) * s);
        let e = 0;
        for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) e += d[i] * hAt(i, j) * d[j];
        best = Math.min(best, e);
      }
      optimum += best;
    }
    const eq = reconstructionError(w, q.values, rows, cols, h);
    const er = reconstructionError(w, rtn.values, rows, cols, h);
    assert.ok(optimum <= eq + 1e-12 && eq <= er + 1e-12, `optimum ${optimum} <= GPTQ ${eq} <= RTN ${er}`);
  }
});
