import { GraphBuilder } from '../ir/builder.js';
import { DType } from '../ir/dtype.js';

/**
 * Softmax cross-entropy with integer labels, averaged over the batch. With label smoothing eps the target is
 * (1 - eps) * onehot + eps / K (Szegedy et al. 2016), as in torch.nn.CrossEntropyLoss(label_smoothing=eps).
 */
export function softmaxCrossEntropy(b: GraphBuilder, logits: string, labels: string, classes: number, labelSmoothing = 0): string {
  if (labelSmoothing < 0 || labelSmoothing >= 1) throw new Error(`label smoothing must be in [0, 1), got ${labelSmoothing}`);
  const logp = b.op1('LogSoftmax', [logits], { axis: -1 });
  const on = 1 - labelSmoothing + labelSmoothing / classes;
  const off = labelSmoothing / classes;
  // ORT's OneHot has no float64 kernel: build the target in float32 and cast (a no-op for float32 logits).
  const target = b.castLike(b.op1('OneHot', [labels, b.constant([classes], DType.INT64, [1]), b.constant([off, on], DType.FLOAT)], { axis: -1 }), logits);
  const perSample = b.op1('ReduceSum', [b.mul(target, logp), b.ints([1])], { keepdims: 0 });
  return b.neg(b.reduceMean(perSample, [0], false));
}

/** Mean squared error over all elements. */
export function meanSquaredError(b: GraphBuilder, prediction: string, target: string): string {
  const d = b.sub(prediction, target);
  return b.op1('ReduceMean', [b.mul(d, d)], { keepdims: 0 });
}

/**
 * Distillation loss of Hinton et al. 2015: T^2 * KL(softmax(teacher/T) || softmax(student/T)), summed over
 * classes and averaged over the batch. The T^2 factor keeps gradient magnitudes comparable across T.
 * The teacher's logits must be marked stop-gradient by the caller.
 */
export function distillationKl(b: GraphBuilder, studentLogits: string, teacherLogits: string, temperature = 1): string {
  if (!(temperature > 0)) throw new Error(`distillation temperature must be > 0, got ${temperature}`);
  const invT = b.scalarLike(1 / temperature, studentLogits);
  const logPs = b.op1('LogSoftmax', [b.mul(studentLogits, invT)], { axis: -1 });
  const logPt = b.op1('LogSoftmax', [b.mul(teacherLogits, invT)], { axis: -1 });
  const pt = b.exp(logPt);
  const perSample = b.op1('ReduceSum', [b.mul(pt, b.sub(logPt, logPs)), b.ints([1])], { keepdims: 0 });
  return b.mul(b.reduceMean(perSample, [0], false), b.scalarLike(temperature * temperature, studentLogits));
}

/** Number of samples whose argmax equals the label, as a float scalar. */
export function correctCount(b: GraphBuilder, logits: string, labels: string): string {
  const predicted = b.op1('ArgMax', [logits], { axis: 1, keepdims: 0 });
  return b.sumAll(b.cast(b.equal(predicted, labels), DType.FLOAT));
}

/**
 * Next-token cross-entropy of logits [B, T, V] against int64 targets [B, T]: the mean over all B*T positions of
 * logsumexp(logits) - logits[target]. The target's log-probability is read with GatherElements, so no [B, T, V]
 * one-hot is built (a 50k GPT-2 vocabulary at batch 32 x 128 would need 800 MB for it).
 */
export function tokenCrossEntropy(b: GraphBuilder, logits: string, targets: string, options: { fused?: boolean } = {}): string {
  if ((options.fused ?? true) && b.shape(targets).every((d) => typeof d === 'number')) {
    // One op whose gradient is softmax - onehot (src/ops/softmax.ts); the same ops as below once lowered.
    return b.op('SoftmaxCrossEntropy', [logits, targets], {}, { domain: 'ai.qatkit', outputs: 2 })[0];
  }
  const logp = b.op1('LogSoftmax', [logits], { axis: -1 });
  const picked = b.op1('GatherElements', [logp, b.unsqueeze(targets, [2])], { axis: 2 });
  return b.neg(b.op1('ReduceMean', [picked], { keepdims: 0 }));
}

/** Summed next-token cross-entropy (nats) over every position, for evaluation over windows of any count. */
export function tokenCrossEntropySum(b: GraphBuilder, logits: string, targets: string): string {
  const logp = b.op1('LogSoftmax', [logits], { axis: -1 });
  const picked = b.op1('GatherElements', [logp, b.unsqueeze(targets, [2])], { axis: 2 });
  return b.neg(b.sumAll(picked));
}

/** Number of positions whose argmax over the vocabulary equals the target, as a float scalar. */
export function tokenCorrectCount(b: GraphBuilder, logits: string, targets: string): string {
  const predicted = b.op1('ArgMax', [logits], { axis: 2, keepdims: 0 });
  return b.sumAll(b.cast(b.equal(predicted, targets), DType.FLOAT));
}
