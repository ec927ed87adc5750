import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import '../../src/ops';
import '../../src/quant';
import { DEFAULT_TRAIN_CONFIG, train, TrainConfig } from '../../src/train/run';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { kvCacheQuantOf } from '../../src/quant/kv-cache';
import { parseQuantConfig } from '../../src/quant/config-file';
import { quantizeRun } from '../../src/train/ptq-run';
import { evaluateLanguageModel } from '../../src/train/evaluate-language-model';
import { loadTextData } from '../../src/data/text';
import { scratchDir } from '../helpers/scratch.js';

let dir = '';
let fp32 = '';
const tmp = (name: string) => path.join(dir, name);
const base: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, model: 'gpt', data: 'moby-dick', layers: 1, heads: 2, dim: 16, context: 16, batch: 4, lr: 3e-3, threads: 1, evalEvery: 0, checkpointEvery: 0 };
const qat = (extra: Partial<TrainConfig>): TrainConfig => ({ ...DEFAULT_TRAIN_CONFIG, data: 'moby-dick', model: 'gpt', from: fp32, steps: 6, batch: 4, lr: 3e-4, threads: 1, evalEvery: 3, checkpointEvery: 0, weightDecay: 0, ...extra });

before(async () => {
  dir = scratchDir('qatkit-kv-train-');
  fp32 = tmp('fp32');
  await train({ ...base, steps: 12 }, fp32);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const metrics = (d: string) => {
  const m = JSON.parse(fs.readFileSync(path.join(d, 'metrics.json'), 'utf8'));
  for (const k of ['ms_per_step_median', 'tokens_per_second', 'peak_rss_mb', 'run_dir']) delete m[k];
  return m;
};

test('QAT with a KIVI KV cache (groups of 4 tokens in a 16-token context) on top of w4a8-g32 resumes exactly: same parameters, Adam state and metrics', async () => {
  const config = qat({ quant: 'w4a8-g32', kvCache: { bits: 2, layout: 'kivi', groupSize: 4 } });
  const [straight, split] = [tmp('kivi-straight'), tmp('kivi-split')];
  const a = await train(config, straight);
  await train(config, split, { stopAtStep: 3 });
  const resumedCkpt = loadCheckpoint(path.join(split, 'checkpoint.qat'));
  assert.deepEqual(kvCacheQuantOf(resumedCkpt.model.graph), { bits: 2, layout: 'kivi', groupSize: 4 }, 'the checkpoint carries the KV quantizers');
  assert.deepEqual(resumedCkpt.config.kvCache, { bits: 2, layout: 'kivi', groupSize: 4 }, 'the run config stores the KV cache setting');
  await train(config, split, { resume: true });
  const [x, y] = [loadCheckpoint(path.join(straight, 'checkpoint.qat')), loadCheckpoint(path.join(split, 'checkpoint.qat'))];
  for (const [name, t] of x.model.graph.initializers) assert.deepEqual(t.data, y.model.graph.initializers.get(name)!.data, name);
  for (const [name, t] of x.optimizerState) assert.deepEqual(t.data, y.optimizerState.get(name)!.data, name);
  assert.deepEqual(metrics(split), metrics(straight));
  assert.deepEqual((a as unknown as { kv_cache: unknown }).kv_cache, { bits: 2, layout: 'kivi', group_size: 4 });
});

test('KV-cache QAT alone (--from an fp32 run, weights float): the trained model quantizes its cache and nothing else, and 2 bits cost perplexity against the fp32 source', async () => {
  const out = tmp('kv-only');
  const r = (await train(qat({ kvCache: { bits: 2, layout: 'per-token' } }), out)) as unknown as { val_perplexity: number; fp32_perplexity: number; quant?: string };
  const ckpt = loadCheckpoint(path.join(out, 'checkpoint.qat'));
  assert.equal(ckpt.model.quant, undefined, 'no weight or activation quantizers');
  assert.deepEqual(kvCacheQuantOf(ckpt.model.graph), { bits: 2, layout: 'per-token' });
  assert.equal(r.quant, undefined);
  // The source model evaluated with the same 2-bit per-token cache is worse than in float: the quantizer acts.
  const text = loadTextData('moby-dick', 'bytes');
  const src = loadCheckpoint(path.join(fp32, 'checkpoint.qat')).model;
  const { withKvCacheQuantization } = await import('../../src/quant/kv-cache');
  const [float, kv2] = [await evaluateLanguageModel(src, text.val, 16, { threads: 1 }), await evaluateLanguageModel(withKvCacheQuantization(src, { bits: 2, layout: 'per-token' }), text.val, 16, { threads: 1 })];
  assert.ok(kv2.val_perplexity > float.val_perplexity, `kv2 ${kv2.val_perplexity} vs float ${float.val_perplexity}`);
  assert.ok(Math.abs(r.fp32_perplexity - float.val_perplexity) < 1e-6);
});

test('--quant-config "kvCache" reaches the same quantizer as --kv-bits; both given and different are refused', async () => {
  const quantConfig = parseQuantConfig({ preset: 'w4a16-g32', kvCache: { bits: 4, layout: 'kivi', groupSize: 8 } }, 'kv.json', undefined, 'language-model');
  assert.deepEqual(quantConfig.kvCache, { bits: 4, layout: 'kivi', groupSize: 8 });
  const out = tmp('kv-config');
  await train(qat({ quant: 'custom', quantConfig, steps: 2 }), out);
  assert.deepEqual(kvCacheQuantOf(loadCheckpoint(path.join(out, 'checkpoint.qat')).model.graph), { bits: 4, layout: 'kivi', groupSize: 8 });
  await assert.rejects(train(qat({ quant: 'custom', quantConfig, kvCache: { bits: 2, layout: 'kivi' }, steps: 2 }), tmp('kv-contradiction')), /--kv-bits 2 --kv-layout kivi contradicts --quant-config's "kvCache" \(kv4 KIVI/);
  assert.throws(() => parseQuantConfig({ kvCache: { bits: 3 } }, 'kv.json', undefined, 'language-model'), /kvCache\.bits.*must be 8, 4 or 2/);
  assert.throws(() => parseQuantConfig({ kvCache: { bits: 4, layout: 'per-token', groupSize: 8 } }, 'kv.json', undefined, 'language-model'), /kvCache\.groupSize: applies to layout "kivi" only/);
  assert.throws(() => parseQuantConfig({ kvCache: { bits: 4 } }, 'kv.json'), /KV-cache quantization applies to language models/);
});

test('--kv-bits is refused on image runs and on an fp32 run from scratch, naming why', async () => {
  await assert.rejects(train({ ...DEFAULT_TRAIN_CONFIG, model: 'mlp', data: 'mnist', steps: 1, kvCache: { bits: 4, layout: 'per-token' } }, tmp('image')), /image model, which has no KV cache/);
  await assert.rejects(train({ ...base, steps: 1, kvCache: { bits: 4, layout: 'per-token' } }, tmp('scratch')), /fp32 baseline; quantize the KV cache when fine-tuning it/);
});

test('qat quantize --kv-bits (RTN): the PTQ model carries the KV quantizers, recorded in its metrics', async () => {
  const out = tmp('ptq-kv');
  const r = await quantizeRun({ from: fp32, quant: 'w4a16-g32', calib: 'minmax', calibBatches: 1, threads: 1, ptqMethod: 'rtn', kvCache: { bits: 8, layout: 'per-token' } }, out);
  assert.deepEqual(r.kv_cache, { bits: 8, layout: 'per-token' });
  assert.deepEqual(kvCacheQuantOf(loadCheckpoint(path.join(out, 'checkpoint.qat')).model.graph), { bits: 8, layout: 'per-token' });
});
