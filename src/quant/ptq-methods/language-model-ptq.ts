/**
 * Post-training quantization of a language model by RTN, GPTQ, AWQ or SmoothQuant (`qat quantize --from LM_RUN
 * --method ...`). Every method ends in the SAME fake-quant graph QAT trains (prepareLanguageModelQat with the
 * learned scales replaced by min/max ones): RTN and SmoothQuant keep its in-graph min/max weight scales; GPTQ and
 * AWQ freeze each weight quantizer at the method's codes and scales (fixed-scales.ts). The result is an ordinary
 * PTQ model (model.quant.method 'ptq', calib = the method) that evaluation, export and report read like any other.
 */
import { Graph, topologicalOrder } from '../../ir/graph.js';
import { Tensor } from '../../ir/tensor.js';
import * as ort from '../../runtime/ort.js';
import { Model } from '../../models/model.js';
import { WindowSampler } from '../../data/text-windows.js';
import type { TokenStream } from '../../data/text.js';
import { languageModelSideInputs } from '../../train/evaluate-language-model.js';
import { fetchValues } from '../../export/fetch-values.js';
import { InputError } from '../../validate/schema.js';
import { QatConfig } from '../presets.js';
import { ptqConfig, quantizeLanguageModelRtn } from '../ptq.js';
import { prepareLanguageModelQat } from '../qat.js';
import { fixWeightQuantizers } from './fixed-scales.js';
import { gptqQuantize, reconstructionError } from './gptq.js';
import { applyInputScales, foldKinds, ScaleFold, scaleGroups } from './input-scales.js';
import { CalibrationBatch, collectLayerInputStats } from './layer-inputs.js';
import { LinearTarget, linearTargets, SkippedWeight, storedFromMatrix, targetMatrix } from './layer-targets.js';
import { GroupWeight, scaledGram, searchAwqScale, searchClipping } from './awq.js';
import { smoothQuantScales, weightColumnMaxima } from './smoothquant.js';
import { QuantizedMatrix, roundToNearest, weightGrid } from './weight-grid.js';

export const LM_PTQ_METHODS = ['rtn', 'gptq', 'awq', 'smoothquant'] as const;
export type LmPtqMethod = (typeof LM_PTQ_METHODS)[number];
/** `--calib-windows` default and bounds (issue 11: 128 windows of the training split). */
export const DEFAULT_CALIB_WINDOWS = 128;
export const MAX_CALIB_WINDOWS = 4096;
/** Windows per ONNX Runtime call while calibrating. */
const CALIB_BATCH_WINDOWS = 8;

export interface LmPtqOptions {
  method: LmPtqMethod;
  /** GPTQ: columns in decreasing order of diag(H). */
  actOrder?: boolean;
  /** Preset name recorded in model.quant. */
  preset?: string;
  threads?: number;
  log?: (line: string) => void;
}

/** What a method did to one weight: its output error ||X (W - Q)^T||^2 / n beside RTN's on the same inputs. */
export interface LmPtqLayer {
  tensor: string;
  layer: string;
  /** Output error of the method's weights and of round-to-nearest (GPTQ/AWQ; in the layer's own input coordinates). */
  error?: number;
  rtn_error?: number;
  /** AWQ/SmoothQuant: how the group's input scale was folded ('none': no producer absorbs it, left unscaled). */
  fold?: ScaleFold | 'none';
  /** AWQ: the alpha chosen and whether the clipping search was kept. */
  alpha?: number;
  clipped?: boolean;
}

export interface LmPtqResult {
  model: Model;
  layers: LmPtqLayer[];
  /** Weights the method left at RTN (token embeddings, ternary weights) and why. */
  skipped: SkippedWeight[];
  /** AWQ/SmoothQuant: the float model with the input scales folded in (the same function as the fp32 model). */
  float?: Model;
}

/**
 * `count` calibration windows of `context` tokens from the training split at the positions WindowSampler draws
 * for (seed, step 0), fed CALIB_BATCH_WINDOWS at a time with the model's side inputs.
 */
export function calibrationWindows(model: Model, train: TokenStream, count: number, context: number, seed = 0): CalibrationBatch[] {
  if (!Number.isInteger(count) || count < 1 || count > MAX_CALIB_WINDOWS) throw new InputError(`--calib-windows must be an integer in 1..${MAX_CALIB_WINDOWS}, got ${count}`);
  const starts = new WindowSampler(train, { batch: count, context, seed }).starts(0);
  const batches: CalibrationBatch[] = [];
  for (let i = 0; i < starts.length; i += CALIB_BATCH_WINDOWS) {
    const rows = starts.slice(i, i + CALIB_BATCH_WINDOWS);
    const ids = new BigInt64Array(rows.length * context);
    rows.forEach((start, r) => {
      for (let t = 0; t < context; t++) ids[r * context + t] = BigInt(train.tokens[start + t]);
    });
    batches.push({ ...languageModelSideInputs(model, rows.length, context), [model.input]: new ort.Tensor('int64', ids, [rows.length, context]) });
  }
  return batches;
}

