import { DType } from './dtype.js';
import { Attr, Dim, Graph, Node, Shape, ValueType } from './graph.js';
import { Tensor } from './tensor.js';
import { opDef, InferContext } from '../ops/registry.js';

/** Plain JS values accepted as attributes; integers become INT unless the name is a float attribute. */
export type AttrInput = number | number[] | string | string[] | Tensor | Attr;

/** Attribute names that ONNX types as FLOAT(S) even when the value happens to be an integer. */
const FLOAT_ATTRS = new Set([
  'alpha', 'beta', 'epsilon', 'momentum', 'gamma', 'ratio', 'bias', 'lambd', 'scale', 'scales',
  'spatial_scale', 'value_float', 'value_floats', 'min', 'max', 'temperature', 'eps', 'qmin_f',
]);

export function toAttr(name: string, v: AttrInput): Attr {
  if (v instanceof Tensor) return { kind: 'tensor', value: v };
  if (typeof v === 'string') return { kind: 'string', value: v };
  if (typeof v === 'number') {
    return FLOAT_ATTRS.has(name) || !Number.isInteger(v) ? { kind: 'float', value: v } : { kind: 'int', value: v };
  }
  if (Array.isArray(v)) {
    if (v.length > 0 && typeof v[0] === 'string') return { kind: 'strings', value: v as string[] };
    const nums = v as number[];
    return FLOAT_ATTRS.has(name) || nums.some((x) => !Number.isInteger(x))
      ? { kind: 'floats', value: nums }
      : { kind: 'ints', value: nums };
  }
  return v;
}

export interface OpOptions {
  domain?: string;
  /** Number of outputs, or explicit output names. */
  outputs?: number | string[];
  name?: string;
  /** Skip inference and use these output types (for values whose shape only the caller knows). */
  types?: ValueType[];
}

/**
 * Emits nodes into a Graph, naming values uniquely and inferring each output's dtype and shape as it
 * goes, so that code building more nodes (models, gradient rules, optimizers) can ask for shapes.
 */
export class GraphBuilder {
  private counter = 0;
  private scalarCache = new Map<string, string>();

  constructor(public graph: Graph, public prefix = '') {}

  fresh(base: string): string {
    let name: string;
    do name = `${this.prefix}${base}_${this.counter++}`;
    while (this.graph.hasValue(name));
    return name;
  }

  type(name: string): ValueType {
    return this.graph.typeOf(name);
  }
  shape(name: string): Shape {
    return this.type(name).shape;
  }
  dtype(name: string): DType {
    return this.type(name).dtype;
  }
  rank(name: string): number {
    return this.shape(name).length;
  }

  /** Static dims of a value; throws (naming the value) where a dim is symbolic. */
  staticShape(name: string): number[] {
    const s = this.shape(name);
    if (s.some((d) => typeof d !== 'number')) throw new Error(`value '${name}' has symbolic shape [${s}] where a static one is needed`);
    return s as number[];
  }

  input(name: string, dtype: DType, shape: Shape): string {
    this.graph.inputs.push({ name, dtype, shape });
    this.graph.types.set(name, { dtype, shape });
    return name;
  }

  output(name: string): string {
    const t = this.type(name);
    this.graph.outputs.push({ name, ...t });
    return name;
  }

  initializer(name: string, tensor: Tensor): string {
    if (this.graph.hasValue(name)) throw new Error(`value '${name}' already exists`);
    this.graph.initializers.set(name, tensor);
    this.graph.types.set(name, { dtype: tensor.dtype, shape: tensor.dims });
    return name;
  }

  /** A constant initializer; scalars are cached so repeated constants share one value. */
  constant(value: Tensor | number | number[], dtype: DType = DType.FLOAT, dims?: number[]): string {
    if (value instanceof Tensor) return this.initializer(this.fresh('const'), value);
    const values = typeof value === 'number' ? [value] : value;
    const shape = dims ?? (typeof value === 'number' ? [] : [values.length]);
    const cacheKey = `${dtype}|${shape}|${values}`;
    const cached = values.length <= 8 ? this.scalarCache.get(cacheKey) : undefined;
    if (cached && this.graph.hasValue(cached)) return cached;
    const t =
      dtype === DType.INT64
        ? Tensor.int64(shape, values)
        : dtype === DType.DOUBLE
          ? Tensor.double(shape, values)
          : dtype === DType.INT32
            ? new Tensor(DType.INT32, shape, Int32Array.from(values))
            : dtype === DType.BOOL
              ? new Tensor(DType.BOOL, shape, Uint8Array.from(values))
              : Tensor.float(shape, values);
    const name = this.initializer(this.fresh('const'), t);
    if (values.length <= 8) this.scalarCache.set(cacheKey, name);
    return name;
  }

  /** A scalar constant with the same float dtype as `like` (rules run in float32 and float64). */
  scalarLike(value: number, like: string): string {
    return this.constant(value, this.dtype(like));
  }

  ints(values: number[]): string {
    return this.constant(values, DType.INT64);
  }

  constantValue(name: string): Tensor | undefined {
    return this.graph.initializers.get(name);
  }

  op(opType: string, inputs: string[], attrs: Record<string, AttrInput | undefined> = {}, opts: OpOptions = {}): string[] {
    const outNames =
      Array.isArray(opts.outputs) ? opts.outputs : Array.from({ length: opts.outputs ?? 1 }, () => this.fresh(opType.toLowerCase()));
    const node: Node = {
      opType,
      domain: opts.domain ?? '',
      name: opts.name ?? this.fresh(`${opType}`),
      inputs,
      outputs: outNames,
      attrs: Object.fromEntries(Object.entries(attrs).filter(([, v]) => v !== undefined).map(([k, v]) => [k, toAttr(k, v!)])),
    };
    this.addNode(node, opts.types);
    return outNames;
  }

