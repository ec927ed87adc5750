import { differentiate } from '../autodiff/grad.js';
import { GraphBuilder } from '../ir/builder.js';
import { DType } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { initializersToInputs } from '../ir/infer.js';
import { foldShapeComputations } from '../ir/partial-evaluate.js';
import { Tensor } from '../ir/tensor.js';
import { Model } from '../models/model.js';
import '../ops/index.js';
import { convsFromPatches } from '../ops/conv.js';
import { elideOutputCopies } from './elide-output-copies.js';
import { toTrainingBatchNorm } from './batchnorm-mode.js';
import { fuseConvBatchNorm, fuseConvFrozenBatchNorm } from './fuse-conv-batchnorm.js';
import { fuseSoftmaxAttention } from './fuse-attention.js';
import { fuseGelu } from './fuse-gelu.js';
import { saveLayerNormStatistics } from './layer-norm-statistics.js';
import { sumLeadingAxesByMatMul } from './sum-leading-axes.js';
import { hoistMaxPools } from './hoist-max-pool.js';
import { OBSERVE_INPUT, toTrainingObservers, ObserverStatNames } from '../quant/observer-op.js';
import { IntegerBias, simulateIntegerBiases } from '../quant/integer-bias.js';
import { correctCount, softmaxCrossEntropy, tokenCorrectCount, tokenCrossEntropy } from './losses.js';
import { emitOptimizer, OptimizerConfig } from './optimizer.js';

export interface CarriedValue {
  /** Graph input holding the value before the step. */
  input: string;
  /** Graph output holding it after the step. */
  output: string;
  kind: 'param' | 'optimizer' | 'running-stat';
  /** Value at the start of training. */
  initial: Tensor;
}

/** Hook that adds terms to the loss (distillation, oscillation dampening); gets the logits. */
export type ExtraLoss = (b: GraphBuilder, logits: string, graph: Graph) => { loss: string; stopGradient?: string[]; crossEntropyWeight?: number };

export interface TrainStepOptions {
  batchSize: number;
  /** Classification: number of classes. Language models: unused (the vocabulary comes from the model). */
  classes: number;
  /** Language models: tokens per training window (T of the [B, T] ids and targets). */
  sequenceLength?: number;
  /**
   * Gradient accumulation over this many micro-batches: gradients add up in carried buffers and the optimizer
   * applies their mean when the scalar input `apply` is 1 (the last micro-batch); otherwise parameters and
   * optimizer state pass through unchanged.
   */
  accumulate?: number;
  optimizer: OptimizerConfig;
  labelSmoothing?: number;
  extraLoss?: ExtraLoss;
  /** Extensions that add loss terms, carried state, metrics and parameter-update rules (e.g. oscillation control). */
  plugins?: StepPlugin[];
  /**
   * Use BN running statistics instead of batch statistics (and stop updating them): the "freeze BN" phase of
   * QAT (Krishnamoorthi 2018), after which folded weights are exactly those of the integer model.
   */
  freezeBatchNorm?: boolean;
  /**
   * Training-only rewrites that save full-size passes in ORT (default true): GELU and the attention core as ops
   * whose backward reuses saved values, one op for the token cross-entropy, LayerNorm statistics kept for the
   * backward, sums over leading axes as ones-row MatMuls. false builds the plain graph they are tested against.
   */
  fusedOps?: boolean;
}

/**
 * A training-step extension. `build` runs after the loss is formed and before differentiation; it may add a
 * loss term and carried state (saved with the optimizer state). `afterUpdate` may replace parameter updates
 * (e.g. keep frozen weights fixed).
 */
export interface StepPlugin {
  name: string;
  build(b: GraphBuilder, graph: Graph, model: Model): {
    loss?: string;
    stopGradient?: string[];
    state?: { input: string; output: string; initial: Tensor }[];
    metrics?: Record<string, string>;
    afterUpdate?: (updated: Map<string, string>) => void;
  };
}

export interface TrainStepGraph {
  graph: Graph;
  input: string;
  labels: string;
  lr: string;
  step: string;
  /** Scalar input gating activation observers (1: update ranges, 0: frozen); undefined without observers. */
  observe?: string;
  /** Gradient accumulation: scalar input, 1 on the micro-batch that applies the update. */
  apply?: string;
  loss: string;
  correct: string;
  gradNorm: string;
  carried: CarriedValue[];
  /** Extra scalar outputs by metric name (from plugins). */
  metrics: Record<string, string>;
}

/**
 * Builds ONE graph for a whole training step: forward with batch statistics, loss, reverse-mode gradients,
 * optimizer update. Inputs: batch, labels, lr, step and every carried value; outputs: loss, correct count,
 * gradient norm and every carried value's update.
 */
