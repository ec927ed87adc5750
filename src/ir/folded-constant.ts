/**
 * Constants an exported graph computes from initializers, which ONNX Runtime's constant folding turns into
 * initializers at load (level 1): ConstantOfShape of a constant shape, Expand of [N, 1] rows to [N, M], and a
 * Reshape of an initializer. Export writes per-tensor and per-row MatMulNBits scales this way (export/matmul-nbits.ts
 * blockScales) and a tied table's codes as a Reshape of the head's (export/lm-embeddings.ts); readers of the file
 * (qat inspect, the integer reference) see the values ORT runs. Typed arrays stay typed: B of a large model is MBs.
 */
import { DType } from './dtype.js';
import { Graph, Node } from './graph.js';
import { Tensor } from './tensor.js';

/** The value of `name` as ORT folds it, or undefined when it is not one of these constants. */
export function foldedConstant(graph: Graph, producers: Map<string, Node>, name: string): Tensor | undefined {
  const init = graph.initializers.get(name);
  if (init) return init;
  const p = producers.get(name);
  if (!p) return undefined;
  const ints = (input: string) => foldedConstant(graph, producers, input)?.toNumbers();
  if (p.opType === 'ConstantOfShape' && p.attrs.value?.kind === 'tensor') {
    const dims = ints(p.inputs[0]);
    const value = p.attrs.value.value;
    if (!dims || value.dtype !== DType.FLOAT) return undefined;
    return new Tensor(DType.FLOAT, dims, new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(value.toNumbers()[0]));
  }
  if (p.opType === 'Expand') {
    const rows = foldedConstant(graph, producers, p.inputs[0]);
    const dims = ints(p.inputs[1]);
    if (!rows || !dims || rows.dtype !== DType.FLOAT || dims.length !== 2 || rows.dims.join() !== `${dims[0]},1`) return undefined;
    const [n, m] = dims;
    const src = rows.data as Float32Array;
    return new Tensor(DType.FLOAT, dims, Float32Array.from({ length: n * m }, (_, i) => src[Math.floor(i / m)]));
  }
  if (p.opType === 'Reshape') {
    const t = foldedConstant(graph, producers, p.inputs[0]);
    const dims = ints(p.inputs[1]);
    return t && dims ? new Tensor(t.dtype, dims, t.data) : undefined;
  }
  return undefined;
}
