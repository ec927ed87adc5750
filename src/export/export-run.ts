import { DatasetName, loadDataset } from '../data/index.js';
import { writeFileAtomic } from '../onnx/atomic-write.js';
import { encodeModel } from '../onnx/model-io.js';
import { loadRun } from '../train/run.js';
import { checkIntegerReference, IntegerCheckReport } from './integer-check.js';
import { assertParity, checkParity, ParityReport } from './parity.js';
import { ExportedLayer, ExportFormat, exportQdq, ExportOptions } from './qdq.js';
import { resolveWeightType, WeightTypeChoice } from './weight-type.js';

export interface ExportRunOptions extends Omit<ExportOptions, 'weightType'> {
  /** 8-bit weight storage; 'auto' (the default): int8 where this CPU's u8s8 kernels are exact, else uint8 (weight-type.ts). */
  weightType?: WeightTypeChoice;
  from: string;
  out: string;
  json?: string;
  /** Write the model even when parity fails (the numbers are still measured and reported). */
  noVerify?: boolean;
  /** Test samples for the parity check (default: the whole test set). */
  limit?: number;
}

export interface ExportReport {
  format: ExportFormat;
  from: string;
  out: string;
  data: string;
  file_bytes: number;
  weight_bytes_fp32: number;
  weight_bytes_stored: number;
  weight_ratio: number;
  verified: boolean;
  parity: ParityReport;
  /** The integer reference evaluator against ORT's integer kernels (qdq format; others are skipped). */
  integer_reference: IntegerCheckReport;
  layers: ExportedLayer[];
  /** The storage of 8-bit weight codes and why it was chosen. */
  weight_type: 'uint8' | 'int8';
  weight_type_reason: string;
}

/** `qat export`: a run's QAT checkpoint -> deployable ONNX, checked against the fake-quant model. */
export async function exportRun(options: ExportRunOptions): Promise<ExportReport> {
  const ckpt = loadRun(options.from);
  const weightType = resolveWeightType(options.weightType);
  const result = await exportQdq(ckpt.model, { ...options, weightType: weightType.type });
  const dataName = (ckpt.config.data as DatasetName | undefined) ?? 'mnist';
  const test = loadDataset(dataName).test;
  const parity = await checkParity(ckpt.model, result.graph, test, { threads: options.threads, limit: options.limit });
  // Below 8 bits one code is a large step: float rounding (the float conv's summation order, the float32
  // requantization scale) moves a few codes at rounding ties, and in a deep model those changes cascade
  // (docs/export-formats.md, "Parity"; the biases themselves are simulated on their int32 grid).
  const narrow = result.layers.filter((l) => l.role === 'activation' && l.bits < 8).map((l) => l.bits);
  const why = narrow.length ? `With ${Math.min(...narrow)}-bit activations, codes moved by one step at rounding ties (float rounding of the sums and of the requantization scales) cascade through a deep model: docs/export-formats.md, "Parity"` : undefined;
  if (!options.noVerify) assertParity(parity, undefined, why);
  // qdq and int4 files (whose INT4 weights are cast to int8 in the graph) run on the evaluator; packed files'
  // unpacking subgraph (Div / Mod on the packed bytes) is outside it.
  const integer: IntegerCheckReport =
    result.format !== 'packed' && result.layers.some((l) => l.granularity === 'per-group')
      ? { skipped: 'per-group weights: ONNX Runtime dequantizes blocked weights to float; the integer reference evaluator runs per-tensor / per-channel int8 QDQ models' }
      : result.format !== 'packed'
      ? await checkIntegerReference(result.graph, ckpt.model.input, test, { threads: options.threads, noVerify: options.noVerify })
      : { skipped: `format ${result.format}: the integer reference evaluator runs qdq and int4 models, not the packed format's unpacking subgraph` };
  const bytes = encodeModel(result.graph);
  writeFileAtomic(options.out, bytes);
  const report: ExportReport = {
    format: result.format,
    from: options.from,
    out: options.out,
    data: dataName,
    file_bytes: bytes.byteLength,
    weight_bytes_fp32: result.weightBytes.float32,
    weight_bytes_stored: result.weightBytes.stored,
    weight_ratio: result.weightBytes.float32 / result.weightBytes.stored,
    verified: !options.noVerify,
    parity,
    integer_reference: integer,
    layers: result.layers,
    weight_type: weightType.type,
    weight_type_reason: weightType.reason,
  };
  if (options.json) writeFileAtomic(options.json, JSON.stringify(report, null, 2) + '\n');
  return report;
}
