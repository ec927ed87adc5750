// The demo page: wires the drawing pad to the exported models and runs the in-page QAT panel. The server
// (src/serve/server.ts) gives the model catalog at /api/models, the models at /models/<id>.onnx, the QAT bundle at
// /api/qat/*, and ONNX Runtime Web's own files at /ort/ (no CDN: the page works offline).
import * as ort from '/ort/ort.wasm.min.mjs';
import { Classifier, TIMED_RUNS } from './classifiers.js';
import { DrawPad, showPreview } from './draw-pad.js';
import { LmGenerator } from './lm.js';
import { drawLossChart } from './loss-chart.js';
import { argmax, SIDE, softmax, toMnistInput } from './preprocess.js';
import { BatchSampler, QatStepRunner } from './qat-step.js';

const $ = (id) => document.getElementById(id);
const SLOT_TITLES = { fp32: 'fp32', int8: 'int8', int4: 'int4', ternary: 'ternary', qat: 'QAT in the page' };

// Warnings (unused initializers the optimizer drops, say) are not the user's business; errors still show.
ort.env.logLevel = 'error';
ort.env.wasm.wasmPaths = new URL('/ort/', location.href).href;
// Threads need SharedArrayBuffer, which browsers give only to cross-origin isolated pages (the server sends
// COOP/COEP); otherwise one thread.
ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;

/** What tests (and the curious, from the console) can read: inputs, results, QAT progress. */
const demo = {
  catalog: undefined,
  input: undefined,
  results: {},
  qat: { state: 'loading', losses: [], msPerStep: [], accuracy: {} },
  lm: { state: 'none', models: [], result: undefined },
};
window.qatDemo = demo;

function showError(message) {
  const e = $('error');
  e.hidden = false;
  e.textContent = e.textContent ? `${e.textContent} · ${message}` : message;
}

function formatBytes(n) {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : `${(n / 1e3).toFixed(1)} KB`;
}

const pct = (v) => `${(100 * v).toFixed(1)}%`;

function node(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  e.append(...children.filter((c) => c !== undefined));
  return e;
}

// ---- model cards ----

function card(slot) {
  let c = document.querySelector(`.card[data-slot="${slot}"]`);
  if (!c) {
    c = node('article', { class: 'card', 'data-slot': slot });
    $('models').append(c);
  }
  return c;
}

function modelFacts(m) {
  const facts = [formatBytes(m.bytes)];
  if (m.format) facts.push(`${m.format} export`);
  if (m.exportedAccuracy !== undefined) facts.push(`accuracy ${pct(m.exportedAccuracy)}${m.checkedSamples ? ` on ${m.checkedSamples} test images` : ''} (qat export's check in ONNX Runtime)`);
  return facts.join(' · ');
}

function renderModelCard(slot, title, facts, result) {
  const c = card(slot);
  c.classList.remove('missing');
  const children = [node('h3', {}, title), node('p', { class: 'meta facts' }, facts)];
  if (result) {
    c.dataset.prediction = String(result.digit);
    c.dataset.ms = String(result.ms);
    children.push(node('div', { class: 'prediction' }, String(result.digit), ' ', node('small', {}, `${pct(result.probs[result.digit])} sure`)));
    children.push(node('p', { class: 'meta latency' }, `${result.ms.toFixed(2)} ms in this page (median of ${TIMED_RUNS})`));
    const bars = node('div', { class: 'bars' });
    result.probs.forEach((p, d) => {
      const top = d === result.digit ? 'top' : '';
      const fill = node('span');
      fill.style.width = `${(100 * p).toFixed(1)}%`;
      bars.append(node('span', { class: top }, String(d)), node('div', { class: 'bar' }, fill), node('span', { class: top }, pct(p)));
    });
    children.push(bars);
  } else {
    delete c.dataset.prediction;
    children.push(node('div', { class: 'prediction' }, '–', ' ', node('small', {}, 'draw a digit')));
  }
  c.replaceChildren(...children);
}

function renderMissingCard(slot, command, from) {
  const c = card(slot);
  c.classList.add('missing');
  c.dataset.missing = 'true';
  c.replaceChildren(node('h3', {}, SLOT_TITLES[slot]), node('p', {}, `No ${slot} model in ${from}. Make it with:`), node('code', {}, command));
}

