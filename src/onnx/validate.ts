/**
 * Structural validation of a decoded ONNX ModelProto, before qatkit builds anything from it or allocates a tensor:
 * IR version and opsets, unique names, every node input defined, no cycle, graph outputs produced once, dtypes
 * known, dims non-negative and consistent with the bytes that back them, sizes within the limits of
 * validate/limits.ts, attributes of the spatial ops in range, and no NaN in a weight (Inf only as a mask
 * constant). Each refusal is one line: `<file>: <what> '<name>': <what is wrong>`.
 */
import type { onnx as OnnxTypes } from 'onnx-proto';
import { DType, dtypeName } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { MAX_GRAPH_ITEMS, MAX_NAME_LENGTH, MAX_RANK, MAX_TENSOR_BYTES, MAX_TOTAL_TENSOR_BYTES } from '../validate/limits.js';
import { InputError } from '../validate/schema.js';

/** IR versions ONNX Runtime 1.30 loads (IR 3, ONNX 1.0, to IR 13; it refuses 14 and above). */
export const MIN_IR_VERSION = 3;
export const MAX_IR_VERSION = 13;

/** Element types the decoder reads initializers of (STRING and the 8-bit and 16-bit float formats are not). */
const TENSOR_DTYPES = new Set([DType.FLOAT, DType.UINT8, DType.INT8, DType.UINT16, DType.INT16, DType.INT32, DType.INT64, DType.BOOL, DType.FLOAT16, DType.DOUBLE, DType.UINT32, DType.UINT64, DType.UINT4, DType.INT4]);
const OTHER_DTYPES: Record<number, string> = { 0: 'undefined', 8: 'string', 14: 'complex64', 15: 'complex128', 16: 'bfloat16', 17: 'float8e4m3fn', 18: 'float8e4m3fnuz', 19: 'float8e5m2', 20: 'float8e5m2fnuz', 23: 'float4e2m1' };
const BYTES: Record<number, number> = { 1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8 };

/** Ops an Inf constant may feed: selections and additive masks (PyTorch's causal mask: -inf into Where / Add). */
const MASK_CONSUMERS = new Set(['Where', 'Add', 'Sub', 'Min', 'Max', 'Clip', 'Expand', 'Reshape', 'Unsqueeze', 'Squeeze', 'Cast', 'Concat', 'Slice', 'Trilu', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'Equal', 'ConstantOfShape', 'Identity']);
const SPATIAL_OPS = new Set(['Conv', 'ConvTranspose', 'MaxPool', 'AveragePool', 'LpPool', 'ConvInteger', 'QLinearConv']);

type LongLike = number | { toNumber(): number; toString(): string } | string | null | undefined;
const num = (v: LongLike): number => (v === null || v === undefined ? 0 : typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : Number(v.toString()));

export const dtypeLabel = (d: number): string => dtypeName[d] ?? OTHER_DTYPES[d] ?? `code ${d}`;

export interface ValidateOptions {
  /** Name of the model in messages (its file). */
  source: string;
}

export function validateModelProto(model: OnnxTypes.ModelProto, options: ValidateOptions): void {
  const source = options.source;
  const fail = (why: string): never => {
    throw new InputError(`${source}: ${why}`);
  };
  const ir = num(model.irVersion as LongLike);
  // Random bytes often decode as a protobuf message with none of ModelProto's fields: say what the file is not.
  if (!ir && !model.graph) fail('not an ONNX model (no ir_version and no graph); pass a .onnx file written by onnx or torch.onnx.export');
  if (!Number.isInteger(ir) || ir < MIN_IR_VERSION || ir > MAX_IR_VERSION) {
    fail(`ir_version ${ir || '(missing)'} is not supported; ONNX Runtime here loads IR versions ${MIN_IR_VERSION} to ${MAX_IR_VERSION} (re-export the model with an older onnx)`);
  }
  const domains = new Set<string>();
  for (const o of model.opsetImport ?? []) {
    const d = o.domain ?? '';
    const v = num(o.version as LongLike);
    if (domains.has(d === 'ai.onnx' ? '' : d)) fail(`opset_import lists domain '${d || 'ai.onnx'}' twice`);
    domains.add(d === 'ai.onnx' ? '' : d);
    if (!Number.isInteger(v) || v < 1 || v > 1000) fail(`opset_import: domain '${d || 'ai.onnx'}' has version ${v}; a version is an integer >= 1`);
  }
  const g = model.graph;
  if (!g) fail('the model has no graph');
  validateGraph(g!, fail);
}

