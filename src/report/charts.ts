/**
 * Vega-Lite specs of the report's charts, one function per chart, data inlined as `values` (a report opens from
 * disk: nothing is fetched). Rendering to SVG is render-svg.ts's job.
 */
import type { QuantHealthPoint } from '../train/quant-health.js';
import type { HistoryPoint } from '../train/run-history.js';

export type VegaLiteSpec = Record<string, unknown>;

const WIDTH = 560;
const HEIGHT = 260;

function base(title: string, values: unknown[]): VegaLiteSpec {
  return { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', title, width: WIDTH, height: HEIGHT, data: { values }, config: { font: 'sans-serif' } };
}

/** One row of a results table (the bits chart and table): a setting, a method, weight bits, the metric. */
export interface ResultRow {
  setting: string;
  method: string;
  bits: number;
  metric: number;
}

/** Bits as the x category: fp32 at 32 is its own category, the others sorted by bits. */
export function bitsLabel(bits: number): string {
  return bits >= 32 ? 'fp32' : Number.isInteger(bits) ? `${bits}` : bits.toFixed(2);
}

/** Accuracy or perplexity against weight bits; colour = method (fp32, PTQ-<calib>, QAT), shape = setting. */
export function metricVsBitsSpec(rows: ResultRow[], metric: string): VegaLiteSpec {
  const values = rows.map((r) => ({ ...r, bits_label: bitsLabel(r.bits) }));
  const order = [...new Set([...values].sort((a, b) => a.bits - b.bits).map((v) => v.bits_label))];
  return {
    ...base(`${metric} against weight bits`, values),
    mark: { type: 'point', filled: true, size: 90 },
    encoding: {
      x: { field: 'bits_label', type: 'ordinal', sort: order, title: 'weight bits', axis: { labelAngle: 0 } },
      y: { field: 'metric', type: 'quantitative', title: metric, scale: { zero: false } },
      color: { field: 'method', type: 'nominal', title: 'method' },
      shape: { field: 'setting', type: 'nominal', title: 'setting' },
      tooltip: [{ field: 'setting' }, { field: 'method' }, { field: 'bits' }, { field: 'metric', format: '.4f' }],
    },
  };
}

/** Training loss (and evaluation loss where recorded) over steps, one colour per run. */
export function lossCurvesSpec(runs: { name: string; history: HistoryPoint[] }[]): VegaLiteSpec {
  const values: { run: string; step: number; loss: number; series: string }[] = [];
  for (const r of runs) {
    for (const p of r.history) {
      values.push({ run: r.name, step: p.step, loss: p.train_loss, series: 'train' });
      const evalLoss = p.val_loss ?? p.test_loss;
      if (evalLoss !== undefined) values.push({ run: r.name, step: p.step, loss: evalLoss, series: p.val_loss !== undefined ? 'validation' : 'test' });
    }
  }
  return {
    ...base('loss over training steps', values),
    mark: { type: 'line', point: false, strokeWidth: 1.5 },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step' },
      y: { field: 'loss', type: 'quantitative', title: 'loss', scale: { zero: false } },
      color: { field: 'run', type: 'nominal', title: 'run' },
      strokeDash: { field: 'series', type: 'nominal', title: 'series' },
      detail: { field: 'series' },
    },
  };
}

/** The evaluation metric at each evaluation (test accuracy, or validation perplexity), one colour per run. */
export function evalCurvesSpec(runs: { name: string; history: HistoryPoint[] }[], lm: boolean): VegaLiteSpec {
  const field = lm ? 'val_perplexity' : 'test_accuracy';
  const values = runs.flatMap((r) => r.history.filter((p) => p[field] !== undefined).map((p) => ({ run: r.name, step: p.step, value: p[field] })));
  return {
    ...base(`${lm ? 'validation perplexity' : 'test accuracy'} at each evaluation`, values),
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step' },
      y: { field: 'value', type: 'quantitative', title: lm ? 'validation perplexity' : 'test accuracy', scale: { zero: false } },
      color: { field: 'run', type: 'nominal', title: 'run' },
    },
  };
}

