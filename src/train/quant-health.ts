/**
 * Quant health of a QAT run over training, sampled every N steps from the values the run already holds: for each
 * weight quantizer with a scale (FakeQuantize: min/max, LSQ, LSQ+), ONNX Runtime computes the quantized tensor
 * (the folded weight where BN is folded), its scale and zero point from the trainer's current parameters and
 * statistics (a small session over only those nodes); the statistics are then computed on the host:
 * - clipped: fraction of weights with w/s + z outside [qmin - 1/2, qmax + 1/2] (rounding cannot reach them);
 * - flipped: fraction of integer codes that changed in the step before the record (codes at step k-1 vs k);
 * - scale_drift: mean over scale elements of |s / s0 - 1|, s0 the scales at the start of QAT;
 * - oscillating: the oscillation tracker's fraction (Nagel et al. 2022, "Overcoming Oscillations in
 *   Quantization-Aware Training", sec. 3: an EMA of code changes opposite to the previous change above a
 *   threshold), weighted by layer size, where the run tracks oscillations (weights below 8 bits).
 * Every record is a function of the step's state, so a resumed run records what an uninterrupted one does
 * (s0 travels in the checkpoint).
 */
import * as ort from '../runtime/ort.js';
import { Graph, Node } from '../ir/graph.js';
import { Model } from '../models/model.js';
import { Quantizer, scaleLayout } from '../quant/prepare.js';
import { levelOffset, quantRange, roundHalfEven } from '../quant/spec.js';
import { Session } from '../runtime/session.js';
import { InputError } from '../validate/schema.js';
import { buildEvalGraph } from './step-graph.js';

/** Default cadence of quant-health records in steps (and at step 0 and the last step). */
export const DEFAULT_HEALTH_EVERY = 25;

export interface QuantHealthPoint {
  step: number;
  clipped: number;
  /** Absent at the first record (no previous step). */
  flipped?: number;
  scale_drift: number;
  oscillating?: number;
}

/** One weight quantizer's values at a step. */
export interface WeightSample {
  node: string;
  layer: string;
  weight: Float32Array;
  scale: Float32Array;
  zeroPoint: Float32Array;
  index: (i: number) => number;
  qmin: number;
  qmax: number;
  /** Level offset of the grid (spec.ts levelOffset: 1/2 for SEQ), 0 when absent. */
  offset?: number;
}

/** Integer codes clip(round(w / s - o) + round(z)) as FakeQuantize computes them (round half to even). */
export function weightCodes(s: WeightSample): Int32Array {
  const codes = new Int32Array(s.weight.length);
  for (let i = 0; i < codes.length; i++) {
    const j = s.index(i);
    const z = roundHalfEven(s.zeroPoint.length === 1 ? s.zeroPoint[0] : s.zeroPoint[j]);
    const scaled = Math.fround(s.weight[i] / s.scale[j]);
    codes[i] = Math.min(s.qmax, Math.max(s.qmin, roundHalfEven(s.offset ? Math.fround(scaled - s.offset) : scaled) + z));
  }
  return codes;
}

/** Fraction of weights outside the grid's reach (w/s - o + z beyond [qmin - 1/2, qmax + 1/2]). */
export function clippedFraction(s: WeightSample): number {
  let n = 0;
  for (let i = 0; i < s.weight.length; i++) {
    const j = s.index(i);
    const u = s.weight[i] / s.scale[j] - (s.offset ?? 0) + (s.zeroPoint.length === 1 ? s.zeroPoint[0] : s.zeroPoint[j]);
    if (u < s.qmin - 0.5 || u > s.qmax + 0.5) n++;
  }
  return n / s.weight.length;
}

/** Fraction of positions whose code differs. */
export function flippedFraction(before: Int32Array, after: Int32Array): number {
  let n = 0;
  for (let i = 0; i < after.length; i++) if (before[i] !== after[i]) n++;
  return n / after.length;
}

/** Mean of |s / s0 - 1| over scale elements. */
export function scaleDrift(scale: Float32Array, start: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < scale.length; i++) sum += Math.abs(scale[i] / start[i] - 1);
  return sum / scale.length;
}

/** The weight quantizers quant health covers: those with a scale and zero point (not binary, ternary, PACT). */
export function healthQuantizers(model: Model): Quantizer[] {
  return (model.quant?.quantizers ?? []).filter((z) => z.role === 'weight' && z.scale && z.zeroPoint && z.spec.method !== 'binary' && z.spec.method !== 'ternary');
}

