/** Tiny runs for the inspect tests: trained for a few steps on MNIST, small enough that each takes about a second. */
import fs from 'node:fs';
import path from 'node:path';
import { ModelBuilder } from '../../src/models/builder';
import { Model } from '../../src/models/model';
import { QatConfig } from '../../src/quant/presets';
import { DEFAULT_TRAIN_CONFIG, train, TrainConfig } from '../../src/train/run';
import { scratchDir } from '../helpers/scratch.js';

/**
 * Three weight layers, so that a low-bit preset quantizes one below 8 bits (first and last stay at 8): Conv 1->8
 * 4x4 stride 4, BN, ReLU; Conv 8->8 3x3 stride 2 (input width 8: two groups of 4), BN, ReLU; Gemm 72->10.
 */
export function threeLayerModel(seed = 0): Model {
  const m = new ModelBuilder('tiny3', { channels: 1, height: 28, width: 28, mean: [0.1307], std: [0.3081] }, seed);
  m.conv(8, 4, { stride: 4 });
  m.batchNorm();
  m.relu();
  m.conv(8, 3, { stride: 2 });
  m.batchNorm();
  m.relu();
  m.flatten();
  m.linear(10);
  return m.finish();
}

/** Per-group (4 input channels) 4-bit LSQ weights, 8-bit activations: a CNN config only a blocked export can take. */
export const PER_GROUP_CONFIG: QatConfig = {
  weight: { bits: 4, method: 'lsq', granularity: 'per-group', groupSize: 4 },
  activation: { bits: 8, method: 'minmax', granularity: 'per-tensor' },
  firstLastBits: null,
  foldBatchNorm: true,
  observerMomentum: 0.01,
  overrides: [],
};

export const tmpDir = (tag: string) => scratchDir(`qatkit-inspect-${tag}-`);

const SHORT: Partial<TrainConfig> = { steps: 4, batch: 16, threads: 1 };

/** An fp32 run of the three-layer model in `dir`/fp32. */
export async function fp32Run(dir: string): Promise<string> {
  const out = path.join(dir, 'fp32');
  await train({ ...DEFAULT_TRAIN_CONFIG, ...SHORT, model: threeLayerModel() }, out);
  return out;
}

/** A QAT run from `from` with a preset or a full config, in `dir`/`name`. */
export async function qatRun(from: string, dir: string, name: string, quant: string | QatConfig): Promise<string> {
  const out = path.join(dir, name);
  const q = typeof quant === 'string' ? { quant } : { quant: 'custom', quantConfig: quant };
  await train({ ...DEFAULT_TRAIN_CONFIG, ...SHORT, from, ...q, calibBatches: 1, bnFreezeStep: 2 }, out);
  return out;
}

/** A 1-block gpt on Moby Dick trained for `steps` steps: the language-model run of the inspect tests. */
export function tinyLanguageModelConfig(steps: number): TrainConfig {
  return { ...DEFAULT_TRAIN_CONFIG, model: 'gpt', data: 'moby-dick', layers: 1, heads: 2, dim: 32, context: 16, steps, batch: 4, lr: 3e-3, threads: 1, evalEvery: 0, checkpointEvery: 0, warmupSteps: 1 };
}
