import { Graph } from '../../ir/graph.js';
import { Tensor } from '../../ir/tensor.js';
import { Model } from '../../models/model.js';
import { Quantizer, scaleLayout } from '../prepare.js';
import { QuantizedMatrix } from './weight-grid.js';
import { LinearTarget, storedFromMatrix, storedIndex } from './layer-targets.js';

/**
 * Freezes weight quantizers at a PTQ method's result: the weight initializer becomes the quantized values
 * (q - z) * s, and the FakeQuantize reads the method's scales and zero points from initializers instead of the
 * in-graph min/max (GPTQ's codes are not the round-to-nearest of any weights at max|w| / qmax scales, and AWQ's
 * clipped scales are below max|w| / qmax). FakeQuantize of a value on its own grid returns it unchanged
 * (round(fround(q s) / s) = q for |q| <= 2^(bits-1)), so the simulated weights are exactly the method's, and
 * export reads the codes back from them.
 */
export function fixWeightQuantizers(model: Model, fixes: { target: LinearTarget; result: QuantizedMatrix }[]): Model {
  const graph = model.graph.clone();
  const quantizers = model.quant!.quantizers.map((q) => ({ ...q }));
  for (const { target, result } of fixes) {
    const q = quantizers.find((x) => x.role === 'weight' && x.tensor === target.tensor);
    if (!q) throw new Error(`weight '${target.tensor}' has no quantizer in model '${model.name}'`);
    const node = graph.nodes.find((n) => n.name === q.node);
    if (!node || node.opType !== 'FakeQuantize') throw new Error(`weight '${target.tensor}': quantizer '${q.node}' is not a FakeQuantize`);
    const stored = graph.initializers.get(target.tensor)!;
    const layout = scaleLayout(stored.dims, q.spec);
    const count = layout.dims.reduce((a, b) => a * b, 1);
    const scale = new Float32Array(count).fill(NaN);
    const zero = new Float32Array(count).fill(NaN);
    const groups = result.cols / result.grid.groupSize;
    for (let r = 0; r < result.rows; r++) {
      for (let c = 0; c < result.cols; c++) {
        const j = layout.index(storedIndex(target, r, c));
        const g = r * groups + Math.floor(c / result.grid.groupSize);
        const [s, z] = [result.scales[g], result.zeros[g]];
        if ((!Number.isNaN(scale[j]) && scale[j] !== s) || (!Number.isNaN(zero[j]) && zero[j] !== z)) {
          throw new Error(`weight '${target.tensor}': the method's scales do not fit the quantizer's layout (${q.spec.granularity.kind}) at row ${r}, column ${c}`);
        }
        scale[j] = s;
        zero[j] = z;
      }
    }
    graph.initializers.set(target.tensor, new Tensor(stored.dtype, stored.dims, storedFromMatrix(target, result.values)));
    const scaleName = `${target.tensor}/ptq_scale`;
    const zeroName = `${target.tensor}/ptq_zero_point`;
    graph.initializers.set(scaleName, new Tensor(stored.dtype, layout.dims, scale));
    graph.initializers.set(zeroName, new Tensor(stored.dtype, layout.dims, zero));
    node.inputs[1] = scaleName;
    node.inputs[2] = zeroName;
    q.scale = scaleName;
    q.zeroPoint = zeroName;
  }
  const keep = new Set([...model.params, ...model.runningStats, ...(model.observerStats ?? [])]);
  pruneUnused(graph, keep);
  return { ...model, graph, quant: { ...model.quant!, quantizers: quantizers as Quantizer[] } };
}

/** Drops nodes whose outputs nobody reads (the replaced in-graph min/max scales) and initializers left unread. */
function pruneUnused(graph: Graph, keep: Set<string>): void {
  for (;;) {
    const read = new Set(graph.outputs.map((o) => o.name));
    for (const n of graph.nodes) for (const i of n.inputs) if (i) read.add(i);
    const live = graph.nodes.filter((n) => n.outputs.some((o) => o && read.has(o)));
    const removed = live.length !== graph.nodes.length;
    graph.nodes = live;
    if (!removed) {
      for (const name of [...graph.initializers.keys()]) if (!read.has(name) && !keep.has(name)) graph.initializers.delete(name);
      return;
    }
  }
}
