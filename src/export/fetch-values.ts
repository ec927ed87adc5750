import * as ort from '../runtime/ort.js';
import { Model } from '../models/model.js';
import { DType } from '../ir/dtype.js';
import { Tensor } from '../ir/tensor.js';
import { Session } from '../runtime/session.js';
import { fromOrtTensor } from '../runtime/tensors.js';
import { buildEvalGraph } from '../train/step-graph.js';

/**
 * Values of `names` in the model's inference graph, computed by ONNX Runtime exactly as evaluation computes
 * them (float32 kernels, the same lowering): scales from observers or weight ranges, folded weights,
 * fake-quantized weights. Initializers are read directly. None of these depend on the input, so one sample
 * of zeros is fed to every input.
 */
export async function fetchValues(model: Model, names: string[], threads = 2): Promise<Map<string, Tensor>> {
  const out = new Map<string, Tensor>();
  const graph = buildEvalGraph(model);
  const computed = [...new Set(names)].filter((n) => {
    const init = graph.initializers.get(n);
    if (init) out.set(n, init);
    return !init;
  });
  if (!computed.length) return out;
  for (const n of computed) {
    if (!graph.hasValue(n)) throw new Error(`value '${n}' is not in the graph of model '${model.name}'`);
  }
  graph.outputs = computed.map((name) => ({ name, ...graph.typeOf(name) }));
  if (!graph.inputs.some((v) => v.name === model.input)) throw new Error(`model '${model.name}' has no input '${model.input}'`);
  const session = await Session.create(graph, { threads });
  try {
    // One sample of every input (token ids, an HF attention_mask / position_ids, or pixels): zeros of the input's
    // own type, a mask all ones (every position attended).
    const feeds: Record<string, ort.Tensor> = {};
    for (const v of graph.inputs) {
      const dims = v.shape.map((d) => (typeof d === 'number' ? d : 1));
      const size = dims.reduce((a, b) => a * b, 1);
      const fill = v.name === model.lm?.attentionMask ? 1 : 0;
      if (v.dtype === DType.INT64) feeds[v.name] = new ort.Tensor('int64', new BigInt64Array(size).fill(BigInt(fill)), dims);
      else if (v.dtype === DType.INT32) feeds[v.name] = new ort.Tensor('int32', new Int32Array(size).fill(fill), dims);
      else feeds[v.name] = new ort.Tensor('float32', new Float32Array(size).fill(fill), dims);
    }
    const result = await session.run(feeds, computed);
    for (const n of computed) out.set(n, fromOrtTensor(result[n]));
  } finally {
    await session.release();
  }
  return out;
}
