// The exported models, one ONNX Runtime Web session each, classifying the same 28x28 input. Latency is measured
// here, in the page: the median of several runs of one image after a warm-up run (the first run of a session
// includes one-time work: kernel selection, prepacking).
import { argmax, SIDE, softmax } from './preprocess.js';

export const TIMED_RUNS = 5;

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export class Classifier {
  static async create(ort, model) {
    const response = await fetch(model.url);
    if (!response.ok) throw new Error(`${model.url}: HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'all', logSeverityLevel: 3 });
    const c = new Classifier(ort, model, session);
    await c.run(new Float32Array(SIDE * SIDE));
    return c;
  }

  constructor(ort, model, session) {
    this.ort = ort;
    this.model = model;
    this.session = session;
  }

  async run(pixels) {
    const x = new this.ort.Tensor('float32', pixels, [1, 1, SIDE, SIDE]);
    const out = await this.session.run({ [this.session.inputNames[0]]: x });
    return Float32Array.from(out[this.session.outputNames[0]].data);
  }

  /** Class probabilities, the predicted class and the median latency (ms) for one image. */
  async classify(pixels) {
    const times = [];
    let logits;
    for (let i = 0; i < TIMED_RUNS; i++) {
      const t0 = performance.now();
      logits = await this.run(pixels);
      times.push(performance.now() - t0);
    }
    const probs = softmax(logits);
    return { digit: argmax(probs), probs, logits: Array.from(logits), ms: median(times) };
  }
}
