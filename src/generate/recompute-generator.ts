/**
 * Generation without a KV cache: every step runs the whole model over the last `context` tokens (positions
 * 0..W-1, attention_mask all ones) and keeps the logits at the last position. It is what an imported model
 * gets (a PyTorch decoder whose attention has no past/present form here), what --no-kv-cache asks for, and the
 * reference the KV-cache logits are tested against. Past the context the window slides by one token a step.
 */
import * as ort from '../runtime/ort.js';
import { Model } from '../models/model.js';
import { Session } from '../runtime/session.js';
import { DecoderLayout, decoderLayoutOf, emptyPast } from './decoder-layout.js';
import { checkPrompts, idsTensor, lastPositionLogits, NextTokenLogits, onesMask, positionsTensor, TokenGenerator } from './generator.js';

export class RecomputeGenerator implements TokenGenerator {
  readonly mode = 'recompute' as const;
  private history: number[][] = [];
  private slideCount = 0;

  constructor(
    private readonly session: ort.InferenceSession,
    readonly layout: DecoderLayout,
    readonly context: number,
    readonly vocabSize: number,
    readonly recomputeReason: string,
    private readonly owned?: { release(): Promise<void> },
  ) {
    if (!Number.isInteger(context) || context < 1) throw new Error(`RecomputeGenerator: context must be an integer >= 1, got ${context}`);
  }

  /** The model's own forward graph (training form: input_ids -> logits) on one session; context defaults to the model's. */
  static async fromModel(model: Model, options: { threads?: number; reason?: string; context?: number } = {}): Promise<RecomputeGenerator> {
    if (model.task !== 'language-model' || !model.lm) throw new Error(`model '${model.name}' is not a language model (int64 token ids [B, T] -> logits [B, T, V])`);
    const session = await Session.create(model.graph, { threads: options.threads });
    const layout = decoderLayoutOf(session.inner);
    layout.inputIds = model.input;
    layout.logits = model.output;
    if (model.lm.attentionMask) layout.attentionMask = model.lm.attentionMask;
    if (model.lm.positionIds) {
      layout.positionIds = model.lm.positionIds;
      layout.positionIdsSingleRow = model.graph.inputs.find((v) => v.name === model.lm!.positionIds)?.shape[0] === 1;
    }
    const reason = options.reason ?? (model.lm.arch ? 'asked for (no KV cache)' : `model '${model.name}' is not a zoo transformer (no KV-cache decoder form)`);
    return new RecomputeGenerator(session.inner, layout, options.context ?? model.lm.context, model.lm.vocabSize, reason, session);
  }

  get slides(): number {
    return this.slideCount;
  }

  window(): number[][] {
    return this.history.map((h) => h.slice(Math.max(0, h.length - this.context)));
  }

  private async run(): Promise<NextTokenLogits> {
    const l = this.layout;
    const windows = this.window();
    const rows = windows.length;
    const t = windows[0].length;
    if (this.history[0].length > this.context) this.slideCount++;
    const feeds: Record<string, ort.Tensor> = { [l.inputIds]: idsTensor(windows) };
    if (l.layers.length > 0) Object.assign(feeds, emptyPast(l, rows));
    if (l.positionIds) feeds[l.positionIds] = positionsTensor(rows, 0, t, l.positionIdsSingleRow);
    if (l.attentionMask) feeds[l.attentionMask] = onesMask(rows, t);
    const out = await this.session.run(feeds, [l.logits]);
    return lastPositionLogits(out[l.logits], l.logits);
  }

  async start(prompts: readonly (readonly number[])[]): Promise<NextTokenLogits> {
    checkPrompts(prompts, this.vocabSize);
    this.history = prompts.map((p) => [...p]);
    this.slideCount = 0;
    return this.run();
  }

  async next(tokens: readonly number[]): Promise<NextTokenLogits> {
    if (tokens.length !== this.history.length) throw new Error(`RecomputeGenerator.next: ${tokens.length} tokens for ${this.history.length} rows`);
    this.history.forEach((h, i) => h.push(tokens[i]));
    return this.run();
  }

  async release(): Promise<void> {
    await (this.owned ?? this.session).release();
  }
}
