import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { scratchDir } from '../helpers/scratch.js';

const tmp = () => scratchDir('qatkit-osc-');
const config = { ...DEFAULT_TRAIN_CONFIG, model: 'mlp', quant: 'w2a8', batch: 32, steps: 40, lr: 5e-3, schedule: 'constant' as const, calibBatches: 1 };

test('low-bit QAT reports the fraction of oscillating weights per layer', async () => {
  const r = await train(config, tmp());
  const layers = Object.keys(r.oscillating_fraction ?? {});
  assert.ok(layers.length >= 1, 'no oscillation metrics');
  for (const v of Object.values(r.oscillating_fraction!)) assert.ok(v >= 0 && v <= 1);
  assert.ok(Object.values(r.oscillating_fraction!).some((v) => v > 0), `no weight oscillated: ${JSON.stringify(r.oscillating_fraction)}`);
  assert.deepEqual(Object.values(r.frozen_fraction!).filter((v) => v > 0), []);
});

test('iterative freezing freezes oscillating weights and keeps their latent values fixed', async () => {
  const dir = tmp();
  const r = await train({ ...config, oscillation: { freezeThreshold: 0.015 } }, dir, { stopAtStep: 30 });
  const frozen = Object.values(r.frozen_fraction!);
  assert.ok(frozen.some((v) => v > 0), `nothing frozen: ${JSON.stringify(r.frozen_fraction)}`);
  const at30 = loadCheckpoint(path.join(dir, 'checkpoint.qat'));
  await train({ ...config, oscillation: { freezeThreshold: 0.015 } }, dir, { resume: true });
  const at40 = loadCheckpoint(path.join(dir, 'checkpoint.qat'));
  const layer = Object.keys(r.frozen_fraction!).find((k) => r.frozen_fraction![k] > 0)!;
  const mask = at30.optimizerState.get(`oscillation/${layer}/frozen`)!.data as Float32Array;
  const weight = at30.model.quant!.quantizers.find((z) => z.role === 'weight' && z.layers[0] === layer)!.tensor;
  const before = at30.model.graph.initializers.get(weight)!.data as Float32Array;
  const after = at40.model.graph.initializers.get(weight)!.data as Float32Array;
  let checked = 0;
  mask.forEach((m, i) => {
    if (m > 0.5) {
      assert.equal(after[i], before[i], `frozen weight ${i} moved`);
      checked++;
    }
  });
  assert.ok(checked > 0);
  assert.ok(after.some((v, i) => mask[i] < 0.5 && v !== before[i]), 'unfrozen weights should still train');
});

test('the dampening loss adds a positive term to the training loss', async () => {
  const plain = await train({ ...config, steps: 3 }, tmp());
  const damped = await train({ ...config, steps: 3, oscillation: { dampen: 10 } }, tmp());
  assert.ok(damped.losses[0] > plain.losses[0], `${damped.losses[0]} vs ${plain.losses[0]}`);
});