export function buildTrainStep(model: Model, options: TrainStepOptions): TrainStepGraph {
  const base = model.graph.clone();
  const inputInfo = base.inputs.find((v) => v.name === model.input);
  if (!inputInfo) throw new Error(`model '${model.name}' has no input '${model.input}'`);
  const languageModel = model.task === 'language-model';
  const sequenceLength = languageModel ? requireSequenceLength(model, options) : 0;
  inputInfo.shape = languageModel ? [options.batchSize, sequenceLength] : [options.batchSize, ...inputInfo.shape.slice(1)];
  if (languageModel) fixLanguageModelInputs(base, model, options.batchSize, sequenceLength);
  const observerStats = model.observerStats ?? [];
  const stateNames = [...model.params, ...model.runningStats, ...observerStats];
  const initial = new Map(stateNames.map((n) => [n, base.initializers.get(n)!]));
  initializersToInputs(base, stateNames);
  // The batch (and sequence) dims are fixed now: shape computations of imported models become constants.
  foldShapeComputations(base);

  const bnMode = options.freezeBatchNorm ? { graph: base, runningStats: [] } : toTrainingBatchNorm(base);
  let graph = bnMode.graph;
  const runningStats = bnMode.runningStats;
  // Biases on their int32 grid as the integer model adds them; folded convs only once BN is frozen.
  simulateIntegerBiases(graph, model);
  let observe: string | undefined;
  let observers: ObserverStatNames[] = [];
  if (observerStats.length) {
    observe = new GraphBuilder(graph).input(OBSERVE_INPUT, DType.FLOAT, []);
    ({ graph, stats: observers } = toTrainingObservers(graph, observe));
  }
  // Hoisting first puts each MaxPool right after its batch norm, where ConvBatchNormTrain can absorb it.
  hoistMaxPools(graph);
  if (options.freezeBatchNorm) fuseConvFrozenBatchNorm(graph, model.params);
  else fuseConvBatchNorm(graph, model.params);
  const fused = options.fusedOps ?? true;
  if (fused) {
    fuseGelu(graph);
    saveLayerNormStatistics(graph);
    fuseSoftmaxAttention(graph);
  }
  graph.outputs = [];
  graph.name = `${model.name}_train_step`;
  const b = new GraphBuilder(graph, 'step/');
  const labels = b.input('labels', DType.INT64, languageModel ? [options.batchSize, sequenceLength] : [options.batchSize]);
  const lr = b.input('lr', DType.FLOAT, []);
  const step = b.input('step', DType.FLOAT, []);

  const extra = options.extraLoss?.(b, model.output, graph);
  const stopGradient: string[] = [...(extra?.stopGradient ?? [])];
  // crossEntropyWeight 0: the extra term is the whole loss (EfficientQAT's block MSE, whose output is no logits).
  let loss: string;
  if (extra?.crossEntropyWeight === 0) loss = extra.loss;
  else {
    loss = languageModel
      ? tokenCrossEntropy(b, model.output, labels, { fused })
      : softmaxCrossEntropy(b, model.output, labels, options.classes, options.labelSmoothing ?? 0);
    if (extra) {
      if (extra.crossEntropyWeight !== undefined && extra.crossEntropyWeight !== 1) loss = b.mul(loss, b.scalarLike(extra.crossEntropyWeight, loss));
      loss = b.add(loss, extra.loss);
    }
  }
  const pluginParts = (options.plugins ?? []).map((p) => p.build(b, graph, model));
  for (const part of pluginParts) {
    if (part.loss) loss = b.add(loss, part.loss);
    stopGradient.push(...(part.stopGradient ?? []));
  }
  loss = b.op1('Identity', [loss], {}, { outputs: ['loss'] });
  const correctValue = languageModel ? tokenCorrectCount(b, model.output, labels) : correctCount(b, model.output, labels);
  const correct = b.op1('Identity', [correctValue], {}, { outputs: ['correct'] });

  const grads = differentiate(graph, { loss, wrt: model.params, stopGradient });
  convsFromPatches(graph);
  if (fused) sumLeadingAxesByMatMul(graph);
  const accumulation = (options.accumulate ?? 1) > 1 ? accumulateGradients(b, model.params, grads, options.accumulate!) : undefined;
  const noDecay = new Set(model.noDecay);
  const opt = emitOptimizer(
    b,
    model.params.map((p) => ({ param: p, grad: grads.get(p)!, decay: !noDecay.has(p) })),
    options.optimizer,
    lr,
    step,
  );
  if (accumulation) accumulation.gate(opt.updated, opt.state);
  const gradNorm = b.op1('Identity', [opt.gradNorm], {}, { outputs: ['grad_norm'] });
  for (const part of pluginParts) part.afterUpdate?.(opt.updated);

  const carried: CarriedValue[] = [];
  for (const p of model.params) {
    const out = b.op1('Identity', [opt.updated.get(p)!], {}, { outputs: [`${p}/next`] });
    carried.push({ input: p, output: out, kind: 'param', initial: initial.get(p)! });
  }
  for (const s of [...opt.state, ...(accumulation?.state ?? [])]) carried.push({ input: s.input, output: s.output, kind: 'optimizer', initial: s.initial });
  for (const r of runningStats) {
    carried.push({ input: r.mean, output: r.newMean, kind: 'running-stat', initial: initial.get(r.mean)! });
    carried.push({ input: r.var, output: r.newVar, kind: 'running-stat', initial: initial.get(r.var)! });
  }
  for (const o of observers) {
    carried.push({ input: o.min, output: o.newMin, kind: 'running-stat', initial: initial.get(o.min)! });
    carried.push({ input: o.max, output: o.newMax, kind: 'running-stat', initial: initial.get(o.max)! });
  }
  // Frozen BN statistics still travel with the run (evaluation and checkpoints read them), unchanged.
  if (options.freezeBatchNorm) {
    for (const name of model.runningStats) {
      const out = b.op1('Identity', [name], {}, { outputs: [`${name}/next`] });
      carried.push({ input: name, output: out, kind: 'running-stat', initial: initial.get(name)! });
    }
  }
  const metrics: Record<string, string> = {};
  for (const part of pluginParts) {
    for (const st of part.state ?? []) carried.push({ ...st, kind: 'optimizer' });
    Object.assign(metrics, part.metrics ?? {});
  }
  for (const v of [loss, correct, gradNorm, ...carried.map((c) => c.output), ...Object.values(metrics)]) b.output(v);
  elideOutputCopies(graph);
  return { graph, input: model.input, labels, lr, step, observe, apply: accumulation?.apply, loss, correct, gradNorm, carried, metrics };
}