/** Learning rate over steps. */
export function learningRateSpec(runs: { name: string; history: HistoryPoint[] }[]): VegaLiteSpec {
  const values = runs.flatMap((r) => r.history.map((p) => ({ run: r.name, step: p.step, lr: p.lr })));
  return {
    ...base('learning rate', values),
    height: 140,
    mark: { type: 'line' },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step' },
      y: { field: 'lr', type: 'quantitative', title: 'learning rate' },
      color: { field: 'run', type: 'nominal', title: 'run' },
    },
  };
}

/** Per-layer accuracy drop when only that layer is quantized (qat sensitivity). */
export function sensitivitySpec(layers: { layer: string; opType: string; drop: number }[], bits: number, run: string): VegaLiteSpec {
  const values = layers.map((l, i) => ({ ...l, order: i, drop_points: l.drop * 100 }));
  return {
    ...base(`${run}: accuracy drop with one layer at ${bits} bits`, values),
    mark: { type: 'bar' },
    encoding: {
      x: { field: 'layer', type: 'nominal', sort: { field: 'order' }, title: 'layer (graph order)', axis: { labelAngle: -40 } },
      y: { field: 'drop_points', type: 'quantitative', title: 'accuracy drop (points)' },
      color: { field: 'opType', type: 'nominal', title: 'op' },
      tooltip: [{ field: 'layer' }, { field: 'opType' }, { field: 'drop_points', format: '.2f' }],
    },
  };
}

/** Histogram bins of a weight tensor and the quantization grid points over the same axis. */
export interface WeightHistogram {
  run: string;
  layer: string;
  /** 'weight' (per-tensor: weight units) or 'w / s' (per channel or group: each weight in units of its own scale). */
  unit: string;
  bits: number;
  bins: { start: number; end: number; count: number }[];
  grid: number[];
  clipped: number;
}

/** A weight histogram (bars) with the grid points s (q - z) as rules. */
export function weightHistogramSpec(h: WeightHistogram): VegaLiteSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: `${h.run}: ${h.layer} (${h.bits}-bit grid; ${(h.clipped * 100).toFixed(2)}% clipped)`,
    width: WIDTH,
    height: 180,
    config: { font: 'sans-serif' },
    layer: [
      {
        data: { values: h.grid.map((g) => ({ grid: g })) },
        mark: { type: 'rule', color: '#d62728', opacity: h.grid.length > 64 ? 0.15 : 0.45 },
        encoding: { x: { field: 'grid', type: 'quantitative', title: h.unit } },
      },
      {
        data: { values: h.bins },
        mark: { type: 'rect', color: '#1f77b4', opacity: 0.85 },
        encoding: {
          x: { field: 'start', type: 'quantitative', title: h.unit },
          x2: { field: 'end' },
          y: { field: 'count', type: 'quantitative', title: 'weights' },
          tooltip: [{ field: 'start', format: '.4g' }, { field: 'end', format: '.4g' }, { field: 'count' }],
        },
      },
    ],
  };
}

/** Quant health of one QAT run over training: one line per measure. */
export function quantHealthSpec(run: string, points: QuantHealthPoint[]): VegaLiteSpec {
  const values: { step: number; measure: string; fraction: number }[] = [];
  for (const p of points) {
    values.push({ step: p.step, measure: 'clipped', fraction: p.clipped });
    if (p.flipped !== undefined) values.push({ step: p.step, measure: 'codes flipped in the step', fraction: p.flipped });
    values.push({ step: p.step, measure: 'scale drift |s/s0 - 1|', fraction: p.scale_drift });
    if (p.oscillating !== undefined) values.push({ step: p.step, measure: 'oscillating', fraction: p.oscillating });
  }
  return {
    ...base(`${run}: quant health over training`, values),
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step' },
      y: { field: 'fraction', type: 'quantitative', title: 'fraction' },
      color: { field: 'measure', type: 'nominal', title: 'measure' },
    },
  };
}
