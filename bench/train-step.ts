/**
 * Training-step benchmark: qatkit's one-graph training step (batch 128, fp32, AdamW) against PyTorch's on
 * the same machine in the same run, one after the other (never concurrently, so neither steals the other's
 * cores). Compare the ratio, not absolute times: the machine is shared (see bench/README.md).
 *
 *   node --import tsx bench/train-step.ts [--steps 500] [--warmup 10] [--threads 2] [--model lenet] [--json FILE]
 */
import os from 'node:os';
import { BatchLoader, loadDataset } from '../src/data';
import { resolveModel } from '../src/models/resolve';
import { ZOO_MODELS } from '../src/models/zoo';
import { defaultOptimizer } from '../src/train/optimizer';
import { Trainer } from '../src/train/trainer';
import { takeBatches } from './lib/batches';
import { parseStepArgs, runMain, writeJson } from './lib/cli';
import { fmt, loadStr, printTable, summarize } from './lib/timing';
import { PEER_OMP_WAIT_POLICY, PeerResult, peerScript, runPeer, TORCH_MISSING, torchAvailable } from './lib/torch-peer';

const BATCH = 128;
const PEER = peerScript('torch_train_step.py');
/** RSS is sampled after these timed steps (1-based) to show that memory stays flat. */
const RSS_EARLY_STEP = 50;
const RSS_LATE_STEP = 500;

const mb = (bytes: number) => bytes / 2 ** 20;

async function benchOurs(model: string, warmup: number, steps: number, threads: number) {
  const data = loadDataset('mnist');
  const m = resolveModel(model, 'mnist', 0);
  const trainer = await Trainer.create(m, { batchSize: BATCH, classes: data.train.classes, optimizer: defaultOptimizer('adamw'), threads });
  const loader = new BatchLoader(data.train, { batchSize: BATCH, shuffle: true, seed: 0, dropLast: true });
  const ms: number[] = [];
  const rss: { step: number; mb: number }[] = [];
  let done = 0;
  for (const batch of takeBatches(loader, warmup + steps)) {
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
  await trainer.release();
  return { ...summarize(ms), rss };
}

async function main(): Promise<void> {
  const { steps, warmup, threads, json, values } = parseStepArgs(500, { model: { type: 'string', default: 'lenet' } });
  const model = values.model!;
  if (!(ZOO_MODELS as readonly string[]).includes(model)) throw new Error(`--model: unknown model '${model}'; valid: ${ZOO_MODELS.join(', ')}`);
  const loadBefore = os.loadavg();
  console.log(`train step: ${model}, batch ${BATCH}, fp32, AdamW, ${threads} threads, ${warmup} warmup + ${steps} timed steps; loadavg ${loadStr(loadBefore)}`);

  const ours = await benchOurs(model, warmup, steps, threads);
  console.log(`qatkit (onnxruntime-node): median ${fmt(ours.ms_median)} ms/step, p90 ${fmt(ours.ms_p90)} ms/step`);
  const [first, last] = [ours.rss[0], ours.rss.at(-1)!];
  const rssRatio = last.mb / first.mb;
  console.log(`RSS: ${fmt(first.mb)} MB at step ${first.step}, ${fmt(last.mb)} MB at step ${last.step} (ratio ${rssRatio.toFixed(3)})`);

  let peer: PeerResult | undefined;
  let skipped: string | undefined;
  if (model !== 'lenet') skipped = `skipped: the PyTorch peer exists for lenet only (got --model ${model})`;
  else if (!torchAvailable()) skipped = TORCH_MISSING;
  else peer = runPeer(PEER, warmup, steps, threads, BATCH);
  const loadAfter = os.loadavg();

  if (peer) {
    const rows = [
      ['', 'median ms/step', 'p90 ms/step'],
      ['qatkit (ORT)', fmt(ours.ms_median), fmt(ours.ms_p90)],
      [`PyTorch ${peer.version} (OMP_WAIT_POLICY=${PEER_OMP_WAIT_POLICY})`, fmt(peer.ms_median), fmt(peer.ms_p90)],
      ['ratio ours/PyTorch', (ours.ms_median / peer.ms_median).toFixed(2), (ours.ms_p90 / peer.ms_p90).toFixed(2)],
    ];
    console.log('');
    printTable(rows);
  } else {
    console.log(skipped);
  }
  console.log(`loadavg after: ${loadStr(loadAfter)} (${os.cpus().length} cores)`);

  if (json) {
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
    writeJson(json, out);
  }
}

runMain(main);