/** Refuses a method the preset cannot take, naming what would work. */
export function checkMethodFitsPreset(method: LmPtqMethod, config: QatConfig, preset: string): void {
  if (method === 'smoothquant' && (config.weight.bits !== 8 || config.activation.bits !== 8)) {
    throw new InputError(`--method smoothquant: SmoothQuant moves activation outliers into int8 weights and applies to w8a8 (8-bit weights, 8-bit per-token activations); '${preset}' has ${config.weight.bits}-bit weights and ${config.activation.bits >= 16 ? 'float' : `${config.activation.bits}-bit`} activations: use --quant w8a8, or --method gptq or awq`);
  }
  if ((method === 'gptq' || method === 'awq') && (config.weight.method === 'ternary' || config.weight.method === 'binary')) {
    throw new InputError(`--method ${method}: '${preset}' has ${config.weight.method} weights, which have no uniform grid to search; use --method rtn (or a preset with 2..8-bit weights: w8a8, w4a16-g32, w4a8-g32, w3a16-g32, w2a16-g32)`);
  }
}

/** The fp32 language model quantized by `options.method` on the calibration batches. */
export async function quantizeLanguageModelPtq(fp32: Model, config: QatConfig, calib: CalibrationBatch[], options: LmPtqOptions): Promise<LmPtqResult> {
  const preset = options.preset ?? 'custom';
  const method = options.method;
  if (!(LM_PTQ_METHODS as readonly string[]).includes(method)) throw new InputError(`--method: invalid value '${method}'; valid: ${LM_PTQ_METHODS.join(', ')}`);
  if (options.actOrder && method !== 'gptq') throw new InputError(`--act-order applies to --method gptq only (got --method ${method})`);
  checkMethodFitsPreset(method, config, preset);
  const ptq = ptqConfig(config);
  const { targets, skipped } = method === 'rtn' ? { targets: [], skipped: [] } : linearTargets(fp32, ptq);
  if (method !== 'rtn' && !targets.length) throw new InputError(`--method ${method}: model '${fp32.name}' has no MatMul/Gemm weight the preset quantizes on a uniform grid (${skipped.map((s) => `${s.tensor}: ${s.reason}`).join('; ') || 'none quantized'}); use --method rtn`);
  if (method !== 'rtn' && !calib.length) throw new Error(`--method ${method} needs at least one calibration window`);
  const log = options.log ?? (() => {});
  const threads = options.threads ?? 2;
  let result: LmPtqResult;
  if (method === 'rtn') result = { model: quantizeLanguageModelRtn(fp32, config, preset), layers: [], skipped: [] };
  else if (method === 'gptq') result = await gptq(fp32, ptq, preset, targets, calib, { actOrder: !!options.actOrder, threads, log });
  else result = await inputScaled(fp32, ptq, preset, method, targets, calib, threads, log);
  result.skipped = [...skipped, ...result.skipped];
  const model = result.model;
  return { ...result, model: { ...model, quant: { ...model.quant!, method: 'ptq', calib: method } } };
}

/** Target layers in the graph's topological order, grouped by the activation they read (qkv share one). */
function groupsInOrder(graph: Graph, targets: LinearTarget[]): { input: string; targets: LinearTarget[] }[] {
  const position = new Map(topologicalOrder(graph).map((n, i) => [n.name, i]));
  const groups = new Map<string, LinearTarget[]>();
  for (const t of [...targets].sort((a, b) => position.get(a.layer)! - position.get(b.layer)!)) groups.set(t.input, [...(groups.get(t.input) ?? []), t]);
  return [...groups].map(([input, ts]) => ({ input, targets: ts }));
}

/** Names of the nodes `value` depends on. */
function ancestors(graph: Graph, value: string): Set<string> {
  const producers = graph.producers();
  const seen = new Set<string>();
  const stack = [value];
  while (stack.length) {
    const p = producers.get(stack.pop()!);
    if (!p || seen.has(p.name)) continue;
    seen.add(p.name);
    for (const i of p.inputs) if (i) stack.push(i);
  }
  return seen;
}

const tiedSkipped = (targets: LinearTarget[]): SkippedWeight[] =>
  targets.filter((t) => t.tied).map((t) => ({ tensor: t.tensor, reason: 'tied embedding / LM head (kept at RTN: one table for both)' }));

