import { GraphBuilder } from '../ir/builder.js';
import { Model } from '../models/model.js';
import type { DistillOptions } from './distill.js';

/**
 * Defaults of `--distill` on a language model: the KL term alone (weight 1: no ground-truth cross-entropy) at
 * temperature 1, i.e. the student learns the teacher's whole next-token distribution on real text, as Gemma's
 * int4 QAT does ("probabilities from the non-quantized checkpoint as targets"; Gemma Team 2024/2025). Flags given
 * on the command line win; a weight below 1 mixes in (1 - weight) x the next-token cross-entropy.
 */
export const LANGUAGE_MODEL_DISTILL_DEFAULTS: DistillOptions = { weight: 1, temperature: 1 };

/**
 * Copies a frozen language model's graph into the step graph under `prefix`: its parameters become constants; it
 * reads the student's token ids and Hugging Face side inputs (the student is a quantized copy of it, so these
 * have the same names; the step graph fixed the side inputs as constants), and the value it computes for
 * `output` is returned under the prefix (a stop-gradient target).
 */
export function embedFrozenLanguageModel(b: GraphBuilder, teacher: Model, prefix: string, output = teacher.output): string {
  const shared = new Set([teacher.input, teacher.lm?.attentionMask, teacher.lm?.positionIds].filter((n): n is string => !!n));
  const rename = (v: string) => (v === '' || shared.has(v) ? v : `${prefix}${v}`);
  for (const [name, t] of teacher.graph.initializers) if (!shared.has(name)) b.initializer(rename(name), t);
  for (const node of teacher.graph.nodes) {
    b.addNode({ ...node, name: `${prefix}${node.name}`, inputs: node.inputs.map(rename), outputs: node.outputs.map(rename), attrs: { ...node.attrs } });
  }
  for (const [domain, version] of Object.entries(teacher.graph.opsets)) b.graph.opsets[domain] ??= version;
  return rename(output);
}
