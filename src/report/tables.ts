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

/**
 * Size, latency and parity of each export report. Image exports are checked against their fake-quant model
 * (argmax agreement, accuracy); language-model decoders against their reference (validation perplexity, top-1).
 */
export function exportsTable(exports: ExportSummary[]): string {
  const ppl = (v: number | undefined) => (v === undefined ? DASH : `ppl ${v.toFixed(3)}`);
  const rows = exports.map((e) => {
    const lm = e.exported_perplexity !== undefined;
    const smaller = e.weight_ratio !== undefined ? `${e.weight_ratio.toFixed(2)}x (weights)` : e.size_ratio_vs_fp32 !== undefined ? `${e.size_ratio_vs_fp32.toFixed(2)}x (file)` : DASH;
    return [
      escapeHtml(e.out ?? e.file),
      escapeHtml(e.format),
      bytes(e.file_bytes),
      smaller,
      e.latency_ms === undefined ? DASH : `${e.latency_ms.toFixed(3)}${e.latency_per ? ` <small>per ${escapeHtml(e.latency_per)}</small>` : ''}`,
      lm ? ppl(e.exported_perplexity) : percent(e.exported_accuracy),
      lm ? `${ppl(e.reference_perplexity)}${e.reference ? ` <small>${escapeHtml(e.reference)}</small>` : ''}` : `${percent(e.qat_accuracy)}${e.qat_accuracy === undefined ? '' : ' <small>fake-quant</small>'}`,
      lm ? `${percent(e.top1_agreement)} <small>top-1</small>` : `${percent(e.argmax_agreement)}${e.argmax_agreement === undefined ? '' : ' <small>argmax</small>'}`,
      e.max_abs_logit_difference === undefined ? DASH : e.max_abs_logit_difference.toPrecision(3),
      e.verified === undefined ? DASH : e.verified ? 'yes' : 'no',
    ];
  });
  return htmlTable(
    ['model file', 'format', 'file size', 'smaller than fp32', 'ORT latency (ms)', 'exported file: accuracy / perplexity', 'reference', 'agreement', 'max |logit diff|', 'verified'],
    rows,
    [false, false, true, true, true, true, true, true, true, false],
  );
}
