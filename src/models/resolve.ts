import fs from 'node:fs';
import { GraphBuilder } from '../ir/builder.js';
import { DType, dtypeName } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { inferTypes } from '../ir/infer.js';
import { isBuffer } from '../ir/partial-evaluate.js';
import { Tensor } from '../ir/tensor.js';
import { classifyInitializers, importModel } from '../onnx/import.js';
import { isPositionTableGather, Model } from './model.js';
import { InputError } from '../validate/schema.js';
import { zooModel, ZOO_MODELS } from './zoo.js';

/** Per-dataset pixel statistics, applied inside zoo model graphs (inputs stay [0, 1] pixels). */
export const DATASET_STATS: Record<string, { mean: number[]; std: number[]; shape: [number, number, number]; classes: number }> = {
  mnist: { mean: [0.1307], std: [0.3081], shape: [1, 28, 28], classes: 10 },
  'fashion-mnist': { mean: [0.286], std: [0.353], shape: [1, 28, 28], classes: 10 },
};

export interface InputTransform {
  /** Imported models: x_model = (x * scale - mean) / std, built into the graph. */
  scale?: number;
  mean?: number[];
  std?: number[];
}

/** A zoo model by name, or an imported .onnx file, ready to train on `data`. */
export function resolveModel(spec: string, data: string, seed: number, transform: InputTransform = {}): Model {
  const stats = DATASET_STATS[data];
  if (!stats) throw new Error(`unknown dataset '${data}'; valid choices: ${Object.keys(DATASET_STATS).join(', ')}`);
  if (spec.endsWith('.onnx') || fs.existsSync(spec)) return importForTraining(spec, transform);
  if (!(ZOO_MODELS as readonly string[]).includes(spec)) {
    throw new Error(`--model: unknown model '${spec}'; choose one of ${ZOO_MODELS.join(', ')} or a path to an .onnx file`);
  }
  const [c, h, w] = stats.shape;
  return zooModel(spec, { input: { channels: c, height: h, width: w, mean: stats.mean, std: stats.std }, classes: stats.classes, seed });
}

export interface ImportForTrainingOptions {
  /**
   * Language models: the context (tokens per window) to train with; at most the model's position capacity where
   * the importer can see it (a position-embedding table). Needed where the model does not show it.
   */
  context?: number;
}

/** HF-style decoder inputs besides the token ids, recognised by name. */
const ATTENTION_MASK = /(^|[._/])attention_mask$/;
const POSITION_IDS = /(^|[._/])position_ids$/;

/**
 * An imported ONNX model as a trainable Model: float initializers gradients reach are parameters,
 * BatchNormalization mean/var are running statistics (the BN trains with batch statistics again).
 *
 * Image classifiers (one float input [N, C, H, W]): optional input scaling is prepended to the graph so that the
 * model takes [0, 1] pixels like the data loader gives. Language models (int64 token ids [B, T] -> float logits
 * [B, T, V], optionally with HF-style attention_mask and position_ids inputs, which the trainer feeds as ones
 * and 0..T-1): task 'language-model' with the vocabulary from the logits and the context from the options or the
 * position-embedding table.
 */
export function importForTraining(file: string, transform: InputTransform = {}, options: ImportForTrainingOptions = {}): Model {
  let graph;
  try {
    graph = importModel(file);
  } catch (e) {
    // Every refusal names the file (a pass deep in the import may not know it); bugs keep their own type.
    if (e instanceof Error && e.constructor === Error && !e.message.includes(file)) throw new InputError(`${file}: ${e.message}`);
    throw e;
  }
  if (graph.outputs.length < 1) throw new Error(`${file}: the model has no output`);
  const first = graph.inputs[0];
  if (first && (first.dtype === DType.INT64 || first.dtype === DType.INT32)) return languageModelForTraining(file, graph, transform, options);
  if (graph.inputs.length !== 1) {
    throw new Error(`${file}: a trainable model needs exactly one graph input (the images), found ${graph.inputs.length}: ${graph.inputs.map((i) => i.name).join(', ')}`);
  }
  const roles = classifyInitializers(graph);
  const input = graph.inputs[0];
  if (transform.scale !== undefined || transform.mean || transform.std) {
    const original = input.name;
    const pixels = `${original}_pixels`;
    const b = new GraphBuilder(graph, 'input_transform/');
    const prelude = graph.nodes;
    graph.nodes = [];
    input.name = pixels;
    graph.types.set(pixels, { dtype: input.dtype, shape: input.shape });
    const c = input.shape[1] as number;
    const perChannel = (v: number[] | undefined, fill: number) =>
      b.constant(Tensor.float([1, c, 1, 1], Array.from({ length: c }, (_, i) => (v ? v[i % v.length] : fill))));
    const scaled = b.mul(pixels, b.constant(transform.scale ?? 1));
    const centered = b.sub(scaled, perChannel(transform.mean, 0));
    b.op1('Div', [centered, perChannel(transform.std, 1)], {}, { outputs: [original] });
    graph.nodes.push(...prelude);
  }
  if (input.dtype !== DType.FLOAT) throw new Error(`${file}: input '${input.name}' must be float32 images, got dtype ${input.dtype}`);
  inferTypes(graph);
  const noDecay = roles.params.filter((p) => (graph.initializers.get(p)?.dims.length ?? 0) <= 1);
  return {
    name: graph.name || 'imported',
    graph,
    input: input.name,
    output: graph.outputs[0].name,
    params: roles.params,
    runningStats: roles.runningStats,
    noDecay,
  };
}