function validateGraph(g: OnnxTypes.IGraphProto, fail: (why: string) => never): void {
  const nodes = g.node ?? [];
  const initializers = g.initializer ?? [];
  for (const [what, list] of [['nodes', nodes], ['initializers', initializers], ['inputs', g.input ?? []], ['outputs', g.output ?? []]] as const) {
    if (list.length > MAX_GRAPH_ITEMS) fail(`${list.length} ${what}, more than the ${MAX_GRAPH_ITEMS} qatkit reads`);
  }
  if ((g.sparseInitializer ?? []).length) fail(`sparse initializers ('${g.sparseInitializer![0].values?.name ?? ''}') are not supported; store them dense`);
  const checkName = (kind: string, name: string | null | undefined, required = true) => {
    if (!name) {
      if (required) fail(`${/^[aeiou]/.test(kind) ? "an" : "a"} ${kind} has no name`);
      return;
    }
    if (name.length > MAX_NAME_LENGTH) fail(`${kind} '${name.slice(0, 40)}...': name of ${name.length} characters, longer than the ${MAX_NAME_LENGTH} allowed`);
  };

  // Values: initializers, graph inputs and node outputs each name one value, defined once.
  const defined = new Map<string, string>();
  const define = (name: string, by: string) => {
    const prev = defined.get(name);
    if (prev !== undefined) fail(`value '${name}' is defined twice (${prev} and ${by})`);
    defined.set(name, by);
  };
  let totalBytes = 0;
  const initByName = new Map<string, OnnxTypes.ITensorProto>();
  for (const t of initializers) {
    checkName('initializer', t.name);
    define(t.name!, `initializer '${t.name}'`);
    initByName.set(t.name!, t);
    totalBytes += validateTensor(t, `initializer '${t.name}'`, fail);
    if (totalBytes > MAX_TOTAL_TENSOR_BYTES) fail(`the initializers hold more than ${MAX_TOTAL_TENSOR_BYTES} bytes in all, qatkit's limit`);
  }
  for (const vi of g.input ?? []) {
    checkName('graph input', vi.name);
    validateValueInfo(vi, 'graph input', fail);
    if (initByName.has(vi.name!)) continue; // old exporters list initializers as inputs too
    define(vi.name!, `graph input '${vi.name}'`);
  }
  const nodeNames = new Set<string>();
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => {
    const label = n.name ? `node '${n.name}'` : `node #${i}`;
    checkName('node', n.name, false);
    if (n.name) {
      if (nodeNames.has(n.name)) fail(`two nodes are named '${n.name}'`);
      nodeNames.add(n.name);
    }
    if (!n.opType) fail(`${label} has no op_type`);
    if ((n.input ?? []).length > 100000 || (n.output ?? []).length > 100000) fail(`${label} (${n.opType}) has too many inputs or outputs`);
    for (const o of n.output ?? []) {
      if (!o) continue; // an optional output left out
      checkName('value', o);
      define(o, `an output of ${label} (${n.opType})`);
      producer.set(o, i);
    }
    validateAttributes(n, label, fail);
  });
  // Every input defined; no cycle (Kahn's algorithm over the node graph).
  const indegree = new Array<number>(nodes.length).fill(0);
  const readers = new Map<number, number[]>();
  nodes.forEach((n, i) => {
    const label = n.name ? `node '${n.name}'` : `node #${i}`;
    const hasSubgraph = (n.attribute ?? []).some((a) => a.g || (a.graphs ?? []).length);
    for (const input of n.input ?? []) {
      if (!input) continue;
      if (!defined.has(input)) {
        if (hasSubgraph) continue; // (If/Loop bodies are checked by the op support check)
        fail(`${label} (${n.opType}) reads '${input}', which no node, initializer or graph input defines`);
      }
      const p = producer.get(input);
      if (p !== undefined) {
        indegree[i]++;
        const list = readers.get(p) ?? [];
        list.push(i);
        readers.set(p, list);
      }
    }
  });
  const queue = indegree.flatMap((d, i) => (d === 0 ? [i] : []));
  let visited = 0;
  while (queue.length) {
    const i = queue.pop()!;
    visited++;
    for (const r of readers.get(i) ?? []) if (--indegree[r] === 0) queue.push(r);
  }
  if (visited < nodes.length) {
    const i = indegree.findIndex((d) => d > 0);
    fail(`the graph has a cycle through node '${nodes[i].name || `#${i}`}' (${nodes[i].opType}); an ONNX graph must be acyclic`);
  }
  const outputs = new Set<string>();
  for (const vi of g.output ?? []) {
    checkName('graph output', vi.name);
    if (outputs.has(vi.name!)) fail(`graph output '${vi.name}' is listed twice`);
    outputs.add(vi.name!);
    validateValueInfo(vi, 'graph output', fail);
    if (!defined.has(vi.name!)) fail(`graph output '${vi.name}' is produced by no node, initializer or graph input`);
  }
}

