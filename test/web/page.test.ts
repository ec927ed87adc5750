/**
 * The demo page in headless Chromium (test/helpers/browser.ts), served by the real `qat serve` server
 * (startDemoServer) on a free port over a small demo-like directory (test/web/demo-fixture.ts): every export of the
 * catalog loads on onnxruntime-web's wasm, served by the server itself; a digit painted on the pad and a stroke drawn
 * with pointer events are classified by fp32, int8, int4 and ternary in the page, each checked against
 * onnxruntime-node on the very input the page fed; the in-page QAT run's loss falls. Any request off the server is
 * aborted and recorded, and none may happen: the page works offline. Screenshots stay in the test's temp dir.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as ortNode from 'onnxruntime-node';
import type { Browser, Page } from 'playwright-core';
import { loadDataset } from '../../src/data/index.js';
import { readCatalog } from '../../src/serve/model-catalog.js';
import { DemoServer, startDemoServer } from '../../src/serve/server.js';
import { chromiumMissing, launchChromium, PageWatch, watchPage } from '../helpers/browser.js';
import { buildDemoFixture } from './demo-fixture.js';
import { scratchDir } from '../helpers/scratch.js';

const missing = chromiumMissing();
const QAT_STEPS = 30;
const SLOTS = ['fp32', 'int8', 'int4', 'ternary'];

const tmp = scratchDir('qat-web-page-');
const demoDir = path.join(tmp, 'demo');
let server: DemoServer;
let browser: Browser;
let page: Page;
let watch: PageWatch;
const node: Record<string, ortNode.InferenceSession> = {};
// Callbacks passed to page.evaluate run in the page: they reach `window` as `globalThis`, since the tests are
// compiled without the DOM lib (the project's code runs in Node).

before(async () => {
  if (missing) return;
  const t0 = performance.now();
  await buildDemoFixture(demoDir, { fp32Steps: 60, qatSteps: 4 });
  const t1 = performance.now();
  server = await startDemoServer({ from: demoDir, port: 0, host: '127.0.0.1', qat: { trainSamples: 512, testSamples: 200, calibBatches: 2 } });
  for (const m of readCatalog(demoDir).models) node[m.slot] = await ortNode.InferenceSession.create(m.file, { intraOpNumThreads: 1, logSeverityLevel: 3 });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1200, height: 1300 } });
  watch = await watchPage(page, [new URL(server.url).origin]);
  await page.goto(server.url);
  await page.waitForFunction(() => Boolean((globalThis as any).qatDemo?.ready), null, { timeout: 60_000 });
  await page.evaluate(() => (globalThis as any).qatDemo.ready);
  console.log(`demo fixture ${((t1 - t0) / 1000).toFixed(1)} s; page ready (models and QAT bundle loaded) ${((performance.now() - t1) / 1000).toFixed(1)} s`);
});

after(async () => {
  await browser?.close();
  await server?.close();
  for (const s of Object.values(node)) await s.release();
  // The screenshots stay for a person to look at; the models go.
  fs.rmSync(demoDir, { recursive: true, force: true });
});

interface PageResult {
  digit: number;
  probs: number[];
  logits: number[];
  ms: number;
}

async function nodeLogits(slot: string, pixels: Float32Array | number[]): Promise<Float32Array> {
  const s = node[slot];
  const out = await s.run({ [s.inputNames[0]]: new ortNode.Tensor('float32', Float32Array.from(pixels), [1, 1, 28, 28]) });
  return out[s.outputNames[0]].data as Float32Array;
}

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let j = 1; j < v.length; j++) if (v[j] > v[best]) best = j;
  return best;
}

/** Each model's result in the page equals onnxruntime-node's on the input the page fed (same argmax, logits close). */
async function checkAgainstNode(results: Record<string, PageResult>, input: number[]) {
  for (const slot of SLOTS) {
    const r = results[slot];
    assert.ok(r, `${slot}: no result in the page`);
    const expected = await nodeLogits(slot, input);
    assert.equal(r.digit, argmax(expected), `${slot}: page predicts ${r.digit}, onnxruntime-node ${argmax(expected)}`);
    const diff = Math.max(...r.logits.map((v, i) => Math.abs(v - expected[i])));
    assert.ok(diff < 0.05, `${slot}: |logit difference| ${diff} between the page and onnxruntime-node`);
    assert.ok(r.ms > 0 && r.ms < 5000, `${slot}: latency ${r.ms} ms`);
    const shown = await page.getAttribute(`.card[data-slot="${slot}"]`, 'data-prediction');
    assert.equal(shown, String(r.digit), `${slot}: the card shows the prediction`);
  }
}

