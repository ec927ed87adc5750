// The language-model comparison table of issue 11: fp32 vs PTQ (RTN, GPTQ, AWQ, SmoothQuant) vs the QAT methods
// (QAT, QAT + distillation, QAT + LoRA, LLM-QAT data-free, EfficientQAT), KV-cache columns, b158 from scratch.
// Usage: node --import tsx bench/llm-table.ts [--quick] [--models gpt,torch] [--fp32 RUN_DIR] [--fp32-steps N]
//        [--steps N] [--presets w8a8,w4a8-g32,...] [--kv 8,4,2] [--out bench/out/llm-table] [--results bench/results] [--threads 2]
//        [--reuse-only] (print the table from the rows already in --out, running nothing)
// Every row runs the real CLI (bin/qat.mjs, what `npx qat` runs) with `--json`, one method per flag; a method whose
// flag is not in `qat train --help` / `qat quantize --help` is printed "n/a (flag missing)", and a command that
// fails prints its one-line error: nothing is estimated. Rows already in --out (their JSON written) are reused, so
// an interrupted table continues where it stopped. Every QAT row trains the same --steps from the same fp32 run
// at the CLI's LM QAT defaults (lr 3e-4); one seed (0).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { writeFileAtomic } from '../src/onnx/atomic-write';
import { writeReport } from '../src/report/write-report';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    models: { type: 'string', default: 'gpt,torch' },
    fp32: { type: 'string' },
    'fp32-steps': { type: 'string' },
    steps: { type: 'string' },
    presets: { type: 'string' },
    kv: { type: 'string', default: '8,4,2' },
    out: { type: 'string' },
    results: { type: 'string', default: 'bench/results' },
    threads: { type: 'string', default: '2' },
    'reuse-only': { type: 'boolean', default: false },
  },
});
const quick = values.quick!;
const out = path.resolve(values.out ?? (quick ? 'bench/out/llm-table-quick' : 'bench/out/llm-table'));
const threads = values.threads!;
const qatSteps = Number(values.steps ?? (quick ? 4 : 300));
const fp32Steps = Number(values['fp32-steps'] ?? (quick ? 30 : 1500));
const presets = (values.presets ?? (quick ? 'w8a8,w4a8-g32,w2a16-g32' : 'w8a8,w4a8-g32,w4a16-g32,w3a16-g32,w2a16-g32')).split(',');
const kvBits = values.kv!.split(',').filter(Boolean);
const KV_PRESET = 'w4a8-g32';
/** --quick: tiny models, few steps, few validation windows are not an option of eval, so the val split stays whole. */
const SIZES = quick ? { gpt: ['--layers', '1', '--heads', '2', '--dim', '32', '--context', '32', '--batch', '8'], torch: { dim: 32, context: 32 } } : { gpt: [] as string[], torch: { dim: 64, context: 64 } };
const QAT_BATCH = quick ? ['--batch', '8'] : [];
fs.mkdirSync(out, { recursive: true });

