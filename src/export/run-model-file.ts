import { Graph } from '../ir/graph.js';
import { Model } from '../models/model.js';
import { saveModel } from '../onnx/model-io.js';
import { FAKE_QUANT_KEY, QUANTIZATION_KEY } from '../inspect/inspect-file.js';
import { inspectModel } from '../inspect/inspect-model.js';
import { lowerCustomOps } from '../runtime/lower.js';
import { buildEvalGraph } from '../train/step-graph.js';

/** The file name of a run's inference model (fp32, or the fake-quant model of a QAT / PTQ run). */
export const RUN_MODEL_FILE = 'model.onnx';

/**
 * A quantized model's evaluation graph in standard ONNX ops only: every ai.qatkit quantizer replaced by its
 * lowering (FakeQuantize -> Div, Round, Clip, Mul; DESIGN.md "Fake quantization"), the same lowering ONNX Runtime
 * runs when the run evaluates, so the file computes the run's logits and opens in any ONNX viewer. metadata_props
 * carry the recipe `qat inspect` shows (each quantizer's spec, the layers it feeds, its scale range, why a layer
 * differs from the config) under qatkit.quantization, and qatkit.fake_quant marks the file as a simulation model
 * (float weights, not an integer export).
 */
export async function fakeQuantModelGraph(model: Model, threads = 2): Promise<Graph> {
  const quant = model.quant;
  if (!quant) throw new Error(`fakeQuantModelGraph: model '${model.name}' has no quantizers`);
  const graph = lowerCustomOps(buildEvalGraph(model));
  const foreign = graph.nodes.filter((n) => n.domain !== '');
  if (foreign.length) throw new Error(`model '${model.name}': ops outside the ONNX domain after lowering: ${foreign.slice(0, 5).map((n) => `${n.name} (${n.domain}.${n.opType})`).join(', ')}`);
  graph.opsets = { '': graph.opsets[''] ?? 17 };
  graph.name = `${model.name}_fake_quant`;
  const table = await inspectModel(model, { threads });
  const rowOf = (node: string) => table.layers.find((r) => r.node === node);
  const layers = quant.quantizers.map((q) => {
    const column = rowOf(q.layers[0])?.[q.role];
    return { role: q.role, tensor: q.tensor, layers: q.layers, spec: q.spec, ...(column?.scale_range ? { scale_range: column.scale_range } : {}) };
  });
  const notes = Object.fromEntries(table.layers.filter((r) => r.note).map((r) => [r.node, r.note!]));
  graph.metadata = {
    ...graph.metadata,
    'qatkit.model': model.name,
    'qatkit.input': model.input,
    'qatkit.output': model.output,
    [FAKE_QUANT_KEY]: JSON.stringify({ task: model.task ?? 'classification', note: 'fake-quantized float model (simulation): the run\'s evaluation graph in standard ops; qat export writes the integer model' }),
    [QUANTIZATION_KEY]: JSON.stringify({ preset: quant.preset ?? null, method: quant.method ?? 'qat', ...(quant.calib ? { calib: quant.calib } : {}), config: quant.config, layers, notes }),
  };
  return graph;
}

/** Writes a run's model.onnx (atomically): the fp32 graph as trained, or a quantized run's fake-quant graph. */
export async function saveRunModel(model: Model, file: string, threads = 2): Promise<void> {
  saveModel(model.quant ? await fakeQuantModelGraph(model, threads) : model.graph, file);
}
