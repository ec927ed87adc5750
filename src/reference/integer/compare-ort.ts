import * as ort from '../../runtime/ort.js';
import { Graph, Node } from '../../ir/graph.js';
import { Tensor } from '../../ir/tensor.js';
import { Session } from '../../runtime/session.js';
import { fromOrtTensor, toOrtTensor } from '../../runtime/tensors.js';
import { evaluateInteger } from './evaluator.js';
import { DType } from '../../ir/dtype.js';
import { roundHalfEven } from '../../quant/spec.js';
import { channelIndexer, Quantized, TYPE_RANGE } from './values.js';

/** Ops skipped when naming the layer that produced a QuantizeLinear's input (they fuse into it). */
const FUSED = new Set(['Relu', 'Identity', 'Clip']);

export interface LayerComparison {
  /** The layer whose output these codes are (Conv / Gemm / Add / MaxPool ..., or the input's QuantizeLinear). */
  node: string;
  opType: string;
  /** The QuantizeLinear output compared (the value ORT's fused QLinear* op writes). */
  value: string;
  elements: number;
  /** Codes one step away from ORT's: ORT requantizes in float, the evaluator in fixed point; both round at ties. */
  offByOne: number;
  /** Of those, the ones where ORT's float requantization (see floatRequantized) gives ORT's code exactly. */
  offByOneFloatRounding: number;
  /** Codes further away than one step. */
  mismatches: number;
  maxDiff: number;
  /** First element further than one step away (flat index, ours, ORT's). */
  first?: { index: number; ours: number; ort: number };
}

export interface IntegerComparison {
  /** Every QuantizeLinear in graph order, each layer fed ORT's codes for its inputs (teacher forcing). */
  layers: LayerComparison[];
  /** The first layer with a code more than one step from ORT's; undefined when the integer outputs match. */
  firstMismatch?: LayerComparison;
  offByOneTotal: number;
  elementsTotal: number;
  /** The integer evaluator run freely (no forcing) against ORT's output logits. */
  output: { name: string; maxAbsDifference: number; argmaxAgreement: number; samples: number };
}

/** The layer that produced a QuantizeLinear's input, past fused activations. */
function producingLayer(graph: Graph, q: Node): Node {
  const producers = graph.producers();
  let node = producers.get(q.inputs[0]);
  while (node && FUSED.has(node.opType) && producers.get(node.inputs[0])) node = producers.get(node.inputs[0])!;
  return node ?? q;
}

/**
 * ORT's requantization of an int32 accumulator (MLAS MlasRequantizeOutput, as QLinearConv / QGemm set it up):
 * in float32, acc * fround(fround(s_x * s_w) / s_y), rounded half to even, plus z_y, saturated.
 */
export function floatRequantized(acc: number, accScale32: number, outScale: number, outZero: number, lo: number, hi: number): number {
  const m = Math.fround(accScale32 / Math.fround(outScale));
  return Math.min(hi, Math.max(lo, roundHalfEven(Math.fround(Math.fround(acc) * m)) + outZero));
}

/** `graph` with every QuantizeLinear output also a graph output (shapes from a previous integer run). */
export function withQuantizedOutputs(graph: Graph, shapes: Map<string, number[]>): Graph {
  const out = Object.assign(Object.create(Object.getPrototypeOf(graph)), graph) as Graph;
  const quantized = graph.nodes.filter((n) => n.opType === 'QuantizeLinear').map((n) => n.outputs[0]);
  const extra = quantized.filter((name) => !graph.outputs.some((o) => o.name === name));
  out.outputs = [
    ...graph.outputs,
    ...extra.map((name) => {
      const zero = graph.initializers.get(graph.nodes.find((n) => n.outputs[0] === name)!.inputs[2]);
      if (!zero) throw new Error(`QuantizeLinear output '${name}' has no zero-point initializer (its type is needed)`);
      return { name, dtype: zero.dtype, shape: shapes.get(name) ?? [] };
    }),
  ];
  return out;
}

/**
 * Runs `graph` in ONNX Runtime (default optimisation: the fused QLinearConv / QGemm kernels) with every
 * QuantizeLinear output added as a graph output, and returns those codes and the graph's outputs.
 */
export async function ortQuantizedValues(graph: Graph, feeds: Map<string, Tensor>, shapes: Map<string, number[]>, threads = 2): Promise<Map<string, Tensor>> {
  const withCodes = withQuantizedOutputs(graph, shapes);
  const session = await Session.create(withCodes, { threads });
  try {
    const ortFeeds = Object.fromEntries([...feeds].map(([k, t]) => [k, toOrtTensor(t)])) as Record<string, ort.Tensor>;
    const fetched = await session.run(ortFeeds, withCodes.outputs.map((o) => o.name));
    return new Map(Object.entries(fetched).map(([k, t]) => [k, fromOrtTensor(t)]));
  } finally {
    await session.release();
  }
}

