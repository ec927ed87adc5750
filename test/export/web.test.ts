import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { loadDataset } from '../../src/data';
import { exportQdq } from '../../src/export/qdq';
import { encodeModel } from '../../src/onnx/model-io';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run';
import { scratchDir } from '../helpers/scratch.js';

// The exported models in onnxruntime-web (wasm backend, run in Node; its .wasm files come from the package).
ortWeb.env.wasm.numThreads = 1;

const SAMPLES = 200;
const tmp = scratchDir('qat-web-');
const models: Record<string, Uint8Array> = {};

after(() => fs.rmSync(tmp, { recursive: true, force: true }));

before(async () => {
  const qatDir = path.join(tmp, 'w8a8');
  await train({ ...DEFAULT_TRAIN_CONFIG, model: 'lenet', quant: 'w8a8', steps: 30, batch: 32 }, qatDir);
  models.int8 = encodeModel((await exportQdq(loadCheckpoint(path.join(qatDir, 'checkpoint.qat')).model)).graph);
  const fp32Dir = path.join(tmp, 'fp32');
  await train({ ...DEFAULT_TRAIN_CONFIG, model: 'lenet', steps: 30, batch: 32 }, fp32Dir);
  // The run's inference model as `qat train` writes it.
  models.fp32 = fs.readFileSync(path.join(fp32Dir, 'model.onnx'));
});

/** Logits of the first SAMPLES MNIST test images, in one batch. */
async function logits(session: ortNode.InferenceSession | ortWeb.InferenceSession, Tensor: typeof ortNode.Tensor | typeof ortWeb.Tensor): Promise<Float32Array> {
  const data = loadDataset('mnist').test;
  const x = new Tensor('float32', data.images.slice(0, SAMPLES * 784), [SAMPLES, 1, 28, 28]);
  const out = await session.run({ [session.inputNames[0]]: x } as never);
  return out[session.outputNames[0]].data as Float32Array;
}

const argmax = (v: Float32Array, k: number) => Array.from({ length: v.length / k }, (_, r) => v.subarray(r * k, (r + 1) * k).reduce((b, x, j, a) => (x > a[b] ? j : b), 0));

for (const kind of ['int8', 'fp32'] as const) {
  test(`lenet ${kind}: onnxruntime-web (wasm) gives onnxruntime-node's predictions on ${SAMPLES} test images`, async () => {
    const web = await ortWeb.InferenceSession.create(models[kind], { executionProviders: ['wasm'] });
    const node = await ortNode.InferenceSession.create(models[kind], { intraOpNumThreads: 1, logSeverityLevel: 3 });
    try {
      const [a, b] = [await logits(web, ortWeb.Tensor), await logits(node, ortNode.Tensor)];
      assert.equal(a.length, SAMPLES * 10);
      const [pa, pb] = [argmax(a, 10), argmax(b, 10)];
      const agree = pa.filter((p, i) => p === pb[i]).length;
      let maxDiff = 0;
      for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
      console.log(`${kind}: web vs node argmax agreement ${agree}/${SAMPLES}, max |logit difference| ${maxDiff.toPrecision(3)}`);
      assert.equal(agree, SAMPLES);
      assert.ok(maxDiff < 0.05, String(maxDiff));
      // Trained enough to predict: the agreement is not between two constant outputs.
      assert.ok(new Set(pb).size >= 5, `predictions: ${[...new Set(pb)]}`);
    } finally {
      await web.release();
      await node.release();
    }
  });
}
