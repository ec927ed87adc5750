import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { loadDataset } from '../../src/data';
import { DType } from '../../src/ir/dtype';
import { Graph, Node } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { exportQdq } from '../../src/export/qdq';
import { Model } from '../../src/models/model';
import { decodeModel } from '../../src/onnx/model-io';
import { Session } from '../../src/runtime/session';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run';
import { assertIntegerMatch, compareIntegerWithOrt, ortQuantizedValues, withQuantizedOutputs } from '../../src/reference/integer/compare-ort';
import { checkIntegerReference } from '../../src/export/integer-check';
import { optimizedOps } from '../../src/export/kernel-report';
import { evaluateInteger } from '../../src/reference/integer/evaluator';
import { integerCast } from '../../src/reference/integer/cast';
import { multiplyByQuantizedMultiplier, quantizeMultiplier, roundingDivideByPOT, saturatingRoundingDoublingHighMul } from '../../src/reference/integer/fixed-point';
import { scratchDir } from '../helpers/scratch.js';

// ---------- fixed-point arithmetic against exact rational arithmetic (BigInt) ----------

/** round(n / d) with ties away from zero, exactly (d > 0). */
function roundAway(n: bigint, d: bigint): bigint {
  const neg = n < 0n;
  const a = neg ? -n : n;
  const q = (2n * a + d) / (2n * d);
  return neg ? -q : q;
}

/** floor(n / d) exactly (d > 0). */
const floorDiv = (n: bigint, d: bigint) => (n >= 0n ? n / d : -((-n + d - 1n) / d));

/** gemmlowp's SaturatingRoundingDoublingHighMul as a rational: floor(a * b / 2^31 + 1/2), ties toward +infinity. */
const exactHighMul = (a: number, b: number) => (a === -(2 ** 31) && b === -(2 ** 31) ? 2 ** 31 - 1 : Number(floorDiv(2n * BigInt(a) * BigInt(b) + 2n ** 31n, 2n ** 32n)));

test('fixed point: SaturatingRoundingDoublingHighMul (ties up) and RoundingDivideByPOT (ties away from zero) equal exact rational rounding', () => {
  const cases: [number, number][] = [
    [0, 123456], [1, 2 ** 30], [3, 2 ** 30], [-3, 2 ** 30], [5, 2 ** 30], [-5, 2 ** 30],
    [2 ** 31 - 1, 2 ** 31 - 1], [-(2 ** 31), 2 ** 31 - 1], [-(2 ** 31), -(2 ** 31)], [123456789, 1518500250], [-987654321, 1073741825],
  ];
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed);
  for (let i = 0; i < 2000; i++) cases.push([rand() - 2 ** 30, rand() * (i % 2 ? 1 : -1)]);
  for (const [a, b] of cases) assert.equal(saturatingRoundingDoublingHighMul(a, b), exactHighMul(a, b), `SRDHM(${a}, ${b})`);
  // Hand-made ties: 3 * 2^30 / 2^31 = 1.5 -> 2, -1.5 -> -1 (gemmlowp's nudge rounds ties up); 5 * 2^30 / 2^31 = 2.5 -> 3.
  assert.deepEqual([[3, 2 ** 30], [-3, 2 ** 30], [5, 2 ** 30], [-5, 2 ** 30]].map(([a, b]) => saturatingRoundingDoublingHighMul(a, b)), [2, -1, 3, -2]);
  assert.equal(saturatingRoundingDoublingHighMul(-(2 ** 31), -(2 ** 31)), 2 ** 31 - 1);
  // Ties: 3/2 -> 2, -3/2 -> -2, 5/4 -> 1, -6/4 -> -2, 7/4 -> 2.
  assert.deepEqual([[3, 1], [-3, 1], [5, 2], [-6, 2], [7, 2], [-7, 2], [42, 0]].map(([x, e]) => roundingDivideByPOT(x, e)), [2, -2, 1, -2, 2, -2, 42]);
  for (let i = 0; i < 2000; i++) {
    const x = rand() - 2 ** 30;
    const e = i % 32;
    assert.equal(roundingDivideByPOT(x, e), Number(roundAway(BigInt(x), 2n ** BigInt(e))), `RDBPOT(${x}, ${e})`);
  }
});

