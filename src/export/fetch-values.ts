import * as ort from '../runtime/ort.js';
import { Model } from '../models/model.js';
import { DType } from '../ir/dtype.js';
import { Tensor } from '../ir/tensor.js';
import { Session } from '../runtime/session.js';
import { fromOrtTensor } from '../runtime/tensors.js';
import { buildEvalGraph } from '../train/step-graph.js';
import { languageModelSideInputs } from '../train/evaluate-language-model.js';

/**
 * Values of `names` in the model's inference graph, computed by ONNX Runtime exactly as evaluation computes
 * them (float32 kernels, the same lowering): scales from observers or weight ranges, folded weights,
 * fake-quantized weights. Initializers are read directly. None of these depend on the input, so one zero
 * sample is fed.
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
  const input = graph.inputs.find((v) => v.name === model.input);
  if (!input) throw new Error(`model '${model.name}' has no input '${model.input}'`);
  const dims = input.shape.map((d) => (typeof d === 'number' ? d : 1));
  const session = await Session.create(graph, { threads });
  try {
    const size = dims.reduce((a, b) => a * b, 1);
    // Token ids (a language model's int64 input) or pixels: zeros of the input's own type; a language model's
    // Hugging Face inputs (attention_mask, position_ids) as evaluation feeds them.
    const x = input.dtype === DType.INT64 ? new ort.Tensor('int64', new BigInt64Array(size), dims) : new ort.Tensor('float32', new Float32Array(size), dims);
    const side = model.task === 'language-model' ? languageModelSideInputs(model, dims[0], dims[1]) : {};
    const feeds = { ...side, [model.input]: x };
    const result = await session.run(feeds, computed);
    for (const n of computed) out.set(n, fromOrtTensor(result[n]));
  } finally {
    await session.release();
  }
  return out;
}
