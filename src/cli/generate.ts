import { Command } from 'commander';
import { createFileGenerator, createGenerator } from '../generate/create-generator.js';
import { generate } from '../generate/generator.js';
import { TOKENIZER_NAMES } from '../data/tokenizers/index.js';
import { writeFileAtomic } from '../onnx/atomic-write.js';
import { defaultThreads, floatOption, intOption, threadsOption } from './options.js';
import { resolveLanguageModelSource } from './language-model-source.js';

export function generateCommand(): Command {
  return new Command('generate')
    .description('generate text from a language model: prefill the prompt, then decode token by token (KV cache where the model has one)')
    .option('--from <run_dir>', 'a qat train run on text (its checkpoint has the model, tokenizer and context)')
    .option('--model <file.onnx>', 'a language-model ONNX file (tokenizer and context from model.json beside it, or the flags)')
    .requiredOption('--prompt <text>', 'the text to continue')
    .option('--tokens <n>', 'tokens to generate (at most 100000)', intOption('--tokens', 1, 100000), 200)
    .option('--temperature <x>', 'sampling temperature (0: greedy, deterministic)', floatOption('--temperature', { min: 0 }), 0.8)
    .option('--top-k <k>', 'sample among the k most likely tokens only', intOption('--top-k', 1))
    .option('--seed <n>', 'seed of the sampling', intOption('--seed', 0), 0)
    .option('--no-kv-cache', 'recompute the whole window every token (the reference the KV cache is tested against)')
    .option('--tokenizer <name>', `${TOKENIZER_NAMES.join(', ')} (default: the run's, model.json's, or bytes)`)
    .option('--context <n>', "the model's context (default: the run's or model.json's)", intOption('--context', 1))
    .option('--threads <n>', 'ONNX Runtime intra-op threads (1..the cores)', threadsOption(), defaultThreads())
    .option('--json <file>', 'write the generated text, token ids and tokens/s as JSON')
    .action(async (o) => {
      if (o.prompt === '') throw new Error('--prompt must be non-empty text, got an empty string');
      const source = resolveLanguageModelSource(o);
      const { tokenizer, context } = source;
      const prompt = tokenizer.encode(o.prompt);
      const options = { kvCache: o.kvCache as boolean, threads: o.threads as number, context };
      const generator = source.model ? await createGenerator(source.model, options) : await createFileGenerator(source.file!, context, { ...options, json: source.json });
      const modelVocab = generator.vocabSize;
      const outside = prompt.findIndex((id) => id >= modelVocab);
      if (outside >= 0) {
        await generator.release();
        const id = prompt[outside];
        throw new Error(`--prompt: token ${id} (${JSON.stringify(tokenizer.decode([id]))}, ${tokenizer.name} tokenizer) is outside the model's vocabulary of ${modelVocab} ids (0..${modelVocab - 1}); use only text the model was trained on`);
      }
      if (generator.mode === 'recompute') console.error(`qat generate: full recompute over the last ${context} tokens each step (${generator.recomputeReason})`);
      const decoder = tokenizer.decoder();
      process.stdout.write(o.prompt);
      let result;
      try {
        result = await generate(generator, [prompt], {
          maxTokens: o.tokens,
          temperature: o.temperature,
          topK: o.topK,
          seed: o.seed,
          vocabLimit: tokenizer.vocabSize,
          onToken: ([id]) => process.stdout.write(decoder.write(id)),
        });
      } finally {
        await generator.release();
      }
      process.stdout.write(decoder.end() + '\n');
      const r = result;
      console.error(
        `prefill ${r.promptTokens} tokens in ${r.prefillMs.toFixed(1)} ms (${Math.round(r.prefillTokensPerSecond)} tokens/s); ` +
          `decode ${r.decodeSteps} tokens in ${r.decodeMs.toFixed(1)} ms (${Math.round(r.decodeTokensPerSecond)} tokens/s); ` +
          `${r.mode === 'kv-cache' ? 'KV cache' : 'full recompute'}, context ${r.context}, window slid ${r.windowSlides} times`,
      );
      if (o.json) {
        const summary = {
          ...(source.model ? { from: source.label } : { model: source.label }),
          prompt: o.prompt,
          text: tokenizer.decode(r.tokens[0]),
          prompt_ids: prompt,
          ids: r.tokens[0],
          tokenizer: tokenizer.name,
          context: r.context,
          mode: r.mode,
          kv_cache: r.mode === 'kv-cache',
          ...(r.recomputeReason ? { recompute_reason: r.recomputeReason } : {}),
          temperature: o.temperature,
          top_k: o.topK ?? null,
          seed: o.seed,
          prompt_tokens: r.promptTokens,
          generated_tokens: r.tokens[0].length,
          prefill_ms: r.prefillMs,
          prefill_tokens_per_second: r.prefillTokensPerSecond,
          decode_steps: r.decodeSteps,
          decode_ms: r.decodeMs,
          decode_tokens_per_second: r.decodeTokensPerSecond,
          window_slides: r.windowSlides,
        };
        writeFileAtomic(o.json, JSON.stringify(summary, null, 2) + '\n');
      }
    });
}
