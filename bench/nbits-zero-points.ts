/**
 * Which MatMulNBits kernels run weights with float zero points (issue 12: ParetoQ's 2-bit SEQ levels
 * {-1.5, -0.5, 0.5, 1.5} s need the zero point 1.5 if they are to stay in 2 bits), against the same weights with the
 * default integer zero point, the 4-bit container SEQ exports use (odd codes 2q + 1 at s / 2), and fp32 MatMul.
 *
 *   node --import tsx bench/nbits-zero-points.ts [--k 2048] [--n 2048] [--block 32] [--rows 1] [--reps 300] [--threads 2]
 *     [--json bench/results/nbits-zero-points.json]
 *
 * One [rows, K] x [K, N] product per run (rows 1: a decode step's Linear), each variant timed in turn after a
 * warm-up, median of --reps runs. Each variant's output is compared with the float product of its own dequantized
 * weights, so a kernel that ignored the zero points would show here.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import '../src/ops';
import { GraphBuilder } from '../src/ir/builder';
import { DType } from '../src/ir/dtype';
import { Graph } from '../src/ir/graph';
import { Tensor } from '../src/ir/tensor';
import { encodeModel } from '../src/onnx/model-io';
import { Emitter } from '../src/export/emitter';
import { MS_DOMAIN } from '../src/runtime/lower';
import { runMain, writeJson } from './lib/cli';
import { loadStr, median, printTable } from './lib/timing';

interface Variant {
  name: string;
  bits: 2 | 4;
  /** Float zero points (one per block), or the kernel's default integer zero point 2^(bits - 1). */
  floatZeroPoint: boolean;
  accuracyLevel: 0 | 4;
  note: string;
}

const VARIANTS: Variant[] = [
  { name: 'nbits2-float-zp', bits: 2, floatZeroPoint: true, accuracyLevel: 0, note: 'SEQ in 2 bits: codes 0..3, float zero point 1.5' },
  { name: 'nbits2-float-zp-a4', bits: 2, floatZeroPoint: true, accuracyLevel: 4, note: 'the same at accuracy_level 4' },
  { name: 'nbits2-int-zp', bits: 2, floatZeroPoint: false, accuracyLevel: 0, note: 'integer grid, default zero point 2' },
  { name: 'nbits2-int-zp-a4', bits: 2, floatZeroPoint: false, accuracyLevel: 4, note: 'the same at accuracy_level 4' },
  { name: 'nbits4-float-zp', bits: 4, floatZeroPoint: true, accuracyLevel: 0, note: 'float zero point 7.5' },
  { name: 'nbits4-int-zp', bits: 4, floatZeroPoint: false, accuracyLevel: 0, note: 'SEQ as qat export writes it: odd codes in 4 bits, zero point 8' },
  { name: 'nbits4-int-zp-a4', bits: 4, floatZeroPoint: false, accuracyLevel: 4, note: 'the same at accuracy_level 4' },
];

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

/** The model and the float weights [K, N] it stands for. */
function build(v: Variant | undefined, k: number, n: number, block: number): { bytes: Uint8Array; w: Float32Array; output: string } {
  const rand = lcg(7);
  const g = new Graph();
  g.opsets[''] = 21;
  const b = new GraphBuilder(g);
  const a = b.input('A', DType.FLOAT, ['M', k]);
  const w = new Float32Array(k * n);
  let y: string;
  if (!v) {
    for (let i = 0; i < w.length; i++) w[i] = rand() - 0.5;
    y = b.op1('MatMul', [a, b.initializer('W', new Tensor(DType.FLOAT, [k, n], w))]);
  } else {
    g.opsets[MS_DOMAIN] = 1;
    const levels = 2 ** v.bits;
    const blocks = k / block;
    const perByte = 8 / v.bits;
    const packed = new Uint8Array(n * k / perByte);
    const scales = Float32Array.from({ length: n * blocks }, () => 0.01 + 0.02 * rand());
    const zp = v.floatZeroPoint ? (levels - 1) / 2 : levels / 2;
    for (let row = 0; row < n; row++) {
      for (let col = 0; col < k; col++) {
        const u = Math.floor(rand() * levels);
        const i = row * k + col;
        packed[Math.floor(i / perByte)] |= u << (v.bits * (i % perByte));
        w[col * n + row] = Math.fround((u - zp) * scales[row * blocks + Math.floor(col / block)]);
      }
    }
    const inputs = [a, b.initializer('B', new Tensor(DType.UINT8, [n, blocks, (block * v.bits) / 8], packed)), b.initializer('scales', new Tensor(DType.FLOAT, [n, blocks], scales))];
    if (v.floatZeroPoint) inputs.push(b.initializer('zero_points', new Tensor(DType.FLOAT, [n, blocks], new Float32Array(n * blocks).fill(zp))));
    y = new Emitter(g).node('MatMulNBits', inputs, { K: k, N: n, bits: v.bits, block_size: block, accuracy_level: v.accuracyLevel });
    g.nodes.at(-1)!.domain = MS_DOMAIN;
    g.outputs.push({ name: y, dtype: DType.FLOAT, shape: ['M', n] });
    return { bytes: encodeModel(g), w, output: y };
  }
  b.output(y);
  return { bytes: encodeModel(g), w, output: y };
}

