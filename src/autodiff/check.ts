import * as ort from '../runtime/ort.js';
import { GraphBuilder } from '../ir/builder.js';
import { DType } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { Session } from '../runtime/session.js';
import { toOrtTensor } from '../runtime/tensors.js';
import { Rng } from '../train/rng.js';
import { differentiate } from './grad.js';

export interface CheckInput {
  shape: number[];
  /** Fixed values; otherwise sampled with `sample` (default uniform in [-1, 1]). */
  values?: number[];
  sample?: (rng: Rng, index: number) => number;
  /** int64 inputs (indices) are never differentiated. */
  dtype?: 'float' | 'int64';
  /** Default true for float inputs. */
  differentiable?: boolean;
  /** Pass as a constant initializer (for inputs an op requires to be constant, such as shapes). */
  constant?: boolean;
}

export interface CheckCase {
  name: string;
  inputs: CheckInput[];
  /** Builds the op or chain under test from the input value names; returns the value(s) to check. */
  build: (b: GraphBuilder, inputs: string[]) => string | string[];
  /**
   * 'float64': analytic and numeric gradients both in float64 on ORT (tolerance 1e-6).
   * 'float32': analytic gradient in float32 on ORT, numeric one from `forward64` (tolerance 1e-3), for
   * ops that ORT's CPU provider has no float64 kernel for.
   */
  precision?: 'float64' | 'float32';
  /** float64 forward of the loss for 'float32' checks: returns the scalar loss for the given inputs. */
  forward64?: (graph: Graph, feeds: Map<string, Tensor>, loss: string) => number;
  step?: number;
  seed?: number;
}

export interface CheckResult {
  name: string;
  relativeError: number;
  worst: { input: number; index: number; analytic: number; numeric: number };
}

/**
 * Checks reverse-mode gradients against central finite differences, with the dot-product form of the VJP
 * test: loss = sum(out * w) for a random fixed w, so every output element's gradient is exercised.
 */
export async function checkGradient(c: CheckCase): Promise<CheckResult> {
  const precision = c.precision ?? 'float64';
  const rng = new Rng(c.seed ?? 7);
  const values = c.inputs.map((inp) => {
    const n = inp.shape.reduce((a, b) => a * b, 1);
    return inp.values ? Float64Array.from(inp.values) : Float64Array.from({ length: n }, (_, i) => (inp.sample ? inp.sample(rng, i) : rng.range(-1, 1)));
  });

  const build = (dtype: DType) => {
    const g = new Graph();
    g.name = c.name;
    const b = new GraphBuilder(g);
    const names = c.inputs.map((inp, i) => {
      const d = inp.dtype === 'int64' ? DType.INT64 : dtype;
      const t = d === DType.INT64 ? Tensor.int64(inp.shape, values[i]) : d === DType.DOUBLE ? Tensor.double(inp.shape, values[i]) : Tensor.float(inp.shape, values[i]);
      return inp.constant ? b.initializer(`in${i}`, t) : b.input(`in${i}`, d, inp.shape);
    });
    const outs = [c.build(b, names)].flat();
    const weighted = outs.map((o, k) => {
      const shape = b.staticShape(o);
      const wrng = new Rng(1000 + k);
      const n = shape.reduce((a, b2) => a * b2, 1);
      const w = b.constant(dtype === DType.DOUBLE ? Tensor.double(shape, Array.from({ length: n }, () => wrng.range(-1, 1))) : Tensor.float(shape, Array.from({ length: n }, () => wrng.range(-1, 1))));
      return b.sumAll(b.mul(b.castLike(o, w), w));
    });
    const loss = weighted.length === 1 ? weighted[0] : b.op1('Sum', weighted);
    return { g, b, names, loss };
  };
  const diffIdx = c.inputs.map((inp, i) => (inp.dtype !== 'int64' && inp.differentiable !== false && !inp.constant ? i : -1)).filter((i) => i >= 0);
  const feedsFor = (names: string[], dtype: DType, vals: Float64Array[]) => {
    const feeds: Record<string, ort.Tensor> = {};
    c.inputs.forEach((inp, i) => {
      if (inp.constant) return;
      const d = inp.dtype === 'int64' ? DType.INT64 : dtype;
      const t = d === DType.INT64 ? Tensor.int64(inp.shape, vals[i]) : d === DType.DOUBLE ? Tensor.double(inp.shape, vals[i]) : Tensor.float(inp.shape, vals[i]);
      feeds[names[i]] = toOrtTensor(t);
    });
    return feeds;
  };

  // Analytic gradients.
  const analyticDtype = precision === 'float64' ? DType.DOUBLE : DType.FLOAT;
  const a = build(analyticDtype);
  const grads = differentiate(a.g, { loss: a.loss, wrt: diffIdx.map((i) => a.names[i]) });
  for (const i of diffIdx) a.b.output(grads.get(a.names[i])!);
  const aSession = await Session.create(a.g, { threads: 1 });
  const aOut = await aSession.run(feedsFor(a.names, analyticDtype, values));
  const analytic = diffIdx.map((i) => Float64Array.from(aOut[grads.get(a.names[i])!].data as Float32Array | Float64Array));
  await aSession.release();

  // Numeric gradients from a float64 forward.
  const f = build(DType.DOUBLE);
  let forward: (vals: Float64Array[]) => Promise<number>;
  if (precision === 'float64') {
    f.b.output(f.loss);
    const fSession = await Session.create(f.g, { threads: 1 });
    forward = async (vals) => Number((await fSession.run(feedsFor(f.names, DType.DOUBLE, vals)))[f.loss].data[0]);
  } else {
    if (!c.forward64) throw new Error(`check '${c.name}': float32 checks need a float64 reference forward`);
    forward = async (vals) => {
      const feeds = new Map<string, Tensor>();
      c.inputs.forEach((inp, i) => {
        if (!inp.constant) feeds.set(f.names[i], inp.dtype === 'int64' ? Tensor.int64(inp.shape, vals[i]) : Tensor.double(inp.shape, vals[i]));
      });
      return c.forward64!(f.g, feeds, f.loss);
    };
  }
  const h = c.step ?? (precision === 'float64' ? 1e-6 : 1e-3);
  let diffNorm = 0;
  let refNorm = 0;
  let worst = { input: -1, index: -1, analytic: 0, numeric: 0, err: -1 };
  for (let k = 0; k < diffIdx.length; k++) {
    const i = diffIdx[k];
    for (let j = 0; j < values[i].length; j++) {
      const orig = values[i][j];
      values[i][j] = orig + h;
      const plus = await forward(values);
      values[i][j] = orig - h;
      const minus = await forward(values);
      values[i][j] = orig;
      const numeric = (plus - minus) / (2 * h);
      const an = analytic[k][j];
      diffNorm += (an - numeric) ** 2;
      refNorm += Math.max(an * an, numeric * numeric);
      const err = Math.abs(an - numeric);
      if (err > worst.err) worst = { input: i, index: j, analytic: an, numeric, err };
    }
  }
  const relativeError = Math.sqrt(diffNorm) / Math.max(Math.sqrt(refNorm), 1e-12);
  return { name: c.name, relativeError, worst: { input: worst.input, index: worst.index, analytic: worst.analytic, numeric: worst.numeric } };
}
