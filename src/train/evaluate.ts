import * as ort from '../runtime/ort.js';
import { Dataset } from '../data/dataset.js';
import { Model } from '../models/model.js';
import { Session } from '../runtime/session.js';
import { buildEvalGraph } from './step-graph.js';

export interface EvalResult {
  accuracy: number;
  loss: number;
  /** argmax per sample, for agreement checks between two models. */
  predictions: Uint8Array;
}

/** Accuracy and mean cross-entropy of logits against labels; also returns the argmax per sample. */
export function scoreLogits(logits: Float32Array, labels: Uint8Array, start: number, n: number, into: { correct: number; loss: number; predictions: Uint8Array }): void {
  const k = logits.length / n;
  for (let i = 0; i < n; i++) {
    let best = 0;
    let max = -Infinity;
    for (let j = 0; j < k; j++) if (logits[i * k + j] > max) { max = logits[i * k + j]; best = j; }
    let z = 0;
    for (let j = 0; j < k; j++) z += Math.exp(logits[i * k + j] - max);
    into.loss += Math.log(z) - (logits[i * k + labels[start + i]] - max);
    into.predictions[start + i] = best;
    if (best === labels[start + i]) into.correct++;
  }
}

/** Evaluates a model (its inference graph: BN with running statistics, observers frozen) on a dataset. */
export async function evaluateModel(model: Model, data: Dataset, options: { threads?: number; batchSize?: number; limit?: number } = {}): Promise<EvalResult> {
  const session = await Session.create(buildEvalGraph(model), { threads: options.threads ?? 2 });
  const count = Math.min(data.count, options.limit ?? data.count);
  const acc = { correct: 0, loss: 0, predictions: new Uint8Array(count) };
  const per = data.shape.reduce((a, b) => a * b, 1);
  const batch = options.batchSize ?? 1000;
  try {
    for (let start = 0; start < count; start += batch) {
      const n = Math.min(batch, count - start);
      const x = new ort.Tensor('float32', data.images.subarray(start * per, (start + n) * per), [n, ...data.shape]);
      const out = await session.run({ [model.input]: x }, [model.output]);
      scoreLogits(out[model.output].data as Float32Array, data.labels, start, n, acc);
    }
  } finally {
    await session.release();
  }
  return { accuracy: acc.correct / count, loss: acc.loss / count, predictions: acc.predictions };
}
