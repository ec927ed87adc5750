import { Shape } from '../ir/graph.js';
import { TensorKind, TensorRow } from './tensor-kinds.js';

/** How one tensor of a layer is quantized (weight or activation input), as the layer table shows it. */
export interface QuantColumn {
  bits: number;
  /** minmax, lsq, lsq+, pact, binary, ternary, absmax (qatkit's scale methods); 'qdq' for a foreign QDQ file. */
  method: string;
  granularity: 'per-tensor' | 'per-channel' | 'per-group' | 'per-token';
  axis?: number;
  /** per-group: elements per group along `axis`; per-token: the block of channels, if any. */
  group?: number;
  signed: boolean;
  symmetric: boolean;
  /** Where the scale comes from: learned (LSQ, LSQ+, PACT), observed (calibrated / moving-average range), weight range (min/max of the weight each step), dynamic (per token at run time), rule (binary mean|w|, ternary absmean). */
  scale_source: 'learned' | 'observed' | 'weight range' | 'dynamic' | 'rule' | 'stored';
  /** Smallest and largest scale value (where the scale is a tensor the file or checkpoint holds). */
  scale_range?: [number, number];
}

/** How an exported file stores a layer's weight and which kernel ORT's optimized model runs it on. */
export interface LayerStorage {
  /** ONNX element type of the weight codes (int8, uint8, int4, float32, ...). */
  dtype: string;
  /** Bytes of the weight codes (or float weight) and of everything else the weight is computed from (scales, zero points, bias). */
  weight_bytes: number;
  other_bytes: number;
}

export interface LayerRow {
  /** Readable layer name (module scope or node name). */
  name: string;
  node: string;
  op: string;
  input_shape: Shape | null;
  output_shape: Shape | null;
  weight_shape: Shape | null;
  /** Elements of the weight and bias. */
  parameters: number;
  /** null: the weight (or input) stays float. Absent: the file does not say (an fp32 model has neither). */
  weight?: QuantColumn | null;
  activation?: QuantColumn | null;
  /** Why a layer differs from the config's default (first/last layer rule, an override, a skipped layer). */
  note?: string;
  /** A tied weight (an LM head reading the token table): the layer whose weight this one reads; its parameters are that layer's. */
  tied_to?: string;
  storage?: LayerStorage;
  /** The op ORT runs the layer with (its optimized model) and whether that is an integer kernel. */
  kernel?: { op: string; integer: boolean; accuracy_level?: number } | null;
}

export type InspectKind = 'run' | 'fp32' | 'training-graph' | 'fake-quant' | 'exported';

export interface InspectReport {
  source: string;
  kind: InspectKind;
  model: string;
  /** Quantized models: the preset (or 'custom'), QAT or PTQ, and the config's defaults. */
  quant?: { preset: string; method: 'qat' | 'ptq'; calib?: string; weight_bits?: number; activation_bits?: number; first_last_bits: number | null };
  layers: LayerRow[];
  /** ONNX files: every initializer with its kind and stored bytes. */
  tensors?: TensorRow[];
  bytes_by_kind?: Record<TensorKind | 'total', number>;
  /** Exported files: the ops of ORT's optimized model, counted. */
  optimized_ops?: Record<string, number>;
  /** Language-model exports of --kv-bits runs: the stored cache (export/lm-kv-cache.ts) and its bytes per token. */
  kv_cache?: { bits: number; layout: string; group_size?: number; bytes_per_token: number; float32_bytes_per_token: number; tensors: string[] };
  notes: string[];
}
