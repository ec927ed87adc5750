import { allocate, DType } from './dtype.js';
import { addDims, divDims, mulDims, subDims } from './dims.js';
import { attrInt, attrInts, Node } from './graph.js';
import { sizeOf, Tensor } from './tensor.js';
import { stridesOf } from '../reference/kernel.js';

// Reference kernels for the small tensors of shape computations (ONNX operator semantics, opset 17 forms), run by
// the partial evaluator at import and whenever shapes become known. Elements are JS values: bigint for int64
// (exact, and Div truncates as ONNX requires), numbers otherwise (bool as 0/1), and strings for symbolic integer
// elements (Shape of a value with symbolic dims). A kernel returns undefined where it cannot evaluate (a symbolic
// element reaches an op that needs its value, a division by zero, a float cast to an integer out of range): the
// node then stays in the graph for ONNX Runtime.

export type Element = number | bigint | string;

export interface EvalValue {
  dtype: DType;
  dims: number[];
  data: Element[];
}

const INT_TYPES = new Set([DType.INT8, DType.UINT8, DType.INT16, DType.UINT16, DType.INT32, DType.UINT32, DType.INT64, DType.UINT64]);
const FLOAT_TYPES = new Set([DType.FLOAT, DType.DOUBLE]);
const isBig = (d: DType) => d === DType.INT64 || d === DType.UINT64;
const evaluable = (d: DType) => INT_TYPES.has(d) || FLOAT_TYPES.has(d) || d === DType.BOOL;

export function fromTensor(t: Tensor): EvalValue | undefined {
  if (!evaluable(t.dtype)) return undefined;
  return { dtype: t.dtype, dims: [...t.dims], data: Array.from(t.data as ArrayLike<number | bigint>) };
}

export const isSymbolic = (v: EvalValue) => v.data.some((e) => typeof e === 'string');

/** The tensor of a value without symbolic elements (int64 wraps as ONNX does). */
export function toTensor(v: EvalValue): Tensor {
  const n = sizeOf(v.dims);
  const data = allocate(v.dtype, n);
  for (let i = 0; i < n; i++) {
    const e = v.data[i];
    if (typeof e === 'string') throw new Error(`toTensor: element ${i} is symbolic ('${e}')`);
    if (data instanceof BigInt64Array) data[i] = BigInt.asIntN(64, BigInt(e));
    else if (data instanceof BigUint64Array) data[i] = BigInt.asUintN(64, BigInt(e));
    else (data as Float32Array)[i] = Number(e);
  }
  return new Tensor(v.dtype, [...v.dims], data);
}

/** Elements as dims: numbers and symbol labels (for shape values). */
export const asDims = (v: EvalValue) => v.data.map((e) => (typeof e === 'bigint' ? Number(e) : e));

const num = (e: Element): number => {
  if (typeof e === 'string') throw new Symbolic();
  return Number(e);
};
/** Thrown inside a kernel when a symbolic element reaches an op that needs its value. */
class Symbolic extends Error {}
class CannotEvaluate extends Error {}

type Kernel = (node: Node, inputs: (EvalValue | undefined)[]) => EvalValue[];

// ---------------- index helpers ----------------

function normAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new CannotEvaluate();
  return a;
}

function ints(v: EvalValue | undefined): number[] {
  if (!v) throw new CannotEvaluate();
  return v.data.map(num);
}

function broadcastDims(list: number[][]): number[] {
  const rank = Math.max(...list.map((d) => d.length));
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    let dim = 1;
    for (const d of list) {
      const x = d[d.length - rank + i] ?? 1;
      if (x === 1) continue;
      if (dim !== 1 && dim !== x) throw new CannotEvaluate();
      dim = x;
    }
    out.push(dim);
  }
  return out;
}

/** Flat source index in `dims` (broadcast to `out`) of each output element. */
function broadcastIndex(dims: number[], out: number[]): Int32Array {
  const n = sizeOf(out);
  const idx = new Int32Array(n);
  const lead = out.length - dims.length;
  const src = stridesOf(dims);
  const outStrides = stridesOf(out);
  for (let i = 0; i < n; i++) {
    let rem = i;
    let s = 0;
    for (let a = 0; a < out.length; a++) {
      const q = Math.floor(rem / outStrides[a]);
      rem -= q * outStrides[a];
      const k = a - lead;
      if (k >= 0 && dims[k] !== 1) s += q * src[k];
    }
    idx[i] = s;
  }
  return idx;
}

