/**
 * `qat quantize --from LM_RUN --method rtn|gptq|awq|smoothquant [--calib-windows N] [--act-order]` through the
 * command line (in process): what it writes (JSON, metrics.json, a step-0 PTQ checkpoint whose quant.calib names
 * the method), that `qat export --from` the result passes its own parity check, and which flags are refused with
 * what. One tiny fp32 gpt run (1 block, width 32, context 16) and one tiny image run are trained once and shared.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { runCorpusCase } from '../helpers/run-qat';
import { DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { loadTextData } from '../../src/data/text';
import { scratchDir } from '../helpers/scratch.js';

let work = '';
let lm = '';
let image = '';
const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8'));

before(async () => {
  work = scratchDir('qatkit-ptq-methods-cli-');
  lm = path.join(work, 'lm');
  image = path.join(work, 'image');
  // A small corpus (the first 40 KB of Moby Dick): the export's parity check scores every validation window.
  const corpus = path.join(work, 'corpus.txt');
  fs.writeFileSync(corpus, Buffer.from(Uint8Array.from(loadTextData('moby-dick').train.tokens.subarray(0, 40000))));
  await train({ ...DEFAULT_TRAIN_CONFIG, model: 'gpt', data: corpus, layers: 1, heads: 2, dim: 32, context: 16, steps: 20, batch: 8, lr: 3e-3, threads: 1, evalEvery: 0, checkpointEvery: 0 }, lm);
  await train({ ...DEFAULT_TRAIN_CONFIG, model: 'mlp', steps: 2, batch: 16, threads: 1, evalEvery: 0, checkpointEvery: 0 }, image);
});

after(() => fs.rmSync(work, { recursive: true, force: true }));

test('qat quantize --method gptq --calib-windows 8 --act-order writes a PTQ run that qat export --format int4 proves against its fake-quant model', async () => {
  const out = path.join(work, 'gptq');
  const json = path.join(work, 'gptq.json');
  const r = await runCorpusCase(['quantize', '--from', lm, '--quant', 'w4a16-g32', '--method', 'gptq', '--calib-windows', '8', '--act-order', '--threads', '1', '--out', out, '--json', json]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /w4a16-g32 GPTQ on 8 calibration windows:\nval_perplexity \d+\.\d+; model saved in /);
  const m = readJson(json);
  assert.deepEqual([m.method, m.calib, m.ptq_method, m.calib_windows, m.act_order, m.quant], ['ptq', 'gptq', 'gptq', 8, true, 'w4a16-g32']);
  assert.ok(m.layers.length === 4 && m.skipped.some((s: { tensor: string }) => s.tensor === 'wte.weight') && m.layers.every((l: { error: number; rtn_error: number }) => l.error <= l.rtn_error), JSON.stringify(m.layers));
  assert.ok(m.val_perplexity > 1 && Number.isFinite(m.val_perplexity));
  assert.equal(readJson(path.join(out, 'metrics.json')).val_perplexity, m.val_perplexity);
  const ckpt = loadCheckpoint(path.join(out, 'checkpoint.qat'));
  assert.deepEqual([ckpt.step, ckpt.model.quant?.method, ckpt.model.quant?.calib, ckpt.model.quant?.preset], [0, 'ptq', 'gptq', 'w4a16-g32']);
  const exported = await runCorpusCase(['export', '--from', out, '--format', 'int4', '--out', path.join(work, 'gptq-int4', 'model.onnx'), '--parity-windows', '16', '--parity-prompts', '4', '--parity-tokens', '8', '--threads', '1']);
  assert.equal(exported.code, 0, exported.stderr);
  const evaluated = await runCorpusCase(['eval', '--from', out, '--json', path.join(work, 'gptq-eval.json')]);
  assert.equal(evaluated.code, 0, evaluated.stderr);
  assert.ok(Math.abs(readJson(path.join(work, 'gptq-eval.json')).val_perplexity - m.val_perplexity) < 1e-6 * m.val_perplexity);
});

test('qat quantize --method smoothquant on w8a8 defaults to <from>-ptq-w8a8-smoothquant; qat export --format qdq of it passes parity', async () => {
  const r = await runCorpusCase(['quantize', '--from', lm, '--quant', 'w8a8', '--method', 'smoothquant', '--calib-windows', '4', '--threads', '1']);
  assert.equal(r.code, 0, r.stderr);
  const out = `${lm}-ptq-w8a8-smoothquant`;
  const m = readJson(path.join(out, 'metrics.json'));
  assert.deepEqual([m.calib, m.calib_windows], ['smoothquant', 4]);
  assert.ok(m.layers.some((l: { fold: string }) => l.fold === 'norm'), JSON.stringify(m.layers));
  const exported = await runCorpusCase(['export', '--from', out, '--format', 'qdq', '--out', path.join(work, 'sq-qdq', 'model.onnx'), '--parity-windows', '16', '--parity-prompts', '4', '--parity-tokens', '8', '--threads', '1']);
  assert.equal(exported.code, 0, exported.stderr);
});

test('qat quantize --method awq writes calib awq and exports to matmulnbits', async () => {
  const out = path.join(work, 'awq');
  const r = await runCorpusCase(['quantize', '--from', lm, '--quant', 'w3a16-g32', '--method', 'awq', '--calib-windows', '4', '--threads', '1', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /w3a16-g32 AWQ on 4 calibration windows/);
  const exported = await runCorpusCase(['export', '--from', out, '--format', 'matmulnbits', '--out', path.join(work, 'awq-nbits', 'model.onnx'), '--parity-windows', '16', '--parity-prompts', '4', '--parity-tokens', '8', '--threads', '1']);
  assert.equal(exported.code, 0, exported.stderr);
});

test('refused: --method/--calib-windows/--act-order on an image run (naming --calib), --calib-windows out of 1..4096 or with rtn, --act-order without gptq, smoothquant off w8a8, an unknown method', async () => {
  const out = path.join(work, 'refused');
  const cases: [string[], number, RegExp][] = [
    [['--from', image, '--quant', 'w8a8', '--method', 'gptq'], 2, /^qat: --method applies to language-model runs \(.* is an image run\): image PTQ calibrates activation ranges with --calib minmax\|percentile\|mse\|kl --calib-batches N\n$/],
    [['--from', image, '--quant', 'w8a8', '--calib-windows', '8'], 2, /--calib-windows applies to language-model runs/],
    [['--from', lm, '--quant', 'w4a16-g32', '--method', 'gptq', '--calib-windows', '0'], 2, /--calib-windows must be a decimal integer in 1\.\.4096, got '0'/],
    [['--from', lm, '--quant', 'w4a16-g32', '--method', 'gptq', '--calib-windows', '4097'], 2, /--calib-windows must be a decimal integer in 1\.\.4096, got '4097'/],
    [['--from', lm, '--quant', 'w4a16-g32', '--calib-windows', '8'], 2, /--calib-windows applies to --method gptq, awq, smoothquant \(RTN calibrates nothing\)/],
    [['--from', lm, '--quant', 'w4a16-g32', '--method', 'awq', '--act-order'], 2, /--act-order applies to --method gptq only \(got --method awq\)/],
    [['--from', lm, '--quant', 'w4a16-g32', '--method', 'smoothquant'], 1, /^qat: --method smoothquant: .*applies to w8a8.*use --quant w8a8, or --method gptq or awq\n$/],
    [['--from', lm, '--quant', 'w4a16-g32', '--method', 'hqq'], 2, /--method must be one of rtn, gptq, awq, smoothquant, got 'hqq'/],
  ];
  for (const [args, code, message] of cases) {
    const r = await runCorpusCase(['quantize', ...args, '--out', out]);
    assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.equal(fs.existsSync(out), false, `${args.join(' ')} wrote ${out}`);
  }
});
