import * as ort from '../runtime/ort.js';
import { DType } from '../ir/dtype.js';
import { initializersToInputs } from '../ir/infer.js';
import { Tensor } from '../ir/tensor.js';
import { Model } from '../models/model.js';
import { Session } from '../runtime/session.js';
import { buildEvalGraph, buildTrainStep, TrainStepGraph, TrainStepOptions } from './step-graph.js';
import { scoreLogits } from './evaluate.js';
import { buildLanguageModelEvalGraph, evaluateLanguageModelSession, LanguageModelEval } from './evaluate-language-model.js';
import type { TokenStream } from '../data/text.js';

export interface TrainerOptions extends TrainStepOptions {
  threads?: number;
  /** Batch size of the evaluation session. */
  evalBatchSize?: number;
  /** Run ORT's profiler on the training step's InferenceSession (bench/gpt-step.ts --profile); see SessionOptions.profilePrefix. */
  profilePrefix?: string;
}

export interface StepResult {
  loss: number;
  correct: number;
  gradNorm: number;
  /** Plugin metrics (e.g. fraction of oscillating weights per layer). */
  metrics: Record<string, number>;
}

export class TrainingDivergedError extends Error {}

function ortFloat(t: Tensor): ort.Tensor {
  return new ort.Tensor('float32', Float32Array.from(t.data as Float32Array), t.dims);
}

/**
 * Runs the one-graph training step on ONNX Runtime. Every carried value (parameters, optimizer state,
 * running statistics) lives in two preallocated buffers that ORT reads from and writes into alternately,
 * so no parameter-sized array is allocated in JavaScript after construction.
 */
export class Trainer {
  stepCount = 0;
  /** Whether activation observers update their ranges this step (QAT freezes them after a set step). */
  observe = true;
  private front: ort.Tensor[];
  private back: ort.Tensor[];
  private batchX: ort.Tensor;
  private batchY: ort.Tensor;
  private metricTensors: Record<string, ort.Tensor>;
  private scalars: { lr: ort.Tensor; step: ort.Tensor; loss: ort.Tensor; correct: ort.Tensor; gradNorm: ort.Tensor; observe: ort.Tensor; apply: ort.Tensor };

  private constructor(
    public readonly model: Model,
    public readonly step: TrainStepGraph,
    private trainSession: Session,
    private evalSession: Session,
    private options: TrainerOptions,
    initial?: Map<string, Tensor>,
  ) {
    this.front = step.carried.map((c) => ortFloat(initial?.get(c.input) ?? c.initial));
    this.back = step.carried.map((c) => ortFloat(c.initial));
    const shape = step.graph.typeOf(step.input).shape as number[];
    const size = shape.reduce((a, b) => a * b, 1);
    this.batchX =
      step.graph.typeOf(step.input).dtype === DType.INT64
        ? new ort.Tensor('int64', new BigInt64Array(size), shape)
        : new ort.Tensor('float32', new Float32Array(size), shape);
    const labelShape = step.graph.typeOf(step.labels).shape as number[];
    this.batchY = new ort.Tensor('int64', new BigInt64Array(labelShape.reduce((a, b) => a * b, 1)), labelShape);
    const scalar = () => new ort.Tensor('float32', new Float32Array(1), []);
    this.scalars = { lr: scalar(), step: scalar(), loss: scalar(), correct: scalar(), gradNorm: scalar(), observe: scalar(), apply: scalar() };
    this.metricTensors = Object.fromEntries(Object.keys(step.metrics).map((k) => [k, scalar()]));
  }

  /**
   * @param initial values to start from by carried-input name (a checkpoint's parameters and optimizer
   * state); anything missing starts from the model's initializers or zeros.
   */
  static async create(model: Model, options: TrainerOptions, initial?: Map<string, Tensor>): Promise<Trainer> {
    const step = buildTrainStep(model, options);
    // 'extended', not 'all': ORT's NCHWc layout pass cannot reorder weights that are graph inputs, so in a
    // training step it only wraps MaxPool, Resize and the constant im2col convs in layout reorders (full-size
    // copies); without it the LeNet step ran 12-18% faster (bench/qat-step, alternating runs), and the GPT step 20%
    // (issue 10). contribOps: com.microsoft FusedMatMul for transposed operands (src/runtime/lower.ts).
    const trainSession = await Session.create(step.graph, { threads: options.threads ?? 2, optimization: 'extended', contribOps: true, profilePrefix: options.profilePrefix });
    const evalGraph = model.task === 'language-model' ? buildLanguageModelEvalGraph(model) : buildEvalGraph(model);
    initializersToInputs(evalGraph, [...model.params, ...model.runningStats, ...(model.observerStats ?? [])]);
    const evalSession = await Session.create(evalGraph, { threads: options.threads ?? 2 });
    return new Trainer(model, step, trainSession, evalSession, options, initial);
  }

  /** The batch buffers to fill before calling `trainStep` (images NCHW in [0, 1], int64 labels). */
  get batchImages(): Float32Array {
    return this.batchX.data as Float32Array;
  }
  /** Language models: the [B, T] token-id buffer (targets go into batchLabels, also [B, T]). */
  get batchTokens(): BigInt64Array {
    return this.batchX.data as BigInt64Array;
  }
  get batchLabels(): BigInt64Array {
    return this.batchY.data as BigInt64Array;
  }

