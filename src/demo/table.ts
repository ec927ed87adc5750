/** The demo's printed table: one line per model, one indented line per file it was saved or exported as. */
import { DemoSummary } from './summary.js';

const pct = (x: number | undefined) => (x === undefined ? '' : `${(x * 100).toFixed(2)}%`);
const ppl = (x: number | undefined) => (x === undefined ? '' : x.toFixed(3));

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

/** Columns padded to their widest cell; the first column left-aligned, the others right-aligned. */
export function alignColumns(rows: string[][], leftColumns = 1): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i < leftColumns ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd());
}

/** A sample on one line: newlines shown as the return symbol, so samples line up one under another. */
export function oneLine(text: string): string {
  return text.replace(/\r?\n/g, ' \u23ce ');
}

/**
 * One line per model, one indented line per file it was saved or exported as, each file followed by what it stores;
 * a setting's heading line (what the preset quantizes) stands on its own and does not widen the columns.
 */
export function formatDemoTable(s: DemoSummary): string[] {
  const lm = s.demo === 'language-model';
  const cells: string[][] = [];
  /** Per table row, the lines printed before it (headings) and after it (storage). */
  const before: string[][] = [];
  const after: string[][] = [];
  const push = (row: string[], head: string[] = [], tail: string[] = []) => {
    cells.push(row);
    before.push(head);
    after.push(tail);
  };
  if (lm) push(['model / file', 'val ppl', 'size', 'tokens/s', 'file val ppl']);
  else push(['model / file', 'accuracy', 'size', `ms/batch of ${s.rows.flatMap((r) => r.files)[0]?.latency_batch ?? '?'}`, 'file accuracy']);
  let setting = '';
  for (const r of s.rows) {
    const head: string[] = [];
    if (r.setting !== setting && r.setting !== 'fp32') {
      setting = r.setting;
      head.push(`${r.setting}: ${r.description}`);
    }
    const indent = r.setting === 'fp32' ? '' : '  ';
    push([`${indent}${r.label}`, lm ? ppl(r.val_perplexity) : pct(r.accuracy), '', '', ''], head);
    for (const f of r.files) {
      const speed = lm ? (f.tokens_per_second === undefined ? '' : f.tokens_per_second.toFixed(0)) : f.latency_ms_per_batch === undefined ? '' : f.latency_ms_per_batch.toFixed(2);
      const ratio = f.size_ratio_vs_fp32 !== undefined && r.setting !== 'fp32' ? `; ${f.size_ratio_vs_fp32.toFixed(2)}x smaller ${lm ? 'file than the fp32 decoder' : 'weights than fp32'}` : '';
      const agree = f.argmax_agreement !== undefined ? `; agrees with the fake-quant model on ${pct(f.argmax_agreement)} of test images` : f.top1_agreement !== undefined ? `; next-token top-1 agrees with the ${r.setting === 'fp32' ? 'run' : 'fake-quant'} model on ${pct(f.top1_agreement)}` : '';
      push([`${indent}  -> ${f.path}`, '', formatBytes(f.bytes), speed, lm ? ppl(f.val_perplexity) : pct(f.accuracy)], [], [`${indent}       ${f.storage}${ratio}${agree}`]);
    }
  }
  const aligned = alignColumns(cells);
  const out: string[] = [];
  aligned.forEach((line, i) => out.push(...before[i], line, ...after[i]));
  if (lm && s.rows.some((r) => r.sample !== undefined)) {
    out.push('', `samples (the same prompt "${s.sample_prompt ?? ''}", sampler and seed for every model; files decoded by ONNX Runtime with their KV cache, RTN models in qatkit's graph):`);
    const width = Math.max(...s.rows.map((r) => r.label.length));
    for (const r of s.rows) if (r.sample !== undefined) out.push(`  ${r.label.padEnd(width)} | ${oneLine(r.sample)}`);
  }
  return out;
}
