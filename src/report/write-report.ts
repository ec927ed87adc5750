/**
 * `qat report` as a library call: reads run directories (and export reports, and an optional results table), builds
 * a chart for each kind of data that is present, says for each that is absent which command produces it, and
 * writes one self-contained HTML file atomically.
 */
import fs from 'node:fs';
import path from 'node:path';
import '../ops/index.js';
import { writeFileAtomic } from '../onnx/atomic-write.js';
import { InputError } from '../validate/schema.js';
import {
  evalCurvesSpec,
  learningRateSpec,
  lossCurvesSpec,
  metricVsBitsSpec,
  quantHealthSpec,
  ResultRow,
  sensitivitySpec,
  VegaLiteSpec,
  weightHistogramSpec,
} from './charts.js';
import { absent, figure, ReportSection, reportHtml } from './html.js';
import { ExportSummary, loadExportFile, loadReportRun, ReportRun } from './load-runs.js';
import { renderSvg } from './render-svg.js';
import { escapeHtml, exportsTable, resultsTable, runsTable } from './tables.js';
import { exportedFile, measureExportLatency } from './export-latency.js';
import { checkLayersMatched, runHistograms } from './weight-histograms.js';

/** A results table from the demo or a benchmark: rows of (setting, method, bits, metric). */
export interface ResultsTable {
  title?: string;
  /** The metric's name (the y axis): e.g. 'test accuracy', 'validation perplexity'. */
  metric: string;
  rows: ResultRow[];
}

export interface WriteReportOptions {
  /** Run directories (qat train / qat quantize outputs). */
  runs: string[];
  /** Export reports (`qat export --json FILE`) besides those found in the run directories. */
  exports?: string[];
  out: string;
  title?: string;
  /** Glob of layer names for the weight histograms (default: first, a middle and the last quantized layer). */
  layers?: string;
  /** Rows of a results table (rendered as a table and an accuracy/perplexity-vs-bits chart). */
  results?: ResultsTable;
  threads?: number;
  /**
   * Measure each export file's ONNX Runtime latency where its report holds none (default true): one image per
   * call, or one decoded token with the KV cache for language models; median of `latencyReps` calls (default 30).
   */
  latency?: boolean;
  latencyReps?: number;
}

export interface ReportSummary {
  out: string;
  /** Names of the charts written (data-chart attributes), in page order. */
  charts: string[];
  /** Parts of the report left out for lack of data. */
  absent: string[];
  bytes: number;
}

/** The rows of the bits chart from the runs: one per run, and fp32 rows from QAT/PTQ runs' fp32 baselines. */
export function bitsRows(runs: ReportRun[]): Map<string, ResultRow[]> {
  const byMetric = new Map<string, ResultRow[]>();
  const add = (metric: string, row: ResultRow) => {
    const rows = byMetric.get(metric) ?? [];
    if (!rows.some((r) => r.setting === row.setting && r.method === row.method && r.bits === row.bits && r.metric === row.metric)) rows.push(row);
    byMetric.set(metric, rows);
  };
  for (const r of runs) {
    const metric = r.task === 'language-model' ? 'validation perplexity' : 'test accuracy';
    const setting = `${r.model} / ${r.data}`;
    if (r.metric !== undefined && Number.isFinite(r.bits)) add(metric, { setting, method: r.methodLabel, bits: r.bits, metric: r.metric });
    const hasFp32Run = runs.some((o) => o.method === 'fp32' && `${o.model} / ${o.data}` === setting);
    if (r.method !== 'fp32' && r.fp32Metric !== undefined && !hasFp32Run) add(metric, { setting, method: 'fp32', bits: 32, metric: r.fp32Metric });
  }
  return byMetric;
}

/**
 * Refuses an --out that cannot become a file before any chart is rendered: a directory, or a path below a file.
 * Missing folders are created, as for every qat output (writeFileAtomic).
 */