runMain(async () => {
  const { values } = parseArgs({
    options: {
      k: { type: 'string', default: '2048' },
      n: { type: 'string', default: '2048' },
      block: { type: 'string', default: '32' },
      rows: { type: 'string', default: '1' },
      reps: { type: 'string', default: '300' },
      threads: { type: 'string', default: '2' },
      json: { type: 'string', default: 'bench/results/nbits-zero-points.json' },
    },
  });
  const [k, n, block, rows, reps, threads] = ['k', 'n', 'block', 'rows', 'reps', 'threads'].map((f) => {
    const x = Number(values[f as keyof typeof values]);
    if (!Number.isInteger(x) || x < 1) throw new Error(`--${f}: expected an integer >= 1, got '${values[f as keyof typeof values]}'`);
    return x;
  });
  if (k % block !== 0) throw new Error(`--k ${k} is not a multiple of --block ${block}`);
  const loadBefore = os.loadavg();
  const input = Float32Array.from({ length: rows * k }, (_, i) => Math.sin(0.37 * i));
  const feeds = { A: new ort.Tensor('float32', input, [rows, k]) };
  const all = [undefined, ...VARIANTS];
  const sessions = [];
  for (const v of all) {
    const { bytes, w, output } = build(v, k, n, block);
    const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: threads, interOpNumThreads: 1, extra: { session: { 'intra_op.allow_spinning': '0' } } });
    // Its output against the float product of the weights it stores (float64 sums).
    const y = (await session.run(feeds))[output].data as Float32Array;
    let worst = 0;
    let peak = 0;
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let c = 0; c < k; c++) s += input[r * k + c] * w[c * n + j];
        worst = Math.max(worst, Math.abs(y[r * n + j] - s));
        peak = Math.max(peak, Math.abs(s));
      }
    }
    sessions.push({ v, session, relativeError: worst / peak });
  }
  const times: number[][] = sessions.map(() => []);
  for (const s of sessions) for (let i = 0; i < 10; i++) await s.session.run(feeds);
  for (let rep = 0; rep < reps; rep++) {
    for (const [i, s] of sessions.entries()) {
      const t = performance.now();
      await s.session.run(feeds);
      times[i].push(performance.now() - t);
    }
  }
  const fp32 = median(times[0]);
  const rowsOut = sessions.map((s, i) => ({
    variant: s.v?.name ?? 'fp32-matmul',
    note: s.v?.note ?? 'float32 weights, MatMul',
    us_per_run: 1000 * median(times[i]),
    time_vs_fp32: median(times[i]) / fp32,
    relative_error_vs_own_weights: s.relativeError,
  }));
  printTable([
    ['variant', 'us/run', 'x fp32 time', 'rel. error', 'what'],
    ...rowsOut.map((r) => [r.variant, r.us_per_run.toFixed(0), r.time_vs_fp32.toFixed(2), r.relative_error_vs_own_weights.toExponential(1), r.note]),
  ]);
  const loadAfter = os.loadavg();
  console.log(`loadavg before ${loadStr(loadBefore)}, after ${loadStr(loadAfter)}`);
  writeJson(values.json!, {
    date: new Date().toISOString(),
    command: `node --import tsx bench/nbits-zero-points.ts ${process.argv.slice(2).join(' ')}`.trim(),
    cpu: os.cpus()[0]?.model,
    shape: { rows, k, n, block },
    threads,
    reps,
    loadavg_before: loadBefore,
    loadavg_after: loadAfter,
    rows: rowsOut,
  });
  for (const s of sessions) await s.session.release();
});
