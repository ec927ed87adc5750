import { DType } from '../../ir/dtype.js';
import { Graph, Node, topologicalOrder } from '../../ir/graph.js';
import { Tensor } from '../../ir/tensor.js';
import { integerAdd } from './add.js';
import { integerCast } from './cast.js';
import { integerClip } from './clip.js';
import { integerConv } from './conv.js';
import { dequantizeLinear } from './dequantize-linear.js';
import { floatDiv, floatMul, floatSub } from './float-elementwise.js';
import { integerGlobalAveragePool } from './global-average-pool.js';
import { integerGemm, integerMatMulKernel } from './gemm.js';
import { IntegerKernelTable } from './kernel.js';
import { integerMaxPool } from './max-pool.js';
import { quantizeLinear } from './quantize-linear.js';
import { integerRelu } from './relu.js';
import { integerFlatten, integerIdentity, integerReshape } from './shape.js';
import { dequantize, IntValue, Quantized } from './values.js';

/** Op type -> integer kernel; one file per op. */
export const integerKernels: IntegerKernelTable = {
  QuantizeLinear: quantizeLinear,
  DequantizeLinear: dequantizeLinear,
  Conv: integerConv,
  Gemm: integerGemm,
  MatMul: integerMatMulKernel,
  Relu: integerRelu,
  Clip: integerClip,
  Cast: integerCast,
  MaxPool: integerMaxPool,
  GlobalAveragePool: integerGlobalAveragePool,
  Flatten: integerFlatten,
  Reshape: integerReshape,
  Identity: integerIdentity,
  Add: integerAdd,
  Sub: floatSub,
  Mul: floatMul,
  Div: floatDiv,
};

export interface IntegerRunOptions {
  /**
   * Called with every QuantizeLinear's codes; what it returns replaces them downstream. Comparisons use it to
   * feed each layer the other engine's codes, so one rounding difference does not spread to later layers.
   */
  onQuantized?: (node: Node, codes: Quantized, input: IntValue | undefined) => Quantized | void;
}

export interface IntegerRunResult {
  /** Graph outputs as float32 (quantized outputs dequantized, as the model's final DequantizeLinear / QGemm does). */
  outputs: Map<string, Tensor>;
  /** Every value computed (codes with their quantization, or plain tensors). */
  values: Map<string, IntValue>;
}

/**
 * Evaluates an exported QDQ model the way an integer engine does (docs/export-formats.md, "Integer reference
 * evaluator"): QuantizeLinear rounds the normalised input to codes; every DequantizeLinear -> Conv / Gemm
 * -> [Relu] -> QuantizeLinear group runs as an int32 accumulation of codes plus an int32 bias, requantized by
 * a fixed-point multiplier and shift; MaxPool / Flatten / Reshape move codes; the float32 output is formed only
 * at the end. Ops outside `integerKernels`, or float layers, are errors that name the node.
 */
export function evaluateInteger(graph: Graph, feeds: Map<string, Tensor>, options: IntegerRunOptions = {}): IntegerRunResult {
  const env = new Map<string, IntValue>();
  for (const [name, t] of graph.initializers) env.set(name, { kind: 'tensor', tensor: t });
  for (const input of graph.inputs) {
    if (env.has(input.name)) continue;
    const t = feeds.get(input.name);
    if (!t) throw new Error(`graph '${graph.name}': no feed for input '${input.name}'`);
    if (t.dtype !== DType.FLOAT) throw new Error(`graph '${graph.name}': input '${input.name}' must be float32`);
    env.set(input.name, { kind: 'tensor', tensor: t });
  }
  for (const node of topologicalOrder(graph)) {
    const kernel = node.domain === '' || node.domain === 'ai.onnx' ? integerKernels[node.opType] : undefined;
    if (!kernel) {
      throw new Error(
        `the integer evaluator has no kernel for op ${node.domain ? node.domain + '.' : ''}${node.opType} (node '${node.name}'); ` +
          `supported: ${Object.keys(integerKernels).sort().join(', ')}`,
      );
    }
    const inputs = node.inputs.map((i) => (i ? env.get(i) : undefined));
    let outputs = kernel(node, inputs);
    if (node.opType === 'QuantizeLinear' && options.onQuantized) outputs = [options.onQuantized(node, outputs[0] as Quantized, inputs[0]) ?? outputs[0]];
    node.outputs.forEach((o, i) => {
      if (o && outputs[i]) env.set(o, outputs[i]);
    });
  }
  const outputs = new Map<string, Tensor>();
  for (const o of graph.outputs) {
    const v = env.get(o.name);
    if (!v) throw new Error(`graph '${graph.name}': output '${o.name}' was not computed`);
    outputs.set(o.name, v.kind === 'quantized' ? dequantize(v) : v.tensor);
  }
  return { outputs, values: env };
}