function broadcastTo(v: EvalValue, out: number[]): Element[] {
  const idx = broadcastIndex(v.dims, out);
  return Array.from(idx, (i) => v.data[i]);
}

// ---------------- element-wise ----------------

function castElement(e: Element, to: DType): Element {
  if (typeof e === 'string') {
    if (INT_TYPES.has(to)) return e;
    throw new Symbolic();
  }
  if (to === DType.BOOL) return Number(e) !== 0 || Number.isNaN(Number(e)) ? 1 : 0;
  if (FLOAT_TYPES.has(to)) return to === DType.FLOAT ? Math.fround(Number(e)) : Number(e);
  if (INT_TYPES.has(to)) {
    let x: bigint;
    if (typeof e === 'bigint') x = e;
    else {
      if (!Number.isFinite(e)) throw new CannotEvaluate();
      x = BigInt(Math.trunc(e));
    }
    if (isBig(to)) return to === DType.INT64 ? BigInt.asIntN(64, x) : BigInt.asUintN(64, x);
    const bits = { [DType.INT8]: 8, [DType.UINT8]: 8, [DType.INT16]: 16, [DType.UINT16]: 16, [DType.INT32]: 32, [DType.UINT32]: 32 }[to as number]!;
    const signed = to === DType.INT8 || to === DType.INT16 || to === DType.INT32;
    return Number(signed ? BigInt.asIntN(bits, x) : BigInt.asUintN(bits, x));
  }
  throw new CannotEvaluate();
}

/** Rounds a float result to the tensor's precision. */
const finish = (dtype: DType, x: number): number => (dtype === DType.FLOAT ? Math.fround(x) : x);

/** Round half to even (ONNX Round, IEEE roundTiesToEven). */
export function roundHalfEven(x: number): number {
  if (!Number.isFinite(x)) return x;
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 ? 2 * Math.round(x / 2) : r;
}

type Binary = (a: Element, b: Element, dtype: DType) => Element;

function intDivide(a: bigint, b: bigint): bigint {
  if (b === 0n) throw new CannotEvaluate();
  return a / b; // BigInt division truncates toward zero, as C++ and ONNX Div on integers
}

function arithmetic(op: 'add' | 'sub' | 'mul' | 'div'): Binary {
  return (a, b, dtype) => {
    if (typeof a === 'string' || typeof b === 'string') {
      const da = typeof a === 'bigint' ? Number(a) : (a as number | string);
      const db = typeof b === 'bigint' ? Number(b) : (b as number | string);
      const r = op === 'add' ? addDims(da, db) : op === 'sub' ? subDims(da, db) : op === 'mul' ? mulDims(da, db) : divDims(da, db);
      return typeof r === 'number' ? (isBig(dtype) ? BigInt(r) : r) : r;
    }
    if (typeof a === 'bigint' || typeof b === 'bigint') {
      const x = BigInt(a);
      const y = BigInt(b);
      return op === 'add' ? x + y : op === 'sub' ? x - y : op === 'mul' ? x * y : intDivide(x, y);
    }
    if (INT_TYPES.has(dtype)) {
      if (op === 'div') {
        if (b === 0) throw new CannotEvaluate();
        return castElement(Math.trunc(a / b), dtype);
      }
      return castElement(op === 'add' ? a + b : op === 'sub' ? a - b : a * b, dtype);
    }
    return finish(dtype, op === 'add' ? a + b : op === 'sub' ? a - b : op === 'mul' ? a * b : a / b);
  };
}

function modulo(fmod: boolean): Binary {
  return (a, b, dtype) => {
    if (typeof a === 'string' || typeof b === 'string') throw new Symbolic();
    if (typeof a === 'bigint' || typeof b === 'bigint') {
      const x = BigInt(a);
      const y = BigInt(b);
      if (y === 0n) throw new CannotEvaluate();
      const r = x % y;
      // Mod with fmod=0: the result takes the divisor's sign (as Python's %).
      return !fmod && r !== 0n && r < 0n !== y < 0n ? r + y : r;
    }
    if (FLOAT_TYPES.has(dtype)) return finish(dtype, a % b);
    if (b === 0) throw new CannotEvaluate();
    const r = a % b;
    return !fmod && r !== 0 && r < 0 !== b < 0 ? r + b : r;
  };
}

