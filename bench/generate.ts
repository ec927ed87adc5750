/**
 * Generation benchmark: tokens/s of `qat generate` on the default gpt (4 layers, width 128, context 128, bytes
 * vocabulary; random init: the cost of a token does not depend on the weights) with the KV cache and with
 * full recompute, timed in alternation in one process so that the ratio is taken under the same load.
 *
 *   node --import tsx bench/generate.ts [--tokens 200] [--rounds 3] [--threads 2] [--json FILE]
 *
 * Each round generates --tokens tokens greedily after a 16-token prompt with each generator; 16 + 200 tokens
 * pass the 128-token context, so the KV cache re-prefills its last 64 tokens twice (at tokens 129 and 193) and
 * recompute runs full 128-token windows for the last 88 steps (docs/generation.md). tokens/s counts every
 * generated token over prefill + decode time; a warm-up round (not timed) comes first. The two generators take
 * turns token by token (lockstep below), so the ratio is taken under the same load. The prefill figure is
 * one 16-token pass per round and noisier than the rest.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import '../src/ops';
import { bytesTokenizer } from '../src/data/tokenizers/index';
import { argmax, createGenerator } from '../src/generate/index';
import type { TokenGenerator } from '../src/generate/index';
import { gpt, TRANSFORMER_DEFAULTS } from '../src/models/transformers';
import { runMain, writeJson } from './lib/cli';
import { loadStr, median, printTable } from './lib/timing';

const PROMPT = 'Call me Ishmael.';

function positiveInt(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag}: expected an integer >= 1, got '${v}'`);
  return n;
}

interface Run {
  prefillMs: number;
  decodeMs: number;
  promptTokens: number;
  decodeSteps: number;
  slides: number;
}

/**
 * Generates `tokens` greedy tokens with each generator, one token of each in turn (the calls generate() makes:
 * start, then next per token, argmax), so that both see the same load from moment to moment: on the shared
 * machine, timing one whole run after the other gave ratios from 2.9x to 10.8x within minutes.
 */
async function lockstep(generators: TokenGenerator[], prompt: number[][], tokens: number): Promise<Run[]> {
  const runs = generators.map(() => ({ prefillMs: 0, decodeMs: 0, promptTokens: prompt[0].length, decodeSteps: tokens - 1, slides: 0 }));
  const last: number[][] = [];
  for (const [i, g] of generators.entries()) {
    const t = performance.now();
    const logits = await g.start(prompt);
    last[i] = [argmax(logits.data, 0, logits.vocab)];
    runs[i].prefillMs = performance.now() - t;
  }
  for (let step = 1; step < tokens; step++) {
    for (const [i, g] of generators.entries()) {
      const t = performance.now();
      const logits = await g.next(last[i]);
      last[i] = [argmax(logits.data, 0, logits.vocab)];
      runs[i].decodeMs += performance.now() - t;
    }
  }
  generators.forEach((g, i) => (runs[i].slides = g.slides));
  return runs;
}

const totalTokensPerSecond = (r: Run) => ((r.decodeSteps + 1) * 1000) / (r.prefillMs + r.decodeMs);

runMain(async () => {
  const { values } = parseArgs({ options: { tokens: { type: 'string', default: '200' }, rounds: { type: 'string', default: '3' }, threads: { type: 'string', default: '2' }, json: { type: 'string' } } });
  const tokens = positiveInt('--tokens', values.tokens!);
  const rounds = positiveInt('--rounds', values.rounds!);
  const threads = positiveInt('--threads', values.threads!);
  const tokenizer = bytesTokenizer();
  const model = gpt({ vocabSize: tokenizer.vocabSize, ...TRANSFORMER_DEFAULTS, seed: 0 });
  const prompt = [tokenizer.encode(PROMPT)];
  const kv = await createGenerator(model, { kvCache: true, threads });
  const full = await createGenerator(model, { kvCache: false, threads });
  const loadBefore = os.loadavg();
  const runs: Record<'kv' | 'full', Run[]> = { kv: [], full: [] };
  for (let round = 0; round <= rounds; round++) {
    const [a, b] = await lockstep([kv, full], prompt, tokens);
    if (round > 0) {
      runs.kv.push(a);
      runs.full.push(b);
    }
  }
  const loadAfter = os.loadavg();
  await kv.release();
  await full.release();
  const summary = (rs: Run[]) => ({
    tokens_per_second: median(rs.map(totalTokensPerSecond)),
    prefill_tokens_per_second: median(rs.map((r) => (r.promptTokens * 1000) / r.prefillMs)),
    decode_tokens_per_second: median(rs.map((r) => (r.decodeSteps * 1000) / r.decodeMs)),
    window_slides: rs[0].slides,
  });
  const [a, b] = [summary(runs.kv), summary(runs.full)];
  const ratio = { tokens_per_second: a.tokens_per_second / b.tokens_per_second, decode_tokens_per_second: a.decode_tokens_per_second / b.decode_tokens_per_second };
  const { layers, dim, context } = TRANSFORMER_DEFAULTS;
  console.log(`gpt ${layers} layers, width ${dim}, context ${context}, vocabulary ${tokenizer.vocabSize}; ${PROMPT.length}-token prompt + ${tokens} tokens, greedy, ${threads} threads, median of ${rounds} rounds, one token of each in turn`);
  console.log(`loadavg before ${loadStr(loadBefore)}, after ${loadStr(loadAfter)}`);
  const f = (v: number) => v.toFixed(0);
  printTable([
    ['', 'tokens/s', 'prefill tok/s', 'decode tok/s', 'slides'],
    ['KV cache', f(a.tokens_per_second), f(a.prefill_tokens_per_second), f(a.decode_tokens_per_second), String(a.window_slides)],
    ['full recompute', f(b.tokens_per_second), f(b.prefill_tokens_per_second), f(b.decode_tokens_per_second), String(b.window_slides)],
    ['ratio KV / recompute', ratio.tokens_per_second.toFixed(2) + 'x', '', ratio.decode_tokens_per_second.toFixed(2) + 'x', ''],
  ]);
  if (values.json) {
    writeJson(values.json, { model: { kind: 'gpt', layers, dim, context, vocabSize: tokenizer.vocabSize }, prompt_tokens: PROMPT.length, tokens, rounds, threads, kv_cache: a, full_recompute: b, ratio, loadavg_before: loadBefore, loadavg_after: loadAfter });
  }
});
