import { Graph } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { Emitter } from './emitter.js';

/** The default-domain opset of INT4 tensors and blocked (block_size) QuantizeLinear / DequantizeLinear. */
export const BLOCKED_QUANT_OPSET = 21;

/**
 * Raises an export graph written in qatkit's internal opset-17 conventions to opset 21, rewriting the two
 * operators whose signature changed on the way (ONNX docs/Changelog.md); every other op a qatkit export holds
 * reads the same at 21:
 * - Reduce{Max,Min,Mean,Prod,L1,L2,LogSum,LogSumExp,SumSquare}-18 take `axes` as an input, not an attribute
 *   (ReduceSum moved at 13, already an input);
 * - Split-18 needs the `split` input or the `num_outputs` attribute; Split-13 without `split` split evenly, which
 *   is num_outputs = the output count (the divisibility the old form required keeps the chunks equal).
 */
export function raiseToOpset21(graph: Graph): void {
  const em = new Emitter(graph);
  for (const n of graph.nodes) {
    if (n.domain !== '') continue;
    if (n.opType.startsWith('Reduce') && n.opType !== 'ReduceSum') {
      const axes = n.attrs.axes;
      if (!axes || axes.kind !== 'ints') continue;
      n.inputs = [n.inputs[0], em.initializer(`${n.name}/axes`, Tensor.int64([axes.value.length], axes.value))];
      delete n.attrs.axes;
    } else if (n.opType === 'Split' && !n.inputs[1] && !n.attrs.num_outputs) {
      n.attrs.num_outputs = { kind: 'int', value: n.outputs.length };
    }
  }
  graph.opsets[''] = BLOCKED_QUANT_OPSET;
}
