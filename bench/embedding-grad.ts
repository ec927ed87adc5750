/**
 * Embedding-gradient benchmark: the gradient of Gather(table [V, C], ids [B, T]) with respect to the table,
 * dW = sum over tokens of dY rows into their ids' rows, computed four ways on ONNX Runtime (CPU, fp32):
 *   - ScatterND(zeros [V, C], ids [B, T, 1], dY [B, T, C], reduction 'add')
 *   - Gemm(OneHot(ids, V) [B*T, V], dY [B*T, C], transA=1), i.e. MatMul(Transpose(OneHot), dY)
 *   - MatMul(Cast(Equal(arange(V)[:, None], ids[None, :])) [V, B*T], dY [B*T, C])  (qatkit's rule up to the threshold)
 *   - ScatterElements(zeros [V, C], ids broadcast to [B*T, C], dY [B*T, C], axis 0, reduction 'add') (above the threshold)
 * at several vocabulary sizes, timed in alternation in one process (bench/README.md: ratios within one run).
 * Timed runs fetch only sum(dW), so no method pays for copying a [V, C] result back to JavaScript. Five more runs
 * per method compare dW with exact float64 sums: ScatterND-add loses updates to repeated ids whenever its kernel
 * runs on two threads at once (a data race; docs/decisions.md), which is why qatkit never emits it.
 *
 *   node --import tsx bench/embedding-grad.ts [--steps 30] [--warmup 10] [--threads 2] [--vocab 128,256,512,1024,8192,50257] [--json FILE]
 */
import os from 'node:os';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../src/ir/builder';
import { DType } from '../src/ir/dtype';
import { Graph } from '../src/ir/graph';
import { Tensor } from '../src/ir/tensor';
import '../src/ops';
import { embeddingGradient, ONEHOT_EMBEDDING_MAX_VOCABULARY } from '../src/ops/indexing';
import { zerosOfShape } from '../src/ops/tensor-ops';
import { Session } from '../src/runtime/session';
import { toOrtTensor } from '../src/runtime/tensors';
import { Rng } from '../src/train/rng';
import { parseStepArgs, runMain, writeJson } from './lib/cli';
import { loadStr, median, printTable } from './lib/timing';

const BATCH = 32;
const CONTEXT = 128;
const WIDTH = 128;
/** Above this the [B*T, V] float one-hot (B*T*V*4 bytes) is not built (50257 needs 823 MB, still built). */
const ONEHOT_MEMORY_LIMIT_MB = 1024;
/** Runs per method whose dW is compared with the exact one (a race shows up in some runs, not all). */
const EXACTNESS_RUNS = 5;

type Method = 'scatternd' | 'onehot-op' | 'onehot' | 'scatterelements';
const METHODS: Method[] = ['scatternd', 'onehot-op', 'onehot', 'scatterelements'];
const LABELS: Record<Method, string> = {
  scatternd: 'ScatterND-add',
  'onehot-op': 'Gemm(OneHot, transA)',
  onehot: 'MatMul(Equal one-hot^T)',
  scatterelements: 'ScatterElements-add',
};

function buildGraph(method: Method, vocabulary: number): Graph {
  const g = new Graph();
  g.name = `embedding-grad-${method}-${vocabulary}`;
  const b = new GraphBuilder(g);
  const ids = b.input('ids', DType.INT64, [BATCH, CONTEXT]);
  const dy = b.input('dy', DType.FLOAT, [BATCH, CONTEXT, WIDTH]);
  let dw: string;
  if (method === 'scatternd') {
    const zeros = zerosOfShape(b, [vocabulary, WIDTH], DType.FLOAT, () => '');
    dw = b.op1('ScatterND', [zeros, b.unsqueeze(ids, [2]), dy], { reduction: 'add' });
  } else if (method === 'onehot-op') {
    const oneHot = b.op1('OneHot', [b.reshape(ids, [-1]), b.ints([vocabulary]), b.constant([0, 1], DType.FLOAT)], { axis: -1 });
    dw = b.op1('Gemm', [oneHot, b.reshape(dy, [-1, WIDTH])], { transA: 1 });
  } else {
    dw = embeddingGradient(b, ids, dy, vocabulary, method === 'onehot' ? 'onehot' : 'scatter');
  }
  b.output(b.sumAll(dw));
  b.output(dw);
  return g;
}

interface Row {
  vocabulary: number;
  ms: Partial<Record<Method, number>>;
  /** Largest |dW - exact dW| over EXACTNESS_RUNS runs of each method (exact: float64 sums in JavaScript). */
  maxError: Partial<Record<Method, number>>;
}

