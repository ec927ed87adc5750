// isRotaryTable (src/ir/rotary-table.ts): rotary cos/sin caches recognised by their values, so anonymous buffers
// (`onnx::Slice_164`) are constants, not parameters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor } from '../../src/ir/tensor';
import { isRotaryTable } from '../../src/ir/rotary-table';
import { Rng } from '../../src/train/rng';

/** LLaMA's cache: angles p * base^(-2j/D) in float32, concatenated twice ([1, 1, P, D]), cos or sin. */
function cache(kind: 'cos' | 'sin', positions: number, width: number, base = 10000): Tensor {
  const half = width / 2;
  const values = new Float32Array(positions * width);
  for (let p = 0; p < positions; p++) {
    for (let j = 0; j < width; j++) {
      const angle = Math.fround(p * Math.fround(1 / base ** ((2 * (j % half)) / width)));
      values[p * width + j] = (kind === 'cos' ? Math.cos : Math.sin)(angle);
    }
  }
  return Tensor.float([1, 1, positions, width], values);
}

test('cos and sin caches of every usual size are rotary tables', () => {
  for (const [p, d] of [[32, 8], [2048, 64], [4096, 128]]) {
    assert.ok(isRotaryTable(cache('cos', p, d)), `cos ${p}x${d}`);
    assert.ok(isRotaryTable(cache('sin', p, d)), `sin ${p}x${d}`);
  }
  // GPT-J's embed_positions: [sin | cos] of the same angles in one [P, D] table.
  const [sin, cos] = [cache('sin', 32, 8).data as Float32Array, cache('cos', 32, 8).data as Float32Array];
  const sincos = new Float32Array(32 * 8);
  for (let p = 0; p < 32; p++) for (let j = 0; j < 4; j++) [sincos[p * 8 + j], sincos[p * 8 + 4 + j]] = [sin[p * 8 + j], cos[p * 8 + j]];
  assert.ok(isRotaryTable(Tensor.float([32, 8], sincos)), 'GPT-J [sin | cos]');
  const flat = cache('cos', 64, 16);
  assert.ok(isRotaryTable(Tensor.float([64, 16], flat.data as Float32Array)), 'a [P, D] table');
});

test('learned and initialised tables are not: zeros, ones, random, a perturbed cache, a batch of caches', () => {
  const rng = new Rng(3);
  assert.equal(isRotaryTable(Tensor.float([1, 17, 16], new Float32Array(17 * 16))), false, 'zeros (ViT position init)');
  assert.equal(isRotaryTable(Tensor.float([8, 16], new Float32Array(128).fill(1))), false, 'ones');
  assert.equal(isRotaryTable(Tensor.float([32, 8], Float32Array.from({ length: 256 }, () => rng.normal() * 0.02))), false, 'N(0, 0.02)');
  const perturbed = cache('cos', 32, 8);
  (perturbed.data as Float32Array)[20 * 8 + 3] += 0.01;
  assert.equal(isRotaryTable(perturbed), false, 'one element 0.01 off');
  const two = new Float32Array(2 * 32 * 8);
  two.set(cache('sin', 32, 8).data as Float32Array);
  two.set(cache('sin', 32, 8).data as Float32Array, 256);
  assert.equal(isRotaryTable(Tensor.float([2, 32, 8], two)), false, 'a leading dim other than 1');
});