/** The nodes that compute `names` from the graph's inputs and initializers, in the graph's order. */
function nodesFor(graph: Graph, names: string[]): Node[] {
  const producers = graph.producers();
  const needed = new Set<Node>();
  const stack = [...names];
  while (stack.length) {
    const v = stack.pop()!;
    const n = producers.get(v);
    if (!n || needed.has(n)) continue;
    needed.add(n);
    for (const i of n.inputs) if (i) stack.push(i);
  }
  return graph.nodes.filter((n) => needed.has(n));
}

/**
 * Computes the health quantizers' tensors, scales and zero points for the trainer's current values: initializers
 * the trainer carries are read from it, constants from the model, and computed values (folded weights, min/max
 * scales) by one ONNX Runtime session over the nodes that produce them.
 */
export class QuantHealthProbe {
  private constructor(
    private readonly quantizers: Quantizer[],
    private readonly graph: Graph,
    private readonly session: Session | undefined,
    private readonly computed: string[],
  ) {}

  static async create(model: Model, threads: number): Promise<QuantHealthProbe | undefined> {
    const quantizers = healthQuantizers(model);
    if (!quantizers.length) return undefined;
    const graph = buildEvalGraph(model);
    const names = [...new Set(quantizers.flatMap((z) => [z.tensor, z.scale!, z.zeroPoint!]))];
    const computed = names.filter((n) => !graph.initializers.has(n));
    let session: Session | undefined;
    if (computed.length) {
      const nodes = nodesFor(graph, computed);
      const sub = graph.clone();
      sub.nodes = nodes;
      const used = new Set(nodes.flatMap((n) => n.inputs));
      const carried = new Set([...model.params, ...model.runningStats, ...(model.observerStats ?? [])]);
      for (const name of [...sub.initializers.keys()]) {
        if (!used.has(name)) sub.initializers.delete(name);
        else if (carried.has(name)) {
          const t = sub.initializers.get(name)!;
          sub.initializers.delete(name);
          sub.inputs.push({ name, dtype: t.dtype, shape: [...t.dims] });
        }
      }
      sub.inputs = sub.inputs.filter((v) => used.has(v.name));
      if (sub.inputs.some((v) => v.name === model.input)) throw new Error(`quant health: a weight scale of model '${model.name}' depends on the model input`);
      sub.outputs = computed.map((name) => ({ name, ...graph.typeOf(name) }));
      session = await Session.create(sub, { threads });
    }
    return new QuantHealthProbe(quantizers, graph, session, computed);
  }

  /** Every health quantizer's values now; `read` gives a carried value by name (undefined: not carried). */
  async sample(read: (name: string) => Float32Array | undefined): Promise<WeightSample[]> {
    const values = new Map<string, Float32Array>();
    if (this.session) {
      const feeds: Record<string, ort.Tensor> = {};
      for (const v of this.session.graph.inputs) {
        const data = read(v.name) ?? (this.graph.initializers.get(v.name)?.data as Float32Array | undefined);
        if (!data) throw new Error(`quant health: no value for '${v.name}'`);
        feeds[v.name] = new ort.Tensor('float32', data, v.shape as number[]);
      }
      const out = await this.session.run(feeds, this.computed);
      for (const n of this.computed) values.set(n, Float32Array.from(out[n].data as Float32Array));
    }
    const get = (n: string): Float32Array => {
      const carried = read(n);
      if (carried) return Float32Array.from(carried);
      const v = values.get(n) ?? (this.graph.initializers.get(n)?.data as Float32Array | undefined);
      if (!v) throw new Error(`quant health: no value for '${n}'`);
      return v;
    };
    return this.quantizers.map((z) => {
      const { qmin, qmax } = quantRange(z.spec);
      const dims = this.graph.typeOf(z.tensor).shape as number[];
      return { node: z.node, layer: z.layers[0], weight: get(z.tensor), scale: get(z.scale!), zeroPoint: get(z.zeroPoint!), index: scaleLayout(dims, z.spec).index, qmin, qmax, offset: levelOffset(z.spec) };
    });
  }

  async release(): Promise<void> {
    await this.session?.release();
  }
}

/** Scales at the start of QAT by quantizer node, as a checkpoint stores them (float32, base64). */
export type StartScales = Record<string, string>;