const compare = (f: (x: number | bigint, y: number | bigint) => boolean): Binary => (a, b) => {
  if (typeof a === 'string' || typeof b === 'string') {
    // Dims are sizes (>= 0): equal to themselves, never equal to a negative number (torch's -1 checks).
    if (f === eq) {
      if (a === b) return 1;
      const other = typeof a === 'string' ? b : a;
      if (typeof other !== 'string' && Number(other) < 0) return 0;
    }
    throw new Symbolic();
  }
  return f(typeof a === 'bigint' || typeof b === 'bigint' ? BigInt(a) : a, typeof a === 'bigint' || typeof b === 'bigint' ? BigInt(b) : b) ? 1 : 0;
};
const eq = (x: number | bigint, y: number | bigint) => x === y;

const extreme = (pick: 'max' | 'min'): Binary => (a, b) => {
  if (typeof a === 'string' || typeof b === 'string') {
    if (a === b) return a;
    // max(dim, 0) = dim, min(dim, 0) = 0 for sizes.
    const other = typeof a === 'string' ? b : a;
    const sym = typeof a === 'string' ? a : b;
    if (typeof other !== 'string' && Number(other) <= 0) return pick === 'max' ? sym : other;
    throw new Symbolic();
  }
  if (typeof a === 'number' && (Number.isNaN(a) || Number.isNaN(b as number))) return NaN;
  return (pick === 'max' ? a >= b : a <= b) ? a : b;
};

const logical = (f: (x: boolean, y: boolean) => boolean): Binary => (a, b) => (f(num(a) !== 0, num(b) !== 0) ? 1 : 0);

function power(a: Element, b: Element, dtype: DType): Element {
  if (typeof a === 'bigint' && (typeof b === 'bigint' || Number.isInteger(b)) && Number(b) >= 0) return BigInt.asIntN(64, a ** BigInt(b));
  const r = Math.pow(num(a), num(b));
  return INT_TYPES.has(dtype) ? castElement(r, dtype) : finish(dtype, r);
}

function elementwise(inputs: EvalValue[], f: (args: Element[]) => Element, dtype: DType): EvalValue {
  const dims = broadcastDims(inputs.map((v) => v.dims));
  const n = sizeOf(dims);
  const sources = inputs.map((v) => (sizeOf(v.dims) === n && v.dims.length === dims.length ? undefined : broadcastIndex(v.dims, dims)));
  const data: Element[] = new Array(n);
  const args: Element[] = new Array(inputs.length);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < inputs.length; k++) args[k] = inputs[k].data[sources[k] ? sources[k]![i] : i];
    data[i] = f(args);
  }
  return { dtype, dims, data };
}

function binaryKernel(f: Binary, outDtype?: DType): Kernel {
  return (_node, [a, b]) => {
    if (!a || !b) throw new CannotEvaluate();
    const dtype = outDtype ?? a.dtype;
    return [elementwise([a, b], ([x, y]) => f(x, y, a.dtype), dtype)];
  };
}

function variadicKernel(f: Binary): Kernel {
  return (_node, inputs) => {
    const vs = inputs.filter((v): v is EvalValue => !!v);
    if (vs.length === 0) throw new CannotEvaluate();
    return [elementwise(vs, (args) => args.reduce((p, q) => f(p, q, vs[0].dtype)), vs[0].dtype)];
  };
}

function unaryKernel(f: (x: number) => number, intsToo = false): Kernel {
  return (_node, [x]) => {
    if (!x) throw new CannotEvaluate();
    if (INT_TYPES.has(x.dtype) && !intsToo) throw new CannotEvaluate();
    return [{ dtype: x.dtype, dims: [...x.dims], data: x.data.map((e) => {
      if (typeof e === 'bigint') return BigInt(f(Number(e)));
      const r = f(num(e));
      return INT_TYPES.has(x.dtype) ? r : finish(x.dtype, r);
    }) }];
  };
}

function neg(_node: Node, [x]: (EvalValue | undefined)[]): EvalValue[] {
  if (!x) throw new CannotEvaluate();
  return [{ dtype: x.dtype, dims: [...x.dims], data: x.data.map((e) => (typeof e === 'bigint' ? -e : typeof e === 'string' ? subDimsElement(e) : -e)) }];
}
const subDimsElement = (e: string): Element => {
  const r = subDims(0, e);
  if (typeof r === 'number') return BigInt(r);
  return r;
};

