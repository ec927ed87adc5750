import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import { checkGradient, CheckCase } from '../../src/autodiff/check';
import { differentiate } from '../../src/autodiff/grad';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import {
  embeddingGradient,
  embeddingGradientMethod,
  EmbeddingGradientMethod,
  ONEHOT_EMBEDDING_MAX_VOCABULARY,
} from '../../src/ops/indexing';
import { Session } from '../../src/runtime/session';
import { toOrtTensor } from '../../src/runtime/tensors';
import { Rng } from '../../src/train/rng';

// The token-embedding gradient (Gather on a [V, C] table with ids [B, T]): a one-hot product up to
// ONEHOT_EMBEDDING_MAX_VOCABULARY, ScatterElements-add above (bench/embedding-grad.ts measures the choice).
// Other Gather cases are in test/ops/tensor-ops.test.ts.

const ids = (shape: number[], values: number[]) => ({ shape, values, dtype: 'int64' as const });
const gather = (b: GraphBuilder, [table, i]: string[]) => b.op1('Gather', [table, i]);
const above = ONEHOT_EMBEDDING_MAX_VOCABULARY + 44;

const cases: CheckCase[] = [
  { name: 'one-hot method: [6,3] table, ids [2,5] with repeats and -1', inputs: [{ shape: [6, 3] }, ids([2, 5], [5, 0, 2, 2, -1, 0, 3, 5, 5, 1])], build: gather },
  { name: 'one-hot method: a scalar id', inputs: [{ shape: [4, 3] }, ids([], [2])], build: gather },
  {
    name: `scatter method: [${above},2] table, ids [3,4] with repeats and negatives`,
    inputs: [{ shape: [above, 2] }, ids([3, 4], [7, 0, above - 1, 7, -1, 7, 100, 0, -above, 3, 3, 7])],
    build: gather,
  },
  // A tied embedding and LM head: one table read by Gather and by MatMul(h, W^T); both gradients add up.
  {
    name: 'chain tied embedding: matmul(gather(W, ids), W^T)',
    inputs: [{ shape: [5, 3] }, ids([2, 3], [4, 1, 1, 0, 4, 2])],
    build: (b, [w, i]) => b.matmul(b.op1('Gather', [w, i]), b.transpose(w, [1, 0])),
  },
];

for (const c of cases) {
  test(`gradient of Gather, ${c.name}, matches finite differences (float64)`, async () => {
    const r = await checkGradient(c);
    assert.ok(r.relativeError < 1e-6, `relative error ${r.relativeError}; worst ${JSON.stringify(r.worst)}`);
  });
}

test('the method follows the vocabulary: one-hot up to the threshold, a scatter above (a 50k vocabulary never builds a one-hot)', () => {
  assert.equal(embeddingGradientMethod(256), 'onehot');
  assert.equal(embeddingGradientMethod(ONEHOT_EMBEDDING_MAX_VOCABULARY), 'onehot');
  assert.equal(embeddingGradientMethod(ONEHOT_EMBEDDING_MAX_VOCABULARY + 1), 'scatter');
  assert.equal(embeddingGradientMethod(50257), 'scatter');
});

/** Random ids in [0, V) and dY for a [V, C] table read by ids [B, T], with the exact dW (float64 sums). */
function embeddingProblem(batch: number, time: number, vocabulary: number, width: number, seed: number) {
  const rng = new Rng(seed);
  const n = batch * time;
  const tokens = Array.from({ length: n }, () => Math.floor(rng.uniform() * vocabulary));
  const dy = Array.from({ length: n * width }, () => rng.range(-1, 1));
  const exact = new Float64Array(vocabulary * width);
  for (let i = 0; i < n; i++) for (let c = 0; c < width; c++) exact[tokens[i] * width + c] += Math.fround(dy[i * width + c]);
  return { tokens, dy, exact };
}

function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

/**
 * Runs `graph` on several 2-thread sessions alive at once (as a trainer's step and eval sessions are), a few
 * times each, and returns the largest |output - exact|. ORT's ScatterND-add (the rule before) lost updates to
 * repeated ids there: its kernel splits the update rows across threads with no synchronisation, so whenever
 * both threads ran at once (in some sessions every run, in others none) rows lost updates (errors of order 1
 * in 15-100% of dW's elements). Eight sessions make it likely that some of them run both threads at once.
 */
