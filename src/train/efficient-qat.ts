/**
 * EfficientQAT (Chen et al. 2024, "EfficientQAT: Efficient Quantization-Aware Training for Large Language Models")
 * as run phases (lm-phases.ts):
 *
 * 1. Block-AP: the transformer blocks in order, each for `blockApSteps` steps. The step graph is the QAT model up to
 *    the block's output (the residual stream after it), fed by the already trained, quantized blocks before it (so
 *    the block learns on the quantized model's own inputs), with every parameter of that block trainable: weights,
 *    norms, biases and the LSQ step sizes of its weights. Loss: the mean squared error to the fp32 model's output of
 *    the same block on the same windows (the teacher, truncated there, inside the step graph).
 * 2. E2E-QP: the whole quantized model on the next-token loss with only the step sizes trainable (weights frozen,
 *    the paper's "quantization parameters" of the quantized model end to end).
 *
 * Simplified against the paper: the calibration windows are the run's own training windows (drawn from (seed,
 * step) as every LM run draws them; the paper takes 4096 RedPajama samples for two epochs); Block-AP and E2E-QP both
 * train at the run's peak lr with a cosine to 10% inside each phase (the paper: 1e-4 for step sizes and 2e-5 for
 * weights in Block-AP, 2e-5 in E2E-QP, with Adam's state per block); the token table and tied head are not in any
 * block, so their weights stay at the fp32 values and only their step size trains (in E2E-QP).
 */
import { Graph, topologicalOrder } from '../ir/graph.js';
import { Model } from '../models/model.js';
import { InputError } from '../validate/schema.js';
import { embedFrozenLanguageModel } from './lm-distill.js';
import { meanSquaredError } from './losses.js';
import { learningRate } from './schedule.js';
import type { TrainingPhase } from './lm-phases.js';
import type { TrainConfig } from './run.js';
import type { ExtraLoss } from './step-graph.js';

/** A parameter's transformer block: blocks.3.attn..., layers.3.mlp..., model.layers.3... (its quant_scale follows its weight). */
export function blockIndexOf(param: string): number | undefined {
  const m = /(?:^|\.)(?:blocks|layers|h|layer)\.(\d+)\./.exec(param);
  return m ? Number(m[1]) : undefined;
}

/** The blocks of a model: the parameters of each and the value of the residual stream after it. */
export interface TransformerBlock {
  index: number;
  params: string[];
  output: string;
}

/**
 * Blocks by parameter name; a block's output is the last residual Add (two data inputs of the residual's rank,
 * no initializer) that depends on its parameters and on no later block's: in a pre-norm decoder, the Add of the
 * MLP branch back into the stream.
 */
export function transformerBlocks(model: Model): TransformerBlock[] {
  const graph = model.graph;
  const byBlock = new Map<number, string[]>();
  for (const p of model.params) {
    const i = blockIndexOf(p);
    if (i !== undefined) byBlock.set(i, [...(byBlock.get(i) ?? []), p]);
  }
  const indices = [...byBlock.keys()].sort((a, b) => a - b);
  if (!indices.length) throw new InputError(`--method efficientqat: model '${model.name}' has no transformer blocks to reconstruct (no parameter named like blocks.N. or layers.N.)`);
  const dep = new Map<string, number>();
  for (const [i, ps] of byBlock) for (const p of ps) dep.set(p, i);
  const order = topologicalOrder(graph);
  const last = new Map<number, string>();
  for (const n of order) {
    const d = Math.max(-1, ...n.inputs.map((v) => dep.get(v) ?? -1));
    for (const o of n.outputs) if (o) dep.set(o, d);
    if (n.opType !== 'Add' || d < 0 || n.inputs.some((v) => graph.initializers.has(v))) continue;
    const rank = (v: string) => (graph.types.has(v) ? graph.typeOf(v).shape.length : -1);
    if (rank(n.inputs[0]) === 3 && rank(n.inputs[1]) === 3 && rank(n.outputs[0]) === 3) last.set(d, n.outputs[0]);
  }
  return indices.map((index) => {
    const output = last.get(index);
    if (!output) throw new InputError(`--method efficientqat: model '${model.name}': found no residual output of block ${index}`);
    return { index, params: byBlock.get(index)!, output };
  });
}