test('fixed point: quantizeMultiplier gives M0 in [2^30, 2^31) with M0 * 2^(shift-31) within 2^-31 relative of M', () => {
  assert.deepEqual(quantizeMultiplier(0.5), { multiplier: 2 ** 30, shift: 0 });
  assert.deepEqual(quantizeMultiplier(0.75), { multiplier: 3 * 2 ** 29, shift: 0 });
  assert.deepEqual(quantizeMultiplier(0.25), { multiplier: 2 ** 30, shift: -1 });
  assert.deepEqual(quantizeMultiplier(2), { multiplier: 2 ** 30, shift: 2 });
  // 1 - 2^-40 rounds up to 2^31: carried into the exponent.
  assert.deepEqual(quantizeMultiplier(1 - 2 ** -40), { multiplier: 2 ** 30, shift: 1 });
  for (const m of [1e-6, 0.0123, 0.3333333, 0.999999, 1.5, 7.25e-4, 2 ** -20]) {
    const q = quantizeMultiplier(m);
    assert.ok(q.multiplier >= 2 ** 30 && q.multiplier < 2 ** 31, JSON.stringify(q));
    assert.ok(Math.abs((q.multiplier * 2 ** (q.shift - 31)) / m - 1) <= 2 ** -31, `${m}: ${JSON.stringify(q)}`);
  }
  assert.throws(() => quantizeMultiplier(-1), /finite number >= 0/);
});

test('fixed point: acc * M by multiplier and shift is the exact double rounding of M0 and shift, within 1 of round(acc * M)', () => {
  // Hand-made: M = 0.5: 3 * 0.5 = 1.5 -> 2; M = 0.75: -2 * 0.75 = -1.5 -> -1 (ties up in the high multiply);
  // M = 0.25 = 2^30 / 2^31 * 2^-1: 5 * 0.25 = 1.25, but the high multiply rounds 2.5 to 3 and the shift 1.5 to 2 —
  // the double rounding that makes integer engines differ from round(acc * M) by one at such points.
  assert.equal(multiplyByQuantizedMultiplier(3, quantizeMultiplier(0.5)), 2);
  assert.equal(multiplyByQuantizedMultiplier(-2, quantizeMultiplier(0.75)), -1);
  assert.equal(multiplyByQuantizedMultiplier(5, quantizeMultiplier(0.25)), 2);
  assert.equal(multiplyByQuantizedMultiplier(4, quantizeMultiplier(0.25)), 1);
  assert.equal(multiplyByQuantizedMultiplier(1000, quantizeMultiplier(3)), 3000);
  // A typical conv requantization: s_x * s_w / s_y = 0.0181 * 0.0042 / 0.0106.
  const real = (0.0181 * 0.0042) / 0.0106;
  const m = quantizeMultiplier(real);
  let seed = 11;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed);
  for (let i = 0; i < 2000; i++) {
    const acc = (rand() % 200001) - 100000;
    const got = multiplyByQuantizedMultiplier(acc, m);
    const high = floorDiv(2n * BigInt(acc) * BigInt(m.multiplier) + 2n ** 31n, 2n ** 32n);
    assert.equal(got, Number(roundAway(high, 2n ** BigInt(-m.shift))), `acc ${acc}`);
    // Against the real multiplier in exact rationals (M as the ratio of its float64 value): off by at most one.
    assert.ok(Math.abs(got - Math.round(acc * real)) <= 1, `acc ${acc}: ${got} vs ${acc * real}`);
  }
});

/** A hand-written graph for one kernel test: its inputs and outputs, and helpers that add initializers and nodes. */
function handGraph(name: string, inputs: Graph['inputs'], outputs: Graph['outputs']) {
  const g = new Graph();
  g.name = name;
  g.inputs = inputs;
  g.outputs = outputs;
  const init = (value: string, t: Tensor) => void g.initializers.set(value, t);
  const node = (opType: string, nodeInputs: string[], out: string, attrs: Node['attrs'] = {}) => void g.nodes.push({ opType, domain: '', name: out, inputs: nodeInputs, outputs: [out], attrs });
  return { g, init, node };
}

