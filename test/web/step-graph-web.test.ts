import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { loadDataset } from '../../src/data/index.js';
import { decodeModel } from '../../src/onnx/model-io.js';
import { buildQatBundle, QatBundle } from '../../src/serve/qat-bundle.js';
import { loadRun, DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run.js';
import { BatchSampler, QatStepRunner } from '../../web/qat-step.js';
import { scratchDir } from '../helpers/scratch.js';

// The in-page QAT step (web/qat-step.js over src/serve/qat-bundle.ts) run in Node on onnxruntime-web's wasm build,
// against the same module on onnxruntime-node: every op of the step graph must exist in the wasm build, and the
// two runtimes must follow the same trajectory.
ortWeb.env.wasm.numThreads = 1;

const STEPS = 6;
const tmp = scratchDir('qat-step-web-');
let bundle: QatBundle;
const data = loadDataset('mnist');

after(() => fs.rmSync(tmp, { recursive: true, force: true }));

before(async () => {
  const fp32Dir = path.join(tmp, 'fp32');
  await train({ ...DEFAULT_TRAIN_CONFIG, model: 'lenet', steps: 20, batch: 32, threads: 1 }, fp32Dir);
  bundle = await buildQatBundle(loadRun(fp32Dir).model, data, { quant: 'w4a4', batch: 16, calibBatches: 2, threads: 1 });
});

/** The first `count` training images as uint8 pixels and labels (what the server sends the page). */
function subset(count: number) {
  const pixels = new Uint8Array(count * 784);
  for (let i = 0; i < pixels.length; i++) pixels[i] = Math.round(data.train.images[i] * 255);
  return { pixels, labels: data.train.labels.slice(0, count) };
}

test('the served step graph uses only standard ONNX ops (nothing the wasm build could lack from a custom domain)', () => {
  const graph = decodeModel(bundle.stepModel);
  const domains = new Set(graph.nodes.map((n) => n.domain || 'ai.onnx'));
  assert.deepEqual([...domains], ['ai.onnx']);
  assert.ok(graph.nodes.some((n) => n.opType === 'Round'), 'fake quantization lowered to Round');
});

test(`w4a4 step graph on onnxruntime-web (wasm) gives onnxruntime-node's loss and update at each of ${STEPS} steps`, async () => {
  // Teacher forcing: before each step the node runner gets the web runner's state and batch, so each step is compared
  // from the same point. (Free-running trajectories part after a step or two: AdamW's first update is about
  // lr * sign(g), and gradients near zero can take either sign in two float summation orders.)
  const web = await QatStepRunner.create(ortWeb as never, bundle, { executionProviders: ['wasm'] });
  const node = await QatStepRunner.create(ortNode as never, bundle, { executionProviders: ['cpu'], intraOpNumThreads: 1, logSeverityLevel: 3 });
  const { pixels, labels } = subset(256);
  const sampler = new BatchSampler(pixels, labels, 784, bundle.manifest.batch, 7);
  const params = bundle.manifest.carried.filter((c) => c.kind === 'param');
  const lr = 1e-3;
  try {
    const start = Float32Array.from(web.state.get(params[0].input)!.data);
    const rows: string[] = [];
    for (let s = 0; s < STEPS; s++) {
      sampler.next(web.images.data, web.labels.data);
      node.images.data.set(web.images.data);
      node.labels.data.set(web.labels.data);
      for (const [name, t] of web.state) node.state.set(name, new ortNode.Tensor('float32', Float32Array.from(t.data), bundle.manifest.carried.find((c) => c.input === name)!.dims));
      node.stepCount = web.stepCount;
      const [a, b] = [await web.trainStep(lr), await node.trainStep(lr)];
      assert.ok(Math.abs(a.loss - b.loss) <= 1e-5 * Math.max(1, b.loss), `step ${s + 1}: loss web ${a.loss} node ${b.loss}`);
      assert.equal(a.correct, b.correct, `step ${s + 1}: correct count`);
      // Updated parameters: AdamW normalises each gradient element, so a near-zero gradient whose sign differs between
      // the two summation orders moves its weight by up to ~2 lr apart; nearly all others agree to a small part of lr.
      const diffs: number[] = [];
      for (const p of params) {
        const [u, v] = [web.state.get(p.input)!.data, node.state.get(p.input)!.data];
        for (let i = 0; i < u.length; i++) diffs.push(Math.abs(u[i] - v[i]) / lr);
      }
      diffs.sort((x, y) => x - y);
      const p99 = diffs[Math.floor(0.99 * diffs.length)];
      assert.ok(p99 <= 1e-2, `step ${s + 1}: 99th percentile of |web - node| update difference ${p99} lr`);
      assert.ok(diffs[diffs.length - 1] <= 2.5, `step ${s + 1}: largest update difference ${diffs[diffs.length - 1]} lr`);
      rows.push(`${a.loss.toFixed(6)}/${b.loss.toFixed(6)} (p99 ${p99.toExponential(1)} lr)`);
    }
    console.log(`loss web/node per step: ${rows.join(' ')}`);
    const moved = web.state.get(params[0].input)!.data;
    assert.ok(start.some((v, i) => Math.abs(v - moved[i]) > 1e-6), 'parameters unchanged by training');
    const [ea, eb] = [await web.evaluate(pixels.subarray(0, 128 * 784), labels.subarray(0, 128)), await node.evaluate(pixels.subarray(0, 128 * 784), labels.subarray(0, 128))];
    assert.ok(Math.abs(ea - eb) <= 1 / 128, `eval-graph accuracy web ${ea} node ${eb}`);
    assert.ok(ea > 0.3, `accuracy ${ea}: the fixture model predicts`);
  } finally {
    await web.release();
    await node.release();
  }
});
