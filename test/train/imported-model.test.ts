import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run';
import { importForTraining } from '../../src/models/resolve';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { scratchDir } from '../helpers/scratch.js';

const fixture = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/torch_cnn.onnx');
const tmp = () => scratchDir('qatkit-import-');

test('a model exported by torch.onnx.export trains: initializers become parameters, BN trains with batch statistics', async () => {
  const model = importForTraining(fixture);
  assert.ok(model.params.length >= 8, `params: ${model.params}`);
  assert.equal(model.runningStats.length, 4);
  const dir = tmp();
  const r = await train({ ...DEFAULT_TRAIN_CONFIG, model: fixture, steps: 60, batch: 64, lr: 2e-3 }, dir);
  const early = r.losses.slice(0, 5).reduce((a, b) => a + b) / 5;
  const late = r.losses.slice(-5).reduce((a, b) => a + b) / 5;
  assert.ok(late < early * 0.6, `loss did not fall: ${early} -> ${late}`);
  assert.ok(r.test_accuracy > 0.7, `accuracy ${r.test_accuracy}`);
  // The running statistics were updated by training and saved in the checkpoint.
  const ckpt = loadCheckpoint(path.join(dir, 'checkpoint.qat'));
  const before = model.graph.initializers.get(model.runningStats[0])!.data;
  const after = ckpt.model.graph.initializers.get(model.runningStats[0])!.data;
  assert.notDeepEqual(Array.from(after as Float32Array), Array.from(before as Float32Array));
});

test('input scaling flags become graph nodes, so they travel with the run', async () => {
  const dir = tmp();
  await train({ ...DEFAULT_TRAIN_CONFIG, model: fixture, steps: 2, batch: 16, input: { scale: 1, mean: [0.5], std: [0.25] } }, dir);
  const ckpt = loadCheckpoint(path.join(dir, 'checkpoint.qat'));
  const ops = ckpt.model.graph.nodes.slice(0, 3).map((n) => n.opType);
  assert.deepEqual(ops, ['Mul', 'Sub', 'Div']);
  const meanName = ckpt.model.graph.nodes[1].inputs[1];
  assert.equal((ckpt.model.graph.initializers.get(meanName)!.data as Float32Array)[0], 0.5);
});