// ---------------- structural ----------------

function shape(node: Node, [x]: (EvalValue | undefined)[]): EvalValue[] {
  if (!x) throw new CannotEvaluate();
  return [shapeOfDims(node, x.dims)];
}

/** Shape's output for input dims (which may be symbolic: the partial evaluator calls this with a value's type). */
export function shapeOfDims(node: Node, dims: (number | string)[]): EvalValue {
  const rank = dims.length;
  const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + rank : v, 0), rank);
  const start = clamp(attrInt(node, 'start', 0));
  const end = clamp(attrInt(node, 'end', rank));
  const picked = dims.slice(start, Math.max(start, end));
  return { dtype: DType.INT64, dims: [picked.length], data: picked.map((d) => (typeof d === 'number' ? BigInt(d) : d)) };
}

function gather(node: Node, [data, indices]: (EvalValue | undefined)[]): EvalValue[] {
  if (!data || !indices) throw new CannotEvaluate();
  const rank = data.dims.length;
  const axis = normAxis(attrInt(node, 'axis', 0), rank);
  const dim = data.dims[axis];
  const idx = ints(indices).map((i) => {
    const j = i < 0 ? i + dim : i;
    if (j < 0 || j >= dim) throw new CannotEvaluate();
    return j;
  });
  const outer = sizeOf(data.dims.slice(0, axis));
  const inner = sizeOf(data.dims.slice(axis + 1));
  const out: Element[] = [];
  for (let o = 0; o < outer; o++) for (const j of idx) for (let k = 0; k < inner; k++) out.push(data.data[(o * dim + j) * inner + k]);
  return [{ dtype: data.dtype, dims: [...data.dims.slice(0, axis), ...indices.dims, ...data.dims.slice(axis + 1)], data: out }];
}

const reshaped = (x: EvalValue, dims: number[]): EvalValue => ({ dtype: x.dtype, dims, data: x.data });

function unsqueeze(_node: Node, [x, axesV]: (EvalValue | undefined)[]): EvalValue[] {
  if (!x) throw new CannotEvaluate();
  const axesIn = ints(axesV);
  const rank = x.dims.length + axesIn.length;
  const axes = axesIn.map((a) => normAxis(a, rank));
  const dims: number[] = [];
  let k = 0;
  for (let i = 0; i < rank; i++) dims.push(axes.includes(i) ? 1 : x.dims[k++]);
  return [reshaped(x, dims)];
}

function squeeze(_node: Node, [x, axesV]: (EvalValue | undefined)[]): EvalValue[] {
  if (!x) throw new CannotEvaluate();
  const axes = axesV ? ints(axesV).map((a) => normAxis(a, x.dims.length)) : x.dims.flatMap((d, i) => (d === 1 ? [i] : []));
  if (axes.some((a) => x.dims[a] !== 1)) throw new CannotEvaluate();
  return [reshaped(x, x.dims.filter((_, i) => !axes.includes(i)))];
}

function concat(node: Node, inputs: (EvalValue | undefined)[]): EvalValue[] {
  const vs = inputs.filter((v): v is EvalValue => !!v);
  if (vs.length === 0) throw new CannotEvaluate();
  const rank = vs[0].dims.length;
  const axis = normAxis(attrInt(node, 'axis', 0), rank);
  const outer = sizeOf(vs[0].dims.slice(0, axis));
  const out: Element[] = [];
  for (let o = 0; o < outer; o++) {
    for (const v of vs) {
      const chunk = sizeOf(v.dims.slice(axis));
      for (let k = 0; k < chunk; k++) out.push(v.data[o * chunk + k]);
    }
  }
  const dims = [...vs[0].dims];
  dims[axis] = vs.reduce((p, v) => p + v.dims[axis], 0);
  return [{ dtype: vs[0].dtype, dims, data: out }];
}

