import path from 'node:path';
import { Shape } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { Model } from '../models/model.js';
import { fetchValues } from '../export/fetch-values.js';
import { loadRun } from '../train/run.js';
import { QuantPlan, Quantizer } from '../quant/prepare.js';
import { QatConfig } from '../quant/presets.js';
import { findLayers, LayerSite } from './layers.js';
import { layerNote, layerQuantizers, quantizerScales, scaleValueNames, specColumn } from './quant-columns.js';
import { InspectReport, LayerRow } from './report.js';
import { valueShapes } from './shapes.js';

const elements = (shape: Shape | undefined | null) => (shape && shape.every((d) => typeof d === 'number') ? (shape as number[]).reduce((a, b) => a * b, 1) : 0);

/** The layer rows shared by every form of a model: names, ops, shapes, parameter counts. */
export function baseRows(layers: LayerSite[], shapes: Map<string, Shape>): LayerRow[] {
  return layers.map((l) => ({
    name: l.name,
    node: l.node.name,
    op: l.node.opType,
    input_shape: shapes.get(l.input) ?? null,
    output_shape: shapes.get(l.output) ?? null,
    weight_shape: shapes.get(l.weight) ?? null,
    parameters: elements(shapes.get(l.weight)) + (l.bias ? elements(shapes.get(l.bias)) : 0),
  }));
}

export interface InspectModelOptions {
  /** Read the scale values from ONNX Runtime (one inference on a zero input): the scale_range columns. Default true. */
  scales?: boolean;
  threads?: number;
  source?: string;
}

/**
 * The layer table of a model in memory (a run's checkpoint, or a model just prepared for QAT): every layer with a
 * weight, and for quantization-aware models each weight's and input's bits, granularity, group, scale method,
 * signedness and where the scale comes from, with the range of its values (learned scales as trained, observed
 * ranges as calibrated), and why a layer differs from the config (first/last layer, overrides).
 */
export async function inspectModel(model: Model, options: InspectModelOptions = {}): Promise<InspectReport> {
  const values = model.quant && options.scales !== false ? await fetchValues(model, scaleValueNames(model.quant.quantizers), options.threads) : new Map<string, Tensor>();
  return modelReport(model, values, options.source);
}

/**
 * inspectModel without ONNX Runtime: the scale ranges come from `values` (scale values by name, as fetchValues
 * returns them) and are left out where absent. `qat train --quant` prints this table before training starts.
 */
export function modelReport(model: Model, values: Map<string, Tensor> = new Map(), source?: string): InspectReport {
  const layers = findLayers(model.graph);
  const rows = baseRows(layers, valueShapes(model.graph));
  const quant = model.quant;
  const notes: string[] = [];
  if (quant) {
    const lm = model.task === 'language-model';
    const compute = layers.filter((l) => lm || l.node.opType !== 'Gather');
    layers.forEach((layer, i) => {
      const { weight, activation } = layerQuantizers(model, layer.node.name);
      const row = rows[i];
      row.weight = weight ? specColumn(weight.spec, 'weight', quantizerScales(weight, values)) : null;
      row.activation = activation ? specColumn(activation.spec, 'activation', quantizerScales(activation, values)) : null;
      const note = layerNote(quant.config, layer, compute.indexOf(layer), compute.length, weight, lm);
      if (note) row.note = note;
      else if (!activation && layer.node.opType !== 'Gather' && lm && quant.config.activation.bits >= 16) row.note = 'inputs stay float (a16)';
      // Per-row zero points: no ORT kernel takes them (MatMulIntegerToFloat / MatMulNBits quantize symmetrically).
      else if (activation && activation.spec.granularity.kind === 'per-token' && !activation.spec.symmetric) row.note = 'asymmetric per-token inputs: simulated in float ops (no ORT integer kernel takes per-row zero points)';
      // Image exports store one constant scale per activation (QuantizeLinear); a dynamic one trains but cannot export.
      else if (activation && !lm && (activation.spec.method === 'absmax' || activation.spec.granularity.kind === 'per-token')) row.note = 'dynamic input scale: trains, but no image export format (qdq, int4, packed) takes it; use minmax, lsq, lsq+ or pact to export';
    });
    const tied = quant.quantizers.filter((q) => q.role === 'weight' && q.layers.length > 1);
    for (const t of tied) notes.push(`'${t.tensor}' is one quantized tensor for ${t.layers.join(' and ')} (tied)`);
    for (const t of tied) {
      const first = rows.find((r) => r.node === t.layers[0]);
      for (const row of rows.filter((r) => t.layers.slice(1).includes(r.node))) {
        row.tied_to = first?.name ?? t.layers[0];
        row.note ??= `tied to ${row.tied_to} (one quantized table)`;
      }
    }
  }
  return {
    source: source ?? model.name,
    kind: 'run',
    model: model.name,
    ...(quant
      ? { quant: { preset: quant.preset ?? 'custom', method: quant.method ?? 'qat', ...(quant.calib ? { calib: quant.calib } : {}), weight_bits: quant.config.weight.bits, activation_bits: quant.config.activation.bits, first_last_bits: quant.config.firstLastBits } }
      : {}),
    layers: rows,
    notes,
  };
}

/**
 * The table a QAT run will have, from planQuantization's plan alone (no calibration, no quantizer inserted):
 * what `qat train --quant --dry-run` prints. The same rows as modelReport of the prepared model, without scales.
 */
export function plannedReport(model: Model, plan: QuantPlan, config: QatConfig, preset?: string, source?: string): InspectReport {
  const quantizers: Quantizer[] = [
    ...plan.weights.map((w): Quantizer => ({ role: 'weight', tensor: w.tensor, output: w.tensor, node: w.node.name, layers: w.layers ?? [w.node.name], spec: w.spec, learned: [] })),
    ...[...plan.activations].map(([tensor, a]): Quantizer => ({ role: 'activation', tensor, output: tensor, node: tensor, layers: a.layers, spec: a.spec, learned: [] })),
  ];
  return modelReport({ ...model, graph: plan.graph, quant: { preset, config, quantizers, folded: plan.folded } }, new Map(), source);
}

/** `qat inspect RUN_DIR`: the layer table of a run's checkpoint. */
export async function inspectRun(runDir: string, options: Omit<InspectModelOptions, 'source'> = {}): Promise<InspectReport> {
  const ckpt = loadRun(runDir);
  const report = await inspectModel(ckpt.model, { ...options, source: path.resolve(runDir) });
  report.notes.unshift(`checkpoint at step ${ckpt.step}${ckpt.model.quant ? '' : '; an fp32 run (no quantizers)'}`);
  return report;
}
