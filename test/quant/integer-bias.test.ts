import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { loadDataset } from '../../src/data';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { ModelBuilder } from '../../src/models/builder';
import { Model } from '../../src/models/model';
import { checkParity } from '../../src/export/parity';
import { exportQdq } from '../../src/export/qdq';
import { fetchValues } from '../../src/export/fetch-values';
import { simulateIntegerBiases } from '../../src/quant/integer-bias';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run';
import { buildEvalGraphWithBiases, buildTrainStep, TrainStepOptions } from '../../src/train/step-graph';
import { defaultOptimizer } from '../../src/train/optimizer';
import { scratchDir } from '../helpers/scratch.js';

/** A residual CNN small enough for a test: stem conv + BN, one basic block (two conv + BN, identity skip), a Linear with a bias. */
function residualCnn(): Model {
  const m = new ModelBuilder('res_tiny', { channels: 1, height: 28, width: 28, mean: [0.1307], std: [0.3081] }, 3);
  m.conv(6, 3, { stride: 2, pad: 1 });
  m.batchNorm();
  const skip = m.relu();
  m.conv(6, 3, { pad: 1 });
  m.batchNorm();
  m.relu();
  m.conv(6, 3, { pad: 1 });
  const y = m.batchNorm();
  m.add(skip, y);
  m.relu();
  m.maxPool(2);
  m.flatten();
  m.linear(10);
  return m.finish();
}

const work = scratchDir('qatkit-int-bias-');
let fp32 = '';
let qat: Model;

before(async () => {
  fp32 = path.join(work, 'fp32');
  const base = { ...DEFAULT_TRAIN_CONFIG, model: residualCnn(), batch: 32, threads: 2, checkpointEvery: 0, evalEvery: 0 };
  await train({ ...base, steps: 40, lr: 1e-2 }, fp32);
  const dir = path.join(work, 'w4a4');
  await train({ ...base, from: fp32, quant: 'w4a4', steps: 30, bnFreezeStep: 15, calibBatches: 1, lr: 2e-3 }, dir);
  qat = loadCheckpoint(path.join(dir, 'checkpoint.qat')).model;
});

const opTypes = (g: Graph) => g.nodes.map((n) => n.opType);

test('the evaluation graph adds every conv and Linear bias on its int32 grid s_in * s_w: folded BNs become Conv + round(b / s) s', async () => {
  const { graph, integerBiases } = buildEvalGraphWithBiases(qat);
  assert.equal(integerBiases.length, 4, 'three folded convs and the Linear');
  assert.ok(!opTypes(graph).includes('BatchNormalization'), 'every frozen BN is folded into its conv bias');
  assert.equal(integerBiases.filter((x) => x.add).length, 3);
  const values = await fetchValues(qat, integerBiases.flatMap((x) => [x.bias, x.scale, x.output]));
  for (const x of integerBiases) {
    const [b, s, q] = [x.bias, x.scale, x.output].map((v) => values.get(v)!.data as Float32Array);
    assert.equal(q.length, b.length);
    for (let c = 0; c < b.length; c++) {
      const code = q[c] / s[c];
      assert.ok(Math.abs(code - Math.round(code)) < 1e-3, `${x.layer} channel ${c}: ${q[c]} is not on the grid ${s[c]}`);
      assert.ok(Math.abs(q[c] - b[c]) <= s[c] / 2 + 1e-6 * Math.abs(b[c]), `${x.layer} channel ${c}: |${q[c]} - ${b[c]}| > s / 2`);
    }
  }
  // The grid is coarse enough at 4 bits that rounding moves the biases: the simulation is not the float model.
  const moved = integerBiases.some((x) => (values.get(x.output)!.data as Float32Array).some((v, c) => v !== (values.get(x.bias)!.data as Float32Array)[c]));
  assert.ok(moved);
});

test('the export stores the simulated int32 bias codes and gives the fake-quant logits (4-bit activations, residual block)', async () => {
  const r = await exportQdq(qat, { format: 'qdq' });
  const { integerBiases } = buildEvalGraphWithBiases(qat);
  const values = await fetchValues(qat, integerBiases.flatMap((x) => [x.output, x.scale]));
  for (const x of integerBiases) {
    const codes = r.graph.initializers.get(`${x.layer}/bias_int32`);
    assert.ok(codes && codes.dtype === DType.INT32, `${x.layer} has int32 bias codes`);
    const q = values.get(x.output)!.data as Float32Array;
    const s = values.get(x.scale)!.data as Float32Array;
    (codes.data as Int32Array).forEach((code, c) => assert.equal(Math.fround(code * s[c]), q[c]));
  }
  const parity = await checkParity(qat, r.graph, loadDataset('mnist').test, { limit: 2000 });
  assert.ok(parity.argmax_agreement >= 0.999, `agreement ${parity.argmax_agreement}`);
  assert.ok(parity.max_abs_logit_difference < 0.05, `max logit difference ${parity.max_abs_logit_difference}`);
});

test('before the BN freeze the training step keeps batch-statistics BN (no fixed bias to round); after it, Conv + grid bias', () => {
  const options: TrainStepOptions = { batchSize: 8, classes: 10, optimizer: defaultOptimizer('adamw') };
  const training = buildTrainStep(qat, options).graph;
  assert.ok(opTypes(training).some((o) => o === 'BatchNormTrain' || o === 'ConvBatchNormTrain'));
  assert.equal(training.nodes.filter((n) => n.name.endsWith('/bias_fake_quant')).length, 1, 'only the Linear');
  const frozen = buildTrainStep(qat, { ...options, freezeBatchNorm: true }).graph;
  assert.ok(!opTypes(frozen).includes('BatchNormalization'));
  assert.equal(frozen.nodes.filter((n) => n.name.endsWith('/bias_fake_quant')).length, 4);
});

test('biases the export keeps in float stay float in the simulation: per-group weights, language models', async () => {
  const grouped = { ...qat, quant: { ...qat.quant!, quantizers: qat.quant!.quantizers.map((q) => (q.role === 'weight' ? { ...q, spec: { ...q.spec, granularity: { kind: 'per-group' as const, axis: 1, size: 2 } } } : q)) } };
  assert.deepEqual(simulateIntegerBiases(grouped.graph.clone(), grouped), []);
  assert.deepEqual(simulateIntegerBiases(qat.graph.clone(), { ...qat, task: 'language-model' }), []);
});
