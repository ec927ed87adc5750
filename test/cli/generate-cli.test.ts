import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import '../../src/ops';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { gpt, transformerDecoder } from '../../src/models/transformers';
import { saveModel } from '../../src/onnx/model-io';
import { bytesTokenizer } from '../../src/data/tokenizers/index';
import { languageModelJson, writeLanguageModelJson } from '../../src/generate/index';
import { scratchDir } from '../helpers/scratch.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const qat = (...args: string[]) => spawnSync(process.execPath, [path.join(root, 'bin/qat.mjs'), ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, CI: '1' } });
const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8'));

const CONTEXT = 32;
const PROMPT = 'Call me';
let dir = '';
let run = '';
/** The first test's 40 greedy ids. */
let greedy: number[] = [];

before(() => {
  dir = scratchDir('qatkit-generate-cli-');
  run = path.join(dir, 'run');
  const r = qat('train', '--model', 'gpt', '--data', 'moby-dick', '--steps', '3', '--layers', '1', '--heads', '2', '--dim', '32', '--context', String(CONTEXT), '--eval-every', '0', '--out', run);
  assert.equal(r.status, 0, r.stderr);
});

test('qat generate --from RUN_DIR streams the prompt and its continuation and reports prefill and decode tokens/s', () => {
  const json = path.join(dir, 'g.json');
  const r = qat('generate', '--from', run, '--prompt', PROMPT, '--tokens', '40', '--temperature', '0', '--json', json);
  assert.equal(r.status, 0, r.stderr);
  const g = readJson(json);
  assert.ok(r.stdout.startsWith(PROMPT), r.stdout);
  greedy = g.ids;
  assert.equal(g.ids.length, 40);
  assert.equal(g.kv_cache, true);
  assert.equal(g.prompt_tokens, 7);
  assert.ok(g.window_slides >= 1, 'context 32 with 7 + 40 tokens slides');
  assert.ok(g.prefill_tokens_per_second > 0 && g.decode_tokens_per_second > 0);
  assert.match(r.stderr, /prefill 7 tokens in [\d.]+ ms \(\d+ tokens\/s\); decode 39 tokens in [\d.]+ ms \(\d+ tokens\/s\); KV cache/);
});

test('--no-kv-cache and an ONNX file without a cache recompute, say so, and pick the greedy tokens the KV cache picks until the window slides', () => {
  const same = CONTEXT - PROMPT.length + 1; // tokens chosen while the whole history fits in the window
  const ids = (...args: string[]) => {
    const json = path.join(dir, 'ids.json');
    const r = qat('generate', ...args, '--prompt', PROMPT, '--tokens', '30', '--temperature', '0', '--json', json);
    assert.equal(r.status, 0, r.stderr);
    return { ids: readJson(json).ids.slice(0, same) as number[], stderr: r.stderr };
  };
  const cached = ids('--from', run);
  const recompute = ids('--from', run, '--no-kv-cache');
  assert.match(recompute.stderr, /full recompute over the last 32 tokens each step \(--no-kv-cache\)/);
  assert.deepEqual(recompute.ids, cached.ids);
  const file = ids('--model', path.join(run, 'model.onnx'), '--tokenizer', 'bytes', '--context', String(CONTEXT));
  assert.match(file.stderr, /full recompute over the last 32 tokens each step \(.*model\.onnx has no past_key_values inputs/);
  assert.deepEqual(file.ids, cached.ids);
});

test('sampling is reproducible with --seed, and --top-k 1 is greedy', () => {
  const ids = (...args: string[]) => {
    const json = path.join(dir, 'sampled.json');
    const r = qat('generate', '--from', run, '--prompt', PROMPT, '--tokens', '20', '--json', json, ...args);
    assert.equal(r.status, 0, r.stderr);
    return readJson(json).ids as number[];
  };
  assert.deepEqual(ids('--temperature', '0.8', '--seed', '3'), ids('--temperature', '0.8', '--seed', '3'));
  assert.deepEqual(ids('--temperature', '1.5', '--top-k', '1', '--seed', '5'), greedy.slice(0, 20));
});

test('a decoder file with model.json beside it generates with its KV cache, and qat eval reads its tokenizer and context from it', () => {
  const { model } = loadCheckpoint(path.join(run, 'checkpoint.qat'));
  const exported = path.join(dir, 'exported', 'decoder.onnx');
  fs.mkdirSync(path.dirname(exported));
  saveModel(transformerDecoder(model).graph, exported);
  writeLanguageModelJson(exported, languageModelJson(model, bytesTokenizer(), { kvCache: true }));
  const gen = path.join(dir, 'file-gen.json');
  const r = qat('generate', '--model', exported, '--prompt', PROMPT, '--tokens', '10', '--temperature', '0', '--json', gen);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(readJson(gen).kv_cache, true);
  // A small text keeps the three evaluations fast; they agree to float32 accuracy (the run's loss is summed in
  // the graph in float32, a file's here in float64).
  const text = path.join(dir, 'small.txt');
  fs.writeFileSync(text, 'Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse. '.repeat(40));
  const evaluate = (...args: string[]) => {
    const json = path.join(dir, 'eval.json');
    const r = qat('eval', ...args, '--data', text, '--json', json);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /val_loss [\d.]+ nats\/token, val_perplexity [\d.]+, bits_per_byte [\d.]+/);
    return readJson(json);
  };
  const fromRun = evaluate('--from', run);
  assert.equal(fromRun.context, CONTEXT);
  for (const m of [evaluate('--model', exported), evaluate('--model', path.join(run, 'model.onnx'), '--context', String(CONTEXT))]) {
    for (const k of ['val_loss', 'val_perplexity', 'bits_per_byte']) assert.ok(Math.abs(m[k] / fromRun[k] - 1) < 1e-5, `${k}: ${m[k]} vs ${fromRun[k]}`);
    assert.equal(m.val_tokens, fromRun.val_tokens);
  }
});

