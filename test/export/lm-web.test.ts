import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import '../../src/ops';
import '../../src/quant';
import { exportLanguageModelRun } from '../../src/export/export-language-model';
import { LmExportFormat } from '../../src/export/lm-decoder';
import { decodeModel } from '../../src/onnx/model-io';
import { loadRun } from '../../src/train/run';
import { createFileGenerator } from '../../src/generate/create-generator';
import { decoderLayoutOf } from '../../src/generate/decoder-layout';
import { generate } from '../../src/generate/generator';
import { KvCacheGenerator } from '../../src/generate/kv-cache-generator';
import { LanguageModelJson, readLanguageModelJson } from '../../src/generate/model-json';
import { scratchDir } from '../helpers/scratch.js';

// Exported language-model decoders in onnxruntime-web (wasm backend, run in Node): the same KV-cache generation
// code (KvCacheGenerator over the web session) must pick the same greedy tokens as onnxruntime-node.
ortWeb.env.wasm.numThreads = 1;

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const qat = (...args: string[]) => spawnSync(process.execPath, [path.join(root, 'bin/qat.mjs'), ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, CI: '1' } });
const CONTEXT = 48;
const PROMPTS = ['Call me Ishmael. Some', 'It is a way I have of', 'whenever I find myself', 'The whale, the whale!'].map((p) => Array.from(Buffer.from(p.padEnd(16).slice(0, 16))));
const NEW_TOKENS = 32; // 16 + 32 tokens: the context exactly full
let dir = '';
/** Exports by name: the formats, and matmulnbits of runs trained with a quantized KV cache (kv4, kv2kivi). */
const files: Record<string, string> = {};
const KV_RUNS = { kv4: ['--kv-bits', '4'], kv2kivi: ['--kv-bits', '2', '--kv-layout', 'kivi'] };

before(() => {
  dir = scratchDir('qatkit-lm-web-');
  const tiny = ['--layers', '1', '--heads', '2', '--dim', '64', '--batch', '16', '--eval-every', '0'];
  const fp32 = path.join(dir, 'fp32');
  let r = qat('train', '--model', 'gpt', '--data', 'moby-dick', '--steps', '300', '--context', String(CONTEXT), ...tiny, '--out', fp32);
  assert.equal(r.status, 0, r.stderr);
  const w4 = path.join(dir, 'w4');
  r = qat('train', '--from', fp32, '--quant', 'w4a16-g32', '--steps', '8', '--batch', '8', '--eval-every', '0', '--out', w4);
  assert.equal(r.status, 0, r.stderr);
  const exports: [string, LmExportFormat, string][] = [['fp32', 'fp32', fp32], ['int4', 'int4', w4], ['matmulnbits', 'matmulnbits', w4]];
  for (const [name, kv] of Object.entries(KV_RUNS)) {
    const run = path.join(dir, name);
    r = qat('train', '--from', fp32, '--quant', 'w4a16-g32', ...kv, '--steps', '8', '--batch', '8', '--eval-every', '0', '--out', run);
    assert.equal(r.status, 0, r.stderr);
    exports.push([name, 'matmulnbits', run]);
  }
  const parity = { windows: 16, prompts: 4, newTokens: 8 };
  return (async () => {
    for (const [name, format, run] of exports) {
      const out = path.join(dir, name, 'model.onnx');
      await exportLanguageModelRun(loadRun(run), { from: run, out, format, threads: 1, parity });
      files[name] = out;
    }
  })();
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

/**
 * An onnxruntime-web session behind onnxruntime-node's session interface: feeds and fetched tensors are copied
 * between the two packages' Tensor classes (each bundles its own onnxruntime-common), so the library's
 * KvCacheGenerator runs unchanged on it.
 */
function asNodeSession(web: ortWeb.InferenceSession): ortNode.InferenceSession {
  return {
    inputNames: web.inputNames,
    outputNames: web.outputNames,
    inputMetadata: web.inputMetadata,
    outputMetadata: web.outputMetadata,
    async run(feeds: Record<string, ortNode.Tensor>, fetches: string[]) {
      const webFeeds = Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, new ortWeb.Tensor(t.type as 'float32', t.data as Float32Array, t.dims)]));
      const out = await web.run(webFeeds, fetches);
      return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, new ortNode.Tensor(t.type as 'float32', t.data as Float32Array, t.dims)]));
    },
    release: () => web.release(),
  } as unknown as ortNode.InferenceSession;
}

