/**
 * Language-model step benchmark (issue 10's target): qatkit's training step of the zoo `gpt` (and `llama`) on
 * Moby Dick, batch 32 x context 128, bytes vocabulary, fp32, as `qat train --model gpt --data moby-dick` runs it
 * (AdamW betas 0.9/0.95, weight decay 0.1 on matrices, clipping at norm 1), against PyTorch's step of the same
 * architecture (bench/peers/gpt_step.py, Debian's torch) in the same run. The peer runs as a stepping process:
 * each round times --per-round of our steps, then as many of PyTorch's (never concurrently), so both sample the
 * same minutes of the shared machine; the ratio is of the medians over all rounds. RSS is read after the
 * trainer's step 50 and after its last step: it must stay flat. Compare ratios, not absolute times
 * (bench/README.md).
 *
 *   node --import tsx bench/gpt-step.ts [--models gpt,llama] [--rounds 30] [--per-round 2] [--warmup 5] [--threads 2] [--profile STEPS] [--json FILE]
 *
 * --profile N: afterwards N steps of a separate trainer under ORT's profiler, kernel time per step by op type; the
 * GEMM kernels' share is the floor of ours / PyTorch at ORT's GEMM speed.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadTextData, WindowSampler } from '../src/data/text';
import { attrInt, Graph } from '../src/ir/graph';
import { parameterCount } from '../src/models/model';
import { gpt, llama } from '../src/models/transformers';
import { defaultOptimizer } from '../src/train/optimizer';
import { LANGUAGE_MODEL_DEFAULTS } from '../src/train/run-language-model';
import { Trainer } from '../src/train/trainer';
import { parseStepArgs, runMain, writeJson } from './lib/cli';
import { fmt, loadStr, median, printTable, StepTimes, summarize } from './lib/timing';
import { PEER_OMP_WAIT_POLICY, peerScript, startSteppingPeer, TORCH_MISSING, torchAvailable } from './lib/torch-peer';

const BATCH = LANGUAGE_MODEL_DEFAULTS.batch;
const CONTEXT = 128;
const DATA = 'moby-dick';
const PEER = peerScript('gpt_step.py');
const MODELS = { gpt, llama } as const;
type ModelName = keyof typeof MODELS;
/** Issue 10's target for gpt: ours / PyTorch <= 0.7. */
const GOAL_VS_TORCH = 0.7;
/** RSS is read after this trainer step and after the last one. */
const RSS_EARLY_STEP = 50;

const mb = (bytes: number) => bytes / 2 ** 20;

/** Multiply-add FLOPs (2 per MAC) of every MatMul and Gemm in a graph with static shapes. */
function gemmFlops(graph: Graph): number {
  let flops = 0;
  for (const n of graph.nodes) {
    if (n.opType !== 'MatMul' && n.opType !== 'Gemm') continue;
    const out = graph.typeOf(n.outputs[0]).shape as number[];
    const a = graph.typeOf(n.inputs[0]).shape as number[];
    const k = n.opType === 'Gemm' && attrInt(n, 'transA', 0) === 1 ? a[0] : a[a.length - 1];
    flops += 2 * k * out.reduce((p, q) => p * q, 1);
  }
  return flops;
}

