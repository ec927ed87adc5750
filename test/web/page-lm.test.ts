/**
 * Text generation in the demo page: the catalog of `qat serve` picks up an exported language model (a KV-cache
 * decoder with model.json beside it), and the page, in headless Chromium on onnxruntime-web, continues a prompt
 * greedily with the int4 (and the MatMulNBits) gpt, token for token what `qat generate --model FILE --temperature 0` gives in Node, past
 * the context (the window re-prefills). No request leaves the server.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { readCatalog } from '../../src/serve/model-catalog.js';
import { DemoServer, startDemoServer } from '../../src/serve/server.js';
import { chromiumMissing, launchChromium, watchPage } from '../helpers/browser.js';
import { runCorpusCase } from '../helpers/run-qat.js';
import { buildLanguageModelFixture, LanguageModelFixture } from './lm-fixture.js';
import { scratchDir } from '../helpers/scratch.js';

const missing = chromiumMissing();
const PROMPT = 'Call me Ishmael. ';
// Context 16: 40 tokens slide the window (re-prefill of the newest 8) several times.
const TOKENS = 40;

const tmp = scratchDir('qat-web-lm-');
let fixture: LanguageModelFixture;
let server: DemoServer | undefined;
let browser: Browser | undefined;

before(async () => {
  fixture = await buildLanguageModelFixture(path.join(tmp, 'demo-lm'));
});

after(async () => {
  await browser?.close();
  await server?.close();
  // The screenshot stays for a person to look at; the models go.
  fs.rmSync(fixture.dir, { recursive: true, force: true });
});

test('the catalog lists a KV-cache decoder with model.json as a language model, and says why others are left out', () => {
  const c = readCatalog(fixture.dir);
  assert.deepEqual(
    c.languageModels.map((m) => [m.id, m.label, m.file, m.config.tokenizer, m.config.context]),
    [
      ['lmint4', 'gpt w4a8-g32 int4', fixture.int4, 'bytes', 16],
      ['lmmatmulnbits', 'gpt w4a8-g32 matmulnbits', fixture.matmulnbits, 'bytes', 16],
    ],
  );
  const report = JSON.parse(fs.readFileSync(path.join(path.dirname(fixture.int4), 'export.json'), 'utf8'));
  assert.equal(c.languageModels[0].valPerplexity, report.parity.exported_val_perplexity);
  assert.deepEqual(c.skipped, [], 'the runs\' own model.onnx files are not exports');
  // The same file under another tokenizer, or without its cache, cannot run in the page: left out with the reason.
  const odd = path.join(tmp, 'odd');
  const json = JSON.parse(fs.readFileSync(path.join(path.dirname(fixture.int4), 'model.json'), 'utf8'));
  const variants: [string, Record<string, unknown>][] = [
    ['gpt2', { ...json, tokenizer: 'gpt2', vocabSize: 50257 }],
    ['nocache', { ...json, kvCache: undefined }],
    ['broken', { ...json, format: 'something-else' }],
  ];
  for (const [name, body] of variants) {
    fs.mkdirSync(path.join(odd, name), { recursive: true });
    fs.copyFileSync(fixture.int4, path.join(odd, name, 'model.onnx'));
    fs.writeFileSync(path.join(odd, name, 'model.json'), JSON.stringify(body));
  }
  const o = readCatalog(odd);
  assert.deepEqual(o.languageModels, []);
  const reasons = Object.fromEntries(o.skipped.map((s) => [path.basename(path.dirname(s.file)), s.reason]));
  assert.match(reasons.gpt2, /^tokenizer 'gpt2': the page tokenizes UTF-8 bytes only; generate with npx qat generate --model .*gpt2\/model\.onnx$/);
  assert.match(reasons.nocache, /^not a KV-cache decoder/);
  assert.match(reasons.broken, /model\.json: field "format" must be "qatkit-language-model"/);
});

test(`the int4 and MatMulNBits gpt exports generate in the page: ${TOKENS} greedy tokens each, equal to qat generate --model in Node`, async (t) => {
  if (missing) return t.skip(missing);
  const jsonOut = path.join(tmp, 'generate.json');
  const r = await runCorpusCase(['generate', '--model', fixture.int4, '--prompt', PROMPT, '--tokens', String(TOKENS), '--temperature', '0', '--threads', '1', '--json', jsonOut]);
  assert.equal(r.code, 0, r.stderr);
  const expected = JSON.parse(fs.readFileSync(jsonOut, 'utf8'));
  assert.equal(expected.mode, 'kv-cache');
  assert.ok(expected.window_slides >= 2, `the window slid ${expected.window_slides} times`);
  // A model that repeats one byte would make the comparison weak: the fixture's gpt writes words.
  assert.ok(new Set(expected.ids).size >= 3, `Node's greedy text ${JSON.stringify(expected.text)} has fewer than 3 distinct bytes`);

  server = await startDemoServer({ from: fixture.dir, port: 0, host: '127.0.0.1' });
  browser = await launchChromium();
  const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
  const watch = await watchPage(page, [new URL(server.url).origin]);
  await page.goto(server.url);
  await page.waitForFunction(() => Boolean((globalThis as any).qatDemo?.ready), null, { timeout: 60_000 });
  await page.evaluate(() => (globalThis as any).qatDemo.ready);
  assert.equal(await page.isVisible('#lm-section'), true);
  assert.match((await page.textContent('#lm-model option'))!, /^gpt w4a8-g32 int4 \(\d+\.\d KB, context 16, val perplexity \d+\.\d\d in ONNX Runtime\)$/);

  // Through the page's own controls, as a person would.
  await page.fill('#lm-prompt', PROMPT);
  await page.fill('#lm-tokens', String(TOKENS));
  await page.click('#lm-start');
  await page.waitForFunction(() => ['done', 'error'].includes((globalThis as any).qatDemo.lm.state), null, { timeout: 60_000 });
  const status = (await page.textContent('#lm-status'))!;
  const result = await page.evaluate(() => (globalThis as any).qatDemo.lm.result);
  assert.equal(await page.getAttribute('#lm-status', 'data-state'), 'done', status);
  assert.deepEqual(result.promptIds, expected.prompt_ids);
  assert.deepEqual(result.ids, expected.ids, `page: ${JSON.stringify(result.text)}\nnode: ${JSON.stringify(expected.text)}`);
  assert.equal(result.text, expected.text);
  assert.equal(result.slides, expected.window_slides);
  assert.equal(await page.textContent('#lm-output'), PROMPT + expected.text);
  assert.match(status, new RegExp(`${TOKENS} tokens; prefill ${expected.prompt_ids.length} tokens in \\d+\\.\\d ms; decode ${TOKENS - 1} tokens at \\d+ tokens/s; window slid ${expected.window_slides} times`));
  console.log(`in-page int4 gpt: ${status}; text ${JSON.stringify(result.text)}`);

  // The MatMulNBits decoder (com.microsoft, run by onnxruntime-web's wasm kernels) through the page hook.
  const nbitsOut = path.join(tmp, 'generate-nbits.json');
  const rn = await runCorpusCase(['generate', '--model', fixture.matmulnbits, '--prompt', 'The whale', '--tokens', String(TOKENS), '--temperature', '0', '--threads', '1', '--json', nbitsOut]);
  assert.equal(rn.code, 0, rn.stderr);
  const nbitsExpected = JSON.parse(fs.readFileSync(nbitsOut, 'utf8'));
  const nbits = await page.evaluate((tokens) => (globalThis as any).qatDemo.generate({ model: 'lmmatmulnbits', prompt: 'The whale', tokens }), TOKENS);
  assert.deepEqual(nbits.ids, nbitsExpected.ids, `page: ${JSON.stringify(nbits.text)}\nnode: ${JSON.stringify(nbitsExpected.text)}`);
  assert.ok(new Set(nbits.ids).size >= 3, `MatMulNBits greedy text ${JSON.stringify(nbits.text)}`);

  const origin = new URL(server.url).origin;
  for (const id of ['lmint4', 'lmmatmulnbits']) assert.ok(watch.requests.includes(`${origin}/models/${id}.onnx`), `${id} fetched from /models/`);
  assert.deepEqual(watch.offsite, [], 'requests off the server (aborted)');
  // No image models and no fp32 image run here: the only failed request is the QAT manifest's 404.
  assert.deepEqual(watch.problems.filter((x) => !/404/.test(x)), []);
  await page.screenshot({ path: path.join(tmp, 'page-lm.png'), fullPage: true });
  console.log(`screenshot: ${path.join(tmp, 'page-lm.png')}`);
  await page.close();
});
