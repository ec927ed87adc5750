import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { loadDataset } from '../../src/data';
import { checkParity } from '../../src/export/parity';
import { exportQdq } from '../../src/export/qdq';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run';
import { scratchDir } from '../helpers/scratch.js';

// PyTorch CNNs built from the ops a QAT user's model is made of beyond Conv/BN/ReLU (bench/peers/
// export_import_fixtures.py): GroupNorm and InstanceNorm, ELU/PReLU/SELU/Mish, squeeze-excitation gating,
// ceil_mode pooling, pixel_shuffle, bilinear and nearest interpolation, F.normalize. Each trains in fp32, then
// quantization-aware at w4a4, and exports as QDQ and int4 files equal to the fake-quant model.
const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures');

for (const name of ['torch_cnn_norms', 'torch_cnn_upsample']) {
  test(`${name}: fp32 training, w4a4 QAT, and qdq / int4 exports that equal the fake-quant model`, async () => {
    const work = scratchDir(`qatkit-${name}-`);
    const base = { ...DEFAULT_TRAIN_CONFIG, model: path.join(FIXTURES, `${name}.onnx`), batch: 32, threads: 2, checkpointEvery: 0, evalEvery: 0 };
    const fp32 = await train({ ...base, steps: 40, lr: 3e-3 }, path.join(work, 'fp32'));
    assert.ok(fp32.test_accuracy > 0.3, `fp32 accuracy ${fp32.test_accuracy}`);
    await train({ ...base, from: path.join(work, 'fp32'), quant: 'w4a4', steps: 15, calibBatches: 1, lr: 1e-3 }, path.join(work, 'qat'));
    const qat = loadCheckpoint(path.join(work, 'qat', 'checkpoint.qat')).model;
    const test10k = loadDataset('mnist').test;
    for (const format of ['qdq', 'int4'] as const) {
      const { graph } = await exportQdq(qat, { format });
      const parity = await checkParity(qat, graph, test10k, { limit: 500 });
      assert.ok(parity.argmax_agreement >= 0.99, `${format}: ${JSON.stringify(parity)}`);
    }
  });
}
