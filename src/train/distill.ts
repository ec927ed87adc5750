import { Model } from '../models/model.js';
import { distillationKl } from './losses.js';
import { ExtraLoss } from './step-graph.js';

export interface DistillOptions {
  /** Weight of the KL term; cross-entropy gets 1 - weight (Hinton et al. 2015). */
  weight: number;
  temperature: number;
}

/**
 * Distillation from a frozen fp32 teacher inside the training step: the teacher's inference graph is copied
 * into the step graph under 'teacher/' (its parameters become constants, BN uses running statistics), reads
 * the same batch, and its logits are a stop-gradient target for KL at temperature T.
 */
export function distillFrom(teacher: Model, options: DistillOptions): ExtraLoss {
  if (!(options.weight >= 0 && options.weight <= 1)) throw new Error(`--distill-weight must be in [0, 1], got ${options.weight}`);
  return (b, logits, graph) => {
    const rename = (v: string) => (v === '' || v === teacher.input ? v : `teacher/${v}`);
    for (const [name, t] of teacher.graph.initializers) b.initializer(rename(name), t);
    for (const node of teacher.graph.nodes) {
      b.addNode({ ...node, name: `teacher/${node.name}`, inputs: node.inputs.map(rename), outputs: node.outputs.map(rename), attrs: { ...node.attrs } });
    }
    if (teacher.graph.opsets['ai.qatkit']) graph.opsets['ai.qatkit'] = 1;
    const teacherLogits = rename(teacher.output);
    const kl = distillationKl(b, logits, teacherLogits, options.temperature);
    return { loss: b.mul(kl, b.scalarLike(options.weight, kl)), crossEntropyWeight: 1 - options.weight, stopGradient: [teacherLogits] };
  };
}
