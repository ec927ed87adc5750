/**
 * Generation with a KV cache: one ONNX Runtime session over the decoder graph (input_ids, position_ids,
 * attention_mask [B, P+T], past_key_values.{i}.key/value [B, H, P, D] in; logits, present.{i}.* out). The
 * prompt is prefilled with an empty past; each next token is a [B, 1] step whose past is the previous
 * step's present and whose position is P.
 *
 * Past the context the window slides by re-prefilling: when P + 1 would exceed the context, the cache is
 * dropped and the most recent floor(context / 2) tokens (the new one included) are prefilled again at
 * positions 0..W-1. Keeping the newest context - 1 cache entries instead would be wrong for both zoo
 * models: gpt's learned position embeddings (a table of `context` rows) are added to the hidden states that
 * the cached keys and values were computed from, and llama's rotary embedding is applied to the cached keys,
 * so every cached entry carries its absolute position; a sliding cache would need positions >= context, which
 * neither model has. Re-prefilling half a window costs one prompt-sized pass every context / 2 tokens and keeps
 * at least context / 2 tokens of history in view; the logits then equal a full forward pass over window().
 */
import * as ort from '../runtime/ort.js';
import { Model } from '../models/model.js';
import { transformerDecoder } from '../models/transformers.js';
import { insertKvCacheQuantizers, kvCacheQuantOf } from '../quant/kv-cache.js';
import { Session } from '../runtime/session.js';
import { cachePairs, DecoderLayout, decoderLayoutOf, emptyPast } from './decoder-layout.js';
import { checkPrompts, idsTensor, lastPositionLogits, NextTokenLogits, onesMask, positionsTensor, TokenGenerator } from './generator.js';

export interface KvCacheGeneratorOptions {
  /** Tokens kept when the window slides (default floor(context / 2), at least 1). */
  keepOnSlide?: number;
  threads?: number;
  /** fromModel: a window shorter than the model's context (its position table). */
  context?: number;
}

export class KvCacheGenerator implements TokenGenerator {
  readonly mode = 'kv-cache' as const;
  readonly keepOnSlide: number;
  private past: Record<string, ort.Tensor> = {};
  /** Append mode: one [rows, heads, context, headSize] buffer per cache input (see runAppending). */
  private buffers?: { rows: number; tensors: Map<string, ort.Tensor> };
  /** Per row: the tokens in the cache (oldest first), then the one being fed. */
  private rows: number[][] = [];
  private slideCount = 0;

  constructor(
    private readonly session: ort.InferenceSession,
    readonly layout: DecoderLayout,
    readonly context: number,
    readonly vocabSize: number,
    options: KvCacheGeneratorOptions = {},
    private readonly owned?: { release(): Promise<void> },
  ) {
    if (layout.layers.length === 0) throw new Error('KvCacheGenerator: the graph has no past_key_values inputs; generate with RecomputeGenerator');
    if (!layout.positionIds || !layout.attentionMask) throw new Error('KvCacheGenerator: a KV-cache decoder needs position_ids and attention_mask inputs');
    if (!Number.isInteger(context) || context < 1) throw new Error(`KvCacheGenerator: context must be an integer >= 1, got ${context}`);
    this.keepOnSlide = Math.min(context, Math.max(1, options.keepOnSlide ?? Math.floor(context / 2)));
  }

  /**
   * The KV-cache decoder of a zoo transformer (gpt, llama) with the model's parameters, on one session. A model
   * trained with a quantized KV cache (--kv-bits) gets the same quantizers on its float cache (quant/kv-cache.ts:
   * quantizing on read equals quantizing on write, so its logits are the training graph's).
   */
  static async fromModel(model: Model, options: KvCacheGeneratorOptions = {}): Promise<KvCacheGenerator> {
    const decoder = transformerDecoder(model);
    const kv = kvCacheQuantOf(model.graph);
    if (kv) insertKvCacheQuantizers(decoder.graph, kv);
    if (options.context !== undefined && options.context > model.lm!.arch!.context) {
      throw new Error(`KvCacheGenerator: context ${options.context} is longer than model '${model.name}' has positions (${model.lm!.arch!.context})`);
    }
    const session = await Session.create(decoder.graph, { threads: options.threads });
    const arch = model.lm!.arch!;
    const context = options.context ?? arch.context;
    const layout = decoderLayoutOf(session.inner, { heads: arch.heads, headSize: arch.dim / arch.heads });
    return new KvCacheGenerator(session.inner, layout, context, arch.vocabSize, options, session);
  }

  get slides(): number {
    return this.slideCount;
  }

  window(): number[][] {
    return this.rows.map((r) => [...r]);
  }