test("qat eval --from RUN_DIR defaults to the run's data and reproduces its validation metrics", () => {
  const json = path.join(dir, 'eval-run.json');
  const r = qat('eval', '--from', run, '--json', json);
  assert.equal(r.status, 0, r.stderr);
  const [m, metrics] = [readJson(json), readJson(path.join(run, 'metrics.json'))];
  assert.equal(m.data, 'moby-dick');
  for (const k of ['val_loss', 'val_perplexity', 'bits_per_byte']) assert.ok(Math.abs(m[k] - metrics[k]) < 1e-6, `${k}: ${m[k]} vs ${metrics[k]}`);
});

test('bad generate flags fail with one line naming the flag and the valid values', () => {
  const small = path.join(dir, 'small', 'model.onnx');
  fs.mkdirSync(path.dirname(small));
  saveModel(gpt({ vocabSize: 64, layers: 1, heads: 1, dim: 8, context: 8 }).graph, small);
  const cases: [string[], RegExp][] = [
    [['--from', run, '--prompt', ''], /--prompt must be non-empty text/],
    [['--from', run, '--prompt', 'x', '--tokens', '0'], /--tokens must be a.* integer in 1\.\.100000, got '0'/],
    [['--from', run, '--prompt', 'x', '--tokens', '100000000'], /--tokens must be a.* integer in 1\.\.100000, got '100000000'/],
    [['--prompt', 'x'], /give one of --from RUN_DIR .* or --model FILE\.onnx/],
    [['--model', small, '--prompt', 'x'], /--context: .*model\.onnx has no model\.json beside it; give --context N/],
    [['--model', small, '--context', '8', '--prompt', 'Call me'], /--prompt: token 67 \("C", bytes tokenizer\) is outside the model's vocabulary of 64 ids \(0\.\.63\)/],
  ];
  for (const [args, message] of cases) {
    const r = qat('generate', ...args);
    assert.notEqual(r.status, 0, args.join(' '));
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});

test('qat eval still evaluates image models with --model FILE.onnx', () => {
  const r = qat('eval', '--model', 'test/fixtures/torch_cnn.onnx', '--limit', '50');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /on mnist: test accuracy [\d.]+% \(50 samples\)/);
});
