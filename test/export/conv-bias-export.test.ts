import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run';
import { exportRun } from '../../src/export/export-run';
import { loadRun } from '../../src/train/run';
import { scratchDir } from '../helpers/scratch.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const tmp = () => scratchDir('qatkit-convbias-');

test('a PyTorch CNN with a conv bias before BN trains with --quant w8a8 and exports (the bias Add gets no activation quantizer)', async () => {
  const fp32 = tmp();
  const config = { ...DEFAULT_TRAIN_CONFIG, model: path.join(root, 'test/fixtures/torch_cnn.onnx'), steps: 2, batch: 16, threads: 2 };
  await train(config, fp32);
  const qat = tmp();
  await train({ ...config, from: fp32, quant: 'w8a8', steps: 4, bnFreezeStep: 2, calibBatches: 1 }, qat);
  const model = loadRun(qat).model;
  const folded = model.quant!.folded.find((f) => f.biasAdd);
  assert.ok(folded, 'the first conv has a bias and is folded with its BN');
  assert.ok(!model.quant!.quantizers.some((q) => q.role === 'activation' && q.layers.includes(folded!.biasAdd!)), 'no quantizer on the bias Add');
  const out = path.join(tmp(), 'cnn.onnx');
  const report = await exportRun({ from: qat, out, format: 'qdq', limit: 500, threads: 2 });
  assert.ok(fs.existsSync(out));
  assert.ok(report.parity.argmax_agreement >= 0.999, `agreement ${report.parity.argmax_agreement}`);
});