/** Checks a tensor's dtype, dims and data against each other; returns its size in bytes. */
function validateTensor(t: OnnxTypes.ITensorProto, what: string, fail: (why: string) => never): number {
  const dtype = t.dataType ?? 0;
  if (!TENSOR_DTYPES.has(dtype)) fail(`${what} has data type ${dtypeLabel(dtype)}, which qatkit does not read (supported: ${[...TENSOR_DTYPES].map(dtypeLabel).join(', ')})`);
  if (t.segment) fail(`${what} is segmented; segmented tensors are not supported`);
  const dims = (t.dims ?? []).map((d) => num(d as LongLike));
  if (dims.length > MAX_RANK) fail(`${what} has rank ${dims.length}, more than the ${MAX_RANK} qatkit allows`);
  for (const d of dims) if (!Number.isSafeInteger(d) || d < 0) fail(`${what} has dims [${dims}]: each dim must be an integer >= 0`);
  const count = dims.reduce((a, b) => a * b, 1);
  const packed = dtype === DType.INT4 || dtype === DType.UINT4;
  const bytes = packed ? Math.ceil(count / 2) : count * BYTES[dtype];
  if (!(bytes <= MAX_TENSOR_BYTES)) fail(`${what} [${dims}] of ${dtypeLabel(dtype)} would take ${bytes} bytes, more than the ${MAX_TENSOR_BYTES}-byte limit for one tensor`);
  const raw = t.rawData?.length ?? 0;
  if (t.dataLocation === 1) {
    if (raw) fail(`${what} has both raw data and external data`);
    const kv = Object.fromEntries((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    for (const k of ['offset', 'length']) {
      if (kv[k] !== undefined && !/^(0|[1-9][0-9]*)$/.test(kv[k])) fail(`${what}: external data ${k} '${kv[k]}' is not a decimal integer`);
    }
    if (kv.length !== undefined && Number(kv.length) !== bytes) fail(`${what}: external data length ${kv.length} bytes does not match dims [${dims}] of ${dtypeLabel(dtype)} (${bytes} bytes)`);
    return bytes;
  }
  const field = typedFieldLength(t, dtype);
  if (raw && field) fail(`${what} has both raw data and typed values`);
  if (raw) {
    if (raw !== bytes) fail(`${what}: ${raw} bytes of raw data for dims [${dims}] of ${dtypeLabel(dtype)} (need ${bytes})`);
  } else if (packed) {
    if (field !== bytes && !(count === 0 && field === 0)) fail(`${what}: ${field} packed values for dims [${dims}] of ${dtypeLabel(dtype)} (need ${bytes})`);
  } else if (field !== count) fail(`${what}: ${field} values for dims [${dims}] (${count} elements)`);
  return bytes;
}

function typedFieldLength(t: OnnxTypes.ITensorProto, dtype: number): number {
  switch (dtype) {
    case DType.FLOAT: return t.floatData?.length ?? 0;
    case DType.DOUBLE: return t.doubleData?.length ?? 0;
    case DType.INT64: return t.int64Data?.length ?? 0;
    case DType.UINT64: case DType.UINT32: return t.uint64Data?.length ?? 0;
    default: return t.int32Data?.length ?? 0;
  }
}

/** The first NaN or infinite element of a float tensor. */
function firstNonFinite(t: Tensor): { kind: 'nan' | 'inf' | '-inf'; index: number } | undefined {
  const kindOf = (v: number) => (Number.isNaN(v) ? 'nan' : v > 0 ? 'inf' : '-inf') as 'nan' | 'inf' | '-inf';
  if (t.dtype === DType.FLOAT || t.dtype === DType.DOUBLE) {
    const values = t.data as Float32Array | Float64Array;
    for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) return { kind: kindOf(values[i]), index: i };
  } else if (t.dtype === DType.FLOAT16) {
    const halves = t.data as Uint16Array;
    for (let i = 0; i < halves.length; i++) {
      const h = halves[i];
      if ((h & 0x7c00) === 0x7c00) return { kind: h & 0x3ff ? 'nan' : h & 0x8000 ? '-inf' : 'inf', index: i };
    }
  }
  return undefined;
}

/**
 * The values of a decoded graph (inline or external data): no NaN in a float initializer or constant, and Inf
 * only in a constant that feeds mask-like ops (Where, Add, Min, Max, ...), as PyTorch exports causal masks.
 */
export function validateGraphValues(graph: Graph, source: string): void {
  const consumers = graph.consumers();
  const check = (t: Tensor, what: string, value: string | undefined) => {
    const bad = firstNonFinite(t);
    if (!bad) return;
    if (bad.kind === 'nan') throw new InputError(`${source}: ${what} holds NaN at index ${bad.index}: a model's weights must be numbers`);
    const offending = value === undefined ? undefined : (consumers.get(value) ?? []).find((n) => !MASK_CONSUMERS.has(n.opType));
    if (offending) {
      throw new InputError(`${source}: ${what} holds ${bad.kind} at index ${bad.index} and feeds node '${offending.name}' (${offending.opType}); infinite values are allowed only as mask constants (feeding Where, Add, Min, Max, ...)`);
    }
  };
  for (const [name, t] of graph.initializers) check(t, `initializer '${name}'`, name);
  // A negative running variance makes BatchNormalization take the square root of a negative number: NaN outputs.
  for (const n of graph.nodes) {
    if (n.opType !== 'BatchNormalization' || n.domain !== '') continue;
    const v = graph.initializers.get(n.inputs[4]);
    if (!v || (v.dtype !== DType.FLOAT && v.dtype !== DType.DOUBLE)) continue;
    const values = v.data as Float32Array | Float64Array;
    const i = values.findIndex((x) => x < 0);
    if (i >= 0) throw new InputError(`${source}: running variance '${n.inputs[4]}' of BatchNormalization '${n.name}' is ${values[i]} at channel ${i}; a variance is >= 0`);
  }
  for (const n of graph.nodes) {
    for (const [k, a] of Object.entries(n.attrs)) {
      if (a.kind === 'tensor') check(a.value, `attribute '${k}' of node '${n.name}' (${n.opType})`, n.opType === 'Constant' ? n.outputs[0] : undefined);
    }
  }
}

function validateValueInfo(vi: OnnxTypes.IValueInfoProto, role: string, fail: (why: string) => never): void {
  const tt = vi.type?.tensorType;
  if (!tt) return; // decodeModel names non-tensor inputs itself
  const elem = tt.elemType ?? 0;
  if (!dtypeName[elem] || elem === DType.STRING) fail(`${role} '${vi.name}' has element type ${dtypeLabel(elem)}, which qatkit does not support`);
  const dims = tt.shape?.dim ?? [];
  if (dims.length > MAX_RANK) fail(`${role} '${vi.name}' has rank ${dims.length}, more than the ${MAX_RANK} qatkit allows`);
  for (const d of dims) {
    const which = (d as { value?: string }).value;
    if (which === 'dimValue' || (which === undefined && d.dimValue !== null && d.dimValue !== undefined)) {
      const v = num(d.dimValue as LongLike);
      if (!Number.isSafeInteger(v) || v < 0 || v > 2 ** 31 - 1) fail(`${role} '${vi.name}' has a dim of ${v}; a dim is an integer in 0..${2 ** 31 - 1} (or a name)`);
    } else if (d.dimParam && d.dimParam.length > MAX_NAME_LENGTH) fail(`${role} '${vi.name}' has a symbolic dim name longer than ${MAX_NAME_LENGTH} characters`);
  }
}

function validateAttributes(n: OnnxTypes.INodeProto, label: string, fail: (why: string) => never): void {
  const seen = new Set<string>();
  const ints = (name: string): number[] | undefined => {
    const a = (n.attribute ?? []).find((x) => x.name === name);
    return a ? (a.ints ?? []).map((v) => num(v as LongLike)) : undefined;
  };
  for (const a of n.attribute ?? []) {
    if (!a.name) fail(`${label} (${n.opType}) has an attribute with no name`);
    if (seen.has(a.name!)) fail(`${label} (${n.opType}) has attribute '${a.name}' twice`);
    // FLOAT, INT, STRING, TENSOR, GRAPH, FLOATS, INTS, STRINGS: the kinds the decoder reads (onnx.proto AttributeType).
    if (!Number.isInteger(a.type) || (a.type as number) < 1 || (a.type as number) > 8) {
      fail(`${label} (${n.opType}): attribute '${a.name}' has type ${a.type}, which qatkit does not read (FLOAT, INT, STRING, TENSOR, GRAPH, FLOATS, INTS, STRINGS)`);
    }
    seen.add(a.name!);
    if (a.type === 4 && !a.t) fail(`${label} (${n.opType}): attribute '${a.name}' is a TENSOR without a tensor`);
    if (a.type === 5 && !a.g) fail(`${label} (${n.opType}): attribute '${a.name}' is a GRAPH without a graph`);
    if ((a.ints ?? []).length > 1 << 16 || (a.floats ?? []).length > 1 << 16 || (a.strings ?? []).length > 1 << 16) fail(`${label} (${n.opType}): attribute '${a.name}' has more than ${1 << 16} values`);
    if (a.type === 1 && Number.isNaN(a.f)) fail(`${label} (${n.opType}): attribute '${a.name}' is NaN`);
    if ((a.floats ?? []).some((f) => Number.isNaN(f))) fail(`${label} (${n.opType}): attribute '${a.name}' holds NaN`);
    if (a.t) validateTensor(a.t, `attribute '${a.name}' of ${label} (${n.opType})`, fail);
    for (const t of a.tensors ?? []) validateTensor(t, `attribute '${a.name}' of ${label} (${n.opType})`, fail);
  }
  if (!SPATIAL_OPS.has(n.opType ?? '') || (n.domain && n.domain !== 'ai.onnx' && n.domain !== 'com.microsoft')) return;
  const check = (name: string, min: number) => {
    const v = ints(name);
    if (v && v.some((x) => !Number.isSafeInteger(x) || x < min || x > 1 << 20)) fail(`${label} (${n.opType}): ${name} [${v}] must be integers >= ${min}`);
  };
  check('strides', 1);
  check('dilations', 1);
  check('kernel_shape', 1);
  check('pads', 0);
  check('output_padding', 0);
  const group = (n.attribute ?? []).find((x) => x.name === 'group');
  if (group && num(group.i as LongLike) < 1) fail(`${label} (${n.opType}): group ${num(group.i as LongLike)} must be >= 1`);
}
