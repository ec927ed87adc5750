import { attrInt, Graph, Node } from '../../ir/graph.js';
import { Tensor } from '../../ir/tensor.js';
import { Model } from '../../models/model.js';
import { planQuantization } from '../prepare.js';
import { QatConfig } from '../presets.js';
import { QuantSpec } from '../spec.js';

/**
 * One quantized Linear weight as the PTQ methods see it: a matrix of `rows` output features by `cols` input
 * features. `layout` says how the stored initializer holds it: 'kn' [K, N] (a MatMul weight, Gemm transB = 0),
 * 'nk' [N, K] (Gemm transB = 1, or a token table read by the tied head through Transpose).
 */
export interface LinearTarget {
  /** The weight initializer (the quantizer's tensor). */
  tensor: string;
  spec: QuantSpec;
  /** Every layer reading the weight (a tied table: the embedding Gather and the head). */
  layers: string[];
  /** The MatMul/Gemm that computes with it. */
  layer: string;
  /** That layer's activation input in the float graph. */
  input: string;
  layout: 'kn' | 'nk';
  rows: number;
  cols: number;
  /** Read by more than one layer (a tied embedding / LM head). */
  tied: boolean;
}

/** Weights the methods leave at RTN, with why (convolutions, untied embeddings, binary/ternary grids). */
export interface SkippedWeight {
  tensor: string;
  reason: string;
}

function transposedParam(graph: Graph, v: string): string | undefined {
  const p = graph.producers().get(v);
  if (!p || p.opType !== 'Transpose' || !graph.initializers.has(p.inputs[0])) return undefined;
  const perm = p.attrs.perm;
  return perm && perm.kind === 'ints' && perm.value.join() === '1,0' ? p.inputs[0] : undefined;
}

/**
 * The Linear (MatMul/Gemm) weights the preset quantizes, found by the same planning as the fake-quant graph
 * (planQuantization), so a target is exactly a weight quantizer of the model `qat quantize` writes.
 */
export function linearTargets(model: Model, config: QatConfig): { targets: LinearTarget[]; skipped: SkippedWeight[] } {
  const plan = planQuantization(model, config);
  const graph = model.graph;
  const byName = new Map(graph.nodes.map((n) => [n.name, n]));
  const targets: LinearTarget[] = [];
  const skipped: SkippedWeight[] = [];
  for (const w of plan.weights) {
    const layers = w.layers ?? [w.node.name];
    const compute = layers.map((l) => byName.get(l)).filter((n): n is Node => !!n && (n.opType === 'MatMul' || n.opType === 'Gemm'));
    const init = graph.initializers.get(w.tensor);
    if (w.spec.method === 'binary' || w.spec.method === 'ternary') {
      skipped.push({ tensor: w.tensor, reason: `${w.spec.method} weights (no uniform grid)` });
      continue;
    }
    if (!compute.length || !init || init.dims.length !== 2) {
      skipped.push({ tensor: w.tensor, reason: layers.map((l) => byName.get(l)?.opType ?? l).join('+') + ' (GPTQ/AWQ apply to MatMul/Gemm weights)' });
      continue;
    }
    const node = compute[0];
    let layout: 'kn' | 'nk';
    if (node.opType === 'Gemm') {
      if (attrInt(node, 'transA', 0)) {
        skipped.push({ tensor: w.tensor, reason: `Gemm '${node.name}' with transA` });
        continue;
      }
      layout = attrInt(node, 'transB', 0) ? 'nk' : 'kn';
    } else {
      layout = node.inputs[1] === w.tensor ? 'kn' : transposedParam(graph, node.inputs[1]) === w.tensor ? 'nk' : (undefined as never);
      if (!layout) {
        skipped.push({ tensor: w.tensor, reason: `MatMul '${node.name}' reads it through an op other than a transpose` });
        continue;
      }
    }
    const [rows, cols] = layout === 'kn' ? [init.dims[1], init.dims[0]] : [init.dims[0], init.dims[1]];
    targets.push({ tensor: w.tensor, spec: w.spec, layers, layer: node.name, input: node.inputs[0], layout, rows, cols, tied: layers.length > 1 });
  }
  return { targets, skipped };
}

/** The stored weight as a [rows, cols] float64 matrix (GPTQ's orientation). */
export function targetMatrix(t: LinearTarget, stored: Tensor): Float64Array {
  const d = stored.data as Float32Array;
  if (t.layout === 'nk') return Float64Array.from(d);
  const out = new Float64Array(t.rows * t.cols);
  for (let k = 0; k < t.cols; k++) for (let n = 0; n < t.rows; n++) out[n * t.cols + k] = d[k * t.rows + n];
  return out;
}

/** A [rows, cols] matrix back in the stored layout, as float32. */
export function storedFromMatrix(t: LinearTarget, m: ArrayLike<number>): Float32Array {
  if (t.layout === 'nk') return Float32Array.from(m);
  const out = new Float32Array(t.rows * t.cols);
  for (let k = 0; k < t.cols; k++) for (let n = 0; n < t.rows; n++) out[k * t.rows + n] = m[n * t.cols + k];
  return out;
}

/** The flat stored index of matrix element (row, col). */
export function storedIndex(t: LinearTarget, row: number, col: number): number {
  return t.layout === 'nk' ? row * t.cols + col : col * t.rows + row;
}