const setMatrix = (graph: Graph, t: LinearTarget, m: ArrayLike<number>) => {
  const stored = graph.initializers.get(t.tensor)!;
  graph.initializers.set(t.tensor, new Tensor(stored.dtype, stored.dims, storedFromMatrix(t, m)));
};

/**
 * GPTQ, sequentially as the reference quantizes a model (Frantar et al. 2022, Section 5: "we quantize ... layer by
 * layer, with the inputs of each layer computed by the already quantized layers before it"): the Linears are
 * visited in graph order, grouped by the activation they read; each group's Hessian comes from the float graph in
 * which every earlier target already holds its GPTQ weights and every weight the method skips (token embeddings)
 * its RTN values, so each layer corrects the error of the quantized layers before it. Activations stay float
 * while the Hessians are collected (GPTQ is weight-only; an a8 preset adds its per-token quantizers afterwards).
 * A tied embedding/LM head stays at RTN, as the reference leaves embeddings and head unquantized.
 */
async function gptq(fp32: Model, config: QatConfig, preset: string, all: LinearTarget[], calib: CalibrationBatch[], o: { actOrder: boolean; threads: number; log: (line: string) => void }): Promise<LmPtqResult> {
  const rtn = prepareLanguageModelQat(fp32, config, preset);
  // A tied table also feeds the embedding, whose error the head's Hessian does not weigh: it stays at RTN
  // (docs/decisions.md: GPTQ on it with the head's Hessian lost to RTN at 4 and 3 bits).
  const targets = all.filter((t) => !t.tied);
  const current = fp32.graph.clone();
  const targetTensors = new Set(targets.map((t) => t.tensor));
  const others = rtn.quant!.quantizers.filter((q) => q.role === 'weight' && !targetTensors.has(q.tensor));
  if (others.length) {
    const values = await fetchValues(rtn, others.map((q) => q.output), o.threads);
    for (const q of others) current.initializers.set(q.tensor, values.get(q.output)!);
  }
  const pending = groupsInOrder(current, targets);
  const layers: LmPtqLayer[] = [];
  const fixes: { target: LinearTarget; result: QuantizedMatrix }[] = [];
  const unquantized = new Set(targets.map((t) => t.layer));
  let pass = 0;
  while (pending.length) {
    // Every group whose input no unquantized target feeds is ready; one forward pass collects all their Hessians.
    const ready = pending.filter((g) => {
      const up = ancestors(current, g.input);
      return ![...unquantized].some((l) => up.has(l));
    });
    if (!ready.length) throw new Error(`GPTQ: no layer is ready (cycle among ${pending.map((g) => g.targets[0].layer).join(', ')})`);
    pass++;
    o.log(`GPTQ pass ${pass}: Hessians of ${ready.flatMap((g) => g.targets.map((t) => t.layer)).join(', ')} on ${calib.length} batches`);
    const stats = await collectLayerInputStats(current, ready.map((g) => g.input), calib, { threads: o.threads });
    for (const g of ready) {
      const st = stats.get(g.input)!;
      for (const t of g.targets) {
        const w = targetMatrix(t, current.initializers.get(t.tensor)!);
        const grid = weightGrid(t.spec, t.cols, `weight '${t.tensor}'`);
        const q = gptqQuantize(w, t.rows, t.cols, st.gram!, grid, { actOrder: o.actOrder, where: `weight '${t.tensor}'` });
        const r = roundToNearest(w, t.rows, t.cols, grid);
        layers.push({ tensor: t.tensor, layer: t.layer, error: reconstructionError(w, q.values, t.rows, t.cols, st.gram!), rtn_error: reconstructionError(w, r.values, t.rows, t.cols, st.gram!) });
        setMatrix(current, t, q.values);
        fixes.push({ target: t, result: q });
        unquantized.delete(t.layer);
      }
      pending.splice(pending.indexOf(g), 1);
    }
  }
  return { model: fixWeightQuantizers(rtn, fixes), layers, skipped: tiedSkipped(all) };
}

/**
 * AWQ and SmoothQuant: a per-input-channel scale per group of Linears reading one activation, folded into the
 * activation's producer (input-scales.ts). On a zoo model, groups whose producer cannot absorb it (GPT's GELU
 * before the second MLP Linear, the attention output) stay unscaled: the exported KV-cache decoder is rebuilt from
 * the parameters, so a scale must live in a parameter (an imported decoder takes an explicit Mul instead). Groups are scaled in reverse graph order, so a fold into an earlier
 * Linear's output columns (Llama's up projection, for the down projection's scale) happens before that Linear's
 * own group is searched on its current weights. Statistics come from one float pass: a fold changes only the
 * folded activation (X diag(1/s), whose Gram is diag(1/s) G diag(1/s)), never another group's input.
 * AWQ then searches each weight's clipping on its scaled weights and freezes the quantizers at the result;
 * SmoothQuant keeps the in-graph min/max (per-channel int8) weights of RTN.
 */