test('the page loads every model of the catalog with no console error, ORT\'s wasm from the server, nothing off it', async (t) => {
  if (missing) return t.skip(missing);
  assert.deepEqual(watch.problems, []);
  assert.deepEqual(watch.offsite, [], 'requests off the server (aborted)');
  const origin = new URL(server.url).origin;
  const wasm = watch.requests.filter((u) => u.endsWith('.wasm'));
  assert.ok(wasm.length > 0, `no wasm requested: ${watch.requests.join(', ')}`);
  for (const u of wasm) assert.match(u, new RegExp(`^${origin}/ort/ort-wasm-simd-threaded[\\w.]*\\.wasm$`), 'onnxruntime-web\'s wasm comes from the server\'s /ort/');
  for (const m of readCatalog(demoDir).models) assert.ok(watch.requests.includes(`${origin}/models/${m.id}.onnx`), `${m.slot}: fetched from /models/`);
  assert.equal(await page.evaluate(() => (globalThis as any).crossOriginIsolated), true, 'COOP/COEP make the page cross-origin isolated (threaded wasm)');
  for (const m of readCatalog(demoDir).models) {
    const text = await page.textContent(`.card[data-slot="${m.slot}"]`);
    assert.ok(text?.includes(m.label), `${m.slot}: ${text}`);
    assert.match(text!, /\d+(\.\d+)? (KB|MB)/, `${m.slot} shows its size`);
  }
  assert.equal(await page.locator('.card.missing').count(), 0);
  assert.match((await page.textContent('#runtime'))!, /ONNX Runtime Web 1\.\d+\.\d+ · WebAssembly/);
});

test('an MNIST test digit painted on the pad is classified correctly by fp32, int8, int4 and ternary in the page', async (t) => {
  if (missing) return t.skip(missing);
  // The first test digit that all four models get right in onnxruntime-node (the fixture's models are briefly trained).
  const data = loadDataset('mnist').test;
  let pick = -1;
  for (let i = 0; i < 100 && pick < 0; i++) {
    const img = data.images.subarray(i * 784, (i + 1) * 784);
    let all = true;
    for (const slot of SLOTS) all &&= argmax(await nodeLogits(slot, img)) === data.labels[i];
    if (all) pick = i;
  }
  assert.ok(pick >= 0, 'no test digit among the first 100 that every model classifies');
  const label = data.labels[pick];
  const results = await page.evaluate((p) => (globalThis as any).qatDemo.paint(p), Array.from(data.images.subarray(pick * 784, (pick + 1) * 784)));
  const input: number[] = await page.evaluate(() => Array.from((globalThis as any).qatDemo.input));
  for (const slot of SLOTS) assert.equal(results[slot].digit, label, `${slot}: test image ${pick} (a ${label}) classified as ${results[slot].digit}`);
  await checkAgainstNode(results, input);
  console.log(`test image ${pick} (${label}): ${SLOTS.map((s) => `${s} ${results[s].digit} in ${results[s].ms.toFixed(2)} ms`).join(', ')}`);
});

test('a stroke drawn with the mouse reaches every model as a centred 28x28 input', async (t) => {
  if (missing) return t.skip(missing);
  await page.click('#clear');
  const box = (await page.locator('#pad').boundingBox())!;
  // A "1": one vertical stroke, slightly slanted, left of the pad's centre.
  await page.mouse.move(box.x + box.width * 0.4, box.y + box.height * 0.15);
  await page.mouse.down();
  for (let k = 1; k <= 10; k++) await page.mouse.move(box.x + box.width * (0.4 - 0.005 * k), box.y + box.height * (0.15 + 0.07 * k));
  await page.mouse.up();
  const results = await page.evaluate(() => (globalThis as any).qatDemo.classify());
  const input: number[] = await page.evaluate(() => Array.from((globalThis as any).qatDemo.input));
  let [mass, cx, cy] = [0, 0, 0];
  input.forEach((v, i) => {
    mass += v;
    cx += v * (i % 28);
    cy += v * Math.floor(i / 28);
  });
  assert.ok(mass > 20, `ink mass ${mass}`);
  assert.ok(Math.abs(cx / mass - 13.5) <= 1 && Math.abs(cy / mass - 13.5) <= 1, `centre of mass (${cx / mass}, ${cy / mass})`);
  await checkAgainstNode(results, input);
  console.log(`mouse-drawn 1: ${SLOTS.map((s) => `${s} ${results[s].digit}`).join(', ')}`);
});