/** Our trainer for `name`, configured as `qat train --model NAME --data moby-dick`, with its batch source. */
async function setUpOurs(name: ModelName, threads: number, profilePrefix?: string) {
  const text = loadTextData(DATA, 'bytes');
  const model = MODELS[name]({ vocabSize: text.vocabSize, context: CONTEXT, seed: 0 });
  const d = LANGUAGE_MODEL_DEFAULTS;
  const optimizer = { ...defaultOptimizer('adamw'), beta2: d.beta2, weightDecay: d.weightDecay, clipNorm: d.clipNorm };
  const trainer = await Trainer.create(model, { batchSize: BATCH, classes: 0, sequenceLength: CONTEXT, optimizer, threads, profilePrefix });
  const sampler = new WindowSampler(text.train, { batch: BATCH, context: CONTEXT, seed: 0 });
  const rss: { step: number; mb: number }[] = [];
  // Timed as the CLI times a step (src/train/run-language-model.ts): drawing the windows and the ORT run.
  const steps = async (n: number): Promise<number[]> => {
    const ms: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      sampler.fill(trainer.stepCount, trainer.batchTokens, trainer.batchLabels);
      await trainer.trainStep(d.lr);
      ms.push(performance.now() - t0);
      if (trainer.stepCount === RSS_EARLY_STEP) rss.push({ step: trainer.stepCount, mb: mb(process.memoryUsage().rss) });
    }
    return ms;
  };
  return {
    steps,
    parameters: parameterCount(model),
    nodes: trainer.step.graph.nodes.length,
    gflop: gemmFlops(trainer.step.graph) / 1e9,
    endProfiling: () => trainer.endProfiling(),
    finish: async () => {
      rss.push({ step: trainer.stepCount, mb: mb(process.memoryUsage().rss) });
      await trainer.release();
      return rss;
    },
  };
}

/** ORT's matrix-product kernels: what bounds the step (the rest is elementwise work, reductions and copies). */
const GEMM_KERNELS = new Set(['MatMul', 'FusedMatMul', 'Gemm']);

interface StepProfile {
  steps: number;
  /** ORT's model_run time per step and kernel time per step by op type (ms), largest first. */
  run_ms: number;
  kernel_ms: number;
  gemm_ms: number;
  by_op: { op: string; ms: number }[];
}

/**
 * Kernel time per step by op type from ORT's profiler, on a separate trainer (profiling slows the run, so these
 * steps are not the timed ones): `warmup` steps, then `steps` profiled ones. The GEMM kernels' time is the floor
 * of our step while the GEMMs run at ORT's speed: ours / PyTorch cannot fall below gemm_ms / PyTorch's step.
 */
