/**
 * What both generation strategies share: a TokenGenerator turns a batch of prompts into next-token logits,
 * then takes one token per row at a time; `generate` drives one with a TokenSampler and times prefill and
 * decode apart.
 */
import * as ort from '../runtime/ort.js';
import { SamplingOptions, TokenSampler } from './sampling.js';

/** Next-token logits of every row: data [rows, vocab]. */
export interface NextTokenLogits {
  data: Float32Array;
  rows: number;
  vocab: number;
}

export type GenerationMode = 'kv-cache' | 'recompute';

export interface TokenGenerator {
  readonly mode: GenerationMode;
  /** Longest sequence the model sees at once. */
  readonly context: number;
  /** Width of the model's logits; token ids fed in must be below it. */
  readonly vocabSize: number;
  /** Why this generator recomputes instead of caching (recompute only). */
  readonly recomputeReason?: string;
  /** Feeds equal-length prompts [rows][L] (L >= 1) and returns the logits that predict each row's next token. */
  start(prompts: readonly (readonly number[])[]): Promise<NextTokenLogits>;
  /** Appends one token per row and returns the logits that predict the token after it. */
  next(tokens: readonly number[]): Promise<NextTokenLogits>;
  /** Per row, the tokens the last logits were computed from, oldest first (at most `context`). */
  window(): number[][];
  /** Times the window has slid so far (kv-cache: re-prefills; recompute: steps with a truncated history). */
  readonly slides: number;
  release(): Promise<void>;
}

export interface GenerateOptions extends SamplingOptions {
  /** Tokens to generate per row (>= 1). */
  maxTokens: number;
  /** Called with each row's new token as soon as it is chosen (time spent here is not counted in tokens/s). */
  onToken?: (tokens: number[], index: number) => void;
}

export interface GenerationResult {
  /** Generated tokens per row, prompt excluded. */
  tokens: number[][];
  mode: GenerationMode;
  recomputeReason?: string;
  context: number;
  rows: number;
  promptTokens: number;
  /** start(): the prompt's forward pass and the first token's choice. */
  prefillMs: number;
  /** rows x prompt tokens / prefill seconds. */
  prefillTokensPerSecond: number;
  /** next() calls: one per generated token after the first. */
  decodeSteps: number;
  decodeMs: number;
  /** rows x decode steps / decode seconds (0 when maxTokens is 1). */
  decodeTokensPerSecond: number;
  windowSlides: number;
}

/** The prompts' common length; they must be equal-length rows of ids in 0..vocabSize-1. */
export function checkPrompts(prompts: readonly (readonly number[])[], vocabSize: number): number {
  if (prompts.length === 0) throw new Error('generate: no prompts (give at least one row of token ids)');
  const length = prompts[0].length;
  if (length === 0) throw new Error('generate: the prompt is empty; give at least one token');
  if (prompts.some((p) => p.length !== length)) throw new Error(`generate: prompts of one batch must have equal lengths, got ${prompts.map((p) => p.length).join(', ')}`);
  for (const p of prompts) {
    const bad = p.find((id) => !Number.isInteger(id) || id < 0 || id >= vocabSize);
    if (bad !== undefined) throw new Error(`generate: prompt token ${bad} is outside the model's vocabulary 0..${vocabSize - 1}`);
  }
  return length;
}

