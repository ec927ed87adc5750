import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { loadDataset } from '../../src/data';
import { DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { layerSensitivity, singleLayerConfig, suggestMixedPrecision } from '../../src/quant/sensitivity';
import { planQuantization } from '../../src/quant/prepare';
import { scratchDir } from '../helpers/scratch.js';


test('per-layer sensitivity measures each layer alone and the suggestion keeps the most sensitive at 8 bits', async () => {
  const dir = scratchDir('qatkit-sens-');
  await train({ ...DEFAULT_TRAIN_CONFIG, model: 'mlp', steps: 60, batch: 64 }, dir);
  const model = loadCheckpoint(path.join(dir, 'checkpoint.qat')).model;
  const plan = planQuantization(model, singleLayerConfig('fc1', 2));
  assert.deepEqual(plan.weights.map((w) => w.node.name), ['fc1']);
  const data = loadDataset('mnist');
  const report = await layerSensitivity(model, data.train, data.test, { bits: 2, limit: 1000, calibCount: 256 });
  assert.deepEqual(report.layers.map((l) => l.layer), ['fc0', 'fc1', 'fc2']);
  for (const l of report.layers) assert.ok(Math.abs(report.fp32_accuracy - l.accuracy - l.drop) < 1e-12);
  assert.ok(report.layers.some((l) => l.drop > 0.001), `2-bit layers should hurt: ${JSON.stringify(report.layers)}`);
  const none = suggestMixedPrecision(report, 1);
  assert.deepEqual(none.overrides, []);
  const all = suggestMixedPrecision(report, 0);
  const worst = [...report.layers].sort((a, b) => b.drop - a.drop)[0];
  assert.ok(all.overrides.some((o) => o.match === worst.layer));
  assert.equal(all.preset, 'w2a2');
});
