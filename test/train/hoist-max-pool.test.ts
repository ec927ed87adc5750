import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import '../../src/ops';
import '../../src/quant';
import { differentiate } from '../../src/autodiff/grad';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { QATKIT } from '../../src/quant/fake-quantize-op';
import { Session } from '../../src/runtime/session';
import { hoistMaxPools } from '../../src/train/hoist-max-pool';
import { Rng } from '../../src/train/rng';

const SHAPE = [2, 3, 6, 6];
const POOL = { kernel_shape: [2, 2], strides: [2, 2] };

function randomInput(seed: number, sigma = 2): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: SHAPE.reduce((a, b) => a * b, 1) }, () => sigma * rng.normal());
}

async function run(graph: Graph, feeds: Record<string, Float32Array | number>, outputs: string[]): Promise<Float32Array[]> {
  const session = await Session.create(graph);
  const ortFeeds: Record<string, ort.Tensor> = {};
  for (const v of graph.inputs) {
    const value = feeds[v.name];
    ortFeeds[v.name] = typeof value === 'number' ? new ort.Tensor('float32', Float32Array.of(value), []) : new ort.Tensor('float32', value, v.shape as number[]);
  }
  const result = await session.run(ortFeeds, outputs);
  await session.release();
  return outputs.map((o) => result[o].data as Float32Array);
}

/** x -> Relu -> FakeQuantize (scale and zero point from a training observer on the ReLU output) -> MaxPool. */
function observedChain(pool: Record<string, number[]> = POOL): { graph: Graph; outputs: string[] } {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, SHAPE);
  const [runMin, runMax, observe] = ['run_min', 'run_max', 'observe'].map((n) => b.input(n, DType.FLOAT, []));
  const r = b.relu(x);
  const [scale, zero, newMin, newMax] = b.op('RangeObserverTrain', [r, runMin, runMax, observe], { qmin: 0, qmax: 255, momentum: 0.5 }, { domain: QATKIT, outputs: 4 });
  const q = b.op1('FakeQuantize', [r, scale, zero], { qmin: 0, qmax: 255 }, { domain: QATKIT });
  const y = b.op1('MaxPool', [q], pool);
  for (const o of [y, newMin, newMax]) b.output(o);
  return { graph: g, outputs: [y, newMin, newMax] };
}

// 2x2 stride 2 tiles x (the observer's max is read from the pooled tensor); 3x3 stride 2 leaves the last row and
// column of a 6x6 input outside every window (the max is read from x).
const POOLS: [string, Record<string, number[]>][] = [
  ['2x2 windows that tile x', POOL],
  ['3x3 stride 2 windows that miss a row', { kernel_shape: [3, 3], strides: [2, 2] }],
];
for (const [label, pool] of POOLS) test(`hoisting MaxPool (${label}) in front of ReLU and observed fake-quant keeps outputs and observer ranges bit-identical`, async () => {
  const { graph, outputs } = observedChain(pool);
  const hoisted = graph.clone();
  assert.equal(hoistMaxPools(hoisted), 1);
  const hoistedPool = hoisted.nodes.find((n) => n.opType === 'MaxPool')!;
  assert.equal(hoistedPool.inputs[0], 'x', 'MaxPool now reads the chain input');
  for (const seed of [1, 2, 3]) {
    const feeds = { x: randomInput(seed), run_min: -0.5, run_max: 1.5, observe: 1 };
    const [before, after] = [await run(graph, feeds, outputs), await run(hoisted, feeds, outputs)];
    after.forEach((values, i) => assert.deepEqual(values, before[i], `output ${outputs[i]}, seed ${seed}`));
  }
});

test('hoisted MaxPool routes the gradient to the unquantized arg-max, through ReLU and the STE clamp mask', async () => {
  const scale = 0.25;
  const qmax = 8; // outputs clamp at 2.0; inputs with round(x / s) > 8 get no gradient
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, SHAPE);
  const weights = b.input('w', DType.FLOAT, [2, 3, 3, 3]);
  const q = b.op1('FakeQuantize', [b.relu(x), b.scalarLike(scale, x), b.scalarLike(0, x)], { qmin: 0, qmax }, { domain: QATKIT });
  const loss = b.sumAll(b.mul(b.op1('MaxPool', [q], POOL), weights));
  assert.equal(hoistMaxPools(g), 1);
  const grad = differentiate(g, { loss, wrt: [x] }).get(x)!;
  b.output(grad);

  const xs = randomInput(7);
  const ws = Float32Array.from({ length: 54 }, (_, i) => 1 + i);
  const [dx] = await run(g, { x: xs, w: ws }, [grad]);
  const expected = new Float32Array(xs.length);
  let clamped = 0;
  for (let nc = 0; nc < 6; nc++) {
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 3; j++) {
        const positions = [0, 1].flatMap((di) => [0, 1].map((dj) => nc * 36 + (2 * i + di) * 6 + 2 * j + dj));
        const arg = positions.reduce((best, p) => (xs[p] > xs[best] ? p : best));
        const code = Math.round(xs[arg] / scale); // no exact ties in random data
        if (code > qmax) clamped++;
        if (xs[arg] > 0 && code <= qmax) expected[arg] = ws[nc * 9 + i * 3 + j];
      }
    }
  }
  assert.ok(clamped > 0, 'the case must exercise the clamp mask');
  assert.deepEqual(dx, expected);
});

test('a chain value with another consumer stays where it is', () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const r = b.relu(b.input('x', DType.FLOAT, SHAPE));
  b.output(b.op1('MaxPool', [r], POOL));
  b.output(r);
  const before = JSON.stringify(g.nodes);
  assert.equal(hoistMaxPools(g), 0);
  assert.equal(JSON.stringify(g.nodes), before);
});

test('per-group quantizers and MaxPool with an Indices output are not hoisted past', () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, SHAPE);
  const q = b.op1('FakeQuantize', [x, b.constant(new Array(108).fill(0.1), DType.FLOAT, [2, 3, 3, 6]), b.constant(0)], { qmin: -8, qmax: 7, axis: 2, group_size: 2 }, { domain: QATKIT });
  b.output(b.op1('MaxPool', [q], POOL));
  const r = b.relu(x);
  b.output(b.op('MaxPool', [r], POOL, { outputs: 2 })[1]);
  assert.equal(hoistMaxPools(g), 0);
});