test('integer Add (TFLite form) of two quantized tensors is within one code of the real sum', () => {
  const { g, init, node } = handGraph('add', [{ name: 'a', dtype: DType.FLOAT, shape: [64] }, { name: 'b', dtype: DType.FLOAT, shape: [64] }], [{ name: 'q', dtype: DType.UINT8, shape: [64] }]);
  init('sa', Tensor.float([], [0.02])); init('za', new Tensor(DType.UINT8, [], Uint8Array.of(10)));
  init('sb', Tensor.float([], [0.013])); init('zb', new Tensor(DType.UINT8, [], Uint8Array.of(128)));
  init('sy', Tensor.float([], [0.031])); init('zy', new Tensor(DType.UINT8, [], Uint8Array.of(90)));
  node('QuantizeLinear', ['a', 'sa', 'za'], 'qa'); node('DequantizeLinear', ['qa', 'sa', 'za'], 'da');
  node('QuantizeLinear', ['b', 'sb', 'zb'], 'qb'); node('DequantizeLinear', ['qb', 'sb', 'zb'], 'db');
  node('Add', ['da', 'db'], 'sum'); node('QuantizeLinear', ['sum', 'sy', 'zy'], 'q');
  const a = Tensor.float([64], Array.from({ length: 64 }, (_, i) => Math.sin(i) * 2));
  const b = Tensor.float([64], Array.from({ length: 64 }, (_, i) => Math.cos(i * 3) * 1.5));
  const r = evaluateInteger(g, new Map([['a', a], ['b', b]]));
  const codes = (k: string) => (r.values.get(k) as { codes: Int32Array }).codes;
  const [qa, qb] = [codes('qa'), codes('qb')];
  codes('q').forEach((q, i) => {
    const real = (qa[i] - 10) * Math.fround(0.02) + (qb[i] - 128) * Math.fround(0.013);
    const want = Math.min(255, Math.max(0, Math.round(real / Math.fround(0.031)) + 90));
    assert.ok(Math.abs(q - want) <= 1, `element ${i}: ${q} vs ${want}`);
  });
  // The output is dequantized at the end: graph outputs are float32.
  assert.equal(r.outputs.get('q')!.dtype, DType.FLOAT);
});

test('integer GlobalAveragePool requantizes the exact mean: a coarse 4-bit input onto a finer 8-bit grid, as ORT computes it', async () => {
  // Q(x; 0.33, 4-bit codes) -> DQ -> GlobalAveragePool -> Q(0.012): means of a few tenths of a code land on codes 0..30.
  const { g, init, node } = handGraph('gap', [{ name: 'x', dtype: DType.FLOAT, shape: [2, 3, 7, 7] }], [{ name: 'q', dtype: DType.UINT8, shape: [2, 3, 1, 1] }]);
  init('s', Tensor.float([], [0.33])); init('z', new Tensor(DType.UINT8, [], Uint8Array.of(0)));
  init('lo', new Tensor(DType.UINT8, [], Uint8Array.of(0))); init('hi', new Tensor(DType.UINT8, [], Uint8Array.of(15)));
  init('so', Tensor.float([], [0.012])); init('zo', new Tensor(DType.UINT8, [], Uint8Array.of(0)));
  node('QuantizeLinear', ['x', 's', 'z'], 'qx'); node('Clip', ['qx', 'lo', 'hi'], 'cx'); node('DequantizeLinear', ['cx', 's', 'z'], 'dx');
  node('GlobalAveragePool', ['dx'], 'mean'); node('QuantizeLinear', ['mean', 'so', 'zo'], 'q');
  g.opsets = { '': 17 };
  for (const v of ['qx', 'cx']) g.types.set(v, { dtype: DType.UINT8, shape: [2, 3, 7, 7] });
  // Mostly zeros with a few codes, so the means are fractions of one input code.
  const x = Tensor.float([2, 3, 7, 7], Array.from({ length: 294 }, (_, i) => (i % 7 === 0 ? (i % 5) * 0.4 : 0)));
  const ours = (evaluateInteger(g, new Map([['x', x]])).values.get('q') as { codes: Int32Array }).codes;
  const theirs = (await ortQuantizedValues(g, new Map([['x', x]]), new Map())).get('q')!.data as Uint8Array;
  assert.ok(Math.max(...theirs) > 5, `means on the finer grid: ${Array.from(theirs)}`);
  assert.deepEqual(Array.from(ours), Array.from(theirs));
});