  op1(opType: string, inputs: string[], attrs: Record<string, AttrInput | undefined> = {}, opts: OpOptions = {}): string {
    return this.op(opType, inputs, attrs, opts)[0];
  }

  /** Appends an existing node (e.g. copied from another graph) and infers its output types. */
  addNode(node: Node, types?: ValueType[]): Node {
    const inferred = types ?? inferNode(this.graph, node);
    node.outputs.forEach((o, i) => {
      if (o && inferred[i]) this.graph.types.set(o, inferred[i]);
    });
    this.graph.nodes.push(node);
    return node;
  }

  // ---- the ops gradient rules and models use most; names follow ONNX ----
  add(a: string, b: string) { return this.op1('Add', [a, b]); }
  sub(a: string, b: string) { return this.op1('Sub', [a, b]); }
  mul(a: string, b: string) { return this.op1('Mul', [a, b]); }
  div(a: string, b: string) { return this.op1('Div', [a, b]); }
  neg(a: string) { return this.op1('Neg', [a]); }
  sqrt(a: string) { return this.op1('Sqrt', [a]); }
  exp(a: string) { return this.op1('Exp', [a]); }
  log(a: string) { return this.op1('Log', [a]); }
  abs(a: string) { return this.op1('Abs', [a]); }
  sign(a: string) { return this.op1('Sign', [a]); }
  relu(a: string) { return this.op1('Relu', [a]); }
  sigmoid(a: string) { return this.op1('Sigmoid', [a]); }
  tanh(a: string) { return this.op1('Tanh', [a]); }
  reciprocal(a: string) { return this.op1('Reciprocal', [a]); }
  matmul(a: string, b: string) { return this.op1('MatMul', [a, b]); }
  identity(a: string) { return this.op1('Identity', [a]); }
  greater(a: string, b: string) { return this.op1('Greater', [a, b]); }
  less(a: string, b: string) { return this.op1('Less', [a, b]); }
  equal(a: string, b: string) { return this.op1('Equal', [a, b]); }
  where(c: string, a: string, b: string) { return this.op1('Where', [c, a, b]); }
  transpose(x: string, perm: number[]) { return this.op1('Transpose', [x], { perm }); }
  cast(x: string, to: DType) { return this.dtype(x) === to ? x : this.op1('Cast', [x], { to }); }
  castLike(x: string, like: string) { return this.cast(x, this.dtype(like)); }
  shapeOf(x: string) { return this.op1('Shape', [x]); }

  /** Reshape to static dims (0 and -1 allowed, as in ONNX). */
  reshape(x: string, dims: number[]) {
    return this.op1('Reshape', [x, this.ints(dims)]);
  }

  /** Reshape `x` to the (possibly symbolic) shape of `like`, through Shape(like) at run time. */
  reshapeLike(x: string, like: string) {
    const target = this.shape(like);
    if (target.every((d) => typeof d === 'number')) return this.reshape(x, target as number[]);
    return this.op1('Reshape', [x, this.shapeOf(like)], {}, { types: [{ dtype: this.dtype(x), shape: target }] });
  }

  reduceSum(x: string, axes: number[], keepdims = true) {
    if (axes.length === 0) return x;
    return this.op1('ReduceSum', [x, this.ints(axes)], { keepdims: keepdims ? 1 : 0 });
  }
  reduceMean(x: string, axes: number[], keepdims = true) {
    if (axes.length === 0) return x;
    return this.op1('ReduceMean', [x], { axes, keepdims: keepdims ? 1 : 0 });
  }
  /** Sum of every element, as a scalar. */
  sumAll(x: string) {
    return this.op1('ReduceSum', [x], { keepdims: 0 });
  }
  unsqueeze(x: string, axes: number[]) { return this.op1('Unsqueeze', [x, this.ints(axes)]); }
  squeeze(x: string, axes: number[]) { return this.op1('Squeeze', [x, this.ints(axes)]); }

  /**
   * Sums `grad` over the axes along which a value of shape `target` was broadcast to grad's shape, and
   * reshapes to `target`: the one place where broadcasting is undone.
   */
  unbroadcast(grad: string, target: Shape): string {
    const gshape = this.shape(grad);
    const lead = gshape.length - target.length;
    const axes: number[] = [];
    for (let i = 0; i < gshape.length; i++) {
      const t = i < lead ? undefined : target[i - lead];
      if (t === undefined || (t === 1 && gshape[i] !== 1)) axes.push(i);
    }
    let out = this.reduceSum(grad, axes, true);
    if (lead > 0) out = this.squeeze(out, Array.from({ length: lead }, (_, i) => i));
    return out;
  }
}

/** Largest integer constant read as a shape value (shapes and small index vectors). */
const MAX_SHAPE_VALUE = 64;

/** Elements of a small integer value: from an initializer, or from the partial evaluator's symbolic values. */
export function shapeValueOf(graph: Graph, name: string | undefined): Dim[] | undefined {
  if (!name) return undefined;
  const t = graph.initializers.get(name);
  if (t) return (t.dtype === DType.INT64 || t.dtype === DType.INT32) && t.size <= MAX_SHAPE_VALUE ? t.toNumbers() : undefined;
  return graph.shapeValues.get(name);
}

export function inferNode(graph: Graph, node: Node): ValueType[] {
  const def = opDef(node);
  const ctx: InferContext = {
    node,
    inputs: node.inputs.map((i) => (i ? graph.typeOf(i) : undefined)),
    constant: (i) => (node.inputs[i] ? graph.initializers.get(node.inputs[i]) : undefined),
    shapeValue: (i) => shapeValueOf(graph, node.inputs[i]),
  };
  return def.infer(ctx);
}
