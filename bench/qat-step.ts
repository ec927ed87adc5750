/**
 * QAT-step benchmark (issue 4's speed target): qatkit's w8a8 QAT training step against our own fp32 step
 * (the fake-quant overhead) and against PyTorch's eager QAT step (torch.ao.quantization prepare_qat), LeNet,
 * batch 128, AdamW. Our two steps are timed in alternation in one process (fp32 step, QAT step, fp32 step,
 * ...) so that both see the same load; PyTorch runs after ours has finished, never concurrently. The pair
 * (ours, then PyTorch) is repeated for --rounds rounds and the ratio reported is the median of the rounds'
 * ratios, so that one slow stretch of the shared machine does not decide it. Compare the ratios, not absolute
 * times: the machine is shared (see bench/README.md).
 *
 *   node --import tsx bench/qat-step.ts [--steps 100] [--warmup 10] [--rounds 3] [--threads 2] [--json FILE]
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
import { fmt, loadStr, median, printTable, StepTimes, summarize } from './lib/timing';
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

/** Our fp32 and w8a8 QAT trainers on the same LeNet; `round` times them in alternation on the same MNIST batches. */
async function setUpOurs(threads: number) {
  const data = loadDataset('mnist');
  const fp32Model = resolveModel('lenet', 'mnist', 0);
  const calibration = { images: data.train.images, count: Math.min(data.train.count, CALIB_BATCHES * BATCH), sampleShape: data.train.shape };
  const qatModel = await prepareQat(fp32Model, presetConfig(PRESET), calibration, PRESET, threads);
  const options = { batchSize: BATCH, classes: data.train.classes, optimizer: defaultOptimizer('adamw'), threads };
  const fp32 = await Trainer.create(fp32Model, options);
  const qat = await Trainer.create(qatModel, options);
  qat.observe = true; // observers update their ranges every step, as before the freeze step of a QAT run
  const loader = new BatchLoader(data.train, { batchSize: BATCH, shuffle: true, seed: 0, dropLast: true });
  const timeStep = async (t: Trainer, batch: { images: Float32Array; labels: BigInt64Array }) => {
    t.batchImages.set(batch.images);
    t.batchLabels.set(batch.labels);
    const t0 = performance.now();
    await t.trainStep(1e-3);
    return performance.now() - t0;
  };
  const round = async (warmup: number, steps: number) => {
    const ms = { fp32: [] as number[], qat: [] as number[] };
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
    return { fp32: summarize(ms.fp32), qat: summarize(ms.qat) };
  };
  const quantizers = qatModel.quant!.quantizers;
  return {
    round,
    release: async () => {
      await fp32.release();
      await qat.release();
    },
    quantizers: { weight: quantizers.filter((z) => z.role === 'weight').length, activation: quantizers.filter((z) => z.role === 'activation').length },
    stepGraphNodes: { fp32: fp32.step.graph.nodes.length, qat: qat.step.graph.nodes.length },
  };
}

const verdict = (ratio: number, goal: number) => `${ratio.toFixed(2)} (goal <= ${goal}: ${ratio <= goal ? 'met' : 'NOT met'})`;

interface Round {
  fp32: StepTimes;
  qat: StepTimes;
  torch?: QatPeerResult;
  loadavg: number[];
}

