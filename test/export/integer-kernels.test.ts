import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { loadDataset } from '../../src/data';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { ModelBuilder } from '../../src/models/builder';
import { Model } from '../../src/models/model';
import { checkIntegerReference } from '../../src/export/integer-check';
import { optimizedOps } from '../../src/export/kernel-report';
import { checkParity } from '../../src/export/parity';
import { exportQdq } from '../../src/export/qdq';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run';
import { scratchDir } from '../helpers/scratch.js';

/**
 * The layer patterns that used to leave convs in float: ReLU6 (a Clip) before the quantizer, a conv that reads a
 * Relu's unsigned codes and writes a residual Add's signed ones, a depthwise conv, and a conv whose output only an
 * average pool reads.
 */
function mobileBlocks(): Model {
  const m = new ModelBuilder('mobile_blocks', { channels: 1, height: 28, width: 28, mean: [0.1307], std: [0.3081] }, 5);
  m.conv(8, 3, { stride: 2, pad: 1, bias: false, name: 'stem' });
  m.batchNorm();
  const skip = m.relu6();
  m.conv(8, 3, { pad: 1, groups: 8, bias: false, name: 'depthwise' });
  m.batchNorm();
  m.relu6();
  m.conv(8, 1, { bias: false, name: 'project' });
  const y = m.batchNorm();
  m.add(y, skip);
  m.conv(16, 1, { bias: false, name: 'head' });
  m.batchNorm();
  m.relu6();
  m.globalAvgPool();
  m.flatten();
  m.linear(10, { name: 'fc' });
  return m.finish();
}

let qat: Model;
let exported: Graph;

before(async () => {
  const work = scratchDir('qatkit-int-kernels-');
  const base = { ...DEFAULT_TRAIN_CONFIG, model: mobileBlocks(), batch: 32, threads: 2, checkpointEvery: 0, evalEvery: 0 };
  await train({ ...base, steps: 30, lr: 1e-2 }, path.join(work, 'fp32'));
  await train({ ...base, from: path.join(work, 'fp32'), quant: 'w4a4', steps: 20, bnFreezeStep: 10, calibBatches: 1, lr: 2e-3 }, path.join(work, 'qat'));
  qat = loadCheckpoint(path.join(work, 'qat', 'checkpoint.qat')).model;
  exported = (await exportQdq(qat)).graph;
});

test('every layer of a ReLU6 / depthwise / residual / average-pool network runs on an ORT integer kernel', async () => {
  const ops = await optimizedOps(exported);
  const float = ops.filter((o) => /^(Conv|Gemm|MatMul|com\.microsoft\.(FusedConv|FusedMatMul|FusedGemm))$/.test(o));
  assert.deepEqual(float, [], ops.join(' '));
  assert.equal(ops.filter((o) => o === 'com.microsoft.QLinearConv').length, 4, ops.join(' '));
  assert.ok(ops.includes('com.microsoft.QGemm'), ops.join(' '));
  assert.ok(ops.includes('com.microsoft.QLinearAdd') && ops.includes('com.microsoft.QLinearGlobalAveragePool'), ops.join(' '));
  assert.ok(!exported.nodes.some((n) => n.opType === 'Clip' && exported.initializers.get(n.inputs[2])?.dtype === DType.FLOAT), 'ReLU6 folded into the code clamp');
});

test('activations are stored as uint8 (signed grids shifted by 128), and the export equals the fake-quant model', async () => {
  const zeroPoints = exported.nodes.filter((n) => n.opType === 'QuantizeLinear').map((n) => exported.initializers.get(n.inputs[2])!);
  assert.ok(zeroPoints.length >= 6);
  assert.ok(zeroPoints.every((z) => z.dtype === DType.UINT8));
  const signed = qat.quant!.quantizers.filter((q) => q.role === 'activation' && q.spec.signed);
  assert.ok(signed.length > 0, 'the residual Add reads a signed activation');
  for (const q of signed) assert.equal(exported.initializers.get(`${q.tensor}/zero_point`)!.toNumbers()[0], 128 + 0, q.tensor);
  assert.ok(qat.quant!.quantizers.some((q) => q.role === 'activation' && q.layers.some((l) => exported.nodes.find((n) => n.name === l)?.opType === 'GlobalAveragePool')), 'the pool input is quantized');
  const test10k = loadDataset('mnist').test;
  const parity = await checkParity(qat, exported, test10k, { limit: 1000 });
  assert.ok(parity.argmax_agreement >= 0.999, JSON.stringify(parity));
  const integer = await checkIntegerReference(exported, qat.input, test10k);
  assert.ok(!('skipped' in integer), JSON.stringify(integer));
  assert.equal(integer.first_mismatch, null);
});
