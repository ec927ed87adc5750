// Step-time statistics and console formatting shared by the benchmarks.

export interface StepTimes {
  ms_median: number;
  ms_p90: number;
}

/** Nearest-rank percentile of ascending `sorted` (bench/peers/common.py uses the same definition). */
export function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** Nearest-rank median: the lower of the two middle values for an even count. */
export function median(ms: number[]): number {
  return percentile([...ms].sort((a, b) => a - b), 0.5);
}

/** Median and p90 (nearest rank) of per-step milliseconds. */
export function summarize(ms: number[]): StepTimes {
  const s = [...ms].sort((a, b) => a - b);
  return { ms_median: percentile(s, 0.5), ms_p90: percentile(s, 0.9) };
}

/** Milliseconds (or MB) with one decimal. */
export const fmt = (v: number) => v.toFixed(1);

/** os.loadavg() as printed next to every figure (bench/README.md: report ratios with their load). */
export const loadStr = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');

/** Prints rows as columns: the first left-aligned, the others right-aligned. */
export function printTable(rows: string[][]): void {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  for (const r of rows) console.log(r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  '));
}