async function worstErrorOnLiveSessions(graph: Graph, feeds: Record<string, ReturnType<typeof toOrtTensor>>, output: string, exact: Float64Array) {
  const sessions: Session[] = [];
  let worst = 0;
  try {
    for (let k = 0; k < 8; k++) {
      const session = await Session.create(graph, { threads: 2 });
      sessions.push(session);
      for (let run = 0; run < 3; run++) worst = Math.max(worst, maxAbsDifference((await session.run(feeds))[output].data as Float32Array, exact));
    }
  } finally {
    for (const s of sessions) await s.release();
  }
  return worst;
}

const contended: [number, number, number, number][] = [
  [32, 128, 64, 128], // the bench's ids and width, a small vocabulary
  [16, 64, 2, 512], // two rows share every update: any concurrent pair collides
];
for (const method of ['onehot', 'scatter'] as EmbeddingGradientMethod[]) {
  for (const [batch, time, vocabulary, width] of contended) {
    test(`embedding gradient (${method}, V=${vocabulary}, C=${width}) sums every repeated id exactly with 2 intra-op threads`, async () => {
      const p = embeddingProblem(batch, time, vocabulary, width, 3);
      const g = new Graph();
      const b = new GraphBuilder(g);
      const idsIn = b.input('ids', DType.INT64, [batch, time]);
      const dyIn = b.input('dy', DType.FLOAT, [batch, time, width]);
      const dw = b.output(embeddingGradient(b, idsIn, dyIn, vocabulary, method));
      assert.deepEqual(b.type(dw), { dtype: DType.FLOAT, shape: [vocabulary, width] });
      const feeds = { ids: toOrtTensor(Tensor.int64([batch, time], p.tokens)), dy: toOrtTensor(Tensor.float([batch, time, width], p.dy)) };
      const err = await worstErrorOnLiveSessions(g, feeds, dw, p.exact);
      assert.ok(err < 1e-3, `max |dW - exact| = ${err}`);
    });
  }
}

test('Gather on axis 1 with repeated indices: the gradient is exact with 2 intra-op threads', async () => {
  const [rows, dim, width, count] = [2, 4, 256, 1024];
  const rng = new Rng(11);
  const picks = Array.from({ length: count }, () => Math.floor(rng.uniform() * dim));
  const dy = Array.from({ length: rows * count * width }, () => rng.range(-1, 1));
  const exact = new Float64Array(rows * dim * width);
  for (let r = 0; r < rows; r++) for (let k = 0; k < count; k++) for (let c = 0; c < width; c++) exact[(r * dim + picks[k]) * width + c] += Math.fround(dy[(r * count + k) * width + c]);
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, [rows, dim, width]);
  const y = b.op1('Gather', [x, b.constant(Tensor.int64([count], picks))], { axis: 1 });
  const w = b.input('w', DType.FLOAT, [rows, count, width]);
  const dx = b.output(differentiate(g, { loss: b.sumAll(b.mul(y, w)), wrt: [x] }).get(x)!);
  const feeds = { x: toOrtTensor(Tensor.float([rows, dim, width], new Array(rows * dim * width).fill(0))), w: toOrtTensor(Tensor.float([rows, count, width], dy)) };
  const err = await worstErrorOnLiveSessions(g, feeds, dx, exact);
  assert.ok(err < 1e-3, `max |dx - exact| = ${err}`);
});

test('a GPT-2 vocabulary (50257) trains: its gradient is a [V, C] scatter, no [V, B*T] one-hot, and exact', async () => {
  const [batch, time, vocabulary, width] = [8, 32, 50257, 8];
  const p = embeddingProblem(batch, time, vocabulary, width, 5);
  const g = new Graph();
  const b = new GraphBuilder(g);
  const table = b.input('table', DType.FLOAT, [vocabulary, width]);
  const idsIn = b.input('ids', DType.INT64, [batch, time]);
  const w = b.input('w', DType.FLOAT, [batch, time, width]);
  const loss = b.sumAll(b.mul(b.op1('Gather', [table, idsIn]), w));
  const before = g.nodes.length;
  const dw = b.output(differentiate(g, { loss, wrt: [table] }).get(table)!);
  const largest = Math.max(...g.nodes.slice(before).flatMap((n) => n.outputs.map((o) => b.shape(o).reduce((s: number, d) => s * (typeof d === 'number' ? d : 1), 1))));
  assert.equal(largest, vocabulary * width, 'largest gradient intermediate');
  const session = await Session.create(g, { threads: 2 });
  const out = await session.run({
    table: toOrtTensor(Tensor.float([vocabulary, width], new Float32Array(vocabulary * width))),
    ids: toOrtTensor(Tensor.int64([batch, time], p.tokens)),
    w: toOrtTensor(Tensor.float([batch, time, width], p.dy)),
  });
  assert.ok(maxAbsDifference(out[dw].data as Float32Array, p.exact) < 1e-5);
  await session.release();
});