test('an op reading a per-channel int32 accumulator (no QuantizeLinear after the conv) is named as outside the evaluator', () => {
  const { g, init, node } = handGraph('float_conv_out', [{ name: 'x', dtype: DType.FLOAT, shape: [1, 1, 4, 4] }], [{ name: 'y', dtype: DType.FLOAT, shape: [1, 2, 1, 1] }]);
  init('s', Tensor.float([], [0.1])); init('z', new Tensor(DType.UINT8, [], Uint8Array.of(0)));
  init('w', new Tensor(DType.INT8, [2, 1, 1, 1], Int8Array.of(3, -2))); init('sw', Tensor.float([2], [0.01, 0.02])); init('zw', new Tensor(DType.INT8, [2], Int8Array.of(0, 0)));
  node('QuantizeLinear', ['x', 's', 'z'], 'qx'); node('DequantizeLinear', ['qx', 's', 'z'], 'dx');
  node('DequantizeLinear', ['w', 'sw', 'zw'], 'dw', { axis: { kind: 'int', value: 0 } });
  node('Conv', ['dx', 'dw'], 'conv'); node('GlobalAveragePool', ['conv'], 'y');
  const x = Tensor.float([1, 1, 4, 4], Array.from({ length: 16 }, (_, i) => i / 16));
  assert.throws(() => evaluateInteger(g, new Map([['x', x]])), /node 'y' \(GlobalAveragePool\): input 0 \('conv'\) is an int32 accumulator with 2 scales .*the integer evaluator needs it quantized per tensor/);
});

test('integer Cast widens INT4 codes (two\'s complement nibbles, low first) to int8, and refuses other targets', () => {
  const node = { opType: 'Cast', domain: '', name: 'widen', inputs: ['w'], outputs: ['w8'], attrs: { to: { kind: 'int' as const, value: DType.INT8 } } };
  // Codes -8, 7, -1, 0, 3 packed as nibbles: 0x78, 0x0f, 0x03.
  const w = new Tensor(DType.INT4, [5], Uint8Array.of(0x78, 0x0f, 0x03));
  const [out] = integerCast(node, [{ kind: 'tensor', tensor: w }]);
  assert.deepEqual(out.kind === 'tensor' && Array.from(out.tensor.data as Int8Array), [-8, 7, -1, 0, 3]);
  assert.throws(() => integerCast({ ...node, attrs: { to: { kind: 'int', value: DType.FLOAT } } }, [{ kind: 'tensor', tensor: w }]), /node 'widen' \(Cast\): the integer evaluator casts stored codes to int8 or int32/);
});

// ---------- a QAT lenet w8a8 run, exported, against ORT's fused integer kernels ----------

const tmp = scratchDir('qat-integer-');
let model: Model;
let exported: Graph;
let feeds: Map<string, Tensor>;

after(() => fs.rmSync(tmp, { recursive: true, force: true }));

before(async () => {
  const dir = path.join(tmp, 'w8a8');
  await train({ ...DEFAULT_TRAIN_CONFIG, model: 'lenet', quant: 'w8a8', steps: 30, batch: 32 }, dir);
  model = loadCheckpoint(path.join(dir, 'checkpoint.qat')).model;
  exported = (await exportQdq(model)).graph;
  const data = loadDataset('mnist').test;
  const n = 64;
  feeds = new Map([[model.input, new Tensor(DType.FLOAT, [n, ...data.shape], data.images.slice(0, n * 784))]]);
});

