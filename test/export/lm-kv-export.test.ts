import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import '../../src/ops';
import '../../src/quant';
import { DEFAULT_TRAIN_CONFIG, loadRun, train, TrainConfig } from '../../src/train/run';
import { exportLanguageModelRun } from '../../src/export/export-language-model';
import { LmExportFormat } from '../../src/export/lm-decoder';
import { storedKvCacheLayout } from '../../src/export/lm-kv-cache';
import { readLanguageModelJson } from '../../src/generate/model-json';
import { createFileGenerator, createGenerator, generate } from '../../src/generate/index';
import { decodeModel } from '../../src/onnx/model-io';
import { DType } from '../../src/ir/dtype';
import { parseQuantConfig } from '../../src/quant/config-file';
import { inspectOnnxFile } from '../../src/inspect/inspect-file';
import { scratchDir } from '../helpers/scratch.js';

const CONTEXT = 32;
const PARITY = { windows: 32, prompts: 8, newTokens: 16 };
let dir = '';
const runs: Record<string, string> = {};
const base: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, model: 'gpt', data: 'moby-dick', layers: 1, heads: 2, dim: 32, context: CONTEXT, batch: 8, lr: 3e-3, threads: 1, evalEvery: 0, checkpointEvery: 0, steps: 30 };
const qat = (extra: Partial<TrainConfig>): TrainConfig => ({ ...DEFAULT_TRAIN_CONFIG, data: 'moby-dick', model: 'gpt', from: runs.fp32, steps: 4, batch: 8, lr: 3e-4, threads: 1, evalEvery: 0, checkpointEvery: 0, weightDecay: 0, ...extra });

before(async () => {
  dir = scratchDir('qatkit-kv-export-');
  runs.fp32 = path.join(dir, 'fp32');
  await train(base, runs.fp32);
  runs.kivi = path.join(dir, 'kivi');
  // Key groups of 8 tokens: a 32-token window crosses three group boundaries.
  await train(qat({ quant: 'custom', quantConfig: parseQuantConfig({ preset: 'w4a16-g32', kvCache: { bits: 2, layout: 'kivi', groupSize: 8 } }, 'kv.json', undefined, 'language-model') }), runs.kivi);
  runs.token = path.join(dir, 'token');
  await train(qat({ quant: 'w4a16-g32', kvCache: { bits: 4, layout: 'per-token' } }), runs.token);
  runs.kvOnly = path.join(dir, 'kv-only');
  await train(qat({ kvCache: { bits: 8, layout: 'per-token' } }), runs.kvOnly);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const exportRun = (run: string, format: LmExportFormat, name: string) =>
  exportLanguageModelRun(loadRun(runs[run]), { from: runs[run], out: path.join(dir, name, 'model.onnx'), format, threads: 1, parity: PARITY });

for (const [run, format, bits, layout] of [['kivi', 'matmulnbits', 2, 'kivi'], ['token', 'int4', 4, 'per-token'], ['kvOnly', 'fp32', 8, 'per-token']] as const) {
  test(`${run} run, --format ${format}: the cache is stored as ${bits}-bit codes (${layout}) with scales and zero points; the file equals the fake-quant model and generates the run's greedy tokens`, async () => {
    const r = await exportRun(run, format, `${run}-${format}`);
    assert.ok(r.parity.passed, r.parity.failures.join('; '));
    assert.equal(r.parity.greedy.identical, r.parity.greedy.prompts, 'every greedy continuation identical');
    assert.ok(r.parity.perplexity_relative_difference < 1e-4, String(r.parity.perplexity_relative_difference));
    const g = decodeModel(fs.readFileSync(r.out));
    const input = (n: string) => g.inputs.find((v) => v.name === n)!;
    assert.equal(input('past_key_values.0.key').dtype, DType.UINT8);
    assert.deepEqual(input('past_key_values.0.value').shape, ['B', 2, layout === 'kivi' ? 'P_quantized' : 'P', (16 * bits) / 8]);
    assert.equal(input('past_key_values.0.value_scale').dtype, DType.FLOAT);
    assert.equal(input('past_key_values.0.value_zero_point').dtype, DType.UINT8);
    if (layout === 'kivi') {
      assert.deepEqual(input('past_key_values.0.key_scale').shape, ['B', 2, 'P_groups', 16]);
      assert.deepEqual(input('past_key_values.0.key_residual').shape, ['B', 2, 'P_residual', 16]);
      assert.deepEqual(input('past_key_values.0.value_residual').shape, ['B', 2, 'P_residual', 16]);
      assert.equal(r.kv_cache!.residual_bytes_max, 2 * 2 * 7 * 16 * 4, 'keys and values: at most G - 1 float rows per head');
    } else assert.equal(input('past_key_values.0.value_residual'), undefined);
    // Bytes per token: codes plus a float32 scale and a uint8 zero point per row (KIVI keys: per group of 8 and channel).
    const perHead = (16 * bits) / 8;
    const keyBytes = layout === 'kivi' ? perHead + (16 * 5) / 8 : perHead + 5;
    assert.equal(r.kv_cache!.bytes_per_token, 2 * (keyBytes + perHead + 5));
    assert.equal(r.kv_cache!.bytes_per_token, storedKvCacheLayout({ bits, layout, ...(layout === 'kivi' ? { groupSize: 8 } : {}) }, 2, 16, 1).bytesPerToken);
    assert.equal(r.kv_cache!.measured_bytes_per_token, r.kv_cache!.bytes_per_token, 'ORT returns exactly that many bytes');
    assert.ok(r.kv_cache!.bytes_per_token < r.kv_cache!.float32_bytes_per_token / (bits === 8 ? 2.5 : 4), JSON.stringify(r.kv_cache));
    // qat inspect FILE.onnx shows the stored cache and the same bytes per token.
    const inspected = await inspectOnnxFile(r.out, { kernels: false });
    assert.equal(inspected.kv_cache?.bytes_per_token, r.kv_cache!.bytes_per_token);
    assert.ok(inspected.notes.some((n) => n.startsWith(`KV cache stored as ${bits}-bit ${layout} codes`)), inspected.notes.join('\n'));
    const json = readLanguageModelJson(r.out)!;
    assert.equal(json.kvCache?.quantization?.bits, bits);
    assert.equal(json.kvCache?.quantization?.layout, layout);
    // qat generate --model (KV cache from model.json) gives the run's own KV-cache greedy tokens, past a window slide.
    const file = await createFileGenerator(r.out, CONTEXT, { threads: 1, json });
    const fromRun = await createGenerator(loadRun(runs[run]).model, { threads: 1 });
    try {
      const prompts = [[67, 97, 108, 108, 32, 109, 101]];
      const a = await generate(file, prompts, { maxTokens: 40, temperature: 0, vocabLimit: 256 });
      const b = await generate(fromRun, prompts, { maxTokens: 40, temperature: 0, vocabLimit: 256 });
      assert.equal(a.mode, 'kv-cache');
      assert.deepEqual(a.tokens, b.tokens);
    } finally {
      await file.release();
      await fromRun.release();
    }
  });
}