async function main(): Promise<void> {
  const { steps, warmup, threads, json, values } = parseStepArgs(100, { rounds: { type: 'string', default: '3' } });
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds: expected an integer >= 1, got '${values.rounds}'`);
  const loadBefore = os.loadavg();
  console.log(
    `QAT step: lenet, batch ${BATCH}, AdamW, ${threads} threads, ${rounds} rounds of ${warmup} warmup + ${steps} timed steps each; loadavg ${loadStr(loadBefore)}`,
  );
  const ours = await setUpOurs(threads);
  console.log(
    `qatkit step graphs: fp32 ${ours.stepGraphNodes.fp32} nodes; ${PRESET} QAT ${ours.stepGraphNodes.qat} nodes (${ours.quantizers.weight} weight + ` +
      `${ours.quantizers.activation} activation quantizers, calibrated on ${CALIB_BATCHES} MNIST batches)`,
  );
  const skipped = torchAvailable() ? undefined : TORCH_MISSING;
  const results: Round[] = [];
  for (let r = 0; r < rounds; r++) {
    const mine = await ours.round(warmup, steps);
    const torch = skipped ? undefined : runPeer<QatPeerResult>(PEER, warmup, steps, threads, BATCH);
    results.push({ ...mine, torch, loadavg: os.loadavg() });
    const vsTorch = torch ? `; PyTorch ${fmt(torch.ms_median)}, ours/PyTorch ${(mine.qat.ms_median / torch.ms_median).toFixed(2)}` : '';
    console.log(
      `round ${r + 1}: fp32 ${fmt(mine.fp32.ms_median)}, QAT ${fmt(mine.qat.ms_median)} ms/step (median), QAT/fp32 ` +
        `${(mine.qat.ms_median / mine.fp32.ms_median).toFixed(2)}${vsTorch}; loadavg ${loadStr(os.loadavg())}`,
    );
  }
  await ours.release();

  const overheads = results.map((r) => r.qat.ms_median / r.fp32.ms_median);
  const vsTorch = skipped ? [] : results.map((r) => r.qat.ms_median / r.torch!.ms_median);
  const overhead = median(overheads);
  const peer = results[0].torch;
  console.log('');
  const rows = [['', ...results.map((_, i) => `round ${i + 1}`), 'median of rounds']];
  const row = (label: string, values: number[], digits = 1) => rows.push([label, ...values.map((v) => v.toFixed(digits)), median(values).toFixed(digits)]);
  row('qatkit fp32 (ORT), median ms/step', results.map((r) => r.fp32.ms_median));
  row(`qatkit ${PRESET} QAT (ORT), median ms/step`, results.map((r) => r.qat.ms_median));
  row('ratio QAT/fp32 (ours)', overheads, 2);
  if (peer) {
    row(`PyTorch ${peer.version} eager QAT (${peer.engine}, OMP_WAIT_POLICY=${PEER_OMP_WAIT_POLICY}), median ms/step`, results.map((r) => r.torch!.ms_median));
    row('ratio ours/PyTorch (QAT step)', vsTorch, 2);
  }
  printTable(rows);
  console.log('');
  console.log(`fake-quant overhead (median QAT/fp32, median of rounds): ${verdict(overhead, GOAL_OVERHEAD)}`);
  if (peer) console.log(`ours/PyTorch QAT step (median, median of rounds):        ${verdict(median(vsTorch), GOAL_VS_TORCH)}`);
  else console.log(skipped);
  const loadAfter = os.loadavg();
  console.log(`loadavg after: ${loadStr(loadAfter)} (${os.cpus().length} cores)`);

  if (json) {
    writeJson(json, {
      model: 'lenet',
      preset: PRESET,
      batch: BATCH,
      threads,
      warmup,
      steps,
      rounds: results.map((r) => ({
        fp32: r.fp32,
        qat: r.qat,
        overhead_median: r.qat.ms_median / r.fp32.ms_median,
        torch_qat: r.torch ? { ...r.torch, omp_wait_policy: PEER_OMP_WAIT_POLICY } : null,
        ratio_qat_vs_torch_median: r.torch ? r.qat.ms_median / r.torch.ms_median : null,
        loadavg_after: r.loadavg,
      })),
      calib_batches: CALIB_BATCHES,
      quantizers: ours.quantizers,
      step_graph_nodes: ours.stepGraphNodes,
      loadavg_before: loadBefore,
      loadavg_after: loadAfter,
      overhead: overhead,
      ratio_qat_vs_torch: peer ? median(vsTorch) : null,
      goals: { overhead_max: GOAL_OVERHEAD, vs_torch_max: GOAL_VS_TORCH },
      ...(skipped ? { skipped } : {}),
    });
  }
}

runMain(main);
