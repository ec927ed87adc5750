import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseLutGemm, LUT_GEMM_SESSION_CONFIG } from '../../src/export/lut-kernel';
import { LmParityReport } from '../../src/export/lm-parity';

/** A parity report that passes or fails. */
function report(passed: boolean): LmParityReport {
  return {
    reference: 'fake-quant',
    reference_val_perplexity: 6.9,
    exported_val_perplexity: 6.9,
    perplexity_relative_difference: passed ? 1e-5 : 1e-4,
    val_tokens: 100,
    top1_agreement: passed ? 0.999 : 0.985,
    top1_positions: 100,
    top1_windows: 1,
    max_abs_logit_difference: passed ? 0.1 : 0.6,
    greedy: { prompts: 4, prompt_tokens: 32, new_tokens: 32, mean_common_prefix: passed ? 31.5 : 18.4, min_common_prefix: passed ? 30 : 3, identical: passed ? 3 : 0 },
    passed,
    failures: passed ? [] : ['teacher-forced top-1 agreement 98.50% (bound 99%)'],
  };
}

/** A parity check whose LUT-kernel result is `lutPasses`; the exact kernel always passes. Records each call's config. */
function fakeParity(lutPasses: boolean) {
  const calls: Record<string, string>[] = [];
  const check = async (config: Record<string, string>) => {
    calls.push(config);
    return report(config['mlas.use_lut_gemm'] === '1' ? lutPasses : true);
  };
  return { calls, check };
}

const base = { 'session.some_entry': '0' };

test('auto keeps the LUT kernel where the file passes parity on it, with one check', async () => {
  const p = fakeParity(true);
  const d = await chooseLutGemm('auto', true, base, p.check);
  assert.deepEqual(d.sessionConfig, { ...base, ...LUT_GEMM_SESSION_CONFIG });
  assert.deepEqual([d.lut.used, d.parity.passed, p.calls.length], [true, true, 1]);
  assert.equal(d.lut.rejected, undefined);
});

test('auto falls back to the exact kernel when the LUT kernel misses a bound, and keeps the rejected figures', async () => {
  const p = fakeParity(false);
  const d = await chooseLutGemm('auto', true, base, p.check);
  assert.deepEqual(p.calls, [{ ...base, ...LUT_GEMM_SESSION_CONFIG }, base]);
  assert.deepEqual(d.sessionConfig, base);
  assert.deepEqual([d.lut.used, d.parity.passed], [false, true]);
  assert.equal(d.lut.rejected?.top1_agreement, 0.985);
  assert.match(d.lut.reason, /LUT kernel missed the parity bounds \(teacher-forced top-1 agreement 98\.50%/);
});

test('on keeps the LUT kernel even when it fails (the export then refuses the file); off never tries it', async () => {
  const on = await chooseLutGemm('on', true, {}, fakeParity(false).check);
  assert.deepEqual([on.lut.used, on.parity.passed, on.sessionConfig], [true, false, { ...LUT_GEMM_SESSION_CONFIG }]);
  const p = fakeParity(true);
  const off = await chooseLutGemm('off', true, {}, p.check);
  assert.deepEqual([off.lut.used, off.sessionConfig, p.calls], [false, {}, [{}]]);
});

test('a file without 2-bit weights never gets the LUT option; --lut-gemm on is refused for it', async () => {
  const p = fakeParity(true);
  const d = await chooseLutGemm('auto', false, base, p.check);
  assert.deepEqual([d.lut.used, d.sessionConfig, p.calls], [false, base, [base]]);
  await assert.rejects(chooseLutGemm('on', false, {}, p.check), /--lut-gemm on: the file has no 2-bit MatMulNBits weights/);
});
