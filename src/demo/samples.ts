/**
 * One sample per model from the same prompt, sampler and seed, so that the texts differ only by the model; decode
 * speed of each file measured in the same pass: every file is run once per round, files in alternation, so load
 * from other processes falls on all of them alike, and the median over rounds is each file's tokens/s.
 */
import { Tokenizer } from '../data/tokenizers/index.js';
import { createFileGenerator, createGenerator } from '../generate/create-generator.js';
import { generate, TokenGenerator } from '../generate/generator.js';
import { readLanguageModelJson } from '../generate/model-json.js';
import { Model } from '../models/model.js';
import { median } from './latency.js';

/** An exported decoder file (run by ONNX Runtime with its KV cache), or a model in qatkit's graph (not timed). */
export type SampleSource = { key: string; file: string } | { key: string; model: Model };

export interface SampleOptions {
  prompt: string;
  tokens: number;
  temperature: number;
  topK: number;
  seed: number;
  rounds: number;
  threads: number;
  context: number;
}

export interface ModelSample {
  text: string;
  /** Decode tokens per second (median over rounds), files only. */
  tokensPerSecond?: number;
}

export async function sampleModels(sources: SampleSource[], tokenizer: Tokenizer, o: SampleOptions): Promise<Map<string, ModelSample>> {
  const prompt = tokenizer.encode(o.prompt);
  const generators: TokenGenerator[] = [];
  try {
    for (const s of sources) {
      generators.push(
        'file' in s
          ? await createFileGenerator(s.file, o.context, { threads: o.threads, json: readLanguageModelJson(s.file) })
          : // Full recompute over the model's own graph, quantizers included (the zoo KV-cache decoder form takes the float parameters only).
            await createGenerator(s.model, { threads: o.threads, context: o.context, kvCache: false }),
      );
    }
    const texts: string[] = [];
    const speeds = sources.map(() => [] as number[]);
    for (let round = 0; round < Math.max(1, o.rounds); round++) {
      for (const [i, g] of generators.entries()) {
        if (round > 0 && !('file' in sources[i])) continue;
        const r = await generate(g, [prompt], { maxTokens: o.tokens, temperature: o.temperature, topK: o.topK, seed: o.seed, vocabLimit: tokenizer.vocabSize });
        if (round === 0) texts[i] = o.prompt + tokenizer.decode(r.tokens[0]);
        speeds[i].push(r.decodeTokensPerSecond);
      }
    }
    return new Map(sources.map((s, i) => [s.key, { text: texts[i], ...('file' in s ? { tokensPerSecond: median(speeds[i]) } : {}) }]));
  } finally {
    for (const g of generators) await g.release();
  }
}
