// Training batches for the step benchmarks.
import type { Batch, BatchLoader } from '../../src/data';

/** The first `count` batches of `loader`, epoch after epoch (reshuffled by setEpoch) until there are enough. */
export function* takeBatches(loader: BatchLoader, count: number): Generator<Batch> {
  let taken = 0;
  for (let epoch = 0; taken < count; epoch++) {
    loader.setEpoch(epoch);
    for (const batch of loader.batches()) {
      if (taken >= count) return;
      taken++;
      yield batch;
    }
  }
}
