import * as ort from '../runtime/ort.js';
import { Graph } from '../ir/graph.js';
import { Session } from '../runtime/session.js';
import { ActivationStats } from './prepare.js';

/**
 * Runs the float model on calibration images and returns min, max and mean |x| of each requested tensor:
 * the starting point of activation observers, learned scales, and PTQ ranges.
 */
export async function collectActivationStats(
  graph: Graph,
  input: string,
  tensors: string[],
  images: Float32Array,
  count: number,
  sampleShape: number[],
  options: { batchSize?: number; threads?: number; onBatch?: (values: Map<string, Float32Array>) => void } = {},
): Promise<Map<string, ActivationStats>> {
  const g = graph.clone();
  g.outputs = tensors.map((t) => ({ name: t, ...g.typeOf(t) }));
  const session = await Session.create(g, { threads: options.threads ?? 2 });
  const acc = new Map(tensors.map((t) => [t, { min: Infinity, max: -Infinity, absSum: 0, n: 0, perSample: 0 }]));
  const batch = options.batchSize ?? 256;
  const per = sampleShape.reduce((a, b) => a * b, 1);
  try {
    for (let start = 0; start < count; start += batch) {
      const n = Math.min(batch, count - start);
      const feeds = { [input]: new ort.Tensor('float32', images.subarray(start * per, (start + n) * per), [n, ...sampleShape]) };
      const out = await session.run(feeds, tensors);
      const values = new Map<string, Float32Array>();
      for (const t of tensors) {
        const data = out[t].data as Float32Array;
        values.set(t, data);
        const a = acc.get(t)!;
        let lo = a.min, hi = a.max, s = 0;
        for (let i = 0; i < data.length; i++) {
          const v = data[i];
          if (v < lo) lo = v;
          if (v > hi) hi = v;
          s += Math.abs(v);
        }
        a.min = lo;
        a.max = hi;
        a.absSum += s;
        a.n += data.length;
        a.perSample = data.length / n;
      }
      options.onBatch?.(values);
    }
  } finally {
    await session.release();
  }
  return new Map([...acc].map(([t, a]) => [t, { min: a.min, max: a.max, meanAbs: a.absSum / Math.max(1, a.n), perSample: a.perSample }]));
}
