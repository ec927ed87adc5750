/**
 * `qat demo --lm`: the gpt on Moby Dick in fp32 on a schedule shorter than `qat train`'s defaults, then per setting
 * (w4a8-g32, b158) RTN (min/max scales, no training) against QAT fine-tuning from the fp32 run; the fp32 model and
 * each QAT model exported as KV-cache decoders (fp32, int4 / MatMulNBits), every file measured by ONNX Runtime
 * from disk (validation perplexity, decode tokens/s), and one sample per model from the same prompt and seed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { loadTextData } from '../data/text.js';
import { exportLanguageModelRun, LmExportReport } from '../export/export-language-model.js';
import { writeFileAtomic } from '../onnx/atomic-write.js';
import { presetConfig } from '../quant/presets.js';
import { DEFAULT_TRAIN_CONFIG, loadRun, TrainConfig } from '../train/run.js';
import { LanguageModelResult } from '../train/run-language-model.js';
import { quantizeRun } from '../train/ptq-run.js';
import { DemoOptions } from './image-demo.js';
import { finishDemo } from './finish.js';
import { presetLabel } from './labels.js';
import { DemoPhaseClock } from './phases.js';
import { sampleModels, SampleSource } from './samples.js';
import { LanguageModelDemoSchedule } from './schedule.js';
import { DemoRow, DemoSummary } from './summary.js';
import { trainWithProgress } from './train-phase.js';

/** Weight bits of a language-model preset as the table's bits axis counts them (ternary: log2(3)). */
function lmWeightBits(preset: string): number {
  const w = presetConfig(preset, 'language-model').weight;
  return w.method === 'ternary' ? 1.58 : w.method === 'binary' ? 1 : w.bits;
}

/** A decoder export goes into its own folder: model.json sits beside model.onnx (src/generate/model-json.ts). */
export function languageModelExportDir(schedule: LanguageModelDemoSchedule, preset: string, format: string): string {
  return preset === format ? `${schedule.model}-${format}` : `${schedule.model}-${preset}-${format}`;
}

/** Which 2-bit kernel the file runs on, with the LUT kernel's top-1 where the parity check turned it down. */
function lutGemmLabel(lut: LmExportReport['lut_gemm']): string {
  if (lut.used) return "ORT's LUT kernel (mlas.use_lut_gemm)";
  if (lut.rejected) return `the exact kernel (the LUT kernel missed the parity bounds: top-1 ${(lut.rejected.top1_agreement * 100).toFixed(2)}%)`;
  return 'the exact kernel';
}

/**
 * How a decoder file stores its weights, from the export's own weight list and ORT's optimized model, e.g.
 * "weights 4-bit in int4 blocks of 32 (5 tensors); embeddings int4 DequantizeLinear -> Gather; ORT runs 5 MatMulNBits".
 */
export function decoderStorageLabel(r: LmExportReport): string {
  if (!r.weights.length) return `float32 weights; embeddings ${r.embeddings}`;
  const kinds = new Map<string, number>();
  for (const w of r.weights) {
    const bits = w.bits === 2 && r.preset === 'b158' ? 'ternary' : `${w.bits}-bit`;
    const key = `${bits} in ${w.storage_bits}-bit blocks of ${w.block_size}`;
    kinds.set(key, (kinds.get(key) ?? 0) + 1);
  }
  const weights = [...kinds].map(([k, n]) => `${k} (${n} tensor${n === 1 ? '' : 's'})`).join(', ');
  const acts = r.activations.length ? `activations ${[...new Set(r.activations.map((a) => a.spec))].join(', ')} as float ops` : 'float activations';
  const kernels = r.fusion ? `; ORT runs ${r.fusion.matmul_nbits} MatMulNBits (accuracy_level ${r.fusion.accuracy_levels.join(', ') || r.accuracy_level}: float A), ${r.fusion.float_matmuls.length} weight MatMuls in float` : '';
  const lut = r.lut_gemm.eligible ? `; 2-bit blocks on ${lutGemmLabel(r.lut_gemm)}` : '';
  return `weights ${weights}; embeddings ${r.embeddings}; ${acts}${kernels}${lut}`;
}