const QAT_BIN = path.resolve('bin/qat.mjs');
interface CliResult { ok: boolean; json?: Record<string, any>; error?: string; seconds: number }
/** One CLI command with --json FILE; reused when FILE exists (a finished row of an earlier invocation). */
function qat(args: string[], jsonFile: string): CliResult {
  if (fs.existsSync(jsonFile)) return { ok: true, json: JSON.parse(fs.readFileSync(jsonFile, 'utf8')), seconds: 0 };
  if (values['reuse-only']) return { ok: false, error: 'not run (--reuse-only)', seconds: 0 };
  const t0 = performance.now();
  console.error(`$ npx qat ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [QAT_BIN, ...args, '--json', jsonFile], { encoding: 'utf8', env: { ...process.env, CI: '1' } });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0 || !fs.existsSync(jsonFile)) {
    const msgs = (r.stderr || r.stdout || `exit ${r.status}`).trim().split('\n').filter((l) => l.trim() && !/^\s+at |^Node\.js v/.test(l));
    const error = (msgs.find((l) => /^(qat [a-z]+:|error|Error|\w*Error:)/.test(l)) ?? msgs.at(-1) ?? `exit ${r.status}`).slice(0, 240);
    console.error(`  failed (${seconds.toFixed(0)} s): ${error}`);
    return { ok: false, error, seconds };
  }
  return { ok: true, json: JSON.parse(fs.readFileSync(jsonFile, 'utf8')), seconds };
}
const help = (cmd: string) => spawnSync(process.execPath, [QAT_BIN, cmd, '--help'], { encoding: 'utf8' }).stdout;
const trainHelp = help('train');
const quantizeHelp = help('quantize');
const has = (text: string, flag: string) => new RegExp(`${flag.replace(/-/g, '\\-')}[ ,<\\n]`).test(text);
const quantizeMethodListed = (m: string) => has(quantizeHelp, '--method') && new RegExp(`\\b${m}\\b`).test(quantizeHelp.slice(quantizeHelp.indexOf('--method')));

/** A table cell: a measured run, or why there is none. */
interface Cell { ppl?: number; kl?: number; top1?: number; note?: string; run?: string; msPerStep?: number }
interface Method { name: string; kind: 'ptq' | 'qat'; available: () => string | undefined; args: (fp32: string, preset: string) => string[] | undefined }
const PTQ_METHODS: Method[] = [
  { name: 'RTN', kind: 'ptq', available: () => undefined, args: (f, p) => ['quantize', '--from', f, '--quant', p, ...(quantizeMethodListed('rtn') ? ['--method', 'rtn'] : [])] },
  ...(['gptq', 'awq', 'smoothquant'] as const).map((m): Method => ({
    name: m === 'gptq' ? 'GPTQ' : m === 'awq' ? 'AWQ' : 'SmoothQuant',
    kind: 'ptq',
    available: () => (quantizeMethodListed(m) ? undefined : 'n/a (flag missing)'),
    args: (f, p) => (m === 'smoothquant' && p !== 'w8a8' ? undefined : ['quantize', '--from', f, '--quant', p, '--method', m]),
  })),
];
const qatMethod = (name: string, flag: string | undefined, extra: string[], help = () => trainHelp): Method => ({
  name,
  kind: 'qat',
  available: () => (flag === undefined || has(help(), flag) ? undefined : 'n/a (flag missing)'),
  args: (f, p) => ['train', '--from', f, '--quant', p, '--steps', String(qatSteps), '--threads', threads, ...QAT_BATCH, ...extra],
});
const QAT_METHODS: Method[] = [
  qatMethod('QAT', undefined, []),
  qatMethod('QAT + distill', '--distill', ['--distill']),
  qatMethod('QAT + LoRA', '--lora-rank', ['--lora-rank', '32']),
  qatMethod('LLM-QAT data-free', '--distill-data', ['--distill-data', 'generated']),
  { ...qatMethod('EfficientQAT', '--method', ['--method', 'efficientqat']), available: () => (has(trainHelp, '--method') && /efficientqat/.test(trainHelp) ? undefined : 'n/a (flag missing)') },
];
const slug = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');

/** Runs one row's command and its comparison with fp32 (qat eval --reference), or says why there is none. */
function cell(dir: string, fp32: string, method: Method, preset: string, extra: string[] = [], label = ''): Cell {
  const missing = method.available();
  if (missing) return { note: missing };
  const args = method.args(fp32, preset);
  if (!args) return { note: '' };
  if (extra.length && !extra.every((a) => !a.startsWith('--') || has(method.kind === 'ptq' ? quantizeHelp : trainHelp, a))) return { note: 'n/a (flag missing)' };
  const run = path.join(dir, `${slug(method.name)}-${preset}${label ? `-${label}` : ''}`);
  const r = qat([...args, ...extra, '--out', run], `${run}.json`);
  if (!r.ok) return { note: r.error!.startsWith("not run") ? r.error : `error: ${r.error}` };
  const e = qat(['eval', '--from', run, '--reference', fp32, '--threads', threads], `${run}.eval.json`);
  return { ppl: r.json!.val_perplexity, kl: e.json?.kl_to_reference, top1: e.json?.top1_agreement, run, msPerStep: r.json!.ms_per_step_median, ...(e.ok ? {} : { note: `eval error: ${e.error}` }) };
}

interface ModelTable {
  model: string;
  fp32_run: string;
  fp32_ppl: number;
  fp32_steps: number;
  cells: Record<string, Record<string, Cell>>; // method -> preset -> cell
  kv: Record<string, Record<string, Cell>>; // method -> kv column -> cell
  b158?: { fp32_same_steps: Cell; b158: Cell; steps: number };
}
const tables: ModelTable[] = [];

for (const name of values.models!.split(',')) {
  const dir = path.join(out, name);
  fs.mkdirSync(dir, { recursive: true });
  let modelArgs: string[];
  if (name === 'gpt') modelArgs = ['--model', 'gpt', ...SIZES.gpt];
  else if (name === 'torch') {
    // NanoGpt of test/fixtures/torch_nanogpt.onnx at vocabulary 256 (the fixture's 64 ids do not fit byte text).
    const file = path.join(dir, 'torch_nanogpt_bytes.onnx');
    if (!fs.existsSync(file)) {
      const r = spawnSync('/usr/bin/python3', ['bench/peers/export_bench_nanogpt.py', file, '--dim', String(SIZES.torch.dim), '--context', String(SIZES.torch.context)], { encoding: 'utf8' });
      if (r.status !== 0) {
        console.error(`[torch] skipped: the PyTorch export failed (${(r.stderr || '').trim().split('\n').at(-1)}); Debian's python3-torch is needed`);
        continue;
      }
    }
    modelArgs = ['--model', file, '--context', String(SIZES.torch.context), ...(quick ? ['--batch', '8'] : [])];
  } else throw new Error(`--models: '${name}' is not gpt or torch`);
  const fp32 = values.fp32 && name === 'gpt' ? path.resolve(values.fp32) : path.join(dir, 'fp32');
  const fp32Json = `${fp32}.json`;
  const f = values.fp32 && name === 'gpt'
    ? qat(['eval', '--from', fp32, '--threads', threads], path.join(dir, 'fp32-eval.json'))
    : qat(['train', ...modelArgs, '--data', 'moby-dick', '--steps', String(fp32Steps), '--threads', threads, '--out', fp32], fp32Json);
  if (!f.ok) {
    console.error(`[${name}] fp32 failed: ${f.error}`);
    continue;
  }
  const usedSteps = values.fp32 && name === 'gpt' ? Number(JSON.parse(fs.readFileSync(path.join(fp32, 'metrics.json'), 'utf8')).steps) : fp32Steps;
  const t: ModelTable = { model: name, fp32_run: fp32, fp32_ppl: f.json!.val_perplexity, fp32_steps: usedSteps, cells: {}, kv: {} };
  for (const m of [...PTQ_METHODS, ...QAT_METHODS]) {
    t.cells[m.name] = {};
    for (const p of presets) t.cells[m.name][p] = cell(dir, fp32, m, p);
  }
  // KV-cache columns at w4a8-g32: RTN and QAT, per-token layout, and kv2 in the KIVI layout.
  for (const m of [PTQ_METHODS[0], QAT_METHODS[0]]) {
    t.kv[m.name] = { none: t.cells[m.name][KV_PRESET] ?? cell(dir, fp32, m, KV_PRESET) };
    const flagHelp = m.kind === 'ptq' ? quantizeHelp : trainHelp;
    for (const bits of kvBits) t.kv[m.name][`kv${bits}`] = has(flagHelp, '--kv-bits') ? cell(dir, fp32, m, KV_PRESET, ['--kv-bits', bits, '--kv-layout', 'per-token'], `kv${bits}`) : { note: 'n/a (flag missing)' };
    t.kv[m.name]['kv2 kivi'] = has(flagHelp, '--kv-layout') ? cell(dir, fp32, m, KV_PRESET, ['--kv-bits', '2', '--kv-layout', 'kivi'], 'kv2-kivi') : { note: 'n/a (flag missing)' };
  }
  // b158 from scratch against fp32 trained the same steps (the fp32 run itself when it was trained here).
  const scratch = (quant: string[], label: string): Cell => {
    const run = path.join(dir, label);
    const r = qat(['train', ...modelArgs, '--data', 'moby-dick', '--steps', String(usedSteps), '--threads', threads, ...quant, '--out', run], `${run}.json`);
    return r.ok ? { ppl: r.json!.val_perplexity, run, msPerStep: r.json!.ms_per_step_median } : { note: r.error!.startsWith("not run") ? r.error : `error: ${r.error}` };
  };
  const sameSteps: Cell = values.fp32 && name === 'gpt' ? scratch([], 'fp32-same-steps') : { ppl: t.fp32_ppl, run: fp32 };
  t.b158 = { fp32_same_steps: sameSteps, b158: scratch(['--quant', 'b158'], 'b158-scratch'), steps: usedSteps };
  tables.push(t);
}

