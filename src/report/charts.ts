/**
 * Vega-Lite specs of the report's charts, one function per chart, data inlined as `values` (a report opens from
 * disk: nothing is fetched). Rendering to SVG is render-svg.ts's job.
 */
import type { QuantHealthPoint } from '../train/quant-health.js';
import type { HistoryPoint } from '../train/run-history.js';

export type VegaLiteSpec = Record<string, unknown>;

const WIDTH = 560;
const HEIGHT = 260;

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';
/** Legends wide enough for run names and quant-health measures (Vega-Lite cuts labels at 160 px by default). */
const CONFIG = { font: 'sans-serif', legend: { labelLimit: 320, titleLimit: 320 }, axis: { titleFontSize: 12, labelFontSize: 11 }, title: { fontSize: 14 } };

function base(title: string, values: unknown[]): VegaLiteSpec {
  return { $schema: SCHEMA, title, width: WIDTH, height: HEIGHT, data: { values }, config: CONFIG };
}

/** An accuracy-like metric (fractions in [0, 1]) is shown in percent. */
const isFraction = (metric: string, values: number[]) => /accuracy|agreement/i.test(metric) && values.every((v) => v >= 0 && v <= 1);

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

/**
 * Accuracy or perplexity against weight bits; colour = method (fp32, PTQ-<calib>, QAT), shape = setting. A line
 * joins one method's points of one setting across bits, so where PTQ collapses and QAT holds reads at a glance.
 */
export function metricVsBitsSpec(rows: ResultRow[], metric: string): VegaLiteSpec {
  const values = rows.map((r) => ({ ...r, bits_label: bitsLabel(r.bits), series: `${r.method} / ${r.setting}` }));
  const order = [...new Set([...values].sort((a, b) => a.bits - b.bits).map((v) => v.bits_label))];
  const fraction = isFraction(metric, rows.map((r) => r.metric));
  const x = { field: 'bits_label', type: 'ordinal', sort: order, title: 'weight bits', axis: { labelAngle: 0 } };
  const y = { field: 'metric', type: 'quantitative', title: metric, scale: { zero: false }, ...(fraction ? { axis: { format: '.1%' } } : {}) };
  const settings = new Set(rows.map((r) => r.setting)).size;
  return {
    ...base(`${metric} against weight bits`, values),
    layer: [
      { mark: { type: 'line', strokeWidth: 1.5, opacity: 0.6 }, encoding: { x, y, color: { field: 'method', type: 'nominal', title: 'method' }, detail: { field: 'series' } } },
      {
        mark: { type: 'point', filled: true, size: 90, opacity: 1 },
        encoding: {
          x,
          y,
          color: { field: 'method', type: 'nominal', title: 'method' },
          ...(settings > 1 ? { shape: { field: 'setting', type: 'nominal', title: 'setting' } } : {}),
          tooltip: [{ field: 'setting' }, { field: 'method' }, { field: 'bits' }, { field: 'metric', format: fraction ? '.2%' : '.4f' }],
        },
      },
    ],
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
  const series = ['train', 'test', 'validation'].filter((x) => values.some((v) => v.series === x));
  return {
    ...base('loss over training steps', values),
    mark: { type: 'line', point: false, strokeWidth: 1.5 },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step' },
      y: { field: 'loss', type: 'quantitative', title: 'loss', scale: { zero: false } },
      color: { field: 'run', type: 'nominal', title: 'run' },
      // Training loss solid, evaluation loss dashed.
      strokeDash: { field: 'series', type: 'nominal', title: 'series', scale: { domain: series, range: series.map((x) => (x === 'train' ? [1, 0] : [6, 3])) } },
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
      y: { field: 'value', type: 'quantitative', title: lm ? 'validation perplexity' : 'test accuracy', scale: { zero: false }, ...(lm ? {} : { axis: { format: '.1%' } }) },
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

/** Per-layer accuracy drop when only that layer is quantized (qat sensitivity), in percentage points. */
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

/** Grids with more points than this draw only their clip limits: 256 rules would fill the plot with red. */
const MAX_GRID_RULES = 33;

/**
 * A weight histogram (bars) over the quantization grid: a rule at each grid point s (q - z) for grids of up to
 * 5 bits, and for finer grids the representable range as a band with its clip limits as solid rules.
 */
export function weightHistogramSpec(h: WeightHistogram): VegaLiteSpec {
  const x = { field: 'grid', type: 'quantitative', title: h.unit };
  const lo = h.grid[0];
  const hi = h.grid[h.grid.length - 1];
  const gridLayers =
    h.grid.length <= MAX_GRID_RULES
      ? [{ data: { values: h.grid.map((g) => ({ grid: g })) }, mark: { type: 'rule', color: '#d62728', opacity: 0.5 }, encoding: { x } }]
      : [
          { data: { values: [{ grid: lo, grid_end: hi }] }, mark: { type: 'rect', color: '#d62728', opacity: 0.07 }, encoding: { x, x2: { field: 'grid_end' } } },
          { data: { values: [{ grid: lo }, { grid: hi }] }, mark: { type: 'rule', color: '#d62728', opacity: 0.8, strokeWidth: 1.5 }, encoding: { x } },
        ];
  // Short: headless Vega estimates text widths, and a long subtitle widens the chart's left margin.
  const gridNote = h.grid.length <= MAX_GRID_RULES ? `${h.grid.length} points` : `${h.grid.length} points (red: clip limits)`;
  return {
    $schema: SCHEMA,
    title: { text: `${h.run}: ${h.layer}`, subtitle: `${h.bits}-bit grid, ${gridNote}; ${(h.clipped * 100).toFixed(2)}% clipped` },
    width: WIDTH,
    height: 180,
    config: CONFIG,
    layer: [
      ...gridLayers,
      {
        data: { values: h.bins },
        mark: { type: 'rect', color: '#1f77b4', opacity: 0.85 },
        encoding: {
          x: { field: 'start', type: 'quantitative', title: h.unit },
          x2: { field: 'end' },
          y: { field: 'count', type: 'quantitative', title: 'weights per bin' },
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
      y: { field: 'fraction', type: 'quantitative', title: 'fraction (drift: mean |s/s0 - 1|)', axis: { format: '.1%' } },
      color: { field: 'measure', type: 'nominal', title: 'measure' },
    },
  };
}
