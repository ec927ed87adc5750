/**
 * QAT-step benchmark (issue 4's speed targets, issue 10's "as a user runs it"): the w8a8 LeNet step of
 * `qat train --quant w8a8 --steps 300` (the CLI's own options and defaults, run through train(), its
 * ms_per_step_median: the figure the CLI prints and writes), against `qat train --steps 300` (fp32, the fake-quant
 * overhead) and against PyTorch's eager QAT step (torch.ao.quantization prepare_qat, bench/peers/torch_qat_step.py).
 * A QAT run has two step graphs: batch-statistics BN until its BN-freeze step (half the run) and frozen BN after;
 * the median covers both, and the bench prints each phase's median too. Each round runs ours (fp32, then QAT), then
 * PyTorch's, never concurrently; the ratio reported is the median of the rounds' ratios. Compare the ratios, not
 * absolute times: the machine is shared (see bench/README.md).
 *
 *   node --import tsx bench/qat-step.ts [--steps 300] [--warmup 10] [--rounds 3] [--threads 2] [--json FILE]
 */
import { Command } from 'commander';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addTrainOptions, configFromOptions } from '../src/cli/train';
import { train } from '../src/train/run';
import { parseStepArgs, runMain, writeJson } from './lib/cli';
import { fmt, loadStr, median, printTable } from './lib/timing';
import { PEER_OMP_WAIT_POLICY, PeerResult, peerScript, runPeer, TORCH_MISSING, torchAvailable } from './lib/torch-peer';

const BATCH = 128;
const PRESET = 'w8a8';
const PEER = peerScript('torch_qat_step.py');
/** Issue 4's targets: fake-quant overhead over our fp32 step, and our QAT step against PyTorch's (issue 10: <= 0.5 as the CLI measures it). */
const GOAL_OVERHEAD = 1.25;
const GOAL_VS_TORCH = 0.5;

interface QatPeerResult extends PeerResult {
  engine: string;
}

interface CliRun {
  /** The run's ms_per_step_median, as `qat train` reports it. */
  ms_median: number;
  /** Medians of the steps before and after the BN-freeze step (QAT; the whole run for fp32). */
  phases: { batch_stats: number; frozen_bn?: number };
}

/** One `qat train --steps N --threads T [--quant PRESET]` in a temporary run directory (LeNet on MNIST, batch 128). */
async function cliRun(quant: string | undefined, steps: number, threads: number): Promise<CliRun> {
  const cmd = addTrainOptions(new Command('train')).exitOverride();
  cmd.parse(['--steps', String(steps), '--threads', String(threads), ...(quant ? ['--quant', quant] : [])], { from: 'user' });
  const config = configFromOptions(cmd.opts());
  const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'qat-step-')), 'run');
  const ms: number[] = [];
  try {
    const result = await train(config, dir, { hooks: { onStep: (s) => ms.push(s.ms) } });
    // The CLI's BN-freeze step: half the run (src/train/run.ts).
    const freeze = quant ? Math.floor(steps / 2) : steps;
    return { ms_median: result.ms_per_step_median, phases: { batch_stats: median(ms.slice(0, freeze)), ...(quant ? { frozen_bn: median(ms.slice(freeze)) } : {}) } };
  } finally {
    fs.rmSync(path.dirname(dir), { recursive: true, force: true });
  }
}

const verdict = (ratio: number, goal: number) => `${ratio.toFixed(2)} (goal <= ${goal}: ${ratio <= goal ? 'met' : 'NOT met'})`;

interface Round {
  fp32: CliRun;
  qat: CliRun;
  torch?: QatPeerResult;
  loadavg: number[];
}