/** The session options model.json asks for (int4: the MatMulNBits accuracy level ORT's QDQ fusion uses), as ORT-web takes them. */
function webOptions(json: LanguageModelJson): ortWeb.InferenceSession.SessionOptions {
  return { executionProviders: ['wasm'], graphOptimizationLevel: 'all', extra: { ...(json.sessionConfig ?? {}) } as never };
}

async function greedyOnWeb(file: string, json: LanguageModelJson): Promise<number[][]> {
  const web = await ortWeb.InferenceSession.create(new Uint8Array(fs.readFileSync(file)), webOptions(json));
  const session = asNodeSession(web);
  const layout = decoderLayoutOf(session, { heads: json.heads, headSize: json.headSize });
  const generator = new KvCacheGenerator(session, layout, CONTEXT, json.vocabSize);
  try {
    return (await generate(generator, PROMPTS, { maxTokens: NEW_TOKENS, temperature: 0, vocabLimit: json.vocabSize })).tokens;
  } finally {
    await generator.release();
  }
}

async function greedyOnNode(file: string, json: LanguageModelJson): Promise<number[][]> {
  const generator = await createFileGenerator(file, CONTEXT, { threads: 1, json });
  try {
    assert.equal(generator.mode, 'kv-cache');
    return (await generate(generator, PROMPTS, { maxTokens: NEW_TOKENS, temperature: 0, vocabLimit: json.vocabSize })).tokens;
  } finally {
    await generator.release();
  }
}

const cases: { format: string; ops: string }[] = [
  { format: 'fp32', ops: 'MatMul' },
  { format: 'int4', ops: 'DequantizeLinear' },
  { format: 'matmulnbits', ops: 'MatMulNBits' },
  { format: 'kv4', ops: 'MatMulNBits' },
  { format: 'kv2kivi', ops: 'MatMulNBits' },
];

for (const { format, ops } of cases) {
  test(`${format} decoder: onnxruntime-web (wasm) generates onnxruntime-node's greedy tokens with the KV cache`, async () => {
    const file = files[format]!;
    const json = readLanguageModelJson(file)!;
    assert.ok(decodeModel(fs.readFileSync(file)).nodes.some((n) => n.opType === ops), `${format} file has ${ops} nodes`);
    const [web, node] = [await greedyOnWeb(file, json), await greedyOnNode(file, json)];
    assert.equal(web.length, PROMPTS.length);
    for (let r = 0; r < PROMPTS.length; r++) {
      assert.equal(node[r].length, NEW_TOKENS);
      assert.deepEqual(web[r], node[r], `prompt ${r}: web ${web[r]} vs node ${node[r]}`);
    }
    // Not a constant output: the continuations use several tokens.
    assert.ok(new Set(node.flat()).size >= 4, `tokens: ${[...new Set(node.flat())]}`);
  });
}

test("the page's generator (web/lm.js) on onnxruntime-web feeds a cache stored quantized (kv4 per-token, kv2 KIVI) and gives qat generate's greedy tokens", async () => {
  const { LmGenerator } = await import('../../web/lm.js');
  for (const name of Object.keys(KV_RUNS)) {
    const file = files[name];
    const json = readLanguageModelJson(file)!;
    const probe = await ortNode.InferenceSession.create(file);
    const inputs = probe.inputMetadata;
    await probe.release();
    assert.ok(inputs.some((m) => m.isTensor && m.name === 'past_key_values.0.key' && m.type === 'uint8'), `${name}: the cache is stored as uint8 codes`);
    const node = await greedyOnNode(file, json);
    const web = await ortWeb.InferenceSession.create(new Uint8Array(fs.readFileSync(file)), webOptions(json));
    const page = new LmGenerator(ortWeb, { file, config: json }, web);
    try {
      for (let r = 0; r < PROMPTS.length; r++) {
        const out = await page.generate(Buffer.from(PROMPTS[r]).toString('latin1'), NEW_TOKENS);
        assert.deepEqual(out.ids, node[r], `${name}, prompt ${r}: page ${out.ids} vs node ${node[r]}`);
      }
    } finally {
      await page.release();
    }
  }
});
