/**
 * Next-token choice from logits: greedy argmax at temperature 0, otherwise a draw from softmax(logits / T)
 * over the top k tokens (Fan et al. 2018, "Hierarchical Neural Story Generation"), with the seeded Rng, so a
 * seed reproduces the same tokens.
 */
import { Rng } from '../train/rng.js';

export interface SamplingOptions {
  /** 0 (the default): greedy argmax, deterministic. Above 0: logits are divided by it before the softmax. */
  temperature?: number;
  /** Sample among the k most likely tokens only; undefined or 0: the whole vocabulary. */
  topK?: number;
  /** Seed of the sampling Rng (default 0). */
  seed?: number;
  /**
   * Only ids below this may be chosen (default: all logits). Set to the tokenizer's vocabulary when the model's
   * is larger (a padded embedding), so every sampled id decodes.
   */
  vocabLimit?: number;
}

export function checkSamplingOptions(o: SamplingOptions): void {
  if (o.temperature !== undefined && !(Number.isFinite(o.temperature) && o.temperature >= 0)) {
    throw new Error(`temperature must be a number >= 0 (0: greedy), got ${o.temperature}`);
  }
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) throw new Error(`topK must be an integer >= 1 (0: off), got ${o.topK}`);
  if (o.vocabLimit !== undefined && !(Number.isInteger(o.vocabLimit) && o.vocabLimit >= 1)) throw new Error(`vocabLimit must be an integer >= 1, got ${o.vocabLimit}`);
}

/** Index of the largest of logits[offset, offset + n); the lowest index wins a tie. */
export function argmax(logits: ArrayLike<number>, offset = 0, n = logits.length - offset): number {
  let best = 0;
  let max = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = logits[offset + i];
    if (v > max) {
      max = v;
      best = i;
    }
  }
  return best;
}

/**
 * The k largest of values[offset, offset + n) as ids, largest first (ties: the lower id first), by a size-k
 * min-heap: O(n log k), which matters for GPT-2's 50257 logits per token.
 */
export function topKIds(values: ArrayLike<number>, k: number, offset = 0, n = values.length - offset): number[] {
  k = Math.min(k, n);
  // "a below b" in the heap order: smaller value, or equal value and higher id (the one dropped first).
  const below = (a: number, b: number) => {
    const va = values[offset + a];
    const vb = values[offset + b];
    return va < vb || (va === vb && a > b);
  };
  const heap: number[] = [];
  const siftDown = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && below(heap[l], heap[m])) m = l;
      if (r < heap.length && below(heap[r], heap[m])) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m], heap[i]];
      i = m;
    }
  };
  for (let id = 0; id < n; id++) {
    if (heap.length < k) {
      heap.push(id);
      for (let i = heap.length - 1; i > 0; ) {
        const p = (i - 1) >> 1;
        if (!below(heap[i], heap[p])) break;
        [heap[i], heap[p]] = [heap[p], heap[i]];
        i = p;
      }
    } else if (below(heap[0], id)) {
      heap[0] = id;
      siftDown(0);
    }
  }
  return heap.sort((a, b) => (below(a, b) ? 1 : below(b, a) ? -1 : 0));
}

/** Chooses tokens from logits rows; one Rng for all rows and steps, drawn in row order. */
export class TokenSampler {
  private readonly rng: Rng;
  readonly temperature: number;
  readonly topK: number;

  constructor(private readonly options: SamplingOptions = {}) {
    checkSamplingOptions(options);
    this.temperature = options.temperature ?? 0;
    this.topK = options.topK ?? 0;
    this.rng = new Rng(options.seed ?? 0);
  }

  /** The token for logits[offset, offset + vocab). */
  sample(logits: ArrayLike<number>, offset: number, vocab: number): number {
    const n = Math.min(vocab, this.options.vocabLimit ?? vocab);
    if (this.temperature === 0) return argmax(logits, offset, n);
    const ids = this.topK > 0 && this.topK < n ? topKIds(logits, this.topK, offset, n) : undefined;
    const count = ids ? ids.length : n;
    const at = (i: number) => logits[offset + (ids ? ids[i] : i)];
    let max = -Infinity;
    for (let i = 0; i < count; i++) max = Math.max(max, at(i));
    const weights = new Float64Array(count);
    let total = 0;
    for (let i = 0; i < count; i++) total += weights[i] = Math.exp((at(i) - max) / this.temperature);
    // Inverse CDF: the first token whose cumulative weight passes u * total.
    const u = this.rng.uniform() * total;
    let cumulative = 0;
    for (let i = 0; i < count; i++) {
      cumulative += weights[i];
      if (u < cumulative) return ids ? ids[i] : i;
    }
    return ids ? ids[count - 1] : count - 1;
  }

  /** One token per row of logits [rows, vocab]. */
  sampleRows(logits: ArrayLike<number>, rows: number, vocab: number): number[] {
    return Array.from({ length: rows }, (_, r) => this.sample(logits, r * vocab, vocab));
  }
}
