/**
 * Training-step benchmark: qatkit's one-graph training step (batch 128, fp32, AdamW) against PyTorch's on
 * the same machine in the same run, one after the other (never concurrently, so neither steals the other's
 * cores). Compare the ratio, not absolute times: the machine is shared (see bench/README.md).
 *
 *   node --import tsx bench/train-step.ts [--steps 500] [--warmup 10] [--threads 2] [--model lenet] [--json FILE]
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BatchLoader, loadDataset } from '../src/data';
import { resolveModel } from '../src/models/resolve';
import { ZOO_MODELS } from '../src/models/zoo';
import { defaultOptimizer } from '../src/train/optimizer';
import { Trainer } from '../src/train/trainer';

const BATCH = 128;
const PYTHON = '/usr/bin/python3';
const PEER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'peers', 'torch_train_step.py');
/** RSS is sampled after these timed steps (1-based) to show that memory stays flat. */
const RSS_EARLY_STEP = 50;
const RSS_LATE_STEP = 500;
/**
 * OpenMP threads that spin while waiting lose badly when the cores are shared: on the loaded 2-core dev machine
 * torch's step was ~3.5x slower with the default (active) policy than with PASSIVE. A caller's setting wins.
 */
const PEER_OMP_WAIT_POLICY = process.env.OMP_WAIT_POLICY ?? 'PASSIVE';

interface StepTimes {
  ms_median: number;
  ms_p90: number;
}

interface PeerResult extends StepTimes {
  peer: string;
  version: string;
  rss_mb_first: number | null;
  rss_mb_last: number;
}