// ---- the table ----
const f2 = (x: number | undefined, d = 2) => (x === undefined || !Number.isFinite(x) ? '' : x.toFixed(d));
/** A cell of the markdown table: its perplexity, or its note (errors shortened; the JSON keeps them whole). */
const show = (c: Cell | undefined) => (c === undefined ? '' : c.ppl !== undefined ? f2(c.ppl) : (c.note ?? '').length > 90 ? `${c.note!.slice(0, 87)}...` : c.note ?? '');
/**
 * (ppl_PTQ - ppl_QAT) / (ppl_PTQ - ppl_fp32), in percent (issue 11); undefined where PTQ loses less than 1% of fp32's
 * perplexity, since the ratio of two differences that small is noise (thousands of percent either way).
 */
const recovered = (ptq: number | undefined, q: number | undefined, fp32: number) => (ptq === undefined || q === undefined || !(ptq - fp32 > 0.01 * fp32) ? undefined : (100 * (ptq - q)) / (ptq - fp32));
const lines: string[] = [];
const verdicts: string[] = [];
const date = new Date().toISOString().slice(0, 10);
lines.push(`Command: \`node --import tsx bench/llm-table.ts ${process.argv.slice(2).join(' ')}\` (${date}); QAT rows: ${qatSteps} steps from the fp32 run, seed 0.`, '');
for (const t of tables) {
  const bestPtq = (p: string) => {
    const ptq = PTQ_METHODS.map((m) => t.cells[m.name][p]?.ppl).filter((x): x is number => x !== undefined);
    return ptq.length ? Math.min(...ptq) : undefined;
  };
  lines.push(`### ${t.model === 'gpt' ? 'gpt (zoo)' : 'imported PyTorch NanoGpt'} on moby-dick: validation perplexity (fp32 ${f2(t.fp32_ppl, 3)}, ${t.fp32_steps} steps)`, '');
  lines.push(`| method | ${presets.join(' | ')} |`, `|---|${presets.map(() => '---|').join('')}`);
  lines.push(`| fp32 | ${presets.map(() => f2(t.fp32_ppl)).join(' | ')} |`);
  for (const m of [...PTQ_METHODS, ...QAT_METHODS]) lines.push(`| ${m.name} | ${presets.map((p) => show(t.cells[m.name][p])).join(' | ')} |`);
  lines.push('', '| QAT row | quant | perplexity | % of RTN degradation recovered (blank: RTN within 1% of fp32) | % of best-PTQ degradation recovered | KL(fp32 \\|\\| q) nats/token | top-1 agreement with fp32 | ms/step (median; load-dependent) |', '|---|---|---|---|---|---|---|---|');
  for (const m of QAT_METHODS) {
    for (const p of presets) {
      const c = t.cells[m.name][p];
      if (c?.ppl === undefined) continue;
      lines.push(`| ${m.name} | ${p} | ${f2(c.ppl)} | ${f2(recovered(t.cells.RTN[p]?.ppl, c.ppl, t.fp32_ppl), 1)} | ${f2(recovered(bestPtq(p), c.ppl, t.fp32_ppl), 1)} | ${f2(c.kl, 4)} | ${c.top1 === undefined ? '' : (100 * c.top1).toFixed(2) + '%'} | ${f2(c.msPerStep, 0)} |`);
    }
  }
  for (const m of PTQ_METHODS) {
    for (const p of presets) {
      const c = t.cells[m.name][p];
      if (c?.ppl !== undefined) lines.push(`| (PTQ) ${m.name} | ${p} | ${f2(c.ppl)} |  |  | ${f2(c.kl, 4)} | ${c.top1 === undefined ? '' : (100 * c.top1).toFixed(2) + '%'} |  |`);
    }
  }
  const kvCols = ['none', ...kvBits.map((b) => `kv${b}`), 'kv2 kivi'];
  lines.push('', `KV cache at ${KV_PRESET} (perplexity):`, '', `| method | ${kvCols.join(' | ')} |`, `|---|${kvCols.map(() => '---|').join('')}`);
  for (const [m, cols] of Object.entries(t.kv)) lines.push(`| ${m} | ${kvCols.map((k) => show(cols[k])).join(' | ')} |`);
  if (t.b158) lines.push('', `b158 from scratch, ${t.b158.steps} steps: perplexity ${show(t.b158.b158)} against fp32 ${show(t.b158.fp32_same_steps)} trained the same steps` + (t.b158.b158.ppl && t.b158.fp32_same_steps.ppl ? ` (ratio ${(t.b158.b158.ppl / t.b158.fp32_same_steps.ppl).toFixed(3)})` : ''));
  lines.push('');
  // Issue 11's targets, judged on this table.
  const v = (what: string, ok: boolean | undefined) => verdicts.push(`- [${t.model}] ${what}: ${ok === undefined ? 'not measured' : ok ? 'met' : 'NOT met'}`);
  const q = (m: string, p: string) => t.cells[m]?.[p]?.ppl;
  const rec = recovered(q('RTN', 'w4a8-g32'), q('QAT', 'w4a8-g32'), t.fp32_ppl);
  v('w4a8-g32: QAT recovers >= 90% of RTN degradation', rec === undefined ? undefined : rec >= 90);
  const best = bestPtq('w4a8-g32');
  const gq = [q('GPTQ', 'w4a8-g32'), q('AWQ', 'w4a8-g32')].filter((x) => x !== undefined);
  v('w4a8-g32: QAT at or below the best PTQ (GPTQ/AWQ measured)', q('QAT', 'w4a8-g32') === undefined || best === undefined || gq.length === 0 ? undefined : q('QAT', 'w4a8-g32')! <= best);
  v('w2a16-g32: QAT <= 1.20x fp32 while RTN >= 2x fp32', q('QAT', 'w2a16-g32') === undefined || q('RTN', 'w2a16-g32') === undefined ? undefined : q('QAT', 'w2a16-g32')! <= 1.2 * t.fp32_ppl && q('RTN', 'w2a16-g32')! >= 2 * t.fp32_ppl);
  for (const p of ['w3a16-g32', 'w2a16-g32']) v(`${p}: GPTQ better than RTN`, q('GPTQ', p) === undefined || q('RTN', p) === undefined ? undefined : q('GPTQ', p)! < q('RTN', p)!);
  if (t.b158) v('b158 from scratch <= 1.15x fp32 of the same steps', t.b158.b158.ppl === undefined || t.b158.fp32_same_steps.ppl === undefined ? undefined : t.b158.b158.ppl <= 1.15 * t.b158.fp32_same_steps.ppl);
  const kv4 = t.kv.QAT?.kv4?.ppl;
  v('kv4 per-token: QAT within 2% of QAT without KV quantization', kv4 === undefined || t.kv.QAT?.none?.ppl === undefined ? undefined : kv4 <= 1.02 * t.kv.QAT.none.ppl!);
  const kivi = recovered(t.kv.RTN?.['kv2 kivi']?.ppl, t.kv.QAT?.['kv2 kivi']?.ppl, t.fp32_ppl);
  v('kv2 KIVI: QAT recovers >= 70% of RTN degradation', kivi === undefined ? undefined : kivi >= 70);
  const lora = t.cells['QAT + LoRA']?.['w4a8-g32']?.ppl;
  const rtn = q('RTN', 'w4a8-g32');
  v('QAT + LoRA recovers >= 80% of full QAT gain over RTN at w4a8-g32', lora === undefined || rtn === undefined || q('QAT', 'w4a8-g32') === undefined ? undefined : (rtn - lora) >= 0.8 * (rtn - q('QAT', 'w4a8-g32')!));
  for (const p of ['w4a8-g32', 'w3a16-g32']) v(`LLM-QAT data-free beats RTN at ${p}`, q('LLM-QAT data-free', p) === undefined || q('RTN', p) === undefined ? undefined : q('LLM-QAT data-free', p)! < q('RTN', p)!);
}
lines.push('Targets (issue 11), judged on this table:', '', ...verdicts, '');
const md = lines.join('\n');
console.log(md);
const results = path.resolve(values.results!);
const stem = quick ? 'llm-table-quick' : 'llm-table';
writeFileAtomic(path.join(results, `${stem}.md`), md + '\n');
writeFileAtomic(path.join(results, `${stem}.json`), JSON.stringify({ date, argv: process.argv.slice(2), qat_steps: qatSteps, presets, tables, verdicts }, null, 2) + '\n');
// HTML: the perplexity-vs-bits chart of every measured cell and the runs' curves (qat report's writeReport).
const bitsOf = (p: string) => Number(/^w(\d+)/.exec(p)?.[1] ?? 32);
const rows = tables.flatMap((t) =>
  Object.entries(t.cells).flatMap(([m, byPreset]) =>
    Object.entries(byPreset)
      .filter(([, c]) => c.ppl !== undefined)
      .map(([p, c]) => ({ setting: `${t.model} ${p}`, method: m, bits: bitsOf(p), metric: c.ppl! })),
  ).concat(presets.map((p) => ({ setting: `${t.model} ${p}`, method: 'fp32', bits: 32, metric: t.fp32_ppl }))),
);
// The runs whose curves and histograms the page shows: fp32 and every method at the KV preset (all runs make ~6 MB).
const runs = tables.flatMap((t) => [t.fp32_run, ...Object.values(t.cells).map((byPreset) => byPreset[KV_PRESET]?.run).filter((r): r is string => !!r)]).filter((r) => fs.existsSync(path.join(r, 'checkpoint.qat')));
try {
  const summary = await writeReport({ runs, out: path.join(results, `${stem}.html`), title: 'qatkit: language-model quantization table', results: { metric: 'validation perplexity', rows }, threads: Number(threads), latency: false });
  console.error(`report: ${summary.out}`);
} catch (e) {
  console.error(`report not written: ${(e as Error).message}`);
}