function split(node: Node, [x, sizesV]: (EvalValue | undefined)[]): EvalValue[] {
  if (!x) throw new CannotEvaluate();
  const axis = normAxis(attrInt(node, 'axis', 0), x.dims.length);
  const dim = x.dims[axis];
  const n = node.outputs.length;
  const part = Math.ceil(dim / n);
  const sizes = sizesV ? ints(sizesV) : attrInts(node, 'split', undefined) ?? Array.from({ length: n }, (_, i) => Math.max(0, Math.min(part, dim - i * part)));
  if (sizes.reduce((p, q) => p + q, 0) !== dim) throw new CannotEvaluate();
  let start = 0;
  return sizes.map((s) => {
    const r = sliceAxes(x, [{ axis, start, end: start + s, step: 1 }]);
    start += s;
    return r;
  });
}

interface SliceSpec {
  axis: number;
  start: number;
  end: number;
  step: number;
}

function sliceAxes(x: EvalValue, specs: SliceSpec[]): EvalValue {
  const picks = x.dims.map((d) => Array.from({ length: d }, (_, i) => i));
  for (const s of specs) {
    const d = x.dims[s.axis];
    let start = s.start < 0 ? s.start + d : s.start;
    let end = s.end < 0 ? s.end + d : s.end;
    const list: number[] = [];
    if (s.step > 0) {
      start = Math.min(Math.max(start, 0), d);
      end = Math.min(Math.max(end, 0), d);
      for (let i = start; i < end; i += s.step) list.push(i);
    } else {
      start = Math.min(Math.max(start, 0), d - 1);
      end = Math.min(Math.max(end, -1), d - 1);
      for (let i = start; i > end; i += s.step) list.push(i);
    }
    picks[s.axis] = list;
  }
  const strides = stridesOf(x.dims);
  let positions = [0];
  for (let a = 0; a < x.dims.length; a++) {
    const next: number[] = [];
    for (const p of positions) for (const k of picks[a]) next.push(p + k * strides[a]);
    positions = next;
  }
  return { dtype: x.dtype, dims: picks.map((p) => p.length), data: positions.map((p) => x.data[p]) };
}

function slice(_node: Node, [x, startsV, endsV, axesV, stepsV]: (EvalValue | undefined)[]): EvalValue[] {
  if (!x) throw new CannotEvaluate();
  // int64 bounds such as INT64_MAX ("to the end") lose precision as numbers but still clamp to the dim.
  const starts = ints(startsV);
  const ends = ints(endsV);
  const axes = axesV ? ints(axesV).map((a) => normAxis(a, x.dims.length)) : starts.map((_, i) => i);
  const steps = stepsV ? ints(stepsV) : starts.map(() => 1);
  if (steps.some((s) => s === 0) || ends.length !== starts.length) throw new CannotEvaluate();
  return [sliceAxes(x, starts.map((start, i) => ({ axis: axes[i], start, end: ends[i], step: steps[i] })))];
}

function reshape(node: Node, [x, shapeV]: (EvalValue | undefined)[]): EvalValue[] {
  if (!x) throw new CannotEvaluate();
  const target = ints(shapeV);
  const allowZero = attrInt(node, 'allowzero', 0) === 1;
  const dims = target.map((d, i) => (d === 0 && !allowZero ? x.dims[i] : d));
  const minus = dims.indexOf(-1);
  const total = sizeOf(x.dims);
  if (minus >= 0) {
    const rest = sizeOf(dims.filter((_, i) => i !== minus));
    if (rest === 0 || total % rest !== 0) throw new CannotEvaluate();
    dims[minus] = total / rest;
  }
  if (sizeOf(dims) !== total || dims.some((d) => d < 0)) throw new CannotEvaluate();
  return [reshaped(x, dims)];
}

function flatten(node: Node, [x]: (EvalValue | undefined)[]): EvalValue[] {
  if (!x) throw new CannotEvaluate();
  const rank = x.dims.length;
  let axis = attrInt(node, 'axis', 1);
  if (axis < 0) axis += rank;
  return [reshaped(x, [sizeOf(x.dims.slice(0, axis)), sizeOf(x.dims.slice(axis))])];
}

function transpose(node: Node, [x]: (EvalValue | undefined)[]): EvalValue[] {
  if (!x) throw new CannotEvaluate();
  const rank = x.dims.length;
  const perm = attrInts(node, 'perm', undefined) ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
  const dims = perm.map((p) => x.dims[p]);
  const inStrides = stridesOf(x.dims);
  return [{ dtype: x.dtype, dims, data: gatherByIndex(x, dims, (axis, index) => index * inStrides[perm[axis]]) }];
}

