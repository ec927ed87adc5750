import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import { checkGradient, CheckCase } from '../../src/autodiff/check';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { attrString, Graph, Node } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { resizeAxes, resizeMatrix } from '../../src/ops/resize';
import { Session } from '../../src/runtime/session';
import { toOrtTensor } from '../../src/runtime/tensors';
import { Rng } from '../../src/train/rng';

interface ResizeCase {
  name: string;
  shape: number[];
  attrs: Record<string, string>;
  scales?: number[];
  sizes?: number[];
}

/** Upsampling and downsampling on one or both of the last two axes, in every mode qatkit differentiates. */
const configs: ResizeCase[] = [
  // F.interpolate(scale_factor=2, mode='nearest') and nn.Upsample(scale_factor=2) as torch.onnx.export writes them.
  { name: 'nearest x2 asymmetric floor (PyTorch nearest)', shape: [2, 3, 4, 5], attrs: { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' }, scales: [1, 1, 2, 2] },
  { name: 'nearest x1.5 half_pixel round_prefer_floor (ONNX defaults)', shape: [1, 2, 4, 6], attrs: { mode: 'nearest' }, scales: [1, 1, 1.5, 1.5] },
  { name: 'nearest sizes 7 -> 3 round_prefer_ceil', shape: [1, 1, 7, 7], attrs: { mode: 'nearest', nearest_mode: 'round_prefer_ceil' }, sizes: [1, 1, 3, 3] },
  { name: 'nearest x3 align_corners ceil', shape: [1, 2, 3, 2], attrs: { mode: 'nearest', coordinate_transformation_mode: 'align_corners', nearest_mode: 'ceil' }, scales: [1, 1, 3, 3] },
  // bilinear, align_corners=False: pytorch_half_pixel; align_corners=True: align_corners.
  { name: 'linear x2 pytorch_half_pixel (PyTorch bilinear)', shape: [2, 2, 4, 5], attrs: { mode: 'linear', coordinate_transformation_mode: 'pytorch_half_pixel' }, scales: [1, 1, 2, 2] },
  { name: 'linear sizes 5x6 -> 3x4 half_pixel (downsampling)', shape: [1, 2, 5, 6], attrs: { mode: 'linear' }, sizes: [1, 2, 3, 4] },
  { name: 'linear sizes 4x4 -> 7x9 align_corners', shape: [1, 1, 4, 4], attrs: { mode: 'linear', coordinate_transformation_mode: 'align_corners' }, sizes: [1, 1, 7, 9] },
  { name: 'linear x2.5 asymmetric, last axis only (rank 3, F.interpolate on [N, C, L])', shape: [2, 3, 4], attrs: { mode: 'linear', coordinate_transformation_mode: 'asymmetric' }, scales: [1, 1, 2.5] },
  { name: 'linear x2 half_pixel_symmetric (Resize-19)', shape: [1, 1, 3, 5], attrs: { mode: 'linear', coordinate_transformation_mode: 'half_pixel_symmetric' }, scales: [1, 1, 2, 2] },
];

function resizeInputs(b: GraphBuilder, c: ResizeCase): string[] {
  return ['', c.scales ? b.constant(Tensor.float([c.scales.length], c.scales)) : '', ...(c.sizes ? [b.constant(Tensor.int64([c.sizes.length], c.sizes))] : [])];
}

/** y = the per-axis matrices applied to x (float64): what the gradient rule transposes. */
function applyMatrices(node: Node, shape: number[], outShape: number[], x: ArrayLike<number>, scales?: number[]): Float64Array {
  let cur = Float64Array.from(x);
  let dims = [...shape];
  for (const { axis, spec } of resizeAxes(node, shape, outShape, scales)) {
    const m = resizeMatrix(spec);
    const outer = dims.slice(0, axis).reduce((p, q) => p * q, 1);
    const inner = dims.slice(axis + 1).reduce((p, q) => p * q, 1);
    const next = new Float64Array(outer * spec.outSize * inner);
    for (let o = 0; o < outer; o++)
      for (let i = 0; i < spec.outSize; i++)
        for (let j = 0; j < spec.inSize; j++) {
          const w = m[i * spec.inSize + j];
          if (w === 0) continue;
          for (let k = 0; k < inner; k++) next[(o * spec.outSize + i) * inner + k] += w * cur[(o * spec.inSize + j) * inner + k];
        }
    cur = next;
    dims = dims.map((d, a) => (a === axis ? spec.outSize : d));
  }
  return cur;
}

for (const c of configs) {
  test(`Resize ${c.name}: the interpolation matrices reproduce ORT's Resize`, async () => {
    const g = new Graph();
    g.opsets = { '': 19 };
    const b = new GraphBuilder(g);
    const x = b.input('x', DType.FLOAT, c.shape);
    const y = b.op1('Resize', [x, ...resizeInputs(b, c)], c.attrs);
    b.output(y);
    const rng = new Rng(7);
    const values = Float32Array.from({ length: c.shape.reduce((p, q) => p * q, 1) }, () => rng.range(-2, 2));
    const session = await Session.create(g, { threads: 1 });
    const got = (await session.run({ x: toOrtTensor(Tensor.float(c.shape, values)) }))[g.outputs[0].name];
    await session.release();
    const outShape = b.shape(y) as number[];
    assert.deepEqual(Array.from(got.dims), outShape, 'inferred shape = ORT shape');
    const node = g.nodes.find((n) => n.opType === 'Resize')!;
    const want = applyMatrices(node, c.shape, outShape, values, c.scales);
    const data = got.data as Float32Array;
    want.forEach((v, i) => assert.ok(Math.abs(data[i] - v) < 1e-5, `${attrString(node, 'mode', 'nearest')} element ${i}: ORT ${data[i]}, matrices ${v}`));
  });
}

/** The checker's loss graph (Resize, Mul by weights, ReduceSum) in float64 through the (ORT-checked) matrices. */
function forward64(graph: Graph, feeds: Map<string, Tensor>, loss: string): number {
  const values = new Map<string, Float64Array>();
  for (const [name, t] of [...graph.initializers, ...feeds]) values.set(name, Float64Array.from(t.toNumbers()));
  const get = (name: string) => values.get(name) ?? assert.fail(`forward64: value '${name}' not computed`);
  for (const n of graph.nodes) {
    if (n.opType === 'Resize') {
      const scales = n.inputs[2] ? graph.initializers.get(n.inputs[2])?.toNumbers() : undefined;
      values.set(n.outputs[0], applyMatrices(n, graph.typeOf(n.inputs[0]).shape as number[], graph.typeOf(n.outputs[0]).shape as number[], get(n.inputs[0]), scales));
    } else if (n.opType === 'Mul') values.set(n.outputs[0], get(n.inputs[0]).map((v, i) => v * get(n.inputs[1])[i]));
    else if (n.opType === 'ReduceSum') values.set(n.outputs[0], Float64Array.of(get(n.inputs[0]).reduce((p, v) => p + v, 0)));
    else if (n.opType === 'Constant' || n.opType === 'Identity') values.set(n.outputs[0], get(n.inputs[0] ?? n.outputs[0]));
    else assert.fail(`forward64 does not evaluate ${n.opType}`);
  }
  return get(loss)[0];
}

// ORT has no float64 Resize: float32 analytic gradients against the float64 forward (Resize is linear in x, so
// the central differences are exact up to rounding).
const gradientCases: CheckCase[] = configs.map((c) => ({
  name: `Resize ${c.name}`,
  inputs: [{ shape: c.shape }],
  build: (b, [x]) => ((b.graph.opsets[''] = 19), b.op1('Resize', [x, ...resizeInputs(b, c)], c.attrs)),
  precision: 'float32' as const,
  forward64,
}));

for (const c of gradientCases) {
  test(`gradient of ${c.name} matches finite differences (float32)`, async () => {
    const r = await checkGradient(c);
    assert.ok(r.relativeError < 1e-3, `relative error ${r.relativeError}; worst ${JSON.stringify(r.worst)}`);
  });
}

test('Resize refuses what it has no gradient for, naming the node and the valid choices', () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, [1, 1, 4, 4]);
  const scales = b.constant(Tensor.float([4], [1, 1, 2, 2]));
  assert.throws(() => b.op1('Resize', [x, '', scales], { mode: 'cubic' }, { name: 'up' }), /node 'up' \(Resize\): mode 'cubic' .*valid modes: nearest, linear/);
  assert.throws(() => b.op1('Resize', [x, '', scales], { coordinate_transformation_mode: 'tf_crop_and_resize' }, { name: 'crop' }), /'crop' .*tf_crop_and_resize.*valid: half_pixel/);
  const channels = b.constant(Tensor.float([4], [1, 2, 1, 1]));
  const y = b.op1('Resize', [x, '', channels], {}, { name: 'chan' });
  assert.throws(() => resizeAxes(g.nodes.find((n) => n.name === 'chan')!, [1, 1, 4, 4], b.shape(y), [1, 2, 1, 1]), /'chan' .*only the last two axes/);
});
