/**
 * Tiny zoo decoders with weights drawn at 0.3 x N(0, 1), far larger than the zoo's N(0, 0.02) initialisation, so
 * logits differ enough between tokens and positions for generation tests to catch a wrong cache or mask.
 */
import { gpt, llama } from '../../src/models/transformers';
import { Model } from '../../src/models/model';
import { Tensor } from '../../src/ir/tensor';
import { DType } from '../../src/ir/dtype';
import { Rng } from '../../src/train/rng';
import type { NextTokenLogits } from '../../src/generate/index';

export const DECODER_BUILDERS = { gpt, llama };
export type DecoderKind = keyof typeof DECODER_BUILDERS;

export function randomDecoder(kind: DecoderKind, vocabSize: number, context: number): Model {
  const model = DECODER_BUILDERS[kind]({ vocabSize, layers: 2, heads: 2, dim: 32, context, seed: 1 });
  const rng = new Rng(7);
  for (const p of model.params) {
    const t = model.graph.initializers.get(p)!;
    model.graph.initializers.set(p, new Tensor(DType.FLOAT, t.dims, Float32Array.from({ length: t.size }, () => 0.3 * rng.normal())));
  }
  return model;
}

/** Largest absolute difference of two logits batches of the same shape. */
export function maxLogitDiff(a: NextTokenLogits, b: NextTokenLogits): number {
  if (a.rows !== b.rows || a.vocab !== b.vocab) throw new Error(`logits of [${a.rows}, ${a.vocab}] against [${b.rows}, ${b.vocab}]`);
  return a.data.reduce((m, v, i) => Math.max(m, Math.abs(v - b.data[i])), 0);
}