/**
 * The elements of an output of `dims` read from x: output element (i_0, ..., i_r) takes x's element at offset
 * sum over axes a of offset(a, i_a) (a transpose or a tile is one such map).
 */
function gatherByIndex(x: EvalValue, dims: number[], offset: (axis: number, index: number) => number): Element[] {
  const outStrides = stridesOf(dims);
  const n = sizeOf(dims);
  const data: Element[] = new Array(n);
  for (let i = 0; i < n; i++) {
    let rem = i;
    let src = 0;
    for (let a = 0; a < dims.length; a++) {
      const q = Math.floor(rem / outStrides[a]);
      rem -= q * outStrides[a];
      src += offset(a, q);
    }
    data[i] = x.data[src];
  }
  return data;
}

function expand(_node: Node, [x, shapeV]: (EvalValue | undefined)[]): EvalValue[] {
  if (!x) throw new CannotEvaluate();
  const dims = broadcastDims([x.dims, ints(shapeV)]);
  return [{ dtype: x.dtype, dims, data: broadcastTo(x, dims) }];
}

function tile(_node: Node, [x, repeatsV]: (EvalValue | undefined)[]): EvalValue[] {
  if (!x) throw new CannotEvaluate();
  const repeats = ints(repeatsV);
  if (repeats.length !== x.dims.length) throw new CannotEvaluate();
  const dims = x.dims.map((d, i) => d * repeats[i]);
  const inStrides = stridesOf(x.dims);
  return [{ dtype: x.dtype, dims, data: gatherByIndex(x, dims, (axis, index) => (index % x.dims[axis]) * inStrides[axis]) }];
}

function constantOfShape(node: Node, [shapeV]: (EvalValue | undefined)[]): EvalValue[] {
  const dims = ints(shapeV);
  const a = node.attrs.value;
  const value = a && a.kind === 'tensor' ? fromTensor(a.value) : { dtype: DType.FLOAT, dims: [1], data: [0] as Element[] };
  if (!value) throw new CannotEvaluate();
  return [{ dtype: value.dtype, dims, data: new Array(sizeOf(dims)).fill(value.data[0]) }];
}

function range(_node: Node, [startV, limitV, deltaV]: (EvalValue | undefined)[]): EvalValue[] {
  if (!startV || !limitV || !deltaV) throw new CannotEvaluate();
  const [start, limit, delta] = [startV.data[0], limitV.data[0], deltaV.data[0]];
  if (typeof start === 'string' || typeof limit === 'string' || typeof delta === 'string') throw new Symbolic();
  const data: Element[] = [];
  if (typeof start === 'bigint') {
    const [s, l, d] = [start, BigInt(limit), BigInt(delta)];
    if (d === 0n) throw new CannotEvaluate();
    // ONNX Range: number_of_elements = max(ceil((limit - start) / delta), 0).
    for (let v = s; d > 0n ? v < l : v > l; v += d) data.push(v);
  } else {
    const [s, l, d] = [start, Number(limit), Number(delta)];
    if (d === 0) throw new CannotEvaluate();
    const n = Math.max(Math.ceil((l - s) / d), 0);
    for (let i = 0; i < n; i++) data.push(INT_TYPES.has(startV.dtype) ? s + i * d : finish(startV.dtype, s + i * d));
  }
  return [{ dtype: startV.dtype, dims: [data.length], data }];
}

function trilu(node: Node, [x, kV]: (EvalValue | undefined)[]): EvalValue[] {
  if (!x || x.dims.length < 2) throw new CannotEvaluate();
  const k = kV ? num(kV.data[0]) : 0;
  const upper = attrInt(node, 'upper', 1) === 1;
  const [rows, cols] = x.dims.slice(-2);
  const zero: Element = isBig(x.dtype) ? 0n : 0;
  const data = x.data.map((e, i) => {
    const j = i % cols;
    const r = Math.floor(i / cols) % rows;
    const keep = upper ? j - r >= k : j - r <= k;
    return keep ? e : zero;
  });
  return [{ dtype: x.dtype, dims: [...x.dims], data }];
}

function where(_node: Node, [c, a, b]: (EvalValue | undefined)[]): EvalValue[] {
  if (!c || !a || !b) throw new CannotEvaluate();
  return [elementwise([c, a, b], ([p, x, y]) => (num(p) !== 0 ? x : y), a.dtype)];
}

