/**
 * QAT-step benchmark (issue 4's speed target): qatkit's w8a8 QAT training step against our own fp32 step
 * (the fake-quant overhead) and against PyTorch's eager QAT step (torch.ao.quantization prepare_qat), LeNet,
 * batch 128, AdamW. Our two steps are timed in alternation in one process (fp32 step, QAT step, fp32 step,
 * ...) so that both see the same load; PyTorch runs after ours has finished, never concurrently. Compare the
 * ratios, not absolute times: the machine is shared (see bench/README.md).
 *
 *   node --import tsx bench/qat-step.ts [--steps 300] [--warmup 10] [--threads 2] [--json FILE]
 */
import os from 'node:os';
import { BatchLoader, loadDataset } from '../src/data';
import { resolveModel } from '../src/models/resolve';
import { presetConfig } from '../src/quant/presets';
import { prepareQat } from '../src/quant/qat';
import { defaultOptimizer } from '../src/train/optimizer';
import { Trainer } from '../src/train/trainer';
import { takeBatches } from './lib/batches';
import { parseStepArgs, runMain, writeJson } from './lib/cli';
import { fmt, loadStr, printTable, summarize } from './lib/timing';
import { PEER_OMP_WAIT_POLICY, PeerResult, peerScript, runPeer, TORCH_MISSING, torchAvailable } from './lib/torch-peer';

const BATCH = 128;
const PRESET = 'w8a8';
/** MNIST training batches the activation observers are calibrated on before QAT starts (as `qat train` does). */
const CALIB_BATCHES = 4;
const PEER = peerScript('torch_qat_step.py');
/** Issue 4's targets: fake-quant overhead over our fp32 step, and our QAT step against PyTorch's. */
const GOAL_OVERHEAD = 1.25;
const GOAL_VS_TORCH = 0.5;

interface QatPeerResult extends PeerResult {
  engine: string;
}

/** Our fp32 and w8a8 QAT steps on the same LeNet and the same MNIST batches, timed in alternation. */
async function benchOurs(warmup: number, steps: number, threads: number) {
  const data = loadDataset('mnist');
  const fp32Model = resolveModel('lenet', 'mnist', 0);
  const calibration = { images: data.train.images, count: Math.min(data.train.count, CALIB_BATCHES * BATCH), sampleShape: data.train.shape };
  const qatModel = await prepareQat(fp32Model, presetConfig(PRESET), calibration, PRESET, threads);
  const options = { batchSize: BATCH, classes: data.train.classes, optimizer: defaultOptimizer('adamw'), threads };
  const fp32 = await Trainer.create(fp32Model, options);
  const qat = await Trainer.create(qatModel, options);
  qat.observe = true; // observers update their ranges every step, as before the freeze step of a QAT run
  const loader = new BatchLoader(data.train, { batchSize: BATCH, shuffle: true, seed: 0, dropLast: true });
  const ms = { fp32: [] as number[], qat: [] as number[] };
  const timeStep = async (t: Trainer, batch: { images: Float32Array; labels: BigInt64Array }) => {
    t.batchImages.set(batch.images);
    t.batchLabels.set(batch.labels);
    const t0 = performance.now();
    await t.trainStep(1e-3);
    return performance.now() - t0;
  };
  let done = 0;
  for (const batch of takeBatches(loader, warmup + steps)) {
    // Alternate which variant goes first so that neither always runs right after the other's cache misses.
    const order: ['fp32' | 'qat', Trainer][] = done % 2 === 0 ? [['fp32', fp32], ['qat', qat]] : [['qat', qat], ['fp32', fp32]];
    const dt: Record<string, number> = {};
    for (const [name, t] of order) dt[name] = await timeStep(t, batch);
    done++;
    if (done <= warmup) continue;
    ms.fp32.push(dt.fp32);
    ms.qat.push(dt.qat);
  }
  const quantizers = qatModel.quant!.quantizers;
  const nodes = { fp32: fp32.step.graph.nodes.length, qat: qat.step.graph.nodes.length };
  await fp32.release();
  await qat.release();
  return {
    fp32: summarize(ms.fp32),
    qat: summarize(ms.qat),
    quantizers: { weight: quantizers.filter((z) => z.role === 'weight').length, activation: quantizers.filter((z) => z.role === 'activation').length },
    stepGraphNodes: nodes,
  };
}