// ---- classification ----

const classifiers = new Map();
let qatRunner;
let queue = Promise.resolve();
let queued = false;

async function classifyOnce() {
  const pixels = toMnistInput(pad.ink(), pad.canvas.width, pad.canvas.height);
  demo.input = pixels;
  showPreview($('preview'), pixels);
  for (const [slot, c] of classifiers) {
    const result = pixels ? await c.classify(pixels) : undefined;
    demo.results[slot] = result;
    renderModelCard(slot, c.model.label, modelFacts(c.model), result);
  }
  if (qatRunner && demo.qat.state === 'done') {
    let result;
    if (pixels) {
      const t0 = performance.now();
      const logits = await qatRunner.logits(Float32Array.from(pixels), 1);
      const probs = softmax(logits);
      result = { digit: argmax(probs), probs, logits: Array.from(logits), ms: performance.now() - t0 };
    }
    demo.results.qat = result;
    renderModelCard('qat', `${demo.qat.quant} fake-quant, trained here`, `${demo.qat.steps} steps in this page · test accuracy ${pct(demo.qat.accuracy.after)}`, result);
    card('qat').classList.add('trained');
  }
  return demo.results;
}

/** Classifies what is on the pad; calls made while one runs are folded into one more run after it. */
function classify() {
  if (queued) return queue;
  queued = true;
  queue = queue.then(() => {
    queued = false;
    return classifyOnce();
  }).catch((e) => {
    showError(`classification failed: ${e.message}`);
  });
  return queue;
}

const pad = new DrawPad($('pad'), (final) => {
  if (final || $('auto').checked) void classify();
});
$('clear').addEventListener('click', () => {
  pad.clear();
  void classify();
});

/** Paints a 28x28 image on the pad and classifies it (tests draw MNIST test digits this way). */
demo.paint = (pixels) => {
  pad.paint(pixels);
  return classify();
};
demo.classify = classify;

async function loadModels() {
  const response = await fetch('/api/models');
  if (!response.ok) throw new Error(`/api/models: HTTP ${response.status}`);
  const catalog = await response.json();
  demo.catalog = catalog;
  for (const slot of ['fp32', 'int8', 'int4', 'ternary']) {
    const m = catalog.models.find((x) => x.slot === slot);
    if (!m) {
      const missing = catalog.missing.find((x) => x.slot === slot);
      renderMissingCard(slot, missing ? missing.command : 'npx qat demo', catalog.from);
      continue;
    }
    renderModelCard(slot, m.label, `${modelFacts(m)} · loading…`);
  }
  setupLanguageModels(catalog.languageModels ?? []);
  const skipped = catalog.skipped.length ? ` · left out: ${catalog.skipped.map((s) => `${s.file} (${s.reason})`).join('; ')}` : '';
  $('catalog').textContent = `models from ${catalog.from}${skipped}`;
  for (const m of catalog.models) {
    try {
      classifiers.set(m.slot, await Classifier.create(ort, m));
      renderModelCard(m.slot, m.label, modelFacts(m));
    } catch (e) {
      showError(`${m.label} (${m.file}) did not load in ONNX Runtime Web: ${e.message}`);
    }
  }
}

// ---- text generation with the language-model exports ----

const lmGenerators = new Map();

function lmStatus(state, text) {
  demo.lm.state = state;
  const s = $('lm-status');
  s.dataset.state = state;
  s.textContent = text;
}

function setupLanguageModels(models) {
  demo.lm.models = models;
  if (!models.length) return;
  $('lm-section').hidden = false;
  // The int4 decoder first: the page is about quantized models.
  const order = (m) => (m.config.quantization?.format === 'int4' ? 0 : m.config.quantization ? 1 : 2);
  for (const m of [...models].sort((a, b) => order(a) - order(b))) {
    const facts = [formatBytes(m.bytes), `context ${m.config.context}`];
    if (m.valPerplexity !== undefined) facts.push(`val perplexity ${m.valPerplexity.toFixed(2)} in ONNX Runtime`);
    $('lm-model').append(node('option', { value: m.id }, `${m.label} (${facts.join(', ')})`));
  }
  $('lm-start').disabled = false;
  lmStatus('ready', `${models.length} language model${models.length === 1 ? '' : 's'} from ${demo.catalog.from}`);
}