function positiveInt(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag}: expected an integer >= 1, got '${v}'`);
  return n;
}

/** Nearest-rank percentile (the peer script uses the same definition). */
export function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

function summarize(ms: number[]): StepTimes {
  const s = [...ms].sort((a, b) => a - b);
  return { ms_median: percentile(s, 0.5), ms_p90: percentile(s, 0.9) };
}

const mb = (bytes: number) => bytes / 2 ** 20;

async function benchOurs(model: string, warmup: number, steps: number, threads: number) {
  const data = loadDataset('mnist');
  const m = resolveModel(model, 'mnist', 0);
  const trainer = await Trainer.create(m, { batchSize: BATCH, classes: data.train.classes, optimizer: defaultOptimizer('adamw'), threads });
  const loader = new BatchLoader(data.train, { batchSize: BATCH, shuffle: true, seed: 0, dropLast: true });
  const ms: number[] = [];
  const rss: { step: number; mb: number }[] = [];
  let done = 0;
  const total = warmup + steps;
  for (let epoch = 0; done < total; epoch++) {
    loader.setEpoch(epoch);
    for (const batch of loader.batches()) {
      if (done >= total) break;
      trainer.batchImages.set(batch.images);
      trainer.batchLabels.set(batch.labels);
      const t0 = performance.now();
      await trainer.trainStep(1e-3);
      const dt = performance.now() - t0;
      done++;
      const timed = done - warmup;
      if (timed < 1) continue;
      ms.push(dt);
      if (timed === Math.min(RSS_EARLY_STEP, steps) || timed === RSS_LATE_STEP || (timed === steps && steps < RSS_LATE_STEP)) {
        rss.push({ step: timed, mb: mb(process.memoryUsage().rss) });
      }
    }
  }
  await trainer.release();
  return { ...summarize(ms), rss };
}

function torchAvailable(): boolean {
  if (!fs.existsSync(PYTHON)) return false;
  return spawnSync(PYTHON, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
}

function runPeer(warmup: number, steps: number, threads: number): PeerResult {
  const r = spawnSync(PYTHON, [PEER, '--steps', String(steps), '--warmup', String(warmup), '--threads', String(threads), '--batch', String(BATCH)], {
    encoding: 'utf8',
    maxBuffer: 16 << 20,
    env: { ...process.env, OMP_WAIT_POLICY: PEER_OMP_WAIT_POLICY },
  });
  if (r.status !== 0) throw new Error(`${PEER} failed (exit ${r.status}):\n${r.stderr}`);
  const line = r.stdout.split('\n').reverse().find((l) => l.trim().startsWith('{'));
  if (!line) throw new Error(`${PEER} printed no JSON line; stdout was:\n${r.stdout}`);
  return JSON.parse(line) as PeerResult;
}

const fmt = (v: number) => v.toFixed(1);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string', default: '500' },
      warmup: { type: 'string', default: '10' },
      threads: { type: 'string', default: '2' },
      model: { type: 'string', default: 'lenet' },
      json: { type: 'string' },
    },
  });
  const steps = positiveInt('--steps', values.steps!);
  const warmup = positiveInt('--warmup', values.warmup!);
  const threads = positiveInt('--threads', values.threads!);
  const model = values.model!;
  if (!(ZOO_MODELS as readonly string[]).includes(model)) throw new Error(`--model: unknown model '${model}'; valid: ${ZOO_MODELS.join(', ')}`);
  const loadBefore = os.loadavg();
  console.log(`train step: ${model}, batch ${BATCH}, fp32, AdamW, ${threads} threads, ${warmup} warmup + ${steps} timed steps; loadavg ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`);

  const ours = await benchOurs(model, warmup, steps, threads);
  console.log(`qatkit (onnxruntime-node): median ${fmt(ours.ms_median)} ms/step, p90 ${fmt(ours.ms_p90)} ms/step`);
  const [first, last] = [ours.rss[0], ours.rss.at(-1)!];
  const rssRatio = last.mb / first.mb;
  console.log(`RSS: ${fmt(first.mb)} MB at step ${first.step}, ${fmt(last.mb)} MB at step ${last.step} (ratio ${rssRatio.toFixed(3)})`);

  let peer: PeerResult | undefined;
  let skipped: string | undefined;
  if (model !== 'lenet') skipped = `skipped: the PyTorch peer exists for lenet only (got --model ${model})`;
  else if (!torchAvailable()) skipped = `skipped: Debian's PyTorch not installed (apt-get install python3-torch); ${PYTHON} cannot import torch`;
  else peer = runPeer(warmup, steps, threads);
  const loadAfter = os.loadavg();

  if (peer) {
    const rows = [
      ['', 'median ms/step', 'p90 ms/step'],
      ['qatkit (ORT)', fmt(ours.ms_median), fmt(ours.ms_p90)],
      [`PyTorch ${peer.version} (OMP_WAIT_POLICY=${PEER_OMP_WAIT_POLICY})`, fmt(peer.ms_median), fmt(peer.ms_p90)],
      ['ratio ours/PyTorch', (ours.ms_median / peer.ms_median).toFixed(2), (ours.ms_p90 / peer.ms_p90).toFixed(2)],
    ];
    const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
    console.log('');
    for (const r of rows) console.log(r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  '));
  } else {
    console.log(skipped);
  }
  console.log(`loadavg after: ${loadAfter.map((l) => l.toFixed(2)).join(' ')} (${os.cpus().length} cores)`);

  if (values.json) {
    const out = {
      model,
      batch: BATCH,
      threads,
      warmup,
      steps,
      loadavg_before: loadBefore,
      loadavg_after: loadAfter,
      ours: { ms_median: ours.ms_median, ms_p90: ours.ms_p90, rss_mb: ours.rss, rss_ratio: rssRatio },
      torch: peer ? { ...peer, omp_wait_policy: PEER_OMP_WAIT_POLICY } : null,
      ratio_median: peer ? ours.ms_median / peer.ms_median : null,
      ratio_p90: peer ? ours.ms_p90 / peer.ms_p90 : null,
      ...(skipped ? { skipped } : {}),
    };
    fs.mkdirSync(path.dirname(path.resolve(values.json)), { recursive: true });
    fs.writeFileSync(values.json, JSON.stringify(out, null, 2) + '\n');
    console.log(`wrote ${values.json}`);
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