  /**
   * Runs one step on the batch buffers. With gradient accumulation, `apply` false only adds this micro-batch's
   * gradients (parameters unchanged, stepCount not advanced); true applies the accumulated update.
   */
  async trainStep(lr: number, apply = true): Promise<StepResult> {
    const s = this.scalars;
    (s.lr.data as Float32Array)[0] = lr;
    (s.step.data as Float32Array)[0] = this.stepCount + 1;
    const feeds: Record<string, ort.Tensor> = { [this.step.input]: this.batchX, [this.step.labels]: this.batchY, [this.step.lr]: s.lr, [this.step.step]: s.step };
    const fetches: Record<string, ort.Tensor> = { [this.step.loss]: s.loss, [this.step.correct]: s.correct, [this.step.gradNorm]: s.gradNorm };
    for (const [k, v] of Object.entries(this.step.metrics)) fetches[v] = this.metricTensors[k];
    if (this.step.observe) {
      (s.observe.data as Float32Array)[0] = this.observe ? 1 : 0;
      feeds[this.step.observe] = s.observe;
    }
    if (this.step.apply) {
      (s.apply.data as Float32Array)[0] = apply ? 1 : 0;
      feeds[this.step.apply] = s.apply;
    } else if (!apply) throw new Error('trainStep(apply = false) needs a step graph built with accumulate > 1');
    this.step.carried.forEach((c, i) => {
      feeds[c.input] = this.front[i];
      fetches[c.output] = this.back[i];
    });
    await this.trainSession.run(feeds, fetches);
    const loss = (s.loss.data as Float32Array)[0];
    if (!Number.isFinite(loss)) {
      // The new values are in `back`; `front` still holds the last good ones.
      throw new TrainingDivergedError(`loss became ${loss} at step ${this.stepCount + 1}`);
    }
    [this.front, this.back] = [this.back, this.front];
    if (apply) this.stepCount++;
    const metrics: Record<string, number> = {};
    for (const [k, t] of Object.entries(this.metricTensors)) metrics[k] = (t.data as Float32Array)[0];
    return { loss, correct: (s.correct.data as Float32Array)[0], gradNorm: (s.gradNorm.data as Float32Array)[0], metrics };
  }

  /** Current value of every carried input (parameters, optimizer state, running statistics), as copies. */
  values(kind?: 'param' | 'optimizer' | 'running-stat'): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    this.step.carried.forEach((c, i) => {
      if (!kind || c.kind === kind) out.set(c.input, new Tensor(DType.FLOAT, [...c.initial.dims], Float32Array.from(this.front[i].data as Float32Array)));
    });
    return out;
  }

  /** The current value of a carried input (parameter, running statistic, state) without a copy: valid until the next step. */
  carriedData(name: string): Float32Array | undefined {
    const i = this.step.carried.findIndex((c) => c.input === name);
    return i < 0 ? undefined : (this.front[i].data as Float32Array);
  }

  /** The model with its current parameters and running statistics as initializers. */
  currentModel(): Model {
    const graph = this.model.graph.clone();
    for (const [name, t] of this.values()) if (graph.initializers.has(name)) graph.initializers.set(name, t);
    return { ...this.model, graph };
  }

  /** Logits for `count` samples of NCHW images, in batches. */
  async predict(images: Float32Array, count: number, sampleShape: number[], onBatch?: (logits: Float32Array, start: number, n: number) => void): Promise<void> {
    const batch = this.options.evalBatchSize ?? 1000;
    const per = sampleShape.reduce((a, b) => a * b, 1);
    const feeds = this.evalFeeds();
    for (let start = 0; start < count; start += batch) {
      const n = Math.min(batch, count - start);
      feeds[this.model.input] = new ort.Tensor('float32', images.subarray(start * per, (start + n) * per), [n, ...sampleShape]);
      const out = await this.evalSession.run(feeds, [this.model.output]);
      onBatch?.(out[this.model.output].data as Float32Array, start, n);
    }
  }

  async evaluate(images: Float32Array, labels: Uint8Array, count: number, sampleShape: number[]): Promise<{ accuracy: number; loss: number }> {
    const acc = { correct: 0, loss: 0, predictions: new Uint8Array(count) };
    await this.predict(images, count, sampleShape, (logits, start, n) => scoreLogits(logits, labels, start, n, acc));
    return { accuracy: acc.correct / count, loss: acc.loss / count };
  }

  /** Language models: validation loss, perplexity and bits per byte of the current parameters on a token stream. */
  async evaluateText(stream: TokenStream, context: number, batch = 16): Promise<LanguageModelEval> {
    return evaluateLanguageModelSession(this.evalSession, this.model, stream, context, { batch, feeds: this.evalFeeds() });
  }

  /** Current parameters, running statistics and observer ranges as eval-session feeds. */
  private evalFeeds(): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    this.step.carried.forEach((c, i) => {
      if (c.kind !== 'optimizer') feeds[c.input] = this.front[i];
    });
    return feeds;
  }

  /** Ends ORT's profiling of the step session (created with profilePrefix): the JSON file appears under the prefix. */
  endProfiling(): void {
    this.trainSession.inner.endProfiling();
  }

  async release(): Promise<void> {
    await this.trainSession.release();
    await this.evalSession.release();
  }
}
