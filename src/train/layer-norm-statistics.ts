import { GraphBuilder } from '../ir/builder.js';
import { DType } from '../ir/dtype.js';
import { attrInt, Graph } from '../ir/graph.js';

/**
 * Gives every float32 LayerNormalization of a training step its Mean and InvStdDev outputs (ONNX
 * LayerNormalization-17 computes them anyway), so that its gradient rule reads the saved statistics instead of
 * recomputing them from X (two reductions and two full-size passes per norm). float64 graphs (gradient checks)
 * keep recomputing: ORT writes the statistics as float32 whatever X's type.
 */
export function saveLayerNormStatistics(graph: Graph): number {
  const b = new GraphBuilder(graph, 'ln_stats/');
  let named = 0;
  for (const n of graph.nodes) {
    if (n.opType !== 'LayerNormalization' || n.domain !== '') continue;
    const x = graph.typeOf(n.inputs[0]);
    if (x.dtype !== DType.FLOAT || attrInt(n, 'stash_type', DType.FLOAT) !== DType.FLOAT) continue;
    const rank = x.shape.length;
    const axis = attrInt(n, 'axis', -1);
    const first = axis < 0 ? axis + rank : axis;
    const stat = { dtype: DType.FLOAT, shape: x.shape.map((d, i) => (i >= first ? 1 : d)) };
    for (const [i, what] of [[1, 'mean'], [2, 'inv_std']] as const) {
      if (n.outputs[i]) continue;
      while (n.outputs.length <= i) n.outputs.push('');
      n.outputs[i] = b.fresh(`${n.name}/${what}`);
      graph.types.set(n.outputs[i], stat);
      named++;
    }
  }
  return named;
}
