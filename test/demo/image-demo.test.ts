import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { checkDemoOut } from '../../src/cli/demo';
import { loadDataset } from '../../src/data';
import { runImageDemo } from '../../src/demo/image-demo';
import { IMAGE_DEMO_SCHEDULES } from '../../src/demo/schedule';
import { DemoSummary } from '../../src/demo/summary';
import { formatDemoTable } from '../../src/demo/table';
import { readCatalog } from '../../src/serve/model-catalog';
import { InputError } from '../../src/validate/schema';
import { exactWeightType } from '../../src/export/weight-type';
import { scratchDir } from '../helpers/scratch.js';

const schedule = IMAGE_DEMO_SCHEDULES.tiny;
let dir = '';
let summary: DemoSummary;

before(async () => {
  dir = scratchDir('qatkit-demo-');
  summary = await runImageDemo(schedule, { out: dir, threads: 2, log: () => {} });
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Test accuracy of a file computed here, by a session of our own, on the demo's test subset. */
async function accuracyByOrt(file: string, limit: number): Promise<number> {
  const test = loadDataset('mnist').test;
  const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 2, interOpNumThreads: 1 });
  try {
    const per = test.shape.reduce((a, b) => a * b, 1);
    const x = new ort.Tensor('float32', test.images.subarray(0, limit * per), [limit, ...test.shape]);
    const logits = (await session.run({ [session.inputNames[0]]: x }))[session.outputNames[0]].data as Float32Array;
    let correct = 0;
    for (let i = 0; i < limit; i++) {
      let best = 0;
      for (let c = 1; c < 10; c++) if (logits[i * 10 + c] > logits[i * 10 + best]) best = c;
      if (best === test.labels[i]) correct++;
    }
    return correct / limit;
  } finally {
    await session.release();
  }
}

test('the rows are fp32, then PTQ and QAT per setting; every QAT model has its exported files and fp32 its model file', () => {
  assert.deepEqual(
    summary.rows.map((r) => `${r.method} ${r.setting}`),
    ['fp32 fp32', ...schedule.settings.flatMap((s) => [`PTQ ${s.preset}`, `QAT ${s.preset}`])],
  );
  assert.deepEqual(summary.rows[0].files.map((f) => f.path), [path.join('fp32', 'model.onnx')]);
  for (const s of schedule.settings) {
    const qat = summary.rows.find((r) => r.method === 'QAT' && r.setting === s.preset)!;
    assert.deepEqual(qat.files.map((f) => f.format), s.exports);
    assert.equal(qat.steps, s.qatSteps);
    const ptq = summary.rows.find((r) => r.method === 'PTQ' && r.setting === s.preset)!;
    assert.equal(ptq.calib, s.calib);
    assert.deepEqual(ptq.files, []);
  }
  for (const r of summary.rows) assert.ok(r.accuracy! > 0.3 && r.accuracy! <= 1, `${r.label}: ${r.accuracy}`);
});

test('every file accuracy is the file run by ONNX Runtime (recomputed here by a session of its own), and files are measured', async () => {
  assert.equal(summary.test_samples, schedule.testLimit);
  for (const f of summary.rows.flatMap((r) => r.files)) {
    const file = path.join(dir, f.path);
    assert.ok(fs.statSync(file).size === f.bytes, f.path);
    assert.equal(f.accuracy, await accuracyByOrt(file, summary.test_samples), f.path);
    assert.ok(f.latency_ms_per_batch! > 0, f.path);
    assert.equal(f.latency_batch, schedule.latency.batch);
    if (f.format !== 'fp32') assert.ok(f.argmax_agreement! >= 0.99 && f.size_ratio_vs_fp32! > 1, f.path);
  }
});

test('labels say how each file stores its codes: a w4a4 QDQ file holds 4-bit codes in uint8 containers, not "int8"', () => {
  const storage = Object.fromEntries(summary.rows.flatMap((r) => r.files.map((f) => [`${r.setting} ${f.format}`, f.storage])));
  // 8-bit weight containers follow --weight-type auto: int8 where this CPU's u8s8 kernels are exact, else uint8.
  const container = exactWeightType().type;
  assert.match(storage['w4a4 qdq'], new RegExp(`^QDQ file: weights 4-bit in ${container} containers`));
  if (container === 'uint8') assert.doesNotMatch(storage['w4a4 qdq'], /\bint8/);
  assert.match(storage['w4a4 int4'], /^int4 file: weights 4-bit in int4 containers/);
  assert.match(storage['ternary packed'], /^packed file: weights ternary in packed bytes/);
  assert.match(summary.rows.find((r) => r.setting === 'w4a4')!.description, /^4-bit weights .*4-bit activations .*first and last layers 8-bit/);
});

test('the printed table has a line per model and per file, a heading per setting, and the storage under each file', () => {
  const lines = formatDemoTable(summary);
  assert.match(lines[0], /^model \/ file\s+accuracy\s+size\s+ms\/batch of 16\s+file accuracy$/);
  for (const r of summary.rows) {
    const line = lines.find((l) => l.trim().startsWith(r.label))!;
    assert.ok(line, r.label);
    assert.ok(line.includes(`${(r.accuracy! * 100).toFixed(2)}%`), line);
    for (const f of r.files) {
      const i = lines.findIndex((l) => l.includes(`-> ${f.path}`));
      assert.ok(i > 0 && lines[i].trimEnd().endsWith(`${(f.accuracy! * 100).toFixed(2)}%`), lines[i]);
      assert.ok(lines[i + 1].includes(f.storage), lines[i + 1]);
    }
  }
  for (const s of schedule.settings) assert.ok(lines.some((l) => l.startsWith(`${s.preset}: `)), s.preset);
});

test('summary.json, report.html and the export reports are written; the browser page finds fp32, int8, int4 and ternary', () => {
  const saved = JSON.parse(fs.readFileSync(path.join(dir, 'summary.json'), 'utf8'));
  assert.deepEqual(saved.rows, JSON.parse(JSON.stringify(summary.rows)));
  assert.equal(saved.phases.length, 1 + schedule.settings.length * 2 + 2);
  assert.ok(saved.wall_seconds > 0 && saved.machine.threads === 2 && saved.finished);
  const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
  assert.ok(html.includes('<svg') && html.includes('test accuracy of each model and exported file'));
  assert.ok(!/https?:\/\/(?!www\.w3\.org)/.test(html.replace(/xmlns(:\w+)?="[^"]*"/g, '')), 'the report loads nothing from the network');
  const catalog = readCatalog(dir);
  assert.deepEqual(catalog.models.map((m) => m.slot), ['fp32', 'int8', 'int4', 'ternary']);
  assert.deepEqual(catalog.missing, []);
  for (const m of catalog.models.filter((x) => x.slot !== 'fp32')) {
    const file = summary.rows.flatMap((r) => r.files).find((f) => path.join(dir, f.path) === m.file)!;
    assert.equal(m.exportedAccuracy, file.accuracy, m.file);
  }
});

test('a demo writes only into a new or empty directory', () => {
  assert.throws(() => checkDemoOut(dir), (e: Error) => e instanceof InputError && /--out .*not an empty directory/.test(e.message));
  assert.doesNotThrow(() => checkDemoOut(path.join(dir, 'new')));
});
