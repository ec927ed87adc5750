import * as ort from '../runtime/ort.js';
import { Dataset } from '../data/dataset.js';
import { Graph } from '../ir/graph.js';
import { Model } from '../models/model.js';
import { Session } from '../runtime/session.js';
import { buildEvalGraph } from '../train/step-graph.js';

export interface ParityReport {
  samples: number;
  /** Fraction of samples where the exported model's argmax equals the fake-quant model's. */
  argmax_agreement: number;
  qat_accuracy: number;
  exported_accuracy: number;
  /** |exported - qat| accuracy in percentage points. */
  accuracy_difference_points: number;
  max_abs_logit_difference: number;
}

/** The goals of issue 5: the simulation is what ships. */
export const PARITY_GOALS = { minAgreement: 0.999, maxAccuracyDifferencePoints: 0.1 };

function argmax(v: Float32Array, row: number, k: number): number {
  let best = 0;
  for (let j = 1; j < k; j++) if (v[row * k + j] > v[row * k + best]) best = j;
  return best;
}

/**
 * Runs the exported graph and the QAT model's inference graph (fake quantization, as evaluation runs it)
 * in ONNX Runtime on the same samples and compares their logits and predictions.
 */
export async function checkParity(model: Model, exported: Graph, data: Dataset, options: { threads?: number; batchSize?: number; limit?: number } = {}): Promise<ParityReport> {
  const threads = options.threads ?? 2;
  const [qat, deployed] = [await Session.create(buildEvalGraph(model), { threads }), await Session.create(exported, { threads })];
  const count = Math.min(data.count, options.limit ?? data.count);
  const per = data.shape.reduce((a, b) => a * b, 1);
  const batch = options.batchSize ?? 1000;
  let agree = 0;
  let correctQat = 0;
  let correctExported = 0;
  let maxDiff = 0;
  try {
    for (let start = 0; start < count; start += batch) {
      const n = Math.min(batch, count - start);
      const x = new ort.Tensor('float32', data.images.subarray(start * per, (start + n) * per), [n, ...data.shape]);
      const a = (await qat.run({ [model.input]: x }, [model.output]))[model.output].data as Float32Array;
      const b = (await deployed.run({ [model.input]: x }, [model.output]))[model.output].data as Float32Array;
      const k = a.length / n;
      for (let i = 0; i < n; i++) {
        const [pa, pb] = [argmax(a, i, k), argmax(b, i, k)];
        if (pa === pb) agree++;
        if (pa === data.labels[start + i]) correctQat++;
        if (pb === data.labels[start + i]) correctExported++;
      }
      for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    }
  } finally {
    await qat.release();
    await deployed.release();
  }
  return {
    samples: count,
    argmax_agreement: agree / count,
    qat_accuracy: correctQat / count,
    exported_accuracy: correctExported / count,
    accuracy_difference_points: (Math.abs(correctExported - correctQat) / count) * 100,
    max_abs_logit_difference: maxDiff,
  };
}

/** Throws, naming the measured numbers and the goals, when the exported model does not behave as trained. */
export function assertParity(report: ParityReport, goals = PARITY_GOALS, why?: string): void {
  const failures: string[] = [];
  if (report.argmax_agreement < goals.minAgreement) failures.push(`argmax agreement ${(report.argmax_agreement * 100).toFixed(2)}% < ${goals.minAgreement * 100}%`);
  if (report.accuracy_difference_points > goals.maxAccuracyDifferencePoints) failures.push(`accuracy differs by ${report.accuracy_difference_points.toFixed(2)} points > ${goals.maxAccuracyDifferencePoints}`);
  if (failures.length) {
    throw new Error(
      `export refused: the exported model does not match the fake-quant model on ${report.samples} test samples (${failures.join('; ')}; ` +
        `max |logit difference| ${report.max_abs_logit_difference.toPrecision(3)}).${why ? ` ${why}.` : ''} Use --no-verify to write it anyway.`,
    );
  }
}