function decodeScales(stored: unknown, file: string): Map<string, Float32Array> {
  if (!stored || typeof stored !== 'object') throw new InputError(`checkpoint '${file}': metrics.quant_health_start must map quantizer nodes to base64 float32 scales`);
  const out = new Map<string, Float32Array>();
  for (const [k, v] of Object.entries(stored)) {
    if (typeof v !== 'string') throw new InputError(`checkpoint '${file}': metrics.quant_health_start.${k} must be a base64 string`);
    const b = Buffer.from(v, 'base64');
    out.set(k, new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)));
  }
  return out;
}

/**
 * The records of one run: `before(step)` keeps the codes of the state a record's flips compare against,
 * `record(step, metrics)` appends a point. Cadence: every `every` steps, plus step 0 and the last step.
 */
export class QuantHealthTracker {
  readonly points: QuantHealthPoint[];
  private start: Map<string, Float32Array> | undefined;
  private previous: { step: number; codes: Int32Array[] } | undefined;

  constructor(
    private readonly probe: QuantHealthProbe,
    private readonly read: (name: string) => Float32Array | undefined,
    readonly every: number,
    private readonly totalSteps: number,
    stored?: { points?: unknown; start?: unknown; file: string; step: number },
  ) {
    this.points = stored?.points === undefined ? [] : checkPoints(stored.points, stored.file).filter((p) => p.step <= stored.step);
    this.start = stored?.start === undefined ? undefined : decodeScales(stored.start, stored.file);
  }

  /** Whether the state after `step` is recorded. */
  records(step: number): boolean {
    return step === 0 || step === this.totalSteps || (this.every > 0 && step % this.every === 0);
  }

  /** Call with the state after `step` (before step + 1): keeps its codes when step + 1 is recorded. */
  async before(step: number): Promise<void> {
    if (!this.records(step + 1)) return;
    const samples = await this.probe.sample(this.read);
    this.previous = { step, codes: samples.map(weightCodes) };
  }

  /** Call with the state after `step`: appends a record if `step` is a record step. The first record keeps s0. */
  async after(step: number, metrics: Record<string, number> = {}): Promise<void> {
    if (!this.records(step) || this.points.some((p) => p.step === step)) return;
    const samples = await this.probe.sample(this.read);
    if (!this.start) this.start = new Map(samples.map((s) => [s.node, Float32Array.from(s.scale)]));
    let total = 0;
    let clipped = 0;
    let flipped = 0;
    let drift = 0;
    let scales = 0;
    let oscillating = 0;
    let tracked = 0;
    const prev = this.previous?.step === step - 1 ? this.previous.codes : undefined;
    samples.forEach((s, k) => {
      const n = s.weight.length;
      total += n;
      clipped += clippedFraction(s) * n;
      if (prev) flipped += flippedFraction(prev[k], weightCodes(s)) * n;
      const s0 = this.start!.get(s.node);
      if (s0 && s0.length === s.scale.length) {
        drift += scaleDrift(s.scale, s0) * s.scale.length;
        scales += s.scale.length;
      }
      const osc = metrics[`oscillating/${s.layer}`];
      if (typeof osc === 'number') {
        oscillating += osc * n;
        tracked += n;
      }
    });
    const point: QuantHealthPoint = { step, clipped: clipped / total, scale_drift: scales ? drift / scales : 0 };
    if (prev) point.flipped = flipped / total;
    if (tracked) point.oscillating = oscillating / tracked;
    this.points.push(point);
  }

  /** What a checkpoint stores to continue the records exactly. */
  stored(): { quant_health: QuantHealthPoint[]; quant_health_start?: StartScales } {
    if (!this.start) return { quant_health: this.points };
    const start = Object.fromEntries([...this.start].map(([k, v]) => [k, Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64')]));
    return { quant_health: this.points, quant_health_start: start };
  }
}

function checkPoints(h: unknown, file: string): QuantHealthPoint[] {
  const num = (v: unknown) => typeof v === 'number';
  const ok = Array.isArray(h) && h.every((p) => p && typeof p === 'object' && Number.isInteger(p.step) && num(p.clipped) && num(p.scale_drift) && (p.flipped === undefined || num(p.flipped)) && (p.oscillating === undefined || num(p.oscillating)));
  if (!ok) throw new InputError(`checkpoint '${file}': metrics.quant_health must be a list of { step, clipped, scale_drift, flipped?, oscillating? } points`);
  return h as QuantHealthPoint[];
}