async function benchVocabulary(vocabulary: number, warmup: number, steps: number, threads: number): Promise<Row> {
  const rng = new Rng(vocabulary);
  const n = BATCH * CONTEXT;
  const ids = Array.from({ length: n }, () => Math.floor(rng.uniform() * vocabulary));
  const dy = Float32Array.from({ length: n * WIDTH }, () => rng.range(-1, 1));
  const exact = new Float64Array(vocabulary * WIDTH);
  for (let i = 0; i < n; i++) for (let c = 0; c < WIDTH; c++) exact[ids[i] * WIDTH + c] += dy[i * WIDTH + c];
  const feeds = { ids: toOrtTensor(Tensor.int64([BATCH, CONTEXT], ids)), dy: toOrtTensor(Tensor.float([BATCH, CONTEXT, WIDTH], dy)) };
  const oneHotMb = (n * vocabulary * 4) / 2 ** 20;
  const methods = METHODS.filter((m) => !m.startsWith('onehot') || oneHotMb <= ONEHOT_MEMORY_LIMIT_MB);
  const sessions = new Map<Method, Session>();
  for (const m of methods) sessions.set(m, await Session.create(buildGraph(m, vocabulary), { threads }));
  const times = new Map<Method, number[]>(methods.map((m) => [m, []]));
  const maxError: Row['maxError'] = {};
  // Alternate the methods run by run (rotating which goes first), so load changes hit all of them alike.
  for (let i = 0; i < warmup + steps; i++) {
    for (let k = 0; k < methods.length; k++) {
      const m = methods[(i + k) % methods.length];
      const s = sessions.get(m)!;
      const t0 = performance.now();
      await s.run(feeds as Record<string, ort.Tensor>, [s.graph.outputs[0].name]);
      const dt = performance.now() - t0;
      if (i >= warmup) times.get(m)!.push(dt);
    }
  }
  for (const m of methods) {
    const s = sessions.get(m)!;
    const dw = s.graph.outputs[1].name;
    let worst = 0;
    for (let check = 0; check < EXACTNESS_RUNS; check++) {
      const got = (await s.run(feeds as Record<string, ort.Tensor>, [dw]))[dw].data as Float32Array;
      for (let j = 0; j < got.length; j++) worst = Math.max(worst, Math.abs(got[j] - exact[j]));
    }
    maxError[m] = worst;
  }
  for (const s of sessions.values()) await s.release();
  return { vocabulary, ms: Object.fromEntries(methods.map((m) => [m, median(times.get(m)!)])), maxError };
}

async function main(): Promise<void> {
  const { steps, warmup, threads, json, values } = parseStepArgs(30, {
    vocab: { type: 'string', default: '128,256,512,1024,8192,50257' },
  });
  const vocabularies = values.vocab!.split(',').map(Number);
  if (vocabularies.some((v) => !Number.isInteger(v) || v < 1)) throw new Error(`--vocab: expected comma-separated integers >= 1, got '${values.vocab}'`);
  const loadBefore = os.loadavg();
  console.log(
    `embedding gradient: ids [${BATCH}, ${CONTEXT}], C = ${WIDTH}, fp32, ${threads} threads, ${warmup} warmup + ${steps} timed runs per method; ` +
      `loadavg ${loadStr(loadBefore)}`,
  );
  const rows: Row[] = [];
  for (const v of vocabularies) rows.push(await benchVocabulary(v, warmup, steps, threads));
  const cell = (x: number | undefined, digits = 2) => (x === undefined ? '-' : x.toFixed(digits));
  printTable([
    ['V', ...METHODS.map((m) => `${LABELS[m]} ms`), 'best one-hot / ScatterElements', 'max |dW - exact|: ' + METHODS.map((m) => LABELS[m]).join(', ')],
    ...rows.map((r) => {
      const oneHot = [r.ms['onehot-op'], r.ms.onehot].filter((x) => x !== undefined) as number[];
      return [
        String(r.vocabulary),
        ...METHODS.map((m) => cell(r.ms[m])),
        oneHot.length ? cell(Math.min(...oneHot) / r.ms.scatterelements!) : '-',
        METHODS.map((m) => (r.maxError[m] === undefined ? '-' : r.maxError[m]!.toExponential(1))).join(', '),
      ];
    }),
  ]);
  console.log(`(median ms per run; '-' = one-hot above ${ONEHOT_MEMORY_LIMIT_MB} MB, not built)`);
  console.log(`qatkit's gatherVjp uses the one-hot product up to V = ${ONEHOT_EMBEDDING_MAX_VOCABULARY}, ScatterElements-add above`);
  const loadAfter = os.loadavg();
  console.log(`loadavg after: ${loadStr(loadAfter)} (${os.cpus().length} cores)`);
  if (json) writeJson(json, { batch: BATCH, context: CONTEXT, width: WIDTH, threads, warmup, steps, rows, threshold: ONEHOT_EMBEDDING_MAX_VOCABULARY, loadBefore, loadAfter });
}

runMain(main);
