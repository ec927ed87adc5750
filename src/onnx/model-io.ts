import fs from 'node:fs';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { DType, TypedArray, allocate, dtypeName } from '../ir/dtype.js';
import { Attr, Graph, Node, Shape, ValueInfo } from '../ir/graph.js';
import { Tensor, sizeOf } from '../ir/tensor.js';
import { readExternalData } from './external-data.js';
import { writeFileAtomic } from './atomic-write.js';
import { validateGraphValues, validateModelProto } from './validate.js';
import { MAX_MODEL_FILE_BYTES } from '../validate/limits.js';
import { InputError } from '../validate/schema.js';

// onnx-proto is CommonJS: take the namespace from its default export.
const { onnx } = onnxProto;
const AT = onnx.AttributeProto.AttributeType;

type LongLike = number | { toNumber(): number } | string;
const num = (v: LongLike | null | undefined): number =>
  v === null || v === undefined ? 0 : typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : v.toNumber();

export interface DecodeOptions {
  /** Folder that external data must lie in (the model file's folder). */
  baseDir?: string;
  /** Name of the source, for error messages. */
  source?: string;
}

// ---------------- decode ----------------

export function decodeModel(bytes: Uint8Array, options: DecodeOptions = {}): Graph {
  const source = options.source ?? 'model';
  let model: OnnxTypes.ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new InputError(`${source}: not a valid ONNX model (protobuf: ${(e as Error).message})`);
  }
  validateModelProto(model, { source });
  if (!model.graph) throw new InputError(`${source}: the model has no graph`);
  const g = new Graph();
  g.name = model.graph.name || 'model';
  g.opsets = {};
  for (const o of model.opsetImport ?? []) g.opsets[o.domain ?? ''] = num(o.version as LongLike);
  if (g.opsets[''] === undefined && g.opsets['ai.onnx'] !== undefined) g.opsets[''] = g.opsets['ai.onnx'];
  for (const p of model.metadataProps ?? []) g.metadata[p.key ?? ''] = p.value ?? '';
  const gp = model.graph;
  for (const t of gp.initializer ?? []) g.initializers.set(t.name ?? '', decodeTensor(t, options));
  const initNames = new Set(g.initializers.keys());
  for (const vi of gp.input ?? []) {
    if (initNames.has(vi.name ?? '')) continue; // old exporters list initializers as inputs too
    const v = decodeValueInfo(vi, source, 'input');
    g.inputs.push(v);
    g.types.set(v.name, { dtype: v.dtype, shape: v.shape });
  }
  for (const vi of gp.output ?? []) g.outputs.push(decodeValueInfo(vi, source, 'output'));
  g.nodes = decodeNodes(gp.node ?? [], options);
  validateGraphValues(g, source);
  return g;
}

function decodeNodes(nodes: OnnxTypes.INodeProto[], options: DecodeOptions, anonymousPrefix = ''): Node[] {
  let anon = 0;
  return nodes.map((np) => {
    const node: Node = {
      opType: np.opType ?? '',
      domain: np.domain === 'ai.onnx' ? '' : (np.domain ?? ''),
      name: np.name || `${anonymousPrefix}${np.opType}_${anon++}`,
      inputs: [...(np.input ?? [])],
      outputs: [...(np.output ?? [])],
      attrs: {},
    };
    for (const a of np.attribute ?? []) node.attrs[a.name ?? ''] = decodeAttr(a, node, options);
    return node;
  });
}

/** A graph attribute (an If branch, a Loop body): its nodes, initializers and output names, decoded. */
export interface Subgraph {
  nodes: Node[];
  initializers: Map<string, Tensor>;
  outputs: string[];
}

/** Decodes a graph-valued attribute as decodeAttr keeps it (the GraphProto). */
export function decodeSubgraph(value: unknown, options: DecodeOptions = {}, anonymousPrefix = ''): Subgraph {
  const gp = value as OnnxTypes.IGraphProto;
  return {
    nodes: decodeNodes(gp.node ?? [], options, anonymousPrefix),
    initializers: new Map((gp.initializer ?? []).map((t) => [t.name ?? '', decodeTensor(t, options)])),
    outputs: (gp.output ?? []).map((o) => o.name ?? ''),
  };
}