/** Greedy generation with one of the catalog's language models; what the Generate button and tests call. */
demo.generate = async ({ model, prompt, tokens }) => {
  const m = demo.lm.models.find((x) => x.id === model);
  if (!m) throw new Error(`no language model '${model}'; models: ${demo.lm.models.map((x) => x.id).join(', ')}`);
  lmStatus('loading', `loading ${m.label} (${formatBytes(m.bytes)}) into ONNX Runtime Web…`);
  let g = lmGenerators.get(m.id);
  if (!g) {
    g = await LmGenerator.create(ort, m);
    lmGenerators.set(m.id, g);
  }
  const out = $('lm-output');
  out.replaceChildren(node('span', { class: 'prompt' }, prompt));
  let shown = 0;
  const result = await g.generate(prompt, tokens, async (id, piece) => {
    out.append(piece);
    // Repaint now and then, not after every token (a byte is a few ms).
    if (++shown % 16 === 0) {
      lmStatus('generating', `${m.label}: ${shown}/${tokens} tokens`);
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  });
  demo.lm.result = { model: m.id, prompt, ...result };
  lmStatus('done', `${m.label}: ${result.ids.length} tokens; prefill ${result.promptIds.length} tokens in ${result.prefillMs.toFixed(1)} ms; decode ${result.decodeSteps} tokens at ${Math.round(result.decodeTokensPerSecond)} tokens/s; window slid ${result.slides} times (context ${m.config.context})`);
  return demo.lm.result;
};

$('lm-start').addEventListener('click', async () => {
  $('lm-start').disabled = true;
  try {
    const tokens = Math.max(1, Math.min(2000, Math.floor(Number($('lm-tokens').value) || 0)));
    await demo.generate({ model: $('lm-model').value, prompt: $('lm-prompt').value, tokens });
  } catch (e) {
    lmStatus('error', `generation failed: ${e.message}`);
  } finally {
    $('lm-start').disabled = false;
  }
});

// ---- QAT in the page ----

function qatStatus(state, text) {
  demo.qat.state = state;
  const s = $('qat-status');
  s.dataset.state = state;
  s.textContent = text;
}

async function fetchBytes(name) {
  const r = await fetch(`/api/qat/${name}`);
  if (!r.ok) throw new Error(`/api/qat/${name}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

let manifest;

async function loadQat() {
  const r = await fetch('/api/qat/manifest.json');
  const body = await r.json();
  if (!r.ok) {
    qatStatus('unavailable', `In-page QAT is not available: ${body.error}`);
    return;
  }
  manifest = body;
  demo.qat.quant = manifest.quant;
  $('qat-lr').value = String(manifest.schedule.lr);
  qatStatus('ready', `${manifest.model} with ${manifest.quant} fake quantization (BN folded, activation ranges calibrated), batch ${manifest.batch}, AdamW, cosine learning rate; data: ${manifest.data.source}.`);
  $('qat-start').disabled = false;
}

function resultRow(model, count, accuracy) {
  $('qat-result').querySelector('tbody').append(node('tr', {}, node('td', {}, model), node('td', {}, String(count)), node('td', {}, pct(accuracy))));
}

async function fp32Accuracy(pixels, labels) {
  const c = classifiers.get('fp32');
  if (!c) return undefined;
  let correct = 0;
  const n = SIDE * SIDE;
  for (let i = 0; i < labels.length; i++) {
    const x = new Float32Array(n);
    for (let j = 0; j < n; j++) x[j] = pixels[i * n + j] / 255;
    if (argmax(await c.run(x)) === labels[i]) correct++;
  }
  return correct / labels.length;
}

async function runQat() {
  const steps = Math.max(1, Math.floor(Number($('qat-steps').value) || 0));
  const lr = Number($('qat-lr').value);
  if (!(lr > 0)) {
    qatStatus('ready', `learning rate ${$('qat-lr').value}: give a positive number (the default is ${manifest.schedule.lr})`);
    return;
  }
  $('qat-start').disabled = true;
  demo.qat.losses = [];
  demo.qat.msPerStep = [];
  demo.qat.steps = steps;
  demo.qat.accuracy = {};
  $('qat-result').hidden = true;
  $('qat-result').querySelector('tbody').replaceChildren();
  card('qat').remove();
  try {
    qatStatus('training', 'downloading the training-step graph and the MNIST subsets…');
    const names = ['step.onnx', 'eval.onnx', 'state.bin', 'train-images.bin', 'train-labels.bin', 'test-images.bin', 'test-labels.bin'];
    const [stepModel, evalModel, state, trainImages, trainLabels, testImages, testLabels] = await Promise.all(names.map(fetchBytes));
    await qatRunner?.release();
    qatRunner = await QatStepRunner.create(ort, { manifest, stepModel, evalModel, state }, { logSeverityLevel: 3 });
    qatStatus('training', `scoring the ${manifest.quant} model before fine-tuning on ${testLabels.length} test images…`);
    demo.qat.accuracy.before = await qatRunner.evaluate(testImages, testLabels);
    const sampler = new BatchSampler(trainImages, trainLabels, SIDE * SIDE, manifest.batch, 0);
    drawLossChart($('loss-chart'), [], steps);
    await qatRunner.train(
      sampler,
      steps,
      async ({ step, loss, ms }) => {
        demo.qat.losses.push(loss);
        demo.qat.msPerStep.push(ms);
        drawLossChart($('loss-chart'), demo.qat.losses, steps);
        qatStatus('training', `step ${step}/${steps} · loss ${loss.toFixed(4)} · ${ms.toFixed(0)} ms/step (batch ${manifest.batch})`);
        // Let the page paint the chart and take input between steps.
        await new Promise((resolve) => setTimeout(resolve, 0));
      },
      { lr },
    );
    qatStatus('training', `scoring the fine-tuned ${manifest.quant} model on ${testLabels.length} test images…`);
    demo.qat.accuracy.after = await qatRunner.evaluate(testImages, testLabels);
    demo.qat.accuracy.fp32 = await fp32Accuracy(testImages, testLabels);
    if (demo.qat.accuracy.fp32 !== undefined) resultRow('fp32 (the starting model)', testLabels.length, demo.qat.accuracy.fp32);
    resultRow(`${manifest.quant} fake-quant, calibrated, before fine-tuning`, testLabels.length, demo.qat.accuracy.before);
    resultRow(`${manifest.quant} fake-quant after ${steps} QAT steps in this page`, testLabels.length, demo.qat.accuracy.after);
    $('qat-result').hidden = false;
    const sorted = [...demo.qat.msPerStep].sort((a, b) => a - b);
    const first = demo.qat.losses.slice(0, 10);
    const last = demo.qat.losses.slice(-10);
    const mean = (v) => v.reduce((a, b) => a + b, 0) / v.length;
    qatStatus('done', `done: ${steps} steps, median ${sorted[sorted.length >> 1].toFixed(0)} ms/step; loss ${mean(first).toFixed(3)} (first ${first.length} steps) → ${mean(last).toFixed(3)} (last ${last.length}); the fine-tuned model now classifies your drawing too.`);
    await classify();
  } catch (e) {
    qatStatus('error', `in-page QAT failed: ${e.message}`);
  } finally {
    $('qat-start').disabled = false;
  }
}
$('qat-start').addEventListener('click', () => void runQat());

demo.ready = (async () => {
  $('runtime').textContent = `ONNX Runtime Web ${ort.env.versions?.web ?? ''} · WebAssembly · ${ort.env.wasm.numThreads} thread${ort.env.wasm.numThreads === 1 ? '' : 's'}${self.crossOriginIsolated ? '' : ' (page not cross-origin isolated: one thread)'}`;
  drawLossChart($('loss-chart'), [], Number($('qat-steps').value));
  await Promise.all([
    loadModels().catch((e) => showError(`model catalog: ${e.message}`)),
    loadQat().catch((e) => qatStatus('error', `in-page QAT: ${e.message}`)),
  ]);
  await classify();
})();