export async function runLanguageModelDemo(schedule: LanguageModelDemoSchedule, options: DemoOptions): Promise<DemoSummary> {
  const { out, threads } = options;
  const clock = new DemoPhaseClock(options.log);
  const at = (p: string) => path.join(out, p);
  const text = loadTextData(schedule.data, 'bytes');
  const totalPhases = 2 + schedule.settings.length * 2 + 2; // fp32 + its export, RTN + QAT per setting, samples, report
  const title = (what: string) => `[${clock.count + 1}/${totalPhases}] ${what}`;
  const base: TrainConfig = {
    ...DEFAULT_TRAIN_CONFIG,
    model: schedule.model,
    data: schedule.data,
    tokenizer: 'bytes',
    batch: schedule.batch,
    threads,
    seed: 0,
    clipNorm: 1,
    beta2: 0.95,
    checkpointEvery: 0,
  };
  const parity = { threads, ...schedule.parity };
  const exportOf = async (run: string, format: 'fp32' | 'int4' | 'matmulnbits', preset: string) => {
    const dir = languageModelExportDir(schedule, preset, format);
    const file = path.join(dir, 'model.onnx');
    const json = path.join(dir, 'export.json');
    options.log(`exporting ${run} as ${format}: ${file} (checked by ONNX Runtime on the file: perplexity on the validation text, top-1 on ${schedule.parity.windows} windows, ${schedule.parity.prompts} greedy prompts)`);
    const report = await exportLanguageModelRun(loadRun(at(run)), { from: at(run), out: at(file), json: at(json), format, threads, parity });
    return { file, json, report };
  };

  const fp32 = (await clock.phase(title(`fp32 ${schedule.model} on ${schedule.data} (${schedule.fp32Steps} steps; qat train's default is 1500)`), () =>
    trainWithProgress(
      {
        ...base,
        steps: schedule.fp32Steps,
        lr: schedule.fp32Lr,
        warmupSteps: schedule.fp32Warmup,
        weightDecay: 0.1,
        evalEvery: schedule.evalEvery,
        ...(schedule.layers ? { layers: schedule.layers, heads: schedule.heads, dim: schedule.dim } : {}),
        ...(schedule.context ? { context: schedule.context } : {}),
      },
      at('fp32'),
      'fp32',
      options.maxThreads,
    ),
  )) as LanguageModelResult;
  const fp32Export = await clock.phase(title('fp32 export (KV-cache decoder)'), () => exportOf('fp32', 'fp32', 'fp32'));
  const rows: DemoRow[] = [
    { label: `fp32, ${fp32.steps} steps (short schedule)`, setting: 'fp32', description: 'float32 weights and activations', method: 'fp32', weight_bits: 32, run: 'fp32', steps: fp32.steps, val_perplexity: fp32.val_perplexity, files: [] },
  ];
  const exported: { row: DemoRow; file: string; json: string; report: LmExportReport }[] = [{ row: rows[0], ...fp32Export }];
  const inGraph: { row: DemoRow; run: string }[] = [];

  for (const s of schedule.settings) {
    const config = presetConfig(s.preset, 'language-model');
    const bits = lmWeightBits(s.preset);
    const rtnDir = `rtn-${s.preset}`;
    const rtn = await clock.phase(title(`RTN ${s.preset} (min/max scales, no training)`), () =>
      quantizeRun({ from: at('fp32'), quant: s.preset, calib: 'minmax', calibBatches: 0, threads }, at(rtnDir), options.log),
    );
    const rtnRow: DemoRow = { label: `${s.preset} RTN, no training`, setting: s.preset, description: presetLabel(config), method: 'PTQ', weight_bits: bits, run: rtnDir, calib: 'rtn', steps: 0, val_perplexity: rtn.val_perplexity, files: [] };
    rows.push(rtnRow);
    inGraph.push({ row: rtnRow, run: rtnDir });

    const qatDir = `qat-${s.preset}`;
    const { qat, e } = await clock.phase(title(`QAT ${s.preset} (${s.qatSteps} steps; qat train's default is 300) and ${s.export} export`), async () => {
      const qat = (await trainWithProgress(
        { ...base, from: at('fp32'), quant: s.preset, steps: s.qatSteps, lr: schedule.qatLr, warmupSteps: schedule.qatWarmup, weightDecay: 0, evalEvery: 0 },
        at(qatDir),
        `qat ${s.preset}`,
        options.maxThreads,
      )) as LanguageModelResult;
      return { qat, e: await exportOf(qatDir, s.export, s.preset) };
    });
    const row: DemoRow = { label: `${s.preset} QAT, ${qat.steps} steps from fp32 (short schedule)`, setting: s.preset, description: presetLabel(config), method: 'QAT', weight_bits: bits, run: qatDir, steps: qat.steps, val_perplexity: qat.val_perplexity, files: [] };
    rows.push(row);
    exported.push({ row, ...e });
  }

  // Samples: the files with their KV cache in ONNX Runtime (timed, alternating), RTN models in qatkit's graph.
  const sources: SampleSource[] = [
    ...exported.map((x) => ({ key: x.file, file: at(x.file) })),
    ...inGraph.map((x) => ({ key: x.run, model: loadRun(at(x.run)).model })),
  ];
  const samples = await clock.phase(title(`sampling ${schedule.sample.tokens} tokens from every model ("${schedule.sample.prompt}", seed ${schedule.sample.seed})`), () =>
    sampleModels(sources, text.tokenizer, { ...schedule.sample, threads, context: schedule.context ?? fp32.context }),
  );
  const exportReports: string[] = [];
  for (const x of exported) {
    const s = samples.get(x.file)!;
    x.row.sample = s.text;
    x.row.files.push({
      path: x.file,
      format: x.report.format,
      storage: decoderStorageLabel(x.report),
      bytes: fs.statSync(at(x.file)).size,
      size_ratio_vs_fp32: x.report.size_ratio_vs_fp32,
      val_perplexity: x.report.parity.exported_val_perplexity,
      tokens_per_second: s.tokensPerSecond,
      top1_agreement: x.report.parity.top1_agreement,
      sample: s.text,
    });
    // The export report with what the demo measured of the file (qat report reads latency_ms / latency_per).
    const withLatency = { ...x.report, latency_ms: 1000 / s.tokensPerSecond!, latency_per: 'token, KV-cache decode', tokens_per_second: s.tokensPerSecond, sample: s.text };
    writeFileAtomic(at(x.json), JSON.stringify(withLatency, null, 2) + '\n');
    exportReports.push(at(x.json));
  }
  for (const x of inGraph) x.row.sample = samples.get(x.run)!.text;

  return finishDemo(
    { demo: 'language-model', version: 1, model: schedule.model, data: schedule.data, schedule: { ...schedule }, test_samples: fp32.val_tokens, rows, sample_prompt: schedule.sample.prompt },
    out,
    rows.map((r) => at(r.run)),
    exportReports,
    clock,
    `qat demo --lm: ${schedule.model} on ${schedule.data} (short schedules), fp32 / RTN / QAT and their exported decoders`,
    threads,
  );
}