  /** Runs `fresh` tokens per row after the cached `past` ones (their count: the cache length). */
  private async run(fresh: readonly (readonly number[])[], pastLength: number): Promise<NextTokenLogits> {
    if (this.layout.appended) return this.runAppending(fresh, pastLength);
    const l = this.layout;
    const rows = fresh.length;
    const t = fresh[0].length;
    const feeds: Record<string, ort.Tensor> = {
      ...(pastLength === 0 ? emptyPast(l, rows) : this.past),
      [l.inputIds]: idsTensor(fresh),
      [l.positionIds!]: positionsTensor(rows, pastLength, t, l.positionIdsSingleRow),
      [l.attentionMask!]: onesMask(rows, pastLength + t),
    };
    const pairs = cachePairs(l);
    const out = await this.session.run(feeds, [l.logits, ...pairs.map((c) => c.present)]);
    this.past = {};
    for (const c of pairs) this.past[c.past] = out[c.present];
    return lastPositionLogits(out[l.logits], l.logits);
  }

  /**
   * A fused-attention decoder (layout.appended): each cache input is fed one buffer preallocated to the context,
   * [rows, heads, context, headSize], whose first P rows per head are the cache (GroupQueryAttention reads a
   * right-padded past), and only the rows the step appends are fetched and copied into the buffers at P.
   * onnxruntime-node copies every fetched output into a new JS array, so fetching the whole present cache costs a
   * copy of the cache per token (25M gpt, machine E: about 1 ms of a 2.6 ms int4 token; docs/decisions.md).
   */
  private async runAppending(fresh: readonly (readonly number[])[], pastLength: number): Promise<NextTokenLogits> {
    const l = this.layout;
    const rows = fresh.length;
    const t = fresh[0].length;
    const heads = l.heads!;
    const headSize = l.headSize!;
    if (pastLength + t > this.context) throw new Error(`KvCacheGenerator: ${pastLength} cached + ${t} new tokens exceed the context ${this.context}`);
    if (this.buffers?.rows !== rows) {
      const tensors = new Map<string, ort.Tensor>();
      for (const c of l.layers.flatMap((x) => [x.pastKey, x.pastValue])) tensors.set(c, new ort.Tensor('float32', new Float32Array(rows * heads * this.context * headSize), [rows, heads, this.context, headSize]));
      this.buffers = { rows, tensors };
    }
    const buffers = this.buffers.tensors;
    const feeds: Record<string, ort.Tensor> = {
      ...Object.fromEntries(buffers),
      [l.inputIds]: idsTensor(fresh),
      [l.positionIds!]: positionsTensor(rows, pastLength, t, l.positionIdsSingleRow),
      [l.attentionMask!]: onesMask(rows, pastLength + t),
    };
    const appended = l.appended!;
    const out = await this.session.run(feeds, [l.logits, ...appended.flatMap((a) => [a.key, a.value])]);
    const width = heads * headSize;
    for (const [i, a] of appended.entries()) {
      for (const [name, past] of [[a.key, l.layers[i].pastKey], [a.value, l.layers[i].pastValue]] as const) {
        const rowsNew = out[name].data as Float32Array; // [rows, t, heads x headSize]
        const buffer = buffers.get(past)!.data as Float32Array; // [rows, heads, context, headSize]
        for (let r = 0; r < rows; r++) {
          for (let j = 0; j < t; j++) {
            const from = (r * t + j) * width;
            for (let h = 0; h < heads; h++) buffer.set(rowsNew.subarray(from + h * headSize, from + (h + 1) * headSize), ((r * heads + h) * this.context + pastLength + j) * headSize);
          }
        }
      }
    }
    return lastPositionLogits(out[l.logits], l.logits);
  }

  /** Prefills the last `context` tokens of each prompt at positions 0.. */
  async start(prompts: readonly (readonly number[])[]): Promise<NextTokenLogits> {
    const length = checkPrompts(prompts, this.vocabSize);
    this.rows = prompts.map((p) => p.slice(Math.max(0, length - this.context)));
    this.slideCount = length > this.context ? 1 : 0;
    return this.run(this.rows, 0);
  }

  async next(tokens: readonly number[]): Promise<NextTokenLogits> {
    if (tokens.length !== this.rows.length) throw new Error(`KvCacheGenerator.next: ${tokens.length} tokens for ${this.rows.length} rows`);
    const cached = this.rows[0].length;
    this.rows.forEach((r, i) => r.push(tokens[i]));
    if (cached + 1 <= this.context) return this.run(tokens.map((t) => [t]), cached);
    // The window slides: see the file comment.
    this.slideCount++;
    this.rows = this.rows.map((r) => r.slice(r.length - this.keepOnSlide));
    return this.run(this.rows, 0);
  }

  async release(): Promise<void> {
    this.past = {};
    this.buffers = undefined;
    await (this.owned ?? this.session).release();
  }
}
