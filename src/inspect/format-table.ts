import { Shape } from '../ir/graph.js';
import { InspectReport, LayerRow, QuantColumn } from './report.js';
import { TENSOR_KINDS } from './tensor-kinds.js';

/**
 * The layer table as text: one line per layer, columns padded to their widest cell. Names come from files and
 * are printed through the CLI's terminal escaping (console.log is escaped by run-cli.ts); `escape` lets a caller
 * that writes elsewhere escape the cells itself.
 */
export interface FormatOptions {
  /** Layer, op, parameters, weight and input quantization, note: what `qat train --quant` prints before training. */
  compact?: boolean;
  escape?: (s: string) => string;
}

const shapeText = (s: Shape | null): string => (s ? `[${s.join(',')}]` : '?');

const num = (x: number): string => (x === 0 ? '0' : Math.abs(x) >= 0.01 && Math.abs(x) < 1000 ? x.toPrecision(3).replace(/\.?0+$/, '') : x.toExponential(2));

/** Bytes for people: B, KiB, MiB. */
export function bytesText(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

const GRANULARITY: Record<QuantColumn['granularity'], string> = { 'per-tensor': 'tensor', 'per-channel': 'channel', 'per-group': 'group', 'per-token': 'token' };

/**
 * One quantizer as a cell: "4b lsq channel learned 1.2e-3..4.5e-2", "4b qdq group32 stored", "8b absmax token
 * dynamic"; an asymmetric or unsigned grid says so. `null` (stays float) prints "float", undefined (the file does
 * not say) prints "-".
 */
export function quantText(q: QuantColumn | null | undefined): string {
  if (q === undefined) return '-';
  if (q === null) return 'float';
  const method = q.method === 'binary' || q.method === 'ternary' ? q.method : `${q.bits}b ${q.method}`;
  const gran = `${GRANULARITY[q.granularity]}${q.group ? q.group : ''}`;
  const grid = [q.symmetric ? '' : 'asym', q.signed ? '' : 'unsigned'].filter(Boolean).join(',');
  const range = q.scale_range ? ` ${num(q.scale_range[0])}..${num(q.scale_range[1])}` : '';
  return `${method} ${gran}${grid ? ` ${grid}` : ''} ${q.scale_source}${range}`;
}

/** An embedding's input is token ids, never quantized: 'ids' rather than 'float'. */
const inputText = (r: LayerRow): string => (r.activation === null && /^Gather/.test(r.op) ? 'ids' : quantText(r.activation));

function kernelText(row: LayerRow): string {
  if (row.kernel === undefined) return '';
  if (row.kernel === null) return '?';
  return `${row.kernel.op}${row.kernel.accuracy_level !== undefined ? ` (accuracy_level ${row.kernel.accuracy_level})` : ''} ${row.kernel.integer ? 'integer' : 'float'}`;
}

function storageText(row: LayerRow): string {
  return row.storage ? `${row.storage.dtype} ${bytesText(row.storage.weight_bytes)}${row.storage.other_bytes ? ` +${bytesText(row.storage.other_bytes)}` : ''}` : '';
}

/** Left-aligned columns, two spaces apart; a column empty in every row is left out. */
function table(header: string[], rows: string[][]): string[] {
  const keep = header.map((_, c) => rows.some((r) => r[c] !== ''));
  const h = header.filter((_, c) => keep[c]);
  const body = rows.map((r) => r.filter((_, c) => keep[c]));
  const widths = h.map((t, c) => Math.max(t.length, ...body.map((r) => r[c].length)));
  const line = (cells: string[]) => cells.map((s, c) => (c === cells.length - 1 ? s : s.padEnd(widths[c]))).join('  ').trimEnd();
  return [line(h), ...body.map(line)];
}

function summary(report: InspectReport, esc: (s: string) => string): string {
  const q = report.quant;
  const quant = q
    ? `; ${q.method} ${esc(q.preset)}${q.calib ? ` (${esc(q.calib)} calibration)` : ''}${q.weight_bits !== undefined ? `, weights ${q.weight_bits}b` : ''}${q.activation_bits !== undefined ? `, inputs ${q.activation_bits >= 16 ? 'float' : `${q.activation_bits}b`}` : ''}${q.first_last_bits ? `, first/last layers ${q.first_last_bits}b` : ''}`
    : '';
  // A tied layer's weight is another layer's: counted once.
  const params = report.layers.reduce((s, r) => s + (r.tied_to ? 0 : r.parameters), 0);
  return `${esc(report.source)}: ${report.kind} model '${esc(report.model)}', ${report.layers.length} layers, ${params} parameters${quant}`;
}

/** The report as lines of text (the human form of `qat inspect`; `--json` prints the report itself). */
export function formatInspectReport(report: InspectReport, options: FormatOptions = {}): string[] {
  const esc = options.escape ?? ((s: string) => s);
  const quantized = report.layers.some((r) => r.weight !== undefined || r.activation !== undefined);
  const lines = [summary(report, esc)];
  if (options.compact) {
    lines.push(
      ...table(
        ['layer', 'op', 'params', 'weight', 'input', 'note'],
        report.layers.map((r) => [r.name, r.op, String(r.parameters), quantText(r.weight), inputText(r), r.note ?? ''].map(esc)),
      ),
    );
    for (const n of report.notes) lines.push(`note: ${esc(n)}`);
    return lines;
  }
  const header = ['layer', 'op', 'input', 'output', 'weight shape', 'params', ...(quantized ? ['weight', 'input quant'] : []), 'storage', 'kernel', 'note'];
  const rows = report.layers.map((r) => [
    r.name,
    r.op,
    shapeText(r.input_shape),
    shapeText(r.output_shape),
    shapeText(r.weight_shape),
    String(r.parameters),
    ...(quantized ? [quantText(r.weight), inputText(r)] : []),
    storageText(r),
    kernelText(r),
    r.note ?? '',
  ]);
  lines.push(...table(header, rows.map((row) => row.map((c) => esc(c)))));
  if (report.bytes_by_kind) {
    const b = report.bytes_by_kind;
    lines.push(`bytes: ${TENSOR_KINDS.filter((k) => b[k] > 0).map((k) => `${k.replace('_', ' ')} ${bytesText(b[k])}`).join(', ') || 'none'}; total ${bytesText(b.total)}`);
  }
  const counted = report.layers.filter((r) => r.kernel);
  if (counted.length) {
    const integer = counted.filter((r) => r.kernel!.integer).length;
    lines.push(`ONNX Runtime's optimized model runs ${integer} of ${counted.length} layers on integer kernels`);
  }
  for (const n of report.notes) lines.push(`note: ${esc(n)}`);
  return lines;
}
