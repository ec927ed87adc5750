import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { loadDataset } from '../../src/data';
import { checkParity } from '../../src/export/parity';
import { exportQdq } from '../../src/export/qdq';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run';
import { scratchDir } from '../helpers/scratch.js';

// PyTorch models built from what a QAT user's network holds beyond Conv/BN/ReLU (bench/peers/
// export_import_fixtures.py): GroupNorm and InstanceNorm, ELU/PReLU/SELU/Mish, squeeze-excitation gating, ceil_mode
// pooling, pixel_shuffle, bilinear and nearest interpolation, F.normalize, nn.LSTM and nn.GRU (unrolled at import).
// Each trains in fp32, then quantization-aware at w4a4, and exports as QDQ and int4 files equal to the fake-quant
// model.
const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures');

// Recurrent layers learn MNIST rows more slowly: more fp32 steps before the accuracy check.
const FP32_STEPS: Record<string, number> = { torch_cnn_norms: 40, torch_cnn_upsample: 40, torch_rnn: 150 };

for (const name of Object.keys(FP32_STEPS)) {
  test(`${name}: fp32 training, w4a4 QAT, and qdq / int4 exports that equal the fake-quant model`, async () => {
    const work = scratchDir(`qatkit-${name}-`);
    const base = { ...DEFAULT_TRAIN_CONFIG, model: path.join(FIXTURES, `${name}.onnx`), batch: 32, threads: 2, checkpointEvery: 0, evalEvery: 0 };
    const fp32 = await train({ ...base, steps: FP32_STEPS[name], lr: 3e-3 }, path.join(work, 'fp32'));
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
