/**
 * Distillation of a language model from its frozen fp32 teacher inside the training step, as data-free QAT uses it
 * (LLM-QAT, Liu et al. 2023, eq. 1): the loss is the per-token KL(teacher || student) of next-token distributions,
 * averaged over every position of the batch, with the teacher's logits a stop-gradient target. With weight 1 the
 * KL is the only loss: on generated windows the "targets" are the teacher's own draws, so cross-entropy on them
 * would only add sampling noise to what the KL already says.
 */
import { GraphBuilder } from '../ir/builder.js';
import { Model } from '../models/model.js';
import type { DistillOptions } from './distill.js';
import { ExtraLoss } from './step-graph.js';

/**
 * T^2 * mean over positions of sum_v p_t(v) (log p_t(v) - log p_s(v)), p = softmax(logits / T) over the last axis
 * (Hinton et al. 2015's scaling, so the gradient's size does not depend on T).
 */
export function tokenDistillationKl(b: GraphBuilder, studentLogits: string, teacherLogits: string, temperature = 1): string {
  if (!(temperature > 0)) throw new Error(`distillation temperature must be > 0, got ${temperature}`);
  const invT = b.scalarLike(1 / temperature, studentLogits);
  const logPs = b.op1('LogSoftmax', [b.mul(studentLogits, invT)], { axis: -1 });
  const logPt = b.op1('LogSoftmax', [b.mul(teacherLogits, invT)], { axis: -1 });
  const perToken = b.op1('ReduceSum', [b.mul(b.exp(logPt), b.sub(logPt, logPs)), b.ints([-1])], { keepdims: 0 });
  return b.mul(b.op1('ReduceMean', [perToken], { keepdims: 0 }), b.scalarLike(temperature * temperature, studentLogits));
}

/**
 * The teacher's inference graph copied into the step graph under 'teacher/' (its parameters constants), reading
 * the student's token ids and side inputs (attention_mask, position_ids, which the step graph fixes as constants).
 */
export function languageModelDistill(teacher: Model, options: DistillOptions): ExtraLoss {
  if (!(options.weight >= 0 && options.weight <= 1)) throw new Error(`distillation weight must be in [0, 1], got ${options.weight}`);
  const shared = new Set([teacher.input, teacher.lm?.attentionMask, teacher.lm?.positionIds].filter((n): n is string => !!n));
  return (b, logits, graph) => {
    const rename = (v: string) => (v === '' || shared.has(v) ? v : `teacher/${v}`);
    for (const [name, t] of teacher.graph.initializers) if (!shared.has(name)) b.initializer(rename(name), t);
    for (const node of teacher.graph.nodes) {
      b.addNode({ ...node, name: `teacher/${node.name}`, inputs: node.inputs.map(rename), outputs: node.outputs.map(rename), attrs: { ...node.attrs } });
    }
    for (const [domain, version] of Object.entries(teacher.graph.opsets)) graph.opsets[domain] ??= version;
    const teacherLogits = rename(teacher.output);
    const kl = tokenDistillationKl(b, logits, teacherLogits, options.temperature);
    return { loss: options.weight === 1 ? kl : b.mul(kl, b.scalarLike(options.weight, kl)), crossEntropyWeight: 1 - options.weight, stopGradient: [teacherLogits] };
  };
}