test('lenet w8a8: integer evaluator reproduces the codes of ORT\'s fused QLinearConv / QGemm (off by one only where ORT rounds in float) and its logits', async () => {
  const c = await compareIntegerWithOrt(exported, feeds);
  assert.doesNotThrow(() => assertIntegerMatch(c));
  assert.equal(c.firstMismatch, undefined, JSON.stringify(c.firstMismatch));
  // Input quantization, two convs, MaxPool -> Q, Flatten -> Q, fc0: every QuantizeLinear is compared.
  assert.deepEqual(c.layers.map((l) => l.node), ['normalize_mul', 'conv0', 'maxpool0', 'conv1', 'flatten0', 'fc0']);
  assert.ok(c.layers.every((l) => l.maxDiff <= 1), JSON.stringify(c.layers));
  // Codes that only move (input quantization, MaxPool, Flatten) are identical.
  for (const l of c.layers.filter((x) => !['Conv', 'Gemm'].includes(x.opType))) assert.equal(l.offByOne, 0, l.node);
  // Off-by-one codes are rare, and each is where ORT's float32 requantization rounds the other way.
  assert.ok(c.offByOneTotal / c.elementsTotal < 1e-3, `${c.offByOneTotal} of ${c.elementsTotal} codes off by one`);
  for (const l of c.layers) assert.equal(l.offByOneFloatRounding, l.offByOne, `${l.node}: ${l.offByOne - l.offByOneFloatRounding} off-by-one codes not explained by float rounding`);
  console.log(`integer vs ORT: ${c.offByOneTotal} of ${c.elementsTotal} codes off by one (${c.layers.map((l) => `${l.node} ${l.offByOne}`).join(', ')}); logits max |diff| ${c.output.maxAbsDifference.toPrecision(3)}`);
  // End to end (no forcing): the integer logits give ORT's predictions on all 64 images.
  assert.equal(c.output.samples, 64);
  assert.equal(c.output.argmaxAgreement, 1);
  assert.ok(c.output.maxAbsDifference < 0.05, String(c.output.maxAbsDifference));
});

test('the comparison runs ORT\'s fused kernels: with every QuantizeLinear a graph output, ORT still fuses QLinearConv and QGemm', async () => {
  const shapes = new Map([...evaluateInteger(exported, feeds).values].flatMap(([k, v]) => (v.kind === 'quantized' ? [[k, v.dims] as [string, number[]]] : [])));
  const file = path.join(tmp, 'optimized.onnx');
  const s = await Session.create(withQuantizedOutputs(exported, shapes), { optimizedModelFilePath: file });
  await s.release();
  const ops = decodeModel(fs.readFileSync(file)).nodes.map((n) => n.opType);
  assert.equal(ops.filter((o) => o === 'QLinearConv').length, 2, ops.join(' '));
  assert.ok(ops.includes('QGemm'), ops.join(' '));
  assert.ok(!ops.includes('Conv'), ops.join(' '));
});

test('a corrupted weight code makes the comparison name the node that differs, and by how much', async () => {
  const bad = Object.assign(Object.create(Object.getPrototypeOf(exported)), exported) as Graph;
  bad.initializers = new Map(exported.initializers);
  const name = [...bad.initializers.keys()].find((k) => k.startsWith('conv1.weight') && bad.initializers.get(k)!.size > 1000)!;
  const w = bad.initializers.get(name)!;
  const codes = Uint8Array.from(w.data as Uint8Array);
  // Output channel 5, every input channel's centre tap pushed far from its value.
  for (let ci = 0; ci < 32; ci++) codes[(5 * 32 + ci) * 9 + 4] = codes[(5 * 32 + ci) * 9 + 4] > 128 ? 0 : 255;
  bad.initializers.set(name, new Tensor(w.dtype, w.dims, codes));
  const few = new Map([[model.input, new Tensor(DType.FLOAT, [8, 1, 28, 28], feeds.get(model.input)!.data.slice(0, 8 * 784) as Float32Array)]]);
  const c = await compareIntegerWithOrt(bad, few, { ortGraph: exported });
  assert.equal(c.firstMismatch?.node, 'conv1', JSON.stringify(c.layers));
  assert.ok(c.firstMismatch!.maxDiff > 1);
  assert.throws(() => assertIntegerMatch(c), /first at node 'conv1' \(Conv, codes 'relu_8\/quantize_out'\): \d+ of 100352 codes differ by more than 1, max difference \d+/);
});