function argmaxRows(v: ArrayLike<number>, rows: number): number[] {
  const k = v.length / rows;
  return Array.from({ length: rows }, (_, r) => {
    let best = 0;
    for (let j = 1; j < k; j++) if (v[r * k + j] > v[r * k + best]) best = j;
    return best;
  });
}

/**
 * Compares the integer evaluator with ONNX Runtime on `feeds`: layer by layer on the codes of every
 * QuantizeLinear (each layer fed ORT's input codes, so differences do not compound), and end to end on the
 * first output (logits). `ortGraph` (default: `graph`) is what ORT runs — tests pass a different one to check
 * that a corrupted model is caught and its node named.
 */
export async function compareIntegerWithOrt(graph: Graph, feeds: Map<string, Tensor>, options: { ortGraph?: Graph; threads?: number } = {}): Promise<IntegerComparison> {
  const free = evaluateInteger(graph, feeds);
  const shapes = new Map([...free.values].filter(([, v]) => v.kind === 'quantized').map(([k, v]) => [k, (v as Quantized).dims]));
  const ortGraph = options.ortGraph ?? graph;
  const ortValues = await ortQuantizedValues(ortGraph, feeds, shapes, options.threads);
  const layers: LayerComparison[] = [];
  evaluateInteger(graph, feeds, {
    onQuantized: (node, ours, input) => {
      const theirs = ortValues.get(node.outputs[0]);
      if (!theirs) return;
      const layer = producingLayer(graph, node);
      const cmp: LayerComparison = { node: layer.name, opType: layer.opType, value: node.outputs[0], elements: ours.codes.length, offByOne: 0, offByOneFloatRounding: 0, mismatches: 0, maxDiff: 0 };
      const acc = input?.kind === 'quantized' && input.type === DType.INT32 ? input : undefined;
      const channel = acc ? channelIndexer(acc.dims, acc.axis) : () => 0;
      const [lo, hi] = TYPE_RANGE[ours.type]!;
      const codes = theirs.data as ArrayLike<number>;
      if (codes.length !== ours.codes.length) throw new Error(`value '${node.outputs[0]}': ORT has ${codes.length} codes, the integer evaluator ${ours.codes.length}`);
      for (let i = 0; i < codes.length; i++) {
        const d = Math.abs(ours.codes[i] - codes[i]);
        if (d === 1) {
          cmp.offByOne++;
          const c = channel(i);
          if (acc && floatRequantized(acc.codes[i], acc.floatScale?.[c] ?? Math.fround(acc.scale[c]), ours.scale[0], ours.zeroPoint[0], lo, hi) === codes[i]) cmp.offByOneFloatRounding++;
        }
        else if (d > 1) {
          cmp.mismatches++;
          cmp.first ??= { index: i, ours: ours.codes[i], ort: codes[i] };
        }
        cmp.maxDiff = Math.max(cmp.maxDiff, d);
      }
      layers.push(cmp);
      return { ...ours, codes: Int32Array.from(codes) };
    },
  });
  const outName = graph.outputs[0].name;
  const [a, b] = [free.outputs.get(outName)!.data as Float32Array, ortValues.get(outName)!.data as Float32Array];
  const rows = free.outputs.get(outName)!.dims[0];
  const [pa, pb] = [argmaxRows(a, rows), argmaxRows(b, rows)];
  let maxAbs = 0;
  for (let i = 0; i < a.length; i++) maxAbs = Math.max(maxAbs, Math.abs(a[i] - b[i]));
  return {
    layers,
    firstMismatch: layers.find((l) => l.mismatches > 0),
    offByOneTotal: layers.reduce((s, l) => s + l.offByOne, 0),
    elementsTotal: layers.reduce((s, l) => s + l.elements, 0),
    output: { name: outName, maxAbsDifference: maxAbs, argmaxAgreement: pa.filter((p, i) => p === pb[i]).length / rows, samples: rows },
  };
}

/** Throws, naming the first node whose integer outputs differ from ORT's by more than one code, and by how much. */
export function assertIntegerMatch(c: IntegerComparison): void {
  const m = c.firstMismatch;
  if (!m) return;
  throw new Error(
    `integer evaluator differs from ONNX Runtime first at node '${m.node}' (${m.opType}, codes '${m.value}'): ${m.mismatches} of ${m.elements} codes ` +
      `differ by more than 1, max difference ${m.maxDiff} (first at index ${m.first!.index}: ours ${m.first!.ours}, ORT ${m.first!.ort})`,
  );
}