function decodeValueInfo(vi: OnnxTypes.IValueInfoProto, source: string, role: 'input' | 'output'): ValueInfo {
  const tt = vi.type?.tensorType;
  if (!tt) throw new Error(`${source}: graph ${role} '${vi.name}' is not a tensor`);
  // A missing shape means unknown rank, not a scalar. Outputs are re-inferred on import; inputs need a rank.
  if (!tt.shape && role === 'input') throw new Error(`${source}: graph input '${vi.name}' has no shape (its rank must be known)`);
  const shape: Shape = (tt.shape?.dim ?? []).map((d, i) => {
    // dim_value/dim_param are a oneof; protobufjs reports the one that was set in `value`.
    const which = (d as { value?: string }).value;
    if (which === 'dimValue' || (which === undefined && d.dimValue !== null && d.dimValue !== undefined && num(d.dimValue as LongLike) > 0)) {
      return num(d.dimValue as LongLike);
    }
    return d.dimParam || `${vi.name}_dim${i}`;
  });
  return { name: vi.name ?? '', dtype: (tt.elemType ?? DType.FLOAT) as DType, shape };
}

function decodeAttr(a: OnnxTypes.IAttributeProto, node: Node, options: DecodeOptions): Attr {
  switch (a.type) {
    case AT.FLOAT: return { kind: 'float', value: a.f ?? 0 };
    case AT.INT: return { kind: 'int', value: num(a.i as LongLike) };
    case AT.STRING: return { kind: 'string', value: Buffer.from(a.s ?? new Uint8Array()).toString('utf8') };
    case AT.TENSOR: return { kind: 'tensor', value: decodeTensor(a.t!, options) };
    case AT.FLOATS: return { kind: 'floats', value: [...(a.floats ?? [])] };
    case AT.INTS: return { kind: 'ints', value: (a.ints ?? []).map((v) => num(v as LongLike)) };
    case AT.STRINGS: return { kind: 'strings', value: (a.strings ?? []).map((s) => Buffer.from(s).toString('utf8')) };
    case AT.GRAPH: return { kind: 'graph', value: a.g };
    default:
      throw new Error(`node '${node.name}' (${node.opType}): attribute '${a.name}' has unsupported type ${a.type}`);
  }
}

export function decodeTensor(t: OnnxTypes.ITensorProto, options: DecodeOptions = {}): Tensor {
  const dims = (t.dims ?? []).map((d) => num(d as LongLike));
  const dtype = (t.dataType ?? 0) as DType;
  const n = sizeOf(dims);
  const name = t.name ?? '';
  let raw: Uint8Array | undefined = t.rawData && t.rawData.length ? t.rawData : undefined;
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    const kv = Object.fromEntries((t.externalData ?? []).map((e) => [e.key, e.value]));
    if (!options.baseDir) throw new Error(`tensor '${name}' uses external data but the model was not loaded from a file`);
    try {
      raw = readExternalData(options.baseDir, name, {
        location: kv.location ?? '',
        offset: kv.offset ? Number(kv.offset) : 0,
        length: kv.length ? Number(kv.length) : undefined,
      });
    } catch (e) {
      throw new InputError(`${options.source ?? 'model'}: ${(e as Error).message}`);
    }
  }
  if (dtype === DType.INT4 || dtype === DType.UINT4) {
    const packed = raw ? raw.slice() : Uint8Array.from(t.int32Data ?? []);
    return new Tensor(dtype, dims, packed);
  }
  const data = allocate(dtype, n);
  if (raw) {
    const bytes = (data as TypedArray).byteLength;
    if (raw.length !== bytes) throw new Error(`tensor '${name}': ${raw.length} bytes of data for dims [${dims}] of ${dtypeName[dtype]} (need ${bytes})`);
    new Uint8Array(data.buffer).set(raw);
    return new Tensor(dtype, dims, data);
  }
  const fill = (src: ArrayLike<number | LongLike> | null | undefined, conv: (v: any) => any) => {
    const s = src ?? [];
    if (s.length !== n) throw new Error(`tensor '${name}': ${s.length} values for dims [${dims}]`);
    for (let i = 0; i < n; i++) (data as any)[i] = conv(s[i]);
  };
  switch (dtype) {
    case DType.FLOAT: fill(t.floatData, Number); break;
    case DType.DOUBLE: fill(t.doubleData, Number); break;
    case DType.INT64: fill(t.int64Data as LongLike[], (v) => BigInt(num(v))); break;
    case DType.UINT64: fill(t.uint64Data as LongLike[], (v) => BigInt(num(v))); break;
    case DType.INT32: case DType.INT8: case DType.UINT8: case DType.INT16: case DType.UINT16: case DType.BOOL: case DType.FLOAT16:
      fill(t.int32Data, Number); break;
    case DType.UINT32: fill(t.uint64Data as LongLike[], num); break;
    default: throw new Error(`tensor '${name}' has unsupported data type ${dtypeName[dtype] ?? dtype}`);
  }
  return new Tensor(dtype, dims, data);
}