test(`QAT in the page: ${QAT_STEPS} w4a4 steps on onnxruntime-web lower the loss, then the test accuracy is shown`, async (t) => {
  if (missing) return t.skip(missing);
  await page.waitForFunction(() => (globalThis as any).qatDemo.qat.state === 'ready', null, { timeout: 60_000 });
  await page.fill('#qat-steps', String(QAT_STEPS));
  await page.click('#qat-start');
  await page.waitForFunction(() => ['done', 'error'].includes((globalThis as any).qatDemo.qat.state), null, { timeout: 150_000 });
  const qat = await page.evaluate(() => (globalThis as any).qatDemo.qat);
  assert.equal(qat.state, 'done', (await page.textContent('#qat-status')) ?? undefined);
  assert.equal(qat.losses.length, QAT_STEPS);
  const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
  const [first, last] = [mean(qat.losses.slice(0, 10)), mean(qat.losses.slice(-10))];
  console.log(`in-page QAT: loss ${first.toFixed(3)} (first 10 steps) -> ${last.toFixed(3)} (last 10), median ${[...qat.msPerStep].sort((a, b) => a - b)[QAT_STEPS >> 1].toFixed(0)} ms/step; test accuracy ${qat.accuracy.before} -> ${qat.accuracy.after} (fp32 ${qat.accuracy.fp32})`);
  assert.ok(last < first, `loss did not fall: ${first} -> ${last}`);
  assert.ok(qat.accuracy.after > 0.5, `accuracy after QAT ${qat.accuracy.after}`);
  // The chart is drawn from the data: one point per step in the raw line.
  const points = await page.getAttribute('#loss-chart polyline.raw', 'points');
  assert.equal(points?.trim().split(/\s+/).length, QAT_STEPS);
  assert.equal(await page.locator('#qat-result tbody tr').count(), 3);
  assert.match((await page.textContent('#qat-result'))!, new RegExp(`w4a4 fake-quant after ${QAT_STEPS} QAT steps in this page200\\d+\\.\\d%`));
  // The fine-tuned model classifies the drawing too.
  assert.match((await page.getAttribute('.card[data-slot="qat"]', 'data-prediction')) ?? '', /^\d$/);
  assert.deepEqual(watch.problems, []);
  const shot = path.join(tmp, 'page.png');
  await page.screenshot({ path: shot, fullPage: true });
  assert.ok(fs.statSync(shot).size > 10_000);
  console.log(`screenshot: ${shot}`);
});

test('with no demo output the page says which command makes each model and why QAT is unavailable', async (t) => {
  if (missing) return t.skip(missing);
  // A --from that does not exist (yet): qat serve before qat demo.
  const empty = path.join(tmp, 'not-made-yet');
  const s = await startDemoServer({ from: empty, port: 0, host: '127.0.0.1' });
  const p = await browser.newPage();
  const w = await watchPage(p, [new URL(s.url).origin]);
  try {
    await p.goto(s.url);
    await p.waitForFunction(() => (globalThis as any).qatDemo?.ready, null, { timeout: 30_000 });
    await p.evaluate(() => (globalThis as any).qatDemo.ready);
    assert.equal(await p.locator('.card.missing').count(), 4);
    assert.match((await p.textContent('.card[data-slot="fp32"]'))!, new RegExp(`npx qat demo --out ${empty}`));
    assert.match((await p.textContent('.card[data-slot="ternary"]'))!, /npx qat train --from .* --quant ternary .*--format packed/);
    assert.equal(await p.getAttribute('#qat-status', 'data-state'), 'unavailable');
    assert.match((await p.textContent('#qat-status'))!, /npx qat demo --out/);
    assert.equal(await p.isDisabled('#qat-start'), true);
    assert.deepEqual(w.offsite, []);
    // The one failed request is the QAT manifest's 404, which the page turns into the message above.
    assert.deepEqual(w.problems.filter((x) => !/404/.test(x)), []);
    assert.deepEqual(w.problems.filter((x) => /^HTTP/.test(x)), [`HTTP 404: ${s.url}api/qat/manifest.json`]);
    await p.screenshot({ path: path.join(tmp, 'page-empty.png'), fullPage: true });
  } finally {
    await p.close();
    await s.close();
  }
});
