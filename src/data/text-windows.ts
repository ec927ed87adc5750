/**
 * Model inputs cut from a token stream, as int64 [rows, context] ids and next-token targets.
 *
 * - Training (WindowSampler): each row is a window of context+1 consecutive tokens starting at a position drawn
 *   uniformly from [0, n - context - 1] by Rng.derive(seed, step); ids are its first context tokens, targets
 *   its last context. A batch depends only on (seed, step), so --resume needs no sampler state.
 * - Evaluation (evalWindows): window k has ids tokens[k*T, k*T+T) and targets tokens[k*T+1, k*T+T]; windows do
 *   not overlap, every target is scored once, and a trailing part too short for a whole window is dropped
 *   (fewer than T targets, the last (n - 1) mod T tokens).
 */
import { Rng } from '../train/rng.js';
import type { TokenStream } from './text.js';

export interface WindowSamplerOptions {
  batch: number;
  context: number;
  seed: number;
}

function checkInt(what: string, v: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isInteger(v) || v < min || v > max) throw new Error(`${what} must be an integer in ${min}..${max}, got ${v}`);
}

function checkLength(stream: TokenStream, context: number, what: string): void {
  if (stream.tokens.length < context + 1) {
    throw new Error(`${what}: the token stream has ${stream.tokens.length} tokens, fewer than context + 1 = ${context + 1}`);
  }
}

export class WindowSampler {
  readonly batch: number;
  readonly context: number;
  readonly seed: number;
  private readonly tokens: Int32Array;

  constructor(stream: TokenStream, opts: WindowSamplerOptions) {
    checkInt('WindowSampler: batch', opts.batch, 1);
    checkInt('WindowSampler: context', opts.context, 1);
    checkInt('WindowSampler: seed', opts.seed, 0, 0xffffffff);
    checkLength(stream, opts.context, 'WindowSampler');
    this.batch = opts.batch;
    this.context = opts.context;
    this.seed = opts.seed;
    this.tokens = stream.tokens;
  }

  /** Start positions of the batch at `step`, in [0, n - context - 1]. */
  starts(step: number): number[] {
    checkInt('WindowSampler: step', step, 0);
    const rng = Rng.derive(this.seed, step);
    const positions = this.tokens.length - this.context;
    return Array.from({ length: this.batch }, () => rng.int(positions));
  }

  /** Writes the batch at `step` into ids and targets, each batch*context int64s, row-major [batch, context]. */
  fill(step: number, ids: BigInt64Array, targets: BigInt64Array): void {
    const T = this.context;
    const size = this.batch * T;
    if (ids.length !== size || targets.length !== size) {
      throw new Error(`WindowSampler.fill: ids and targets need batch x context = ${size} elements, got ${ids.length} and ${targets.length}`);
    }
    const tokens = this.tokens;
    this.starts(step).forEach((start, row) => {
      const at = row * T;
      for (let t = 0; t < T; t++) {
        ids[at + t] = BigInt(tokens[start + t]);
        targets[at + t] = BigInt(tokens[start + t + 1]);
      }
    });
  }
}

export interface EvalBatch {
  /** rows x context ids, row-major; a fresh buffer per batch. */
  ids: BigInt64Array;
  targets: BigInt64Array;
  /** batch, or fewer in the last batch. */
  rows: number;
  /** UTF-8 bytes of text the targets stand for (the stream's byteLengths; one per token without them). */
  targetBytes: number;
}

/** Whole evaluation windows in the stream: floor((n - 1) / context). */
export function evalWindowCount(stream: TokenStream, context: number): number {
  checkInt('evalWindows: context', context, 1);
  return Math.floor(Math.max(stream.tokens.length - 1, 0) / context);
}

/** The stream's consecutive non-overlapping windows (see the file comment), `batch` windows at a time. */
export function* evalWindows(stream: TokenStream, context: number, batch: number): Generator<EvalBatch> {
  checkInt('evalWindows: batch', batch, 1);
  checkLength(stream, context, 'evalWindows');
  const windows = evalWindowCount(stream, context);
  const { tokens, byteLengths } = stream;
  for (let first = 0; first < windows; first += batch) {
    const rows = Math.min(batch, windows - first);
    const ids = new BigInt64Array(rows * context);
    const targets = new BigInt64Array(rows * context);
    const start = first * context;
    let targetBytes = 0;
    for (let i = 0; i < rows * context; i++) {
      const target = tokens[start + i + 1];
      ids[i] = BigInt(tokens[start + i]);
      targets[i] = BigInt(target);
      targetBytes += byteLengths ? byteLengths[target] : 1;
    }
    yield { ids, targets, rows, targetBytes };
  }
}