async function main(): Promise<void> {
  const { steps, warmup, threads, json, values } = parseStepArgs(300, { rounds: { type: 'string', default: '3' } });
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds: expected an integer >= 1, got '${values.rounds}'`);
  const loadBefore = os.loadavg();
  console.log(
    `QAT step: lenet, batch ${BATCH}, AdamW, ${threads} threads, ${rounds} rounds of \`qat train [--quant ${PRESET}] --steps ${steps}\` ` +
      `(ms_per_step_median) and PyTorch's ${warmup} warmup + ${steps} timed steps; loadavg ${loadStr(loadBefore)}`,
  );
  const skipped = torchAvailable() ? undefined : TORCH_MISSING;
  const results: Round[] = [];
  for (let r = 0; r < rounds; r++) {
    const fp32 = await cliRun(undefined, steps, threads);
    const qat = await cliRun(PRESET, steps, threads);
    const torch = skipped ? undefined : runPeer<QatPeerResult>(PEER, warmup, steps, threads, BATCH);
    results.push({ fp32, qat, torch, loadavg: os.loadavg() });
    const vsTorch = torch ? `; PyTorch ${fmt(torch.ms_median)}, ours/PyTorch ${(qat.ms_median / torch.ms_median).toFixed(2)}` : '';
    console.log(
      `round ${r + 1}: fp32 ${fmt(fp32.ms_median)}, QAT ${fmt(qat.ms_median)} ms/step (batch-statistics BN ${fmt(qat.phases.batch_stats)}, ` +
        `frozen BN ${fmt(qat.phases.frozen_bn!)}), QAT/fp32 ${(qat.ms_median / fp32.ms_median).toFixed(2)}${vsTorch}; loadavg ${loadStr(os.loadavg())}`,
    );
  }

  const overheads = results.map((r) => r.qat.ms_median / r.fp32.ms_median);
  const vsTorch = skipped ? [] : results.map((r) => r.qat.ms_median / r.torch!.ms_median);
  const overhead = median(overheads);
  const peer = results[0].torch;
  console.log('');
  const rows = [['', ...results.map((_, i) => `round ${i + 1}`), 'median of rounds']];
  const row = (label: string, v: number[], digits = 1) => rows.push([label, ...v.map((x) => x.toFixed(digits)), median(v).toFixed(digits)]);
  row('qatkit fp32 (`qat train`), ms_per_step_median', results.map((r) => r.fp32.ms_median));
  row(`qatkit ${PRESET} QAT (\`qat train --quant ${PRESET}\`), ms_per_step_median`, results.map((r) => r.qat.ms_median));
  row('  of which steps before the BN-freeze step, median', results.map((r) => r.qat.phases.batch_stats));
  row('  of which steps after it (frozen BN), median', results.map((r) => r.qat.phases.frozen_bn!));
  row('ratio QAT/fp32 (ours)', overheads, 2);
  if (peer) {
    row(`PyTorch ${peer.version} eager QAT (${peer.engine}, OMP_WAIT_POLICY=${PEER_OMP_WAIT_POLICY}), median ms/step`, results.map((r) => r.torch!.ms_median));
    row('ratio ours/PyTorch (QAT step)', vsTorch, 2);
  }
  printTable(rows);
  console.log('');
  console.log(`fake-quant overhead (QAT/fp32, median of rounds): ${verdict(overhead, GOAL_OVERHEAD)}`);
  if (peer) console.log(`ours/PyTorch QAT step (median of rounds):        ${verdict(median(vsTorch), GOAL_VS_TORCH)}`);
  else console.log(skipped);
  const loadAfter = os.loadavg();
  console.log(`loadavg after: ${loadStr(loadAfter)} (${os.cpus().length} cores)`);

  if (json) {
    writeJson(json, {
      model: 'lenet',
      preset: PRESET,
      batch: BATCH,
      threads,
      steps,
      peer_warmup: warmup,
      rounds: results.map((r) => ({
        fp32: r.fp32,
        qat: r.qat,
        overhead: r.qat.ms_median / r.fp32.ms_median,
        torch_qat: r.torch ? { ...r.torch, omp_wait_policy: PEER_OMP_WAIT_POLICY } : null,
        ratio_qat_vs_torch: r.torch ? r.qat.ms_median / r.torch.ms_median : null,
        loadavg_after: r.loadavg,
      })),
      loadavg_before: loadBefore,
      loadavg_after: loadAfter,
      overhead,
      ratio_qat_vs_torch: peer ? median(vsTorch) : null,
      goals: { overhead_max: GOAL_OVERHEAD, vs_torch_max: GOAL_VS_TORCH },
      ...(skipped ? { skipped } : {}),
    });
  }
}

runMain(main);