// ---------------- encode ----------------

export function encodeTensor(name: string, t: Tensor): OnnxTypes.ITensorProto {
  return {
    name,
    dims: t.dims,
    dataType: t.dtype,
    rawData: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
  };
}

function encodeAttr(name: string, a: Attr): OnnxTypes.IAttributeProto {
  switch (a.kind) {
    case 'int': return { name, type: AT.INT, i: a.value };
    case 'float': return { name, type: AT.FLOAT, f: a.value };
    case 'string': return { name, type: AT.STRING, s: Buffer.from(a.value, 'utf8') };
    case 'ints': return { name, type: AT.INTS, ints: a.value };
    case 'floats': return { name, type: AT.FLOATS, floats: a.value };
    case 'strings': return { name, type: AT.STRINGS, strings: a.value.map((s) => Buffer.from(s, 'utf8')) };
    case 'tensor': return { name, type: AT.TENSOR, t: encodeTensor('', a.value) };
    case 'graph': return { name, type: AT.GRAPH, g: a.value as OnnxTypes.IGraphProto };
  }
}

/** The shape of a value whose rank is not known: encoded with no shape (ONNX: any rank), not as a scalar. */
export const UNKNOWN_SHAPE: Shape = Object.freeze([]) as unknown as Shape;

function encodeValueInfo(v: ValueInfo): OnnxTypes.IValueInfoProto {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: v.dtype,
        ...(v.shape === UNKNOWN_SHAPE ? {} : { shape: { dim: v.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } }),
      },
    },
  };
}

/** IR version matching the default-domain opset (onnx/helper.py's VERSION_TABLE). */
function irVersionFor(opset: number): number {
  if (opset >= 21) return 10;
  if (opset >= 19) return 9;
  if (opset >= 15) return 8;
  return 7;
}

export function encodeModel(g: Graph): Uint8Array {
  const domains = new Set(g.nodes.map((n) => n.domain));
  const opsets = { ...g.opsets };
  for (const d of domains) if (opsets[d] === undefined) opsets[d] = 1;
  const model: OnnxTypes.IModelProto = {
    irVersion: irVersionFor(opsets[''] ?? 17),
    producerName: 'qatkit',
    opsetImport: Object.entries(opsets).map(([domain, version]) => ({ domain, version })),
    metadataProps: Object.entries(g.metadata).map(([key, value]) => ({ key, value })),
    graph: {
      name: g.name,
      node: g.nodes.map((n) => ({
        opType: n.opType,
        domain: n.domain,
        name: n.name,
        input: n.inputs,
        output: n.outputs,
        attribute: Object.entries(n.attrs).map(([k, a]) => encodeAttr(k, a)),
      })),
      initializer: [...g.initializers].map(([name, t]) => encodeTensor(name, t)),
      input: g.inputs.map(encodeValueInfo),
      output: g.outputs.map(encodeValueInfo),
    },
  };
  return onnx.ModelProto.encode(model).finish();
}

export function loadModel(file: string): Graph {
  let bytes: Buffer;
  try {
    const stat = fs.statSync(file);
    if (!stat.isFile()) throw new Error('not a regular file');
    if (stat.size > MAX_MODEL_FILE_BYTES) throw new Error(`${stat.size} bytes, more than the ${MAX_MODEL_FILE_BYTES} read into memory (keep large weights as external data)`);
    bytes = fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(`cannot read model file '${file}': ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  return decodeModel(bytes, { baseDir: path.dirname(path.resolve(file)), source: file });
}

export function saveModel(g: Graph, file: string): void {
  writeFileAtomic(file, encodeModel(g));
}
