// Runs qatkit's training-step ONNX model step after step, in the browser (onnxruntime-web) or in Node (either
// onnxruntime package: both expose InferenceSession and Tensor). The contract is src/train/trainer.ts's: every
// carried value (parameters, AdamW moments, BN statistics, observer ranges) is a graph input before the step and
// a graph output after it, and the outputs of step t are fed as the inputs of step t + 1. No state lives in the
// graph; the page holds it as ORT tensors and swaps them.

/** Cosine decay from lr to 0 over `total` steps (src/train/schedule.ts, kind 'cosine', no warmup). */
export function cosineLearningRate(lr, step, total) {
  const t = Math.min(1, step / Math.max(1, total));
  return lr * 0.5 * (1 + Math.cos(Math.PI * t));
}

/** mulberry32: a small seeded generator, so a page run's batches are reproducible from its seed. */
export function seededRandom(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Batches drawn without replacement from uint8 pixels (one epoch = one shuffled pass), scaled to [0, 1]. */
export class BatchSampler {
  constructor(pixels, labels, sampleSize, batch, seed = 0) {
    this.pixels = pixels;
    this.labels = labels;
    this.sampleSize = sampleSize;
    this.batch = batch;
    this.count = labels.length;
    if (this.count < batch) throw new Error(`training subset has ${this.count} samples, fewer than the batch of ${batch}`);
    this.random = seededRandom(seed);
    this.order = new Uint32Array(this.count);
    this.position = this.count;
  }

  /** Fills images (float32, NCHW) and labels (int64) with the next batch. */
  next(images, labels) {
    if (this.position + this.batch > this.count) {
      for (let i = 0; i < this.count; i++) this.order[i] = i;
      for (let i = this.count - 1; i > 0; i--) {
        const j = Math.floor(this.random() * (i + 1));
        [this.order[i], this.order[j]] = [this.order[j], this.order[i]];
      }
      this.position = 0;
    }
    const n = this.sampleSize;
    for (let b = 0; b < this.batch; b++) {
      const k = this.order[this.position++];
      for (let j = 0; j < n; j++) images[b * n + j] = this.pixels[k * n + j] / 255;
      labels[b] = BigInt(this.labels[k]);
    }
  }
}

/**
 * One in-page QAT run over a served bundle (src/serve/qat-bundle.ts): manifest, step and eval model bytes, initial
 * state (float32, manifest.carried's layout).
 */
export class QatStepRunner {
  static async create(ort, bundle, sessionOptions = {}) {
    const options = { executionProviders: ['wasm'], graphOptimizationLevel: 'all', ...sessionOptions };
    const step = await ort.InferenceSession.create(bundle.stepModel, options);
    const evaluation = await ort.InferenceSession.create(bundle.evalModel, options);
    return new QatStepRunner(ort, bundle.manifest, step, evaluation, bundle.state);
  }

  constructor(ort, manifest, stepSession, evalSession, stateBytes) {
    this.ort = ort;
    this.manifest = manifest;
    this.stepSession = stepSession;
    this.evalSession = evalSession;
    const all = new Float32Array(stateBytes.buffer, stateBytes.byteOffset, stateBytes.byteLength / 4);
    const total = manifest.carried.reduce((s, c) => s + c.length, 0);
    if (all.length !== total) throw new Error(`state has ${all.length} floats, the manifest's carried values ${total}`);
    /** Current carried values by input name (ORT tensors). */
    this.state = new Map(manifest.carried.map((c) => [c.input, new ort.Tensor('float32', all.slice(c.offset, c.offset + c.length), c.dims)]));
    const [ch, h, w] = manifest.sampleShape;
    this.sampleSize = ch * h * w;
    this.images = new ort.Tensor('float32', new Float32Array(manifest.batch * this.sampleSize), [manifest.batch, ch, h, w]);
    this.labels = new ort.Tensor('int64', new BigInt64Array(manifest.batch), [manifest.batch]);
    this.stepCount = 0;
  }

  /** Runs one step on this.images / this.labels; returns the batch's mean loss and correct count. */
  async trainStep(lr, observe = true) {
    const m = this.manifest;
    const scalar = (v) => new this.ort.Tensor('float32', new Float32Array([v]), []);
    const feeds = { [m.step.images]: this.images, [m.step.labels]: this.labels, [m.step.lr]: scalar(lr), [m.step.step]: scalar(this.stepCount + 1) };
    if (m.step.observe) feeds[m.step.observe] = scalar(observe ? 1 : 0);
    for (const c of m.carried) feeds[c.input] = this.state.get(c.input);
    const out = await this.stepSession.run(feeds);
    const loss = out[m.step.loss].data[0];
    if (!Number.isFinite(loss)) throw new Error(`loss became ${loss} at step ${this.stepCount + 1}`);
    for (const c of m.carried) {
      this.state.get(c.input).dispose?.();
      this.state.set(c.input, out[c.output]);
    }
    this.stepCount++;
    return { loss, correct: out[m.step.correct].data[0] };
  }

  /**
   * Trains `steps` steps on batches from `sampler`, lr on the manifest's cosine schedule, observers frozen after
   * the manifest's fraction of the run (as `qat train` does). `onStep({ step, loss, correct, lr, ms })` after each.
   */
  async train(sampler, steps, onStep = () => {}, { lr = this.manifest.schedule.lr } = {}) {
    const freeze = Math.floor(this.manifest.schedule.observerFreezeFraction * steps);
    for (let s = 0; s < steps; s++) {
      sampler.next(this.images.data, this.labels.data);
      const rate = cosineLearningRate(lr, s, steps);
      const t0 = performance.now();
      const r = await this.trainStep(rate, s < freeze);
      await onStep({ step: s + 1, loss: r.loss, correct: r.correct, lr: rate, ms: performance.now() - t0 });
    }
  }

  /** Accuracy of the fake-quantized model (current parameters) on uint8 test images, in batches. */
  async evaluate(pixels, labels, batch = 250) {
    const m = this.manifest;
    const [ch, h, w] = m.sampleShape;
    const n = this.sampleSize;
    let correct = 0;
    const feeds = {};
    for (const name of m.eval.feeds) feeds[name] = this.state.get(name);
    for (let start = 0; start < labels.length; start += batch) {
      const count = Math.min(batch, labels.length - start);
      const x = new Float32Array(count * n);
      for (let j = 0; j < x.length; j++) x[j] = pixels[start * n + j] / 255;
      feeds[m.eval.images] = new this.ort.Tensor('float32', x, [count, ch, h, w]);
      const logits = (await this.evalSession.run(feeds))[m.eval.logits].data;
      const k = logits.length / count;
      for (let i = 0; i < count; i++) {
        let best = 0;
        for (let j = 1; j < k; j++) if (logits[i * k + j] > logits[i * k + best]) best = j;
        if (best === labels[start + i]) correct++;
      }
    }
    return correct / labels.length;
  }

  /** Logits of the fake-quantized model (current parameters) for `count` images already scaled to [0, 1]. */
  async logits(images, count) {
    const m = this.manifest;
    const [ch, h, w] = m.sampleShape;
    const feeds = { [m.eval.images]: new this.ort.Tensor('float32', images, [count, ch, h, w]) };
    for (const name of m.eval.feeds) feeds[name] = this.state.get(name);
    return (await this.evalSession.run(feeds))[m.eval.logits].data;
  }

  async release() {
    await this.stepSession.release();
    await this.evalSession.release();
  }
}
