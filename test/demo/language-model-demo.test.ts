import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { loadTextData } from '../../src/data/text';
import { evaluateLanguageModelFile } from '../../src/export/evaluate-language-model-file';
import { readLanguageModelJson } from '../../src/generate/model-json';
import { runLanguageModelDemo } from '../../src/demo/language-model-demo';
import { LANGUAGE_MODEL_DEMO_SCHEDULES } from '../../src/demo/schedule';
import { DemoSummary } from '../../src/demo/summary';
import { formatDemoTable } from '../../src/demo/table';
import { readCatalog } from '../../src/serve/model-catalog';
import { scratchDir } from '../helpers/scratch.js';

const schedule = LANGUAGE_MODEL_DEMO_SCHEDULES.tiny;
let dir = '';
let summary: DemoSummary;

before(async () => {
  dir = scratchDir('qatkit-demo-lm-');
  summary = await runLanguageModelDemo(schedule, { out: dir, threads: 2, log: () => {} });
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('the rows are fp32, then RTN and QAT per setting, labelled as short schedules; fp32 and each QAT model have a decoder file', () => {
  assert.deepEqual(
    summary.rows.map((r) => `${r.method} ${r.setting}`),
    ['fp32 fp32', ...schedule.settings.flatMap((s) => [`PTQ ${s.preset}`, `QAT ${s.preset}`])],
  );
  assert.match(summary.rows[0].label, new RegExp(`^fp32, ${schedule.fp32Steps} steps \\(short schedule\\)$`));
  assert.deepEqual(summary.rows[0].files.map((f) => f.path), [path.join('gpt-fp32', 'model.onnx')]);
  for (const s of schedule.settings) {
    const qat = summary.rows.find((r) => r.method === 'QAT' && r.setting === s.preset)!;
    assert.match(qat.label, /short schedule/);
    assert.equal(qat.steps, s.qatSteps);
    assert.deepEqual(qat.files.map((f) => [f.path, f.format]), [[path.join(`gpt-${s.preset}-${s.export}`, 'model.onnx'), s.export]]);
    const rtn = summary.rows.find((r) => r.method === 'PTQ' && r.setting === s.preset)!;
    assert.equal(rtn.calib, 'rtn');
    assert.deepEqual(rtn.files, []);
  }
  assert.equal(summary.rows.find((r) => r.setting === 'b158')!.weight_bits, 1.58);
  for (const r of summary.rows) assert.ok(r.val_perplexity! > 1 && r.val_perplexity! < 256, `${r.label}: ${r.val_perplexity}`);
});

test('each file perplexity is the file run by ONNX Runtime on the validation text (recomputed here), with size and tokens/s', async () => {
  const text = loadTextData('moby-dick', 'bytes');
  for (const f of summary.rows.flatMap((r) => r.files)) {
    const file = path.join(dir, f.path);
    const json = readLanguageModelJson(file)!;
    const measured = await evaluateLanguageModelFile(file, text.val, json.context, { threads: 2, json });
    assert.ok(Math.abs(measured.val_perplexity - f.val_perplexity!) < 1e-9 * f.val_perplexity!, `${f.path}: ${measured.val_perplexity} vs ${f.val_perplexity}`);
    assert.equal(f.bytes, fs.statSync(file).size);
    assert.ok(f.tokens_per_second! > 0 && f.top1_agreement! >= 0.99, f.path);
    if (f.format !== 'fp32') assert.ok(f.size_ratio_vs_fp32! > 1, f.path);
  }
  assert.match(summary.rows.find((r) => r.setting === 'w4a8-g32' && r.method === 'QAT')!.files[0].storage, /^weights 4-bit in 4-bit blocks of 32 .*MatMulNBits/);
  assert.match(summary.rows.find((r) => r.setting === 'b158' && r.method === 'QAT')!.files[0].storage, /^weights 8-bit in 8-bit blocks of \d+ \(2 tensors\), ternary in 2-bit blocks/);
});

test('every model has a sample continuing the same prompt, printed side by side under the table', () => {
  const lines = formatDemoTable(summary);
  assert.match(lines[0], /^model \/ file\s+val ppl\s+size\s+tokens\/s\s+file val ppl$/);
  const at = lines.findIndex((l) => l.startsWith('samples (the same prompt'));
  assert.ok(at > 0);
  for (const r of summary.rows) {
    assert.ok(r.sample!.startsWith(schedule.sample.prompt) && r.sample!.length > schedule.sample.prompt.length, r.label);
    assert.ok(lines.slice(at).some((l) => l.startsWith(`  ${r.label}`) && l.includes('| ' + schedule.sample.prompt)), r.label);
  }
  // A QAT model's sample is its exported file's.
  const qat = summary.rows.find((r) => r.method === 'QAT')!;
  assert.equal(qat.files[0].sample, qat.sample);
});

test('summary.json, report.html and export.json beside each decoder are written; the page finds the decoders', () => {
  const saved = JSON.parse(fs.readFileSync(path.join(dir, 'summary.json'), 'utf8'));
  assert.equal(saved.demo, 'language-model');
  assert.equal(saved.sample_prompt, schedule.sample.prompt);
  assert.equal(saved.phases.length, 2 + schedule.settings.length * 2 + 2);
  const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
  assert.ok(html.includes('<svg') && html.includes('validation perplexity of each model and exported file'));
  for (const f of summary.rows.flatMap((r) => r.files)) {
    const report = JSON.parse(fs.readFileSync(path.join(dir, path.dirname(f.path), 'export.json'), 'utf8'));
    assert.equal(report.parity.exported_val_perplexity, f.val_perplexity);
    assert.equal(report.latency_per, 'token, KV-cache decode');
  }
  const catalog = readCatalog(dir);
  if ('languageModels' in catalog) {
    const files = (catalog as { languageModels: { file: string }[] }).languageModels.map((m) => path.relative(dir, m.file)).sort();
    assert.deepEqual(files, summary.rows.flatMap((r) => r.files.map((f) => f.path)).sort());
  }
});