/**
 * Gradient accumulation in the step graph: each parameter's gradient is added to a carried sum; the optimizer
 * sees sum / K; `gate` then keeps parameters and optimizer state unchanged unless `apply` is 1, and the sums
 * restart from zero after an applied step.
 */
function accumulateGradients(b: GraphBuilder, params: string[], grads: Map<string, string>, k: number) {
  const apply = b.input('apply', DType.FLOAT, []);
  const applying = b.greater(apply, b.constant(0.5));
  const keep = b.sub(b.constant(1), apply);
  const state: { input: string; output: string; initial: Tensor }[] = [];
  for (const p of params) {
    const t = b.type(p);
    const input = b.input(`grad_accum/${p}`, t.dtype, t.shape);
    const total = b.add(input, grads.get(p)!);
    const output = b.op1('Mul', [total, keep], {}, { outputs: [`grad_accum/${p}/next`] });
    state.push({ input, output, initial: Tensor.zeros(t.dtype, t.shape as number[]) });
    grads.set(p, b.mul(total, b.constant(1 / k)));
  }
  const gate = (updated: Map<string, string>, slots: { input: string; output: string }[]) => {
    for (const [p, v] of updated) updated.set(p, b.where(applying, v, p));
    const producers = b.graph.producers();
    for (const slot of slots) {
      const node = producers.get(slot.output)!;
      node.inputs[0] = b.where(applying, node.inputs[0], slot.input);
    }
  };
  return { apply, state, gate };
}

function requireSequenceLength(model: Model, options: TrainStepOptions): number {
  const t = options.sequenceLength ?? model.lm?.context;
  if (!t || !Number.isInteger(t) || t < 1) throw new Error(`model '${model.name}': a language-model training step needs a sequence length (--context)`);
  if (model.lm && t > model.lm.context) {
    throw new Error(`--context ${t} is longer than model '${model.name}' was built for (${model.lm.context} positions)`);
  }
  return t;
}

/**
 * Hugging Face style decoder inputs of an imported language model become constants of the training step:
 * attention_mask all ones (every window is full) and position_ids 0..T-1 in each row.
 */
function fixLanguageModelInputs(graph: Graph, model: Model, batch: number, length: number): void {
  const fixed = [model.lm?.attentionMask, model.lm?.positionIds].filter((n): n is string => !!n);
  for (const name of fixed) {
    const info = graph.inputs.find((v) => v.name === name);
    if (!info) continue;
    const rows = info.shape.length === 2 && info.shape[0] === 1 ? 1 : batch;
    const values = new BigInt64Array(rows * length);
    for (let i = 0; i < values.length; i++) values[i] = name === model.lm?.positionIds ? BigInt(i % length) : 1n;
    graph.inputs = graph.inputs.filter((v) => v.name !== name);
    graph.initializers.set(name, new Tensor(DType.INT64, [rows, length], values));
    graph.types.set(name, { dtype: DType.INT64, shape: [rows, length] });
  }
}

/** The inference graph (BN with running statistics), batch dim symbolic, for evaluation. */
export function buildEvalGraph(model: Model): Graph {
  return buildEvalGraphWithBiases(model).graph;
}

/**
 * The inference graph and the biases it fake-quantizes on their int32 grid (quant/integer-bias.ts): the export
 * stores exactly those codes.
 */
export function buildEvalGraphWithBiases(model: Model): { graph: Graph; integerBiases: IntegerBias[] } {
  const graph = model.graph.clone();
  graph.name = `${model.name}_eval`;
  return { graph, integerBiases: simulateIntegerBiases(graph, model) };
}