test('the integer evaluator refuses float layers and unknown ops, naming the node', async () => {
  assert.throws(() => evaluateInteger(model.graph, feeds), /the integer evaluator has no kernel for op \w+ \(node '[^']+'\)|node '[^']+' \(\w+\): input \d .* needs it quantized/);
  const float = Object.assign(Object.create(Object.getPrototypeOf(exported)), exported) as Graph;
  float.nodes = exported.nodes.map((n) => (n.name === 'conv0' ? { ...n, inputs: [n.inputs[0], 'w_float', n.inputs[2]] } : n));
  float.initializers = new Map(exported.initializers).set('w_float', Tensor.float([32, 1, 3, 3], new Float32Array(288)));
  assert.throws(() => evaluateInteger(float, feeds), /node 'conv0' \(Conv\): input 1 \('w_float'\) is a plain FLOAT tensor \[32,1,3,3\]; the integer evaluator needs it quantized/);
});

test('resnet8 w8a8 (residual Add, GlobalAveragePool): every layer matches ORT\'s codes within one float-rounding step', async () => {
  const dir = path.join(tmp, 'resnet8');
  await train({ ...DEFAULT_TRAIN_CONFIG, model: 'resnet8', quant: 'w8a8', steps: 3, batch: 32 }, dir);
  const resnet = loadCheckpoint(path.join(dir, 'checkpoint.qat')).model;
  const graph = (await exportQdq(resnet)).graph;
  const few = new Map([[resnet.input, new Tensor(DType.FLOAT, [16, 1, 28, 28], feeds.get(model.input)!.data.slice(0, 16 * 784) as Float32Array)]]);
  const c = await compareIntegerWithOrt(graph, few);
  assert.equal(c.firstMismatch, undefined, JSON.stringify(c.firstMismatch));
  const ops = c.layers.map((l) => l.opType);
  // All three blocks' Adds write codes (the last one feeds the average pool, a quantization point too).
  assert.equal(ops.filter((o) => o === 'Add').length, 3, ops.join(' '));
  assert.ok(ops.includes('GlobalAveragePool'), ops.join(' '));
  for (const l of c.layers) assert.equal(l.offByOneFloatRounding, l.offByOne, `${l.node}: ${l.offByOne - l.offByOneFloatRounding} off-by-one codes not explained by float rounding`);
  assert.ok(c.output.maxAbsDifference < 0.05, String(c.output.maxAbsDifference));
});

test('checkIntegerReference (qat export) reports a model outside the evaluator\'s coverage as skipped, naming the node', async () => {
  const float = Object.assign(Object.create(Object.getPrototypeOf(exported)), exported) as Graph;
  float.nodes = exported.nodes.map((n) => (n.name === 'conv0' ? { ...n, inputs: [n.inputs[0], 'w_float', n.inputs[2]] } : n));
  float.initializers = new Map(exported.initializers).set('w_float', Tensor.float([32, 1, 3, 3], new Float32Array(288)));
  const test10 = { ...loadDataset('mnist').test, count: 10 };
  const r = await checkIntegerReference(float, model.input, test10);
  assert.ok('skipped' in r && /node 'conv0' \(Conv\): input 1 \('w_float'\)/.test(r.skipped), JSON.stringify(r));
  const ok = await checkIntegerReference(exported, model.input, test10);
  assert.ok('samples' in ok && ok.samples === 10 && ok.first_mismatch === null, JSON.stringify(ok));
});

test('lenet w4a4: the exporter clamps the 4-bit codes after QuantizeLinear, so ORT fuses QLinearConv; the evaluator clamps them too, within one step of ORT', async () => {
  const dir = path.join(tmp, 'w4a4');
  // A small lr: from scratch, 20 steps at 1e-3 can push a tiny LSQ scale below zero, so this fixture trains at 1e-4.
  await train({ ...DEFAULT_TRAIN_CONFIG, model: 'lenet', quant: 'w4a4', steps: 20, batch: 32, lr: 1e-4 }, dir);
  const w4 = loadCheckpoint(path.join(dir, 'checkpoint.qat')).model;
  const graph = (await exportQdq(w4)).graph;
  const producer = graph.producers();
  const clips = graph.nodes.filter((n) => n.opType === 'Clip');
  assert.ok(clips.length >= 2, 'the 4-bit activations are clamped to their grid');
  assert.ok(clips.every((n) => producer.get(n.inputs[0])?.opType === 'QuantizeLinear'), 'every clamp is on codes, none on floats before a QuantizeLinear');
  const optimized = await optimizedOps(graph);
  assert.equal(optimized.filter((o) => o === 'com.microsoft.QLinearConv').length, 2, optimized.join(' '));
  assert.ok(!optimized.includes('Conv') && !optimized.includes('FusedConv'), optimized.join(' '));
  const few = new Map([[w4.input, new Tensor(DType.FLOAT, [16, 1, 28, 28], feeds.get(model.input)!.data.slice(0, 16 * 784) as Float32Array)]]);
  const c = await compareIntegerWithOrt(graph, few);
  assert.equal(c.firstMismatch, undefined, JSON.stringify(c.firstMismatch));
  // The clamp took effect: the codes after each clamp span at most 16 values (uint8 storage allows 256), and
  // before it conv1's requantized output reaches past them.
  const r = evaluateInteger(graph, few);
  const span = (value: string) => (r.values.get(value) as { codes: Int32Array }).codes.reduce(([a, b], q) => [Math.min(a, q), Math.max(b, q)], [Infinity, -Infinity]);
  for (const clip of clips) {
    const [min, max] = span(clip.outputs[0]);
    assert.ok(max - min <= 15, `${clip.name}: ${min}..${max}`);
  }
  const conv1 = c.layers.find((l) => l.node === 'conv1')!;
  assert.ok(span(conv1.value)[1] > 15, `conv1's unclamped codes: ${span(conv1.value)}`);
  assert.ok(c.offByOneTotal / c.elementsTotal < 0.01, `${c.offByOneTotal} of ${c.elementsTotal}`);
});

test('integer Clip on floats clamps them; on codes it clamps to the bounds\' codes and refuses off-grid bounds', () => {
  // Clip(x, -1, 3) on floats, quantize (s 0.5, z 10), Clip(-1, codesMax) on the codes, requantize.
  const build = (codesMax: number) => {
    const { g, init, node } = handGraph('clip', [{ name: 'x', dtype: DType.FLOAT, shape: [6] }], [{ name: 'q', dtype: DType.UINT8, shape: [6] }]);
    init('s', Tensor.float([], [0.5])); init('z', new Tensor(DType.UINT8, [], Uint8Array.of(10)));
    init('lo', Tensor.float([], [-1])); init('fhi', Tensor.float([], [3])); init('hi', Tensor.float([], [codesMax]));
    node('Clip', ['x', 'lo', 'fhi'], 'xc');
    node('QuantizeLinear', ['xc', 's', 'z'], 'qx'); node('DequantizeLinear', ['qx', 's', 'z'], 'dx');
    node('Clip', ['dx', 'lo', 'hi'], 'dc');
    node('QuantizeLinear', ['dc', 's', 'z'], 'q');
    return g;
  };
  const x = Tensor.float([6], [-3, -0.6, 0.2, 1.4, 2.6, 9]);
  const r = evaluateInteger(build(2), new Map([['x', x]]));
  const codes = (k: string) => Array.from((r.values.get(k) as { codes: Int32Array }).codes);
  assert.deepEqual(codes('qx'), [8, 9, 10, 13, 15, 16]); // floats clipped to [-1, 3]: codes [8, 16]
  assert.deepEqual(codes('q'), [8, 9, 10, 13, 14, 14]); // codes clipped to [-1, 2]: codes [8, 14]
  assert.throws(() => evaluateInteger(build(2.2), new Map([['x', x]])), /node 'dc' \(Clip\): the integer evaluator needs clip bounds on the codes' grid/);
});
