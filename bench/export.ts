// Deployment figures of issue 5 for lenet and resnet8: weight bytes of the exported formats against fp32, and
// ONNX Runtime latency of the int8 QDQ model against the fp32 model at batch 1 and batch 128.
// Usage: node --import tsx bench/export.ts [--models lenet,resnet8] [--runs DIR] [--steps N] [--threads 2]
//        [--reps-b1 N] [--reps-b128 N] [--json FILE]
// Runs: DIR/<model>-<preset> (w8a8 for qdq and latency, w4a8 for int4, ternary for packed); missing ones are
// trained for --steps steps first (accuracy does not matter for size and latency). Latency: one session per
// model, warmed up, int8 and fp32 timed in alternation in this process; medians and their ratio.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { exportQdq, ExportFormat } from '../src/export/qdq';
import { fileSessionOptions } from '../src/generate/generator';
import { resolveModel } from '../src/models/resolve';
import { encodeModel } from '../src/onnx/model-io';
import { lowerCustomOps } from '../src/runtime/lower';
import { loadCheckpoint } from '../src/train/checkpoint';
import { CHECKPOINT_FILE, DEFAULT_TRAIN_CONFIG, train } from '../src/train/run';
import { loadStr, median } from './lib/timing';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'lenet,resnet8' },
    runs: { type: 'string', default: 'bench/out/export-runs' },
    steps: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    'reps-b1': { type: 'string', default: '50' },
    'reps-b128': { type: 'string', default: '10' },
    json: { type: 'string' },
  },
});
const threads = Number(values.threads);
const loadBefore = os.loadavg();
const FORMATS: { format: ExportFormat; preset: string }[] = [
  { format: 'qdq', preset: 'w8a8' },
  { format: 'int4', preset: 'w4a8' },
  { format: 'packed', preset: 'ternary' },
];

async function qatRun(model: string, preset: string): Promise<string> {
  const dir = path.join(values.runs!, `${model}-${preset}`);
  if (!fs.existsSync(path.join(dir, CHECKPOINT_FILE))) {
    console.error(`training ${model} ${preset} for ${values.steps} steps into ${dir}`);
    await train({ ...DEFAULT_TRAIN_CONFIG, model, quant: preset, steps: Number(values.steps), batch: 32, threads }, dir, { hooks: { log: () => {} } });
  }
  return dir;
}

/** Median ms per run of each session on the same input, timed in alternation after `warmup` runs each. */
async function timeAlternating(sessions: ort.InferenceSession[], batch: number, reps: number, warmup: number): Promise<number[]> {
  const x = new ort.Tensor('float32', Float32Array.from({ length: batch * 784 }, (_, i) => (i % 255) / 255), [batch, 1, 28, 28]);
  const feeds = sessions.map((s) => ({ [s.inputNames[0]]: x }));
  for (let i = 0; i < warmup; i++) for (const [k, s] of sessions.entries()) await s.run(feeds[k]);
  const times = sessions.map(() => [] as number[]);
  for (let r = 0; r < reps; r++) {
    for (const [k, s] of sessions.entries()) {
      const t0 = performance.now();
      await s.run(feeds[k]);
      times[k].push(performance.now() - t0);
    }
  }
  return times.map(median);
}

// The options `qat eval` runs exported files with (idle workers sleep, so the alternating sessions do not spin on
// each other's cores).
const session = (bytes: Uint8Array) => ort.InferenceSession.create(bytes, fileSessionOptions(threads));

const rows: Record<string, number | string>[] = [];
for (const name of values.models!.split(',')) {
  const row: Record<string, number | string> = { model: name };
  for (const { format, preset } of FORMATS) {
    const model = loadCheckpoint(path.join(await qatRun(name, preset), CHECKPOINT_FILE)).model;
    const r = await exportQdq(model, { format, threads });
    row[`${format}_weight_bytes`] = r.weightBytes.stored;
    row.fp32_weight_bytes = r.weightBytes.float32;
    row[`fp32_over_${format}`] = r.weightBytes.float32 / r.weightBytes.stored;
    row[`${format}_file_bytes`] = encodeModel(r.graph).byteLength;
    if (format === 'qdq') {
      const fp32 = resolveModel(name, 'mnist', 0);
      // The default export (uint8 weight codes, u8u8 kernels) and --weight-type int8 (u8s8 kernels, see docs/export-formats.md).
      const signed = await exportQdq(model, { format, threads, weightType: 'int8' });
      const sessions = [await session(encodeModel(r.graph)), await session(encodeModel(signed.graph)), await session(encodeModel(lowerCustomOps(fp32.graph)))];
      try {
        const [i1, s1, f1] = await timeAlternating(sessions, 1, Number(values['reps-b1']), 10);
        const [i128, s128, f128] = await timeAlternating(sessions, 128, Number(values['reps-b128']), 2);
        Object.assign(row, {
          fp32_ms_b1: f1, int8_ms_b1: i1, speedup_b1: f1 / i1, s8w_ms_b1: s1, s8w_speedup_b1: f1 / s1,
          fp32_ms_b128: f128, int8_ms_b128: i128, speedup_b128: f128 / i128, s8w_ms_b128: s128, s8w_speedup_b128: f128 / s128,
        });
      } finally {
        for (const s of sessions) await s.release();
      }
    }
  }
  rows.push(row);
  console.error(`${name}: done`);
}
const loadAfter = os.loadavg();
const f = (x: number | string, d = 2) => (typeof x === 'number' ? x.toFixed(d) : x);
console.log(`threads ${threads}; loadavg before ${loadStr(loadBefore)}, after ${loadStr(loadAfter)}`);
console.log('| model | fp32/int8 bytes | fp32/int4 bytes | fp32/packed ternary bytes | b1 fp32 ms | b1 int8 ms (fp32/int8) | b1 int8 s8-weights ms (fp32/int8) | b128 fp32 ms | b128 int8 ms (fp32/int8) | b128 int8 s8-weights ms (fp32/int8) |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.model} | ${f(r.fp32_over_qdq)}x | ${f(r.fp32_over_int4)}x | ${f(r.fp32_over_packed)}x | ${f(r.fp32_ms_b1, 3)} | ${f(r.int8_ms_b1, 3)} (${f(r.speedup_b1)}x) | ` +
      `${f(r.s8w_ms_b1, 3)} (${f(r.s8w_speedup_b1)}x) | ${f(r.fp32_ms_b128)} | ${f(r.int8_ms_b128)} (${f(r.speedup_b128)}x) | ${f(r.s8w_ms_b128)} (${f(r.s8w_speedup_b128)}x) |`,
  );
}
if (values.json) fs.writeFileSync(values.json, JSON.stringify({ threads, loadavg_before: loadBefore, loadavg_after: loadAfter, rows }, null, 2) + '\n');