function cast(node: Node, [x]: (EvalValue | undefined)[]): EvalValue[] {
  if (!x) throw new CannotEvaluate();
  const to = attrInt(node, 'to', DType.FLOAT) as DType;
  if (!evaluable(to)) throw new CannotEvaluate();
  return [{ dtype: to, dims: [...x.dims], data: x.data.map((e) => castElement(e, to)) }];
}

function castLike(_node: Node, [x, like]: (EvalValue | undefined)[]): EvalValue[] {
  if (!x || !like) throw new CannotEvaluate();
  return [{ dtype: like.dtype, dims: [...x.dims], data: x.data.map((e) => castElement(e, like.dtype)) }];
}

function reduce(kind: 'sum' | 'prod' | 'max' | 'min' | 'mean'): Kernel {
  return (node, [x, axesV]) => {
    if (!x) throw new CannotEvaluate();
    const rank = x.dims.length;
    const given = axesV ? ints(axesV) : attrInts(node, 'axes', undefined);
    if (given && given.length === 0 && attrInt(node, 'noop_with_empty_axes', 0) === 1) return [x];
    const axes = (given && given.length ? given : x.dims.map((_, i) => i)).map((a) => normAxis(a, rank));
    const keep = attrInt(node, 'keepdims', 1) === 1;
    const outDims = x.dims.map((d, i) => (axes.includes(i) ? 1 : d));
    const outStrides = stridesOf(outDims);
    const inStrides = stridesOf(x.dims);
    const n = sizeOf(outDims);
    const acc: (Element | undefined)[] = new Array(n).fill(undefined);
    const counts = new Array<number>(n).fill(0);
    for (let i = 0; i < x.data.length; i++) {
      let rem = i;
      let o = 0;
      for (let a = 0; a < rank; a++) {
        const q = Math.floor(rem / inStrides[a]);
        rem -= q * inStrides[a];
        if (!axes.includes(a)) o += q * outStrides[a];
      }
      const e = x.data[i];
      const prev = acc[o];
      counts[o]++;
      if (prev === undefined) acc[o] = e;
      else if (kind === 'sum' || kind === 'mean') acc[o] = arithmetic('add')(prev, e, x.dtype);
      else if (kind === 'prod') acc[o] = arithmetic('mul')(prev, e, x.dtype);
      else acc[o] = extreme(kind)(prev, e, x.dtype);
    }
    const empty: Element = kind === 'prod' ? 1 : 0;
    let data = acc.map((e) => (e === undefined ? (isBig(x.dtype) ? BigInt(empty) : empty) : e));
    if (kind === 'mean') data = data.map((e, i) => arithmetic('div')(e, isBig(x.dtype) ? BigInt(counts[i]) : counts[i], x.dtype));
    return [{ dtype: x.dtype, dims: keep ? outDims : x.dims.filter((_, i) => !axes.includes(i)), data }];
  };
}

/** numpy.matmul on small float or integer tensors (1-D operands promoted and the added dim removed). */
function matmul(_node: Node, [a, b]: (EvalValue | undefined)[]): EvalValue[] {
  if (!a || !b || a.dims.length === 0 || b.dims.length === 0) throw new CannotEvaluate();
  const ad = a.dims.length === 1 ? [1, a.dims[0]] : a.dims;
  const bd = b.dims.length === 1 ? [b.dims[0], 1] : b.dims;
  const [m, k] = ad.slice(-2);
  const [k2, n] = bd.slice(-2);
  if (k !== k2) throw new CannotEvaluate();
  const batch = broadcastDims([ad.slice(0, -2), bd.slice(0, -2)]);
  const count = sizeOf(batch);
  const ia = broadcastIndex(ad.slice(0, -2), batch);
  const ib = broadcastIndex(bd.slice(0, -2), batch);
  const add = arithmetic('add');
  const mul = arithmetic('mul');
  const data: Element[] = [];
  for (let t = 0; t < count; t++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let acc: Element = isBig(a.dtype) ? 0n : 0;
        for (let q = 0; q < k; q++) acc = add(acc, mul(a.data[ia[t] * m * k + i * k + q], b.data[ib[t] * k * n + q * n + j], a.dtype), a.dtype);
        data.push(acc);
      }
    }
  }
  const dims = [...batch, ...(a.dims.length > 1 ? [m] : []), ...(b.dims.length > 1 ? [n] : [])];
  return [{ dtype: a.dtype, dims, data }];
}

