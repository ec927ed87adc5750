import fs from 'node:fs';
import { GraphBuilder } from '../ir/builder';
import { DType } from '../ir/dtype';
import { inferTypes } from '../ir/infer';
import { Tensor } from '../ir/tensor';
import { classifyInitializers, importModel } from '../onnx/import';
import { Model } from './model';
import { zooModel, ZOO_MODELS } from './zoo';

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

/**
 * An imported ONNX model as a trainable Model: float initializers feeding differentiable inputs are parameters,
 * BatchNormalization mean/var are running statistics (the BN trains with batch statistics again). Optional
 * input scaling is prepended to the graph so that the model takes [0, 1] pixels like the data loader gives.
 */
export function importForTraining(file: string, transform: InputTransform = {}): Model {
  const graph = importModel(file);
  if (graph.inputs.length !== 1) {
    throw new Error(`${file}: a trainable model needs exactly one graph input (the images), found ${graph.inputs.length}: ${graph.inputs.map((i) => i.name).join(', ')}`);
  }
  if (graph.outputs.length < 1) throw new Error(`${file}: the model has no output`);
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