async function inputScaled(fp32: Model, config: QatConfig, preset: string, method: 'awq' | 'smoothquant', targets: LinearTarget[], calib: CalibrationBatch[], threads: number, log: (line: string) => void): Promise<LmPtqResult> {
  const groups = scaleGroups(targets);
  const kinds = foldKinds(fp32, groups);
  // An imported decoder runs as its own graph (no decoder rebuilt from parameters), so AWQ may scale the other
  // groups too, by a Mul before them (AWQ's ScaledActivation); SmoothQuant only fuses into a producer (Section 4).
  const explicit = method === 'awq' && !fp32.lm?.arch;
  const order = groupsInOrder(fp32.graph, targets).map((g) => g.input);
  const byInput = new Map(groups.map((g, i) => [g.input, { group: g, kind: kinds[i] }]));
  const inputs = method === 'awq' ? [...new Set(targets.map((t) => t.input))] : groups.filter((_, i) => kinds[i] !== 'explicit').map((g) => g.input);
  log(`${method === 'awq' ? 'AWQ' : 'SmoothQuant'}: statistics of ${inputs.length} layer inputs on ${calib.length} batches`);
  const stats = await collectLayerInputStats(fp32.graph, inputs, calib, { threads, gram: method === 'awq' });
  let current = fp32;
  const scaleOf = new Map<string, Float64Array>();
  const info = new Map<string, LmPtqLayer>();
  for (const input of [...order].reverse()) {
    const entry = byInput.get(input);
    if (!entry) continue;
    const { group, kind } = entry;
    const foldable = kind !== 'explicit' || explicit;
    for (const t of group.targets) info.set(t.tensor, { tensor: t.tensor, layer: t.layer, fold: foldable ? kind : 'none' });
    if (!foldable) continue;
    const st = stats.get(input)!;
    const weights: GroupWeight[] = group.targets.map((t) => ({ w: targetMatrix(t, current.graph.initializers.get(t.tensor)!), rows: t.rows, cols: t.cols, grid: weightGrid(t.spec, t.cols, `weight '${t.tensor}'`) }));
    let s: Float64Array;
    if (method === 'awq') {
      const found = searchAwqScale(weights, st.gram!, st.meanAbs);
      s = found.s;
      for (const t of group.targets) info.get(t.tensor)!.alpha = found.alpha;
    } else {
      s = smoothQuantScales(st.maxAbs, weightColumnMaxima(weights, group.channels));
    }
    scaleOf.set(input, s);
    current = applyInputScales(current, [{ group, s }], { explicit }).model;
  }
  const base = prepareLanguageModelQat(current, config, preset);
  if (method === 'smoothquant') return { model: base, layers: [...info.values()], skipped: [], float: current };
  const fixes: { target: LinearTarget; result: QuantizedMatrix }[] = [];
  // A tied table also feeds the embedding, whose error the head's inputs do not measure: it stays at RTN.
  const searched = targets.filter((t) => !t.tied);
  for (const t of searched) {
    const st = stats.get(t.input)!;
    const s = scaleOf.get(t.input);
    const gram = s ? scaledGram(st.gram!, s) : st.gram!;
    const w = targetMatrix(t, current.graph.initializers.get(t.tensor)!);
    const clip = searchClipping(w, t.rows, t.cols, weightGrid(t.spec, t.cols, `weight '${t.tensor}'`), gram);
    fixes.push({ target: t, result: clip.result });
    const entry = info.get(t.tensor) ?? { tensor: t.tensor, layer: t.layer, fold: 'none' as const };
    info.set(t.tensor, { ...entry, clipped: clip.clipped, error: clip.error });
  }
  // RTN's error on the unscaled weights, for the report (the scale search's alpha 0 candidate).
  for (const t of searched) {
    const st = stats.get(t.input)!;
    const w = targetMatrix(t, fp32.graph.initializers.get(t.tensor)!);
    const r = roundToNearest(w, t.rows, t.cols, weightGrid(t.spec, t.cols, `weight '${t.tensor}'`));
    info.get(t.tensor)!.rtn_error = reconstructionError(w, r.values, t.rows, t.cols, st.gram!);
  }
  return { model: fixWeightQuantizers(base, fixes), float: current, layers: searched.map((t) => info.get(t.tensor)!), skipped: tiedSkipped(targets) };
}
