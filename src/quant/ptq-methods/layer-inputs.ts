import * as ort from '../../runtime/ort.js';
import { GraphBuilder } from '../../ir/builder.js';
import { Graph } from '../../ir/graph.js';
import { Session } from '../../runtime/session.js';

/**
 * What the PTQ methods need from a layer's calibration inputs X [n, channels] (every row of the activation's last
 * axis is one sample): the Gram matrix X^T X / n (GPTQ's Hessian up to the factor 2, and the output error
 * ||X D||^2 / n = sum d^T G d of AWQ's search), mean |x| per channel (AWQ) and max |x| per channel (SmoothQuant).
 */
export interface LayerInputStats {
  channels: number;
  samples: number;
  /** Absent when collected with `gram: false` (SmoothQuant needs only the maxima). */
  gram?: Float64Array;
  meanAbs: Float64Array;
  maxAbs: Float64Array;
}

/** One calibration batch: the feeds of the float graph's inputs. */
export type CalibrationBatch = Record<string, ort.Tensor>;

interface Fetches {
  channels: number;
  rows: string;
  gram?: string;
  absSum: string;
  maxAbs: string;
}

/**
 * Runs the float graph on the calibration batches with ONNX Runtime and accumulates each requested activation's
 * statistics. The per-batch reductions run in the graph (X^T X as one MatMul: a [c, c] product costs ORT's GEMM a
 * fraction of what a JavaScript loop over the rows would, and no activation is copied out); batches are summed in
 * float64.
 */
export async function collectLayerInputStats(
  graph: Graph,
  tensors: string[],
  batches: Iterable<CalibrationBatch>,
  options: { threads?: number; gram?: boolean } = {},
): Promise<Map<string, LayerInputStats>> {
  const unique = [...new Set(tensors)];
  const g = graph.clone();
  const b = new GraphBuilder(g, 'ptq_stats/');
  const fetches = new Map<string, Fetches>();
  g.outputs = [];
  for (const t of unique) {
    const c = g.typeOf(t).shape.at(-1);
    if (typeof c !== 'number') throw new Error(`activation '${t}' has no static last dimension (got ${c}); the PTQ methods need the layer's input width`);
    const x = b.reshape(t, [-1, c]);
    const abs = b.abs(x);
    const f: Fetches = {
      channels: c,
      rows: b.output(b.shapeOf(x)),
      absSum: b.output(b.reduceSum(abs, [0], false)),
      maxAbs: b.output(b.op1('ReduceMax', [abs], { axes: [0], keepdims: 0 })),
    };
    if (options.gram !== false) f.gram = b.output(b.matmul(b.transpose(x, [1, 0]), x));
    fetches.set(t, f);
  }
  const acc = new Map(unique.map((t) => {
    const c = fetches.get(t)!.channels;
    return [t, { samples: 0, gram: options.gram !== false ? new Float64Array(c * c) : undefined, absSum: new Float64Array(c), maxAbs: new Float64Array(c) }];
  }));
  const names = [...fetches.values()].flatMap((f) => [f.rows, f.absSum, f.maxAbs, ...(f.gram ? [f.gram] : [])]);
  const session = await Session.create(g, { threads: options.threads ?? 2 });
  try {
    for (const feeds of batches) {
      const out = await session.run(feeds, names);
      for (const [t, f] of fetches) {
        const a = acc.get(t)!;
        a.samples += Number((out[f.rows].data as BigInt64Array)[0]);
        addInto(a.absSum, out[f.absSum].data as Float32Array);
        const m = out[f.maxAbs].data as Float32Array;
        for (let i = 0; i < m.length; i++) if (m[i] > a.maxAbs[i]) a.maxAbs[i] = m[i];
        if (a.gram) addInto(a.gram, out[f.gram!].data as Float32Array);
      }
    }
  } finally {
    await session.release();
  }
  const stats = new Map<string, LayerInputStats>();
  for (const [t, a] of acc) {
    if (a.samples === 0) throw new Error(`no calibration samples reached activation '${t}'`);
    const c = fetches.get(t)!.channels;
    let gram: Float64Array | undefined;
    if (a.gram) {
      // Symmetrised: the float32 product is symmetric only up to its summation order.
      gram = new Float64Array(c * c);
      for (let i = 0; i < c; i++) for (let j = i; j < c; j++) {
        const v = (a.gram[i * c + j] + a.gram[j * c + i]) / (2 * a.samples);
        gram[i * c + j] = v;
        gram[j * c + i] = v;
      }
    }
    stats.set(t, { channels: c, samples: a.samples, gram, meanAbs: a.absSum.map((s) => s / a.samples), maxAbs: a.maxAbs });
  }
  return stats;
}

function addInto(sum: Float64Array, values: Float32Array): void {
  for (let i = 0; i < values.length; i++) sum[i] += values[i];
}