function languageModelForTraining(file: string, graph: Graph, transform: InputTransform, options: ImportForTrainingOptions): Model {
  if (transform.scale !== undefined || transform.mean || transform.std) {
    throw new Error(`${file}: input scaling (--input-scale/--input-mean/--input-std) applies to image models; this model takes token ids`);
  }
  const attentionMask = graph.inputs.find((v) => ATTENTION_MASK.test(v.name))?.name;
  const positionIds = graph.inputs.find((v) => POSITION_IDS.test(v.name))?.name;
  const ids = graph.inputs.find((v) => v.name === 'input_ids') ?? graph.inputs.find((v) => v.name !== attentionMask && v.name !== positionIds)!;
  const others = graph.inputs.filter((v) => ![ids.name, attentionMask, positionIds].includes(v.name));
  if (others.length > 0) {
    throw new Error(
      `${file}: a language model takes token ids [B, T] and optionally attention_mask and position_ids; ` +
        `it also has input(s) ${others.map((v) => `'${v.name}'`).join(', ')} (export without past key/values)`,
    );
  }
  if (ids.shape.length !== 2) throw new Error(`${file}: token ids '${ids.name}' must have shape [B, T], got [${ids.shape}]`);
  for (const extra of [attentionMask, positionIds]) {
    const v = extra && graph.inputs.find((i) => i.name === extra)!;
    if (v && (v.dtype !== DType.INT64 && v.dtype !== DType.INT32)) throw new Error(`${file}: input '${v.name}' must be int64, got ${dtypeName[v.dtype]}`);
  }
  const output = graph.outputs.find((o) => o.name === 'logits') ?? graph.outputs[0];
  const vocabSize = output.shape[output.shape.length - 1];
  if (output.dtype !== DType.FLOAT || output.shape.length !== 3 || typeof vocabSize !== 'number') {
    throw new Error(`${file}: a language model returns float logits [B, T, V] with a static V; output '${output.name}' is ${dtypeName[output.dtype]} [${output.shape}]`);
  }
  const capacity = positionCapacity(graph, ids.name);
  const fixedLength = typeof ids.shape[1] === 'number' ? ids.shape[1] : undefined;
  const context = options.context ?? capacity ?? fixedLength;
  if (context === undefined) {
    throw new Error(`${file}: cannot tell how many positions the model takes (no position-embedding table found); pass the context (--context N)`);
  }
  const limit = Math.min(capacity ?? Infinity, fixedLength ?? Infinity);
  if (context > limit) {
    throw new Error(`${file}: --context ${context} is longer than the model takes (${limit} positions); use --context ${limit} or less`);
  }
  const roles = classifyInitializers(graph);
  inferTypes(graph);
  const noDecay = roles.params.filter((p) => (graph.initializers.get(p)?.dims.length ?? 0) <= 1);
  return {
    name: graph.name || 'imported',
    task: 'language-model',
    graph,
    input: ids.name,
    output: output.name,
    lm: { vocabSize, context, ...(attentionMask ? { attentionMask } : {}), ...(positionIds ? { positionIds } : {}) },
    params: roles.params,
    runningStats: roles.runningStats,
    noDecay,
  };
}

/**
 * Positions a decoder has room for: rows of a position-embedding table read by Gather with indices other than
 * the token ids (nn.Embedding of arange or position_ids), or a [1, P, C] parameter sliced along axis 1
 * (self.pos[:, :T]), or a rotary cos/sin cache sliced along its position axis. Undefined when there is none
 * (rotary angles computed from T, or no positions).
 */
function positionCapacity(graph: Graph, ids: string): number | undefined {
  const found: number[] = [];
  const producers = graph.producers();
  for (const n of graph.nodes) {
    const table = graph.initializers.get(n.inputs[0]);
    if (!table) continue;
    if (isPositionTableGather(graph, producers, n, table.dims.length, ids)) found.push(table.dims[0]);
    if (n.opType === 'Slice' && table.dims.length === 3 && table.dims[0] === 1) {
      const axes = n.inputs[3] ? graph.initializers.get(n.inputs[3])?.toNumbers() : [0];
      if (axes && axes.length === 1 && (axes[0] === 1 || axes[0] === -2)) found.push(table.dims[1]);
    }
    // A rotary cos/sin cache of max_position_embeddings rows, sliced to T (Hugging Face's cos_cached[:, :, :T]).
    if (n.opType === 'Slice' && table.dims.length >= 2 && isBuffer(n.inputs[0], table)) {
      const axes = n.inputs[3] ? graph.initializers.get(n.inputs[3])?.toNumbers() : [0];
      const axis = axes?.length === 1 ? (axes[0] + table.dims.length) % table.dims.length : undefined;
      if (axis !== undefined && axis === table.dims.length - 2) found.push(table.dims[axis]);
    }
  }
  return found.length ? Math.min(...found) : undefined;
}