/** The graph cut at `output`: only the nodes and initializers that value needs. */
function truncate(graph: Graph, output: string): Graph {
  const g = graph.clone();
  const producers = g.producers();
  const needed = new Set<string>([output]);
  const keep = new Set<string>();
  const stack = [output];
  while (stack.length) {
    const v = stack.pop()!;
    const p = producers.get(v);
    if (!p || keep.has(p.name)) continue;
    keep.add(p.name);
    for (const i of p.inputs) if (i && !needed.has(i)) (needed.add(i), stack.push(i));
  }
  g.nodes = g.nodes.filter((n) => keep.has(n.name));
  for (const name of [...g.initializers.keys()]) if (!needed.has(name)) g.initializers.delete(name);
  g.outputs = [{ ...g.outputs[0], name: output, dtype: g.typeOf(output).dtype, shape: g.typeOf(output).shape }];
  return g;
}

/** Block-AP's step model for one block: the QAT model up to the block's output, that block's parameters trainable. */
export function blockApModel(run: Model, block: TransformerBlock): Model {
  const graph = truncate(run.graph, block.output);
  const own = new Set(block.params);
  const scales = (run.quant?.quantizers ?? []).filter((z) => z.role === 'weight' && own.has(z.tensor)).flatMap((z) => z.learned);
  const params = [...new Set([...block.params, ...scales])].filter((p) => graph.initializers.has(p));
  return { ...run, name: `${run.name}_block${block.index}`, graph, output: block.output, params, noDecay: run.noDecay.filter((p) => params.includes(p)) };
}

/** E2E-QP's step model: the whole QAT model with only its weights' step sizes trainable. */
export function stepSizeModel(run: Model): Model {
  const params = (run.quant?.quantizers ?? []).filter((z) => z.role === 'weight').flatMap((z) => z.learned);
  if (!params.length) throw new InputError('--method efficientqat needs learned weight step sizes (LSQ, as every integer LM preset has; b158 and minmax weights have none to train end to end)');
  return { ...run, params, noDecay: params };
}

/** The run's model with the values a phase's trainer holds for its parameters. */
function withValues(run: Model, trained: Model): Model {
  const graph = run.graph.clone();
  for (const p of trained.params) graph.initializers.set(p, trained.graph.initializers.get(p)!);
  return { ...run, graph };
}

/** MSE between the block's output and the fp32 teacher's output of the same block (a stop-gradient target). */
function blockReconstruction(teacher: Model, block: TransformerBlock): ExtraLoss {
  const truncated: Model = { ...teacher, graph: truncate(teacher.graph, block.output), output: block.output };
  return (b, output) => {
    const target = embedFrozenLanguageModel(b, truncated, `teacher_block${block.index}/`);
    return { loss: meanSquaredError(b, output, target), crossEntropyWeight: 0, stopGradient: [target] };
  };
}

/** Block-AP steps per block: half of the run over the blocks unless --block-ap-steps says otherwise. */
export function blockApSteps(config: TrainConfig, totalSteps: number, blocks: number): number {
  return config.blockApSteps ?? Math.max(1, Math.floor(totalSteps / 2 / blocks));
}

/**
 * The phases of an EfficientQAT run: one Block-AP phase per block, then E2E-QP for the remaining steps. Adam
 * restarts in every phase (other parameters each time); each phase decays its lr by cosine from the run's peak.
 */
export function efficientQatPhases(config: TrainConfig, totalSteps: number, model: Model | undefined, teacher: Model | undefined, extraLoss?: ExtraLoss): TrainingPhase[] {
  // Without the model (the plan checks only step counts) the blocks are counted from the config's --layers.
  const count = model ? transformerBlocks(model).length : (config.layers ?? 1);
  const per = blockApSteps(config, totalSteps, count);
  const e2e = totalSteps - per * count;
  if (e2e < 1) throw new InputError(`--method efficientqat: ${count} blocks x --block-ap-steps ${per} leave no E2E-QP step within --steps ${totalSteps}`);
  const inPhase = (start: number, end: number) => (step: number) => learningRate({ kind: 'cosine', lr: config.lr, minFactor: 0.1 }, step - start, end - start);
  const phases: TrainingPhase[] = [];
  const blocks = model ? transformerBlocks(model) : [];
  for (let k = 0; k < count; k++) {
    const [start, end] = [k * per, (k + 1) * per];
    const block = blocks[k];
    phases.push({
      name: `efficientqat block-ap ${k}`, start, end, continueOptimizer: false, whole: false, lr: inPhase(start, end),
      extraLoss: block && teacher ? blockReconstruction(teacher, block) : undefined,
      enter: (run) => blockApModel(run, block),
      leave: withValues,
    });
  }
  const start = per * count;
  phases.push({ name: 'efficientqat e2e-qp', start, end: totalSteps, continueOptimizer: false, whole: true, extraLoss, lr: inPhase(start, totalSteps), enter: stepSizeModel, leave: withValues });
  return phases;
}