async function profileOurs(name: ModelName, threads: number, warmup: number, steps: number): Promise<StepProfile> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qatkit-gpt-profile-'));
  try {
    const ours = await setUpOurs(name, threads, path.join(dir, 'step'));
    await ours.steps(warmup + steps);
    ours.endProfiling();
    await ours.finish();
    const file = fs.readdirSync(dir).find((f) => f.startsWith('step') && f.endsWith('.json'));
    if (!file) throw new Error(`ORT wrote no profile under ${dir}`);
    const events = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as { cat: string; name: string; ts: number; dur: number; args?: { op_name?: string } }[];
    const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts - b.ts);
    if (runs.length < warmup + steps) throw new Error(`profile has ${runs.length} runs, expected ${warmup + steps}`);
    const from = runs[warmup].ts;
    const perOp = new Map<string, number>();
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || e.ts < from || !e.args?.op_name) continue;
      perOp.set(e.args.op_name, (perOp.get(e.args.op_name) ?? 0) + e.dur);
    }
    const ms = (us: number) => us / 1000 / steps;
    const byOp = [...perOp].map(([op, us]) => ({ op, ms: ms(us) })).sort((a, b) => b.ms - a.ms);
    return {
      steps,
      run_ms: ms(runs.slice(warmup).reduce((t, e) => t + e.dur, 0)),
      kernel_ms: byOp.reduce((t, o) => t + o.ms, 0),
      gemm_ms: byOp.filter((o) => GEMM_KERNELS.has(o.op)).reduce((t, o) => t + o.ms, 0),
      by_op: byOp,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

interface ModelResult {
  name: ModelName;
  parameters: number;
  gflop: number;
  nodes: number;
  ours: StepTimes;
  torch?: StepTimes & { version: string; rss_mb: number };
  /** ours / PyTorch of each round's medians. */
  roundRatios: number[];
  rss: { step: number; mb: number }[];
  loadavg: number[];
  profile?: StepProfile;
}

interface ReadyPeer {
  version: string;
  parameters: number;
}

async function benchModel(name: ModelName, rounds: number, perRound: number, warmup: number, threads: number, skipped?: string): Promise<ModelResult> {
  const ours = await setUpOurs(name, threads);
  const peer = skipped
    ? undefined
    : await startSteppingPeer<ReadyPeer>(PEER, ['--model', name, '--context', String(CONTEXT), '--batch', String(BATCH), '--threads', String(threads), '--warmup', String(warmup)]);
  console.log(
    `${name}: ${ours.parameters} parameters (PyTorch's: ${peer?.ready.parameters ?? '-'}), step graph ${ours.nodes} nodes, ` +
      `${ours.gflop.toFixed(1)} GFLOP of MatMul/Gemm per step`,
  );
  await ours.steps(warmup);
  const all = { ours: [] as number[], torch: [] as number[] };
  const roundRatios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const mine = await ours.steps(perRound);
    all.ours.push(...mine);
    if (peer) {
      const theirs = await peer.steps(perRound);
      all.torch.push(...theirs);
      roundRatios.push(median(mine) / median(theirs));
    }
    if ((r + 1) % 10 === 0 || r === rounds - 1) {
      const vs = peer ? `, PyTorch ${fmt(median(all.torch))}, ours/PyTorch ${(median(all.ours) / median(all.torch)).toFixed(2)}` : '';
      console.log(`  after round ${r + 1}: ours ${fmt(median(all.ours))} ms/step (median so far, ${((ours.gflop * 1000) / median(all.ours)).toFixed(0)} GFLOP/s)${vs}; loadavg ${loadStr(os.loadavg())}`);
    }
  }
  const rss = await ours.finish();
  const closed = peer ? await peer.close() : undefined;
  return {
    name,
    parameters: ours.parameters,
    gflop: ours.gflop,
    nodes: ours.nodes,
    ours: summarize(all.ours),
    torch: peer ? { ...summarize(all.torch), version: peer.ready.version, rss_mb: closed!.rss_mb } : undefined,
    roundRatios,
    rss,
    loadavg: os.loadavg(),
  };
}