const verdict = (ratio: number, goal: number) => `${ratio.toFixed(2)} (goal <= ${goal}: ${ratio <= goal ? 'met' : 'NOT met'})`;

async function main(): Promise<void> {
  const { steps, warmup, threads, json } = parseStepArgs(300);
  const loadBefore = os.loadavg();
  console.log(`QAT step: lenet, batch ${BATCH}, AdamW, ${threads} threads, ${warmup} warmup + ${steps} timed steps each; loadavg ${loadStr(loadBefore)}`);

  const ours = await benchOurs(warmup, steps, threads);
  const loadAfterOurs = os.loadavg();
  const overhead = ours.qat.ms_median / ours.fp32.ms_median;
  console.log(`qatkit fp32 step:  median ${fmt(ours.fp32.ms_median)} ms/step, p90 ${fmt(ours.fp32.ms_p90)} ms/step (${ours.stepGraphNodes.fp32} nodes)`);
  console.log(
    `qatkit ${PRESET} QAT: median ${fmt(ours.qat.ms_median)} ms/step, p90 ${fmt(ours.qat.ms_p90)} ms/step (${ours.stepGraphNodes.qat} nodes; ` +
      `${ours.quantizers.weight} weight + ${ours.quantizers.activation} activation quantizers, calibrated on ${CALIB_BATCHES} MNIST batches)`,
  );
  console.log(`fake-quant overhead QAT/fp32 (timed in alternation): ${verdict(overhead, GOAL_OVERHEAD)}; loadavg ${loadStr(loadAfterOurs)}`);

  let peer: QatPeerResult | undefined;
  let skipped: string | undefined;
  if (!torchAvailable()) skipped = TORCH_MISSING;
  else peer = runPeer<QatPeerResult>(PEER, warmup, steps, threads, BATCH);
  const loadAfter = os.loadavg();

  console.log('');
  const rows = [
    ['', 'median ms/step', 'p90 ms/step'],
    ['qatkit fp32 (ORT)', fmt(ours.fp32.ms_median), fmt(ours.fp32.ms_p90)],
    [`qatkit ${PRESET} QAT (ORT)`, fmt(ours.qat.ms_median), fmt(ours.qat.ms_p90)],
    ['ratio QAT/fp32 (ours)', overhead.toFixed(2), (ours.qat.ms_p90 / ours.fp32.ms_p90).toFixed(2)],
  ];
  if (peer) {
    rows.push(
      [`PyTorch ${peer.version} eager QAT (${peer.engine}, OMP_WAIT_POLICY=${PEER_OMP_WAIT_POLICY})`, fmt(peer.ms_median), fmt(peer.ms_p90)],
      ['ratio ours/PyTorch (QAT step)', (ours.qat.ms_median / peer.ms_median).toFixed(2), (ours.qat.ms_p90 / peer.ms_p90).toFixed(2)],
    );
  }
  printTable(rows);
  console.log('');
  console.log(`fake-quant overhead (median QAT/fp32): ${verdict(overhead, GOAL_OVERHEAD)}`);
  if (peer) console.log(`ours/PyTorch QAT step (median):        ${verdict(ours.qat.ms_median / peer.ms_median, GOAL_VS_TORCH)}`);
  else console.log(skipped);
  console.log(`loadavg after: ${loadStr(loadAfter)} (${os.cpus().length} cores)`);

  if (json) {
    const out = {
      model: 'lenet',
      preset: PRESET,
      batch: BATCH,
      threads,
      warmup,
      steps,
      calib_batches: CALIB_BATCHES,
      loadavg_before: loadBefore,
      loadavg_after_ours: loadAfterOurs,
      loadavg_after: loadAfter,
      ours: { fp32: ours.fp32, qat: ours.qat, quantizers: ours.quantizers, step_graph_nodes: ours.stepGraphNodes },
      overhead_median: overhead,
      overhead_p90: ours.qat.ms_p90 / ours.fp32.ms_p90,
      torch_qat: peer ? { ...peer, omp_wait_policy: PEER_OMP_WAIT_POLICY } : null,
      ratio_qat_vs_torch_median: peer ? ours.qat.ms_median / peer.ms_median : null,
      ratio_qat_vs_torch_p90: peer ? ours.qat.ms_p90 / peer.ms_p90 : null,
      goals: { overhead_max: GOAL_OVERHEAD, vs_torch_max: GOAL_VS_TORCH },
      ...(skipped ? { skipped } : {}),
    };
    writeJson(json, out);
  }
}

runMain(main);
