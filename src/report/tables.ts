/** The report's tables as HTML: every cell escaped, numbers formatted, a missing value shown as a dash. */
import type { ResultRow } from './charts.js';
import { bitsLabel } from './charts.js';
import type { ExportSummary, ReportRun } from './load-runs.js';

export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

const DASH = '&ndash;';
const fixed = (v: number | undefined, digits: number) => (v === undefined || !Number.isFinite(v) ? DASH : v.toFixed(digits));
const percent = (v: number | undefined, digits = 2) => (v === undefined || !Number.isFinite(v) ? DASH : `${(v * 100).toFixed(digits)}%`);
const bytes = (v: number | undefined) => (v === undefined ? DASH : v >= 1 << 20 ? `${(v / (1 << 20)).toFixed(2)} MiB` : v >= 1024 ? `${(v / 1024).toFixed(1)} KiB` : `${v} B`);

/** Cells are HTML already (escaped by the caller); numeric columns align right. */
export function htmlTable(headers: string[], rows: string[][], numeric: boolean[] = []): string {
  const th = headers.map((h, i) => `<th${numeric[i] ? ' class="num"' : ''}>${escapeHtml(h)}</th>`).join('');
  const body = rows.map((r) => `<tr>${r.map((c, i) => `<td${numeric[i] ? ' class="num"' : ''}>${c}</td>`).join('')}</tr>`).join('\n');
  return `<table>\n<thead><tr>${th}</tr></thead>\n<tbody>\n${body}\n</tbody>\n</table>`;
}

/** One line per run: what it is and its headline numbers. */
export function runsTable(runs: ReportRun[]): string {
  const rows = runs.map((r) => {
    const lm = r.task === 'language-model';
    return [
      escapeHtml(r.name),
      escapeHtml(r.methodLabel),
      escapeHtml(r.quant ?? 'fp32'),
      escapeHtml(bitsLabel(r.bits)),
      escapeHtml(`${r.model} / ${r.data}`),
      String(r.steps),
      lm ? `ppl ${fixed(r.metric, 3)}` : percent(r.metric),
      lm ? (r.fp32Metric === undefined ? DASH : `ppl ${fixed(r.fp32Metric, 3)}`) : percent(r.fp32Metric),
      fixed(typeof r.metrics.ms_per_step_median === 'number' ? r.metrics.ms_per_step_median : undefined, 1),
    ];
  });
  return htmlTable(['run', 'method', 'quant', 'weight bits', 'model / data', 'steps', 'metric', 'fp32 metric', 'ms / step'], rows, [false, false, false, true, false, true, true, true, true]);
}

/** A results table (the demo's and bench's): setting, method, bits, metric. */
export function resultsTable(rows: ResultRow[], metric: string): string {
  const cells = rows.map((r) => [escapeHtml(r.setting), escapeHtml(r.method), escapeHtml(bitsLabel(r.bits)), Math.abs(r.metric) <= 1 ? fixed(r.metric, 4) : fixed(r.metric, 3)]);
  return htmlTable(['setting', 'method', 'weight bits', metric], cells, [false, false, true, true]);
}

/** Size, latency and parity of each export report. */
export function exportsTable(exports: ExportSummary[]): string {
  const rows = exports.map((e) => [
    escapeHtml(e.out ?? e.file),
    escapeHtml(e.format),
    bytes(e.file_bytes),
    e.weight_ratio === undefined ? DASH : `${e.weight_ratio.toFixed(2)}x`,
    fixed(e.latency_ms, 3),
    percent(e.argmax_agreement),
    percent(e.exported_accuracy),
    percent(e.qat_accuracy),
    e.max_abs_logit_difference === undefined ? DASH : e.max_abs_logit_difference.toPrecision(3),
    e.verified === undefined ? DASH : e.verified ? 'yes' : 'no',
  ]);
  return htmlTable(
    ['model file', 'format', 'file size', 'weights vs fp32', 'latency (ms)', 'argmax agreement', 'exported accuracy', 'fake-quant accuracy', 'max |logit diff|', 'verified'],
    rows,
    [false, false, true, true, true, true, true, true, true, false],
  );
}
