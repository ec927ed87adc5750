/**
 * The per-step history an image run keeps in metrics.json (and in its checkpoint, so that --resume continues it
 * exactly): training loss and learning rate after every step, and the test metrics at each evaluation
 * (every evalEvery steps and at the end).
 */
import { InputError } from '../validate/schema.js';

export interface HistoryPoint {
  step: number;
  train_loss: number;
  lr: number;
  test_loss?: number;
  test_accuracy?: number;
  /** Language-model runs validate instead (src/train/run-language-model.ts). */
  val_loss?: number;
  val_perplexity?: number;
}

/** The history a checkpoint carries up to its step, checked. */
export function storedRunHistory(h: unknown, step: number, file: string): HistoryPoint[] {
  if (h === undefined) return [];
  const opt = (v: unknown) => v === undefined || typeof v === 'number';
  const ok = Array.isArray(h) && h.every((p) => p && typeof p === 'object' && Number.isInteger(p.step) && typeof p.train_loss === 'number' && typeof p.lr === 'number' && opt(p.test_loss) && opt(p.test_accuracy));
  if (!ok) throw new InputError(`checkpoint '${file}': metrics.history must be a list of { step, train_loss, lr, test_loss?, test_accuracy? } points`);
  return (h as HistoryPoint[]).filter((p) => p.step <= step);
}
