/**
 * The report's numbers in closed form: weight histograms and their grid from a hand-made weight sample, layer
 * choice, the bits label, and the export table's columns for image and language-model exports.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bitsLabel, weightHistogramSpec } from '../../src/report/charts';
import { exportSummary } from '../../src/report/load-runs';
import { exportsTable } from '../../src/report/tables';
import { renderSvg } from '../../src/report/render-svg';
import { chooseLayers, globToRegExp, histogramOf } from '../../src/report/weight-histograms';
import type { WeightSample } from '../../src/train/quant-health';
import { dataMarks } from './tiny-runs';

function sample(weight: number[], scale: number[], zeroPoint: number[], qmin: number, qmax: number, perRow = 1): WeightSample {
  return { node: 'fq', layer: 'fc0', weight: Float32Array.from(weight), scale: Float32Array.from(scale), zeroPoint: Float32Array.from(zeroPoint), index: (i) => (scale.length === 1 ? 0 : Math.floor(i / perRow)), qmin, qmax };
}

test('a per-tensor histogram is in weight units over the grid s (q - z), with the clipped fraction counted exactly', () => {
  // s = 0.1, 4-bit signed: grid -0.8 .. 0.7. 0.9 and -0.86 lie beyond half a step past the ends: 2 of 8 clipped.
  const h = histogramOf('run', sample([-0.86, -0.8, -0.3, 0, 0.05, 0.2, 0.7, 0.9], [0.1], [0], -8, 7), 4);
  assert.equal(h.unit, 'weight');
  assert.deepEqual(h.grid.map((g) => Math.round(g * 1e6) / 1e6), [-0.8, -0.7, -0.6, -0.5, -0.4, -0.3, -0.2, -0.1, 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]);
  assert.equal(h.clipped, 2 / 8);
  assert.equal(h.bins.reduce((a, b) => a + b.count, 0), 8);
  // The bins span the weights and the grid: from the smallest weight to the largest.
  assert.ok(Math.abs(h.bins[0].start - -0.86) < 1e-6);
  assert.ok(Math.abs(h.bins.at(-1)!.end - 0.9) < 1e-6);
});

test('a per-channel histogram divides each weight by its own scale (one axis in grid steps)', () => {
  // Two channels of two weights, scales 0.5 and 2: w / s = [1, -2] and [1, 3]; an unsigned zero point per channel.
  const h = histogramOf('run', sample([0.5, -1, 2, 6], [0.5, 2], [0, 0], -8, 7, 2), 4);
  assert.equal(h.unit, 'w / s + z (code units)');
  assert.deepEqual(h.grid, [-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7]);
  const centres = h.bins.flatMap((b) => Array(b.count).fill((b.start + b.end) / 2));
  const expected = [-2, 1, 1, 3];
  assert.equal(centres.length, 4);
  for (const [i, c] of centres.sort((a, b) => a - b).entries()) assert.ok(Math.abs(c - expected[i]) <= (h.bins[0].end - h.bins[0].start) / 2 + 1e-9, `${c} vs ${expected[i]}`);
  assert.equal(h.clipped, 0);
});

test('a 4-bit grid draws a rule per point; an 8-bit grid draws its clip limits and a band', async () => {
  const four = histogramOf('run', sample([-0.3, 0.1, 0.2], [0.1], [0], -8, 7), 4);
  const eight = histogramOf('run', sample([-0.3, 0.1, 0.2], [0.01], [0], -128, 127), 8);
  const rules = (svg: string) => (svg.match(/<g class="mark-rule role-mark[^>]*>([\s\S]*?)<\/g>/)![1].match(/<line/g) ?? []).length;
  const svg4 = await renderSvg(weightHistogramSpec(four));
  const svg8 = await renderSvg(weightHistogramSpec(eight));
  assert.equal(rules(svg4), 16);
  assert.equal(rules(svg8), 2);
  assert.ok(dataMarks(svg8) > 2, 'bars and the band besides the rules');
});

test('layers: the first, a middle and the last by default; a glob matches whole names with * and ?', () => {
  const layers = ['conv0', 'conv1', 'conv2', 'conv3', 'fc0'];
  assert.deepEqual(chooseLayers(layers), ['conv0', 'conv2', 'fc0']);
  assert.deepEqual(chooseLayers(['a', 'b']), ['a', 'b']);
  assert.deepEqual(chooseLayers(layers, 'conv?'), ['conv0', 'conv1', 'conv2', 'conv3']);
  assert.deepEqual(chooseLayers(layers, 'conv'), []);
  assert.ok(globToRegExp('blocks.0.*').test('blocks.0.attn.proj/MatMul'));
  assert.ok(!globToRegExp('blocks.0.*').test('blocksX0.attn'));
});

test('bits labels: fp32 at 32 and above, ternary with two decimals', () => {
  assert.deepEqual([32, 8, 4, 1.58, 1].map(bitsLabel), ['fp32', '8', '4', '1.58', '1']);
});

test('the export table reads image exports by accuracy and argmax, language-model decoders by perplexity and top-1', () => {
  const image = exportSummary(
    { format: 'qdq', out: 'run/model.int8.onnx', file_bytes: 4340, weight_ratio: 4, verified: true, parity: { argmax_agreement: 1, exported_accuracy: 0.525, qat_accuracy: 0.525, max_abs_logit_difference: 0.00212 } },
    'run/export.json',
  )!;
  const lm = exportSummary(
    { format: 'int4', out: 'lm/model.int4.onnx', file_bytes: 34186, size_ratio_vs_fp32: 2.65, verified: false, parity: { reference: 'fake-quant', exported_val_perplexity: 161.5947, reference_val_perplexity: 161.5946, top1_agreement: 0.995, max_abs_logit_difference: 3e-7 } },
    'lm/export.json',
  )!;
  assert.equal(exportSummary({ format: 'qdq' }, 'x.json'), undefined, 'neither size nor parity: not an export report');
  const rows = exportsTable([image, lm]).split('\n').filter((l) => l.startsWith('<tr><td>'));
  assert.equal(
    rows[0],
    '<tr><td>run/model.int8.onnx</td><td>qdq</td><td class="num">4.2 KiB</td><td class="num">4.00x (weights)</td><td class="num">&ndash;</td>' +
      '<td class="num">52.50%</td><td class="num">52.50% <small>fake-quant</small></td><td class="num">100.00% <small>argmax</small></td><td class="num">0.00212</td><td>yes</td></tr>',
  );
  assert.equal(
    rows[1],
    '<tr><td>lm/model.int4.onnx</td><td>int4</td><td class="num">33.4 KiB</td><td class="num">2.65x (file)</td><td class="num">&ndash;</td>' +
      '<td class="num">ppl 161.595</td><td class="num">ppl 161.595 <small>fake-quant</small></td><td class="num">99.50% <small>top-1</small></td><td class="num">3.00e-7</td><td>no</td></tr>',
  );
});