const identity: Kernel = (_node, [x]) => {
  if (!x) throw new CannotEvaluate();
  return [x];
};

function size(_node: Node, [x]: (EvalValue | undefined)[]): EvalValue[] {
  if (!x) throw new CannotEvaluate();
  return [{ dtype: DType.INT64, dims: [], data: [BigInt(sizeOf(x.dims))] }];
}

const KERNELS: Record<string, Kernel> = {
  Shape: shape,
  Size: size,
  Gather: gather,
  Unsqueeze: unsqueeze,
  Squeeze: squeeze,
  Concat: concat,
  Split: split,
  Slice: slice,
  Reshape: reshape,
  Flatten: flatten,
  Transpose: transpose,
  MatMul: matmul,
  Expand: expand,
  Tile: tile,
  ConstantOfShape: constantOfShape,
  Range: range,
  Trilu: trilu,
  Where: where,
  Cast: cast,
  CastLike: castLike,
  Identity: identity,
  Add: binaryKernel(arithmetic('add')),
  Sub: binaryKernel(arithmetic('sub')),
  Mul: binaryKernel(arithmetic('mul')),
  Div: binaryKernel(arithmetic('div')),
  Pow: binaryKernel(power),
  Equal: binaryKernel(compare(eq), DType.BOOL),
  Less: binaryKernel(compare((x, y) => x < y), DType.BOOL),
  Greater: binaryKernel(compare((x, y) => x > y), DType.BOOL),
  LessOrEqual: binaryKernel(compare((x, y) => x <= y), DType.BOOL),
  GreaterOrEqual: binaryKernel(compare((x, y) => x >= y), DType.BOOL),
  And: binaryKernel(logical((x, y) => x && y), DType.BOOL),
  Or: binaryKernel(logical((x, y) => x || y), DType.BOOL),
  Xor: binaryKernel(logical((x, y) => x !== y), DType.BOOL),
  Not: (_n, [x]) => {
    if (!x) throw new CannotEvaluate();
    return [{ dtype: DType.BOOL, dims: [...x.dims], data: x.data.map((e) => (num(e) !== 0 ? 0 : 1)) }];
  },
  Max: variadicKernel(extreme('max')),
  Min: variadicKernel(extreme('min')),
  Sum: variadicKernel(arithmetic('add')),
  Neg: neg,
  Abs: unaryKernel(Math.abs, true),
  Sign: unaryKernel(Math.sign, true),
  Floor: unaryKernel(Math.floor),
  Ceil: unaryKernel(Math.ceil),
  Round: unaryKernel(roundHalfEven),
  Sqrt: unaryKernel(Math.sqrt),
  Reciprocal: unaryKernel((x) => 1 / x),
  Exp: unaryKernel(Math.exp),
  Log: unaryKernel(Math.log),
  Sin: unaryKernel(Math.sin),
  Cos: unaryKernel(Math.cos),
  Tanh: unaryKernel(Math.tanh),
  Relu: unaryKernel((x) => Math.max(x, 0), true),
  ReduceSum: reduce('sum'),
  ReduceProd: reduce('prod'),
  ReduceMax: reduce('max'),
  ReduceMin: reduce('min'),
  ReduceMean: reduce('mean'),
  Mod: (node, inputs) => binaryKernel(modulo(attrInt(node, 'fmod', 0) === 1))(node, inputs),
};

/** Whether the partial evaluator has a kernel for this op (default domain only). */
export function canEvaluate(node: Node): boolean {
  return node.domain === '' && node.opType in KERNELS;
}

/**
 * Evaluates one node on known input values (undefined for absent optional inputs). Returns undefined where the
 * node cannot be evaluated (see the file comment); never throws for a valid node.
 */
export function evaluateNode(node: Node, inputs: (EvalValue | undefined)[]): EvalValue[] | undefined {
  const kernel = KERNELS[node.opType];
  if (!kernel || node.domain !== '') return undefined;
  try {
    return kernel(node, inputs);
  } catch (e) {
    if (e instanceof Symbolic || e instanceof CannotEvaluate) return undefined;
    throw e;
  }
}