/** Prefills the prompts, then decodes token by token: `maxTokens` per row, chosen by a TokenSampler. */
export async function generate(generator: TokenGenerator, prompts: readonly (readonly number[])[], options: GenerateOptions): Promise<GenerationResult> {
  if (!Number.isInteger(options.maxTokens) || options.maxTokens < 1) throw new Error(`generate: maxTokens must be an integer >= 1, got ${options.maxTokens}`);
  const promptTokens = checkPrompts(prompts, generator.vocabSize);
  const sampler = new TokenSampler(options);
  const rows = prompts.length;
  const tokens: number[][] = prompts.map(() => []);
  const take = (chosen: number[], index: number) => {
    chosen.forEach((t, r) => tokens[r].push(t));
    options.onToken?.(chosen, index);
  };
  const t0 = performance.now();
  let logits = await generator.start(prompts);
  let chosen = sampler.sampleRows(logits.data, logits.rows, logits.vocab);
  const prefillMs = performance.now() - t0;
  take(chosen, 0);
  let decodeMs = 0;
  for (let i = 1; i < options.maxTokens; i++) {
    const t = performance.now();
    logits = await generator.next(chosen);
    chosen = sampler.sampleRows(logits.data, logits.rows, logits.vocab);
    decodeMs += performance.now() - t;
    take(chosen, i);
  }
  const decodeSteps = options.maxTokens - 1;
  return {
    tokens,
    mode: generator.mode,
    ...(generator.recomputeReason ? { recomputeReason: generator.recomputeReason } : {}),
    context: generator.context,
    rows,
    promptTokens,
    prefillMs,
    prefillTokensPerSecond: (rows * Math.min(promptTokens, generator.context) * 1000) / prefillMs,
    decodeSteps,
    decodeMs,
    decodeTokensPerSecond: decodeSteps > 0 ? (rows * decodeSteps * 1000) / decodeMs : 0,
    windowSlides: generator.slides,
  };
}

// ---- ONNX Runtime feeds shared by the generators ----

export const int64Tensor = (values: ArrayLike<number>, dims: number[]) => new ort.Tensor('int64', BigInt64Array.from(values as number[], (v) => BigInt(v)), dims);

/** input_ids [rows, T] from equal-length windows. */
export function idsTensor(windows: readonly (readonly number[])[]): ort.Tensor {
  const t = windows[0].length;
  const ids = new BigInt64Array(windows.length * t);
  windows.forEach((w, r) => w.forEach((v, i) => (ids[r * t + i] = BigInt(v))));
  return new ort.Tensor('int64', ids, [windows.length, t]);
}

/** position_ids [rows, T] (or [1, T] when the graph declares one row) counting from `start`. */
export function positionsTensor(rows: number, start: number, length: number, singleRow = false): ort.Tensor {
  const r = singleRow ? 1 : rows;
  return new ort.Tensor('int64', BigInt64Array.from({ length: r * length }, (_, i) => BigInt(start + (i % length))), [r, length]);
}

export function onesMask(rows: number, length: number): ort.Tensor {
  return new ort.Tensor('int64', new BigInt64Array(rows * length).fill(1n), [rows, length]);
}

/** The logits at the last position of [rows, T, V]. */
export function lastPositionLogits(logits: ort.Tensor, name: string): NextTokenLogits {
  if (logits.dims.length !== 3) throw new Error(`output '${name}' has shape [${logits.dims}], expected logits [batch, sequence, vocabulary]`);
  const [rows, t, vocab] = logits.dims;
  const all = logits.data as Float32Array;
  const data = new Float32Array(rows * vocab);
  for (let r = 0; r < rows; r++) data.set(all.subarray((r * t + t - 1) * vocab, (r * t + t) * vocab), r * vocab);
  return { data, rows, vocab };
}

/**
 * Session options as qatkit's own Session sets them (no spinning worker on 2 cores), plus the session config
 * entries a file's model.json asks for ("session.qdq_matmulnbits_accuracy_level": "0" for an int4 QDQ export of
 * a weight-only model, whose numerics depend on the level ORT's fusion gives MatMulNBits).
 */
export function fileSessionOptions(threads = 2, sessionConfig: Record<string, string> = {}): ort.InferenceSession.SessionOptions {
  const extra: Record<string, unknown> = { session: { intra_op: { allow_spinning: '0' } } };
  for (const [key, value] of Object.entries(sessionConfig)) {
    // onnxruntime-node flattens nested `extra` objects into dotted config keys.
    const parts = key.split('.');
    let at = extra;
    for (const p of parts.slice(0, -1)) at = (at[p] ??= {}) as Record<string, unknown>;
    at[parts.at(-1)!] = value;
  }
  return {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
    extra,
  };
}