function checkOutput(out: string): void {
  if (!/\.html?$/i.test(out)) throw new InputError(`--out ${out}: the report is an HTML file; give a path ending in .html`);
  const resolved = path.resolve(out);
  if (fs.existsSync(resolved) && !fs.statSync(resolved).isFile()) throw new InputError(`--out ${out}: is a directory; give a file path ending in .html`);
  for (let dir = path.dirname(resolved); ; dir = path.dirname(dir)) {
    if (fs.existsSync(dir)) {
      if (!fs.statSync(dir).isDirectory()) throw new InputError(`--out ${out}: ${dir} is a file, not a folder`);
      return;
    }
    if (path.dirname(dir) === dir) return;
  }
}

export async function writeReport(options: WriteReportOptions): Promise<ReportSummary> {
  if (!options.runs.length && !options.results) throw new InputError('qat report: give at least one RUN_DIR (a directory written by qat train or qat quantize)');
  checkOutput(options.out);
  const runs = options.runs.map(loadReportRun);
  const extraExports = (options.exports ?? []).map(loadExportFile);
  const charts: string[] = [];
  const missing: string[] = [];
  const chart = async (label: string, spec: VegaLiteSpec) => {
    // Layer names carry '/' and ':' (blocks.0.attn.proj/MatMul): the chart's name keeps letters, digits, '.', '-'.
    const name = label.replace(/[^\w.-]+/g, '-');
    charts.push(name);
    return figure(name, await renderSvg(spec));
  };
  const note = (what: string, command: string) => {
    missing.push(what);
    return absent(what, command);
  };
  const sections: ReportSection[] = [];

  if (runs.length) sections.push({ id: 'runs', title: 'Runs', body: runsTable(runs) });

  if (options.results) {
    const t = options.results;
    const body = t.rows.length ? `${resultsTable(t.rows, t.metric)}\n${await chart('results-vs-bits', metricVsBitsSpec(t.rows, t.metric))}` : note('The results table is empty', 'qat demo');
    sections.push({ id: 'results', title: t.title ?? 'Results', body });
  }

  // Accuracy / perplexity against bits, from the runs.
  if (runs.length) {
    const parts: string[] = [];
    for (const [metric, rows] of bitsRows(runs)) parts.push(await chart(`metric-vs-bits-${metric.replace(/\W+/g, '-')}`, metricVsBitsSpec(rows, metric)));
    if (!parts.length) parts.push(note('No run has a final metric', 'qat train --out RUN'));
    if (!runs.some((r) => r.method === 'qat')) parts.push(note('No QAT run among the runs', 'qat train --from FP32_RUN --quant w4a4 --out QAT_RUN'));
    if (!runs.some((r) => r.method === 'ptq')) parts.push(note('No PTQ run among the runs', 'qat quantize --from FP32_RUN --quant w8a8 --calib minmax'));
    sections.push({ id: 'bits', title: 'Accuracy / perplexity against bits', body: parts.join('\n') });

    // Training and evaluation curves.
    const trained = runs.filter((r) => r.history.length);
    const curves: string[] = [];
    if (trained.length) {
      curves.push(await chart('loss-curves', lossCurvesSpec(trained)));
      for (const lm of [false, true]) {
        const withEval = trained.filter((r) => (r.task === 'language-model') === lm && r.history.some((p) => (lm ? p.val_perplexity : p.test_accuracy) !== undefined));
        if (withEval.length) curves.push(await chart(lm ? 'validation-curves' : 'test-curves', evalCurvesSpec(withEval, lm)));
      }
      curves.push(await chart('learning-rate', learningRateSpec(trained)));
    } else {
      curves.push(note('No run has a training history (metrics.json "history")', 'qat train --out RUN (PTQ runs train nothing)'));
    }
    sections.push({ id: 'training', title: 'Training and evaluation curves', body: curves.join('\n') });

    // Quant health.
    const healthy = runs.filter((r) => r.quantHealth.length);
    const health: string[] = [];
    for (const r of healthy) health.push(await chart(`quant-health-${r.name}`, quantHealthSpec(r.name, r.quantHealth)));
    if (!healthy.length) health.push(note('No quant-health series (QAT runs record one)', 'qat train --from FP32_RUN --quant w4a4 --health-every 25 --out QAT_RUN'));
    else if (!healthy.some((r) => r.quantHealth.some((p) => p.oscillating !== undefined))) {
      health.push(
        healthy.every((r) => r.task === 'language-model')
          ? `<p class="absent">No oscillation series: language-model QAT runs do not track weight oscillation.</p>`
          : `<p class="absent">No oscillation series: the oscillation tracker (Nagel et al. 2022) runs in image QAT below 8-bit weights or with <code>--oscillation-dampen</code> / <code>--oscillation-freeze</code>.</p>`,
      );
    }
    sections.push({ id: 'health', title: 'Quant health over training', body: health.join('\n') });

    // Per-layer sensitivity.
    const sens: string[] = [];
    for (const r of runs.filter((x) => x.sensitivity)) sens.push(await chart(`sensitivity-${r.name}`, sensitivitySpec(r.sensitivity!.layers, r.sensitivity!.bits, r.name)));
    if (!sens.length) {
      if (runs.some((r) => r.task === 'classification')) sens.push(note('No per-layer sensitivity (RUN/sensitivity.json)', 'qat sensitivity --from FP32_RUN'));
      else sens.push(`<p class="absent">No per-layer sensitivity: qat sensitivity measures image classifiers (the accuracy drop per layer); these runs are language models.</p>`);
    }
    sections.push({ id: 'sensitivity', title: 'Per-layer sensitivity', body: sens.join('\n') });

    // Weight histograms against the grid.
    const found = [];
    for (const r of runs) {
      const h = await runHistograms(r, options.layers, options.threads);
      if (h) found.push(h);
    }
    checkLayersMatched(options.layers, found);
    const hist: string[] = [];
    for (const f of found) for (const h of f.histograms) hist.push(await chart(`weights-${h.run}-${h.layer}`, weightHistogramSpec(h)));
    if (!hist.length) hist.push(note('No quantized run with a checkpoint (weight histograms need its latent weights and scales)', 'qat train --quant w4a4 --out RUN or qat quantize --from FP32_RUN'));
    sections.push({ id: 'weights', title: 'Weights against their quantization grid', body: hist.join('\n') });
  }

  // Exports: size, latency, parity.
  const exports: ExportSummary[] = [...runs.flatMap((r) => r.exports), ...extraExports].filter((e, i, all) => all.findIndex((o) => o.file === e.file) === i);
  const measured: string[] = [];
  if (options.latency ?? true) {
    for (const e of exports) {
      if (e.latency_ms !== undefined) continue;
      const l = await measureExportLatency(e, { threads: options.threads, reps: options.latencyReps });
      if (!l) continue;
      e.latency_ms = l.ms;
      e.latency_per = l.per;
      measured.push(`${e.out ?? e.file}: median of ${l.reps}`);
    }
  }
  const missingFiles = exports.filter((e) => e.latency_ms === undefined && !exportedFile(e));
  const latencyNote = measured.length
    ? `\n<p>Latency measured by ONNX Runtime while this report was written (${options.threads ?? 2} intra-op thread${options.threads === 1 ? '' : 's'}; ${measured.map(escapeHtml).join(', ')} calls after 5 warm-up calls).</p>`
    : '';
  const missingNote = missingFiles.length ? `\n<p class="absent">No latency for ${missingFiles.map((e) => `<code>${escapeHtml(e.out ?? e.file)}</code>`).join(', ')}: the model file is not there any more.</p>` : '';
  const exportBody = exports.length
    ? exportsTable(exports) + latencyNote + missingNote
    : note('No export report', 'qat export --from QAT_RUN --out RUN/model.int8.onnx --json RUN/export.json');
  sections.push({ id: 'exports', title: 'Exports: size, latency, parity', body: exportBody });

  const title = options.title ?? 'qatkit report';
  const generated = `${runs.length} run${runs.length === 1 ? '' : 's'}: ${runs.map((r) => r.dir).join(', ')}`;
  const html = reportHtml(title, generated, sections);
  try {
    writeFileAtomic(options.out, html);
  } catch (e) {
    throw new InputError(`--out ${options.out}: cannot be written (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return { out: options.out, charts, absent: missing, bytes: Buffer.byteLength(html) };
}