async function main(): Promise<void> {
  const { warmup, threads, json, values } = parseStepArgs(30, {
    rounds: { type: 'string', default: '30' },
    'per-round': { type: 'string', default: '2' },
    models: { type: 'string', default: 'gpt' },
    warmup: { type: 'string', default: '5' },
    profile: { type: 'string', default: '0' },
  });
  const count = (flag: string) => {
    const n = Number(values[flag]);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag}: expected an integer >= 1, got '${values[flag]}'`);
    return n;
  };
  const [rounds, perRound] = [count('rounds'), count('per-round')];
  const names = values.models!.split(',').map((s) => s.trim());
  for (const n of names) if (!(n in MODELS)) throw new Error(`--models: unknown model '${n}'; valid: ${Object.keys(MODELS).join(', ')}`);
  const loadBefore = os.loadavg();
  console.log(
    `LM step: ${names.join(', ')} on ${DATA}, batch ${BATCH} x context ${CONTEXT}, bytes, fp32, AdamW (0.9, 0.95), clip 1, ${threads} threads; ` +
      `${warmup} warmup steps each, then ${rounds} rounds of ${perRound} steps ours, ${perRound} steps PyTorch's; loadavg ${loadStr(loadBefore)}`,
  );
  const skipped = torchAvailable() ? undefined : TORCH_MISSING;
  const out: ModelResult[] = [];
  const profileSteps = Number(values.profile);
  if (!Number.isInteger(profileSteps) || profileSteps < 0) throw new Error(`--profile: expected a step count >= 0, got '${values.profile}'`);
  for (const name of names as ModelName[]) {
    const result = await benchModel(name, rounds, perRound, warmup, threads, skipped);
    if (profileSteps > 0) result.profile = await profileOurs(name, threads, warmup, profileSteps);
    out.push(result);
  }

  console.log('');
  const rows = [['', 'median ms/step', 'p90 ms/step']];
  for (const m of out) {
    rows.push([`${m.name}: qatkit (ORT)`, fmt(m.ours.ms_median), fmt(m.ours.ms_p90)]);
    if (m.torch) {
      rows.push([`${m.name}: PyTorch ${m.torch.version} (OMP_WAIT_POLICY=${PEER_OMP_WAIT_POLICY})`, fmt(m.torch.ms_median), fmt(m.torch.ms_p90)]);
      rows.push([`${m.name}: ratio ours/PyTorch`, (m.ours.ms_median / m.torch.ms_median).toFixed(2), (m.ours.ms_p90 / m.torch.ms_p90).toFixed(2)]);
    }
  }
  printTable(rows);
  console.log('');
  for (const m of out) {
    const [first, last] = [m.rss[0], m.rss.at(-1)!];
    if (m.rss.length < 2) console.log(`${m.name}: RSS ${fmt(last.mb)} MB after step ${last.step}; the flatness check needs more than ${RSS_EARLY_STEP} steps (more --rounds)`);
    else console.log(`${m.name}: RSS ${fmt(first.mb)} MB after step ${first.step}, ${fmt(last.mb)} MB after step ${last.step} (ratio ${(last.mb / first.mb).toFixed(3)})`);
    if (m.torch) {
      const ratio = m.ours.ms_median / m.torch.ms_median;
      const goal = m.name === 'gpt' ? ` (goal <= ${GOAL_VS_TORCH}: ${ratio <= GOAL_VS_TORCH ? 'met' : 'NOT met'})` : '';
      console.log(`${m.name}: ours/PyTorch ${ratio.toFixed(2)}${goal}; median of the ${m.roundRatios.length} rounds' ratios ${median(m.roundRatios).toFixed(2)}`);
    }
  }
  for (const m of out) {
    const p = m.profile;
    if (!p) continue;
    const top = p.by_op.slice(0, 8).map((o) => `${o.op} ${fmt(o.ms)}`).join(', ');
    console.log(
      `${m.name}: ORT profile of ${p.steps} steps (a separate trainer): model_run ${fmt(p.run_ms)} ms/step, kernels ${fmt(p.kernel_ms)}; ` +
        `GEMM kernels (MatMul, FusedMatMul, Gemm) ${fmt(p.gemm_ms)} ms/step (${((100 * p.gemm_ms) / p.kernel_ms).toFixed(0)}% of kernel time, the attention products included); by op: ${top}`,
    );
    if (m.torch) console.log(`${m.name}: GEMM floor: our GEMM kernels alone are ${(p.gemm_ms / m.torch.ms_median).toFixed(2)}x PyTorch's whole step; everything else is ${((p.kernel_ms - p.gemm_ms) / m.torch.ms_median).toFixed(2)}x`);
  }
  if (skipped) console.log(skipped);
  const loadAfter = os.loadavg();
  console.log(`loadavg after: ${loadStr(loadAfter)} (${os.cpus().length} cores)`);
  if (json) {
    writeJson(json, {
      data: DATA,
      batch: BATCH,
      context: CONTEXT,
      threads,
      warmup,
      rounds,
      per_round: perRound,
      loadavg_before: loadBefore,
      loadavg_after: loadAfter,
      models: out.map((m) => ({
        model: m.name,
        parameters: m.parameters,
        gemm_gflop_per_step: m.gflop,
        step_graph_nodes: m.nodes,
        ours: m.ours,
        torch: m.torch ?? null,
        ratio_median: m.torch ? m.ours.ms_median / m.torch.ms_median : null,
        round_ratios: m.roundRatios,
        rss_mb: m.rss,
        loadavg: m.loadavg,
        ...(m.profile ? { profile: m.profile } : {}),
      })),
      goal_vs_torch: GOAL_VS_TORCH,
      omp_wait_policy: PEER_OMP_WAIT_POLICY,
      ...(skipped ? { skipped } : {}),
    });
  }
}

runMain(main);
