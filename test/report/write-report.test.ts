/**
 * writeReport on tiny image runs (fp32, QAT, PTQ, a QDQ export, sensitivity), built once: every chart the data
 * allows is there with data marks, a missing kind of data names the command that produces it, the page is
 * self-contained, and bad input is refused in one line before anything is written.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { bitsRows, writeReport } from '../../src/report/write-report';
import { loadReportRun } from '../../src/report/load-runs';
import { InputError } from '../../src/validate/schema';
import { chartsOf, dataMarks, ImageRuns, makeImageRuns } from './tiny-runs';

let runs: ImageRuns;
let full = '';
let fullSummary: Awaited<ReturnType<typeof writeReport>>;
const metricsOf = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'metrics.json'), 'utf8'));

before(async () => {
  runs = await makeImageRuns();
  full = path.join(runs.work, 'report.html');
  fullSummary = await writeReport({ runs: [runs.fp32, runs.qat, runs.ptq], out: full, threads: 1, latencyReps: 5 });
});

after(() => fs.rmSync(runs.work, { recursive: true, force: true }));

/** A one-line refusal: an InputError whose message matches. */
async function refused(p: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.ok(e instanceof InputError, `${e.constructor.name}: ${e.message}`);
    assert.doesNotMatch(e.message, /\n/);
    assert.match(e.message, message);
    return true;
  });
}

test('a report of fp32, QAT and PTQ runs has every chart, each with data marks in its SVG', () => {
  const html = fs.readFileSync(full, 'utf8');
  const charts = chartsOf(html);
  assert.deepEqual([...charts.keys()], fullSummary.charts);
  for (const name of ['metric-vs-bits-test-accuracy', 'loss-curves', 'test-curves', 'learning-rate', 'quant-health-qat-w4a8', 'sensitivity-fp32', 'weights-qat-w4a8-conv0', 'weights-qat-w4a8-fc0', 'weights-ptq-w8a8-fc0']) {
    assert.ok(charts.has(name), `chart ${name} missing; charts: ${[...charts.keys()].join(', ')}`);
  }
  for (const [name, svg] of charts) {
    assert.match(svg, /^<svg [^>]*class="marks"/, `${name}: not a Vega SVG`);
    assert.ok(dataMarks(svg) > 0, `${name}: no data marks`);
  }
  assert.deepEqual(fullSummary.absent, []);
  assert.equal(fullSummary.bytes, fs.statSync(full).size);
});

test('the bits chart holds one point per run at its weight bits, with the runs\' own metrics', () => {
  const loaded = [runs.fp32, runs.qat, runs.ptq].map(loadReportRun);
  const rows = bitsRows(loaded).get('test accuracy')!;
  const [fp32, qat, ptq] = [runs.fp32, runs.qat, runs.ptq].map(metricsOf);
  assert.deepEqual(
    rows.map((r) => [r.method, r.bits, r.metric]),
    [
      ['fp32', 32, fp32.test_accuracy],
      ['QAT', 4, qat.test_accuracy],
      ['PTQ-minmax', 8, ptq.test_accuracy],
    ],
  );
  // Without the fp32 run, the QAT run's fp32 baseline stands for it (once, not once per run).
  const baseline = bitsRows(loaded.slice(1)).get('test accuracy')!.filter((r) => r.method === 'fp32');
  assert.deepEqual(baseline.map((r) => [r.bits, r.metric]), [[32, qat.fp32_accuracy]]);
});

test('the page is self-contained: no script, no external reference, no fetch', () => {
  const html = fs.readFileSync(full, 'utf8');
  assert.doesNotMatch(html, /<script|<link|<img|<iframe|@import|url\(/i);
  // The only http(s) strings are XML namespaces of the inline SVGs.
  const urls = [...html.matchAll(/https?:\/\/[^\s"'<>)]+/g)].map((m) => m[0]);
  assert.deepEqual([...new Set(urls)].sort(), ['http://www.w3.org/1999/xlink', 'http://www.w3.org/2000/svg']);
  assert.doesNotMatch(html, /\b(src|href)="(?!#)/);
});

test('the export table shows the export report\'s size and parity and the latency measured by ONNX Runtime', () => {
  const html = fs.readFileSync(full, 'utf8');
  const report = JSON.parse(fs.readFileSync(runs.exportJson, 'utf8'));
  const section = html.slice(html.indexOf('<section id="exports">'));
  assert.match(section, new RegExp(`${(report.file_bytes / 1024).toFixed(1)} KiB`));
  assert.match(section, new RegExp(`${report.weight_ratio.toFixed(2)}x \\(weights\\)`));
  assert.match(section, new RegExp(`${(report.parity.argmax_agreement * 100).toFixed(2)}% <small>argmax</small>`));
  const latency = /<td class="num">(\d+\.\d{3}) <small>per image, batch 1<\/small><\/td>/.exec(section);
  assert.ok(latency && Number(latency[1]) > 0, 'a measured latency');
  assert.match(section, /median of 5 calls/);
});

test('with only an fp32 run, each absent part names the command that produces it', async () => {
  const out = path.join(runs.work, 'fp32-only.html');
  const s = await writeReport({ runs: [runs.fp32], out, threads: 1 });
  const html = fs.readFileSync(out, 'utf8');
  assert.deepEqual(s.absent, [
    'No QAT run among the runs',
    'No PTQ run among the runs',
    'No quant-health series (QAT runs record one)',
    'No quantized run with a checkpoint (weight histograms need its latent weights and scales)',
    'No export report',
  ]);
  for (const command of ['qat train --from FP32_RUN --quant w4a4 --out QAT_RUN', 'qat quantize --from FP32_RUN --quant w8a8 --calib minmax', '--health-every 25', 'qat export --from QAT_RUN']) {
    assert.match(html, new RegExp(`<code>[^<]*${command.replace(/[-.]/g, '\\$&')}[^<]*</code>`), `the page names ${command}`);
  }
  // The sensitivity file of the fp32 run is found beside it.
  assert.ok(s.charts.includes('sensitivity-fp32'));
});

test('a results table (demo, bench) becomes a table and a chart of its own', async () => {
  const out = path.join(runs.work, 'results.html');
  const rows = [
    { setting: 'lenet / mnist', method: 'fp32', bits: 32, metric: 0.99 },
    { setting: 'lenet / mnist', method: 'PTQ-minmax', bits: 2, metric: 0.2 },
    { setting: 'lenet / mnist', method: 'QAT', bits: 2, metric: 0.97 },
  ];
  const s = await writeReport({ runs: [], results: { title: 'Demo', metric: 'test accuracy', rows }, out });
  const charts = chartsOf(fs.readFileSync(out, 'utf8'));
  assert.deepEqual([...charts.keys()], ['results-vs-bits']);
  // Three points, and the PTQ and QAT "lines" (one point each at 2 bits) plus fp32's.
  assert.match(charts.get('results-vs-bits')!, /mark-symbol role-mark/);
  assert.equal((charts.get('results-vs-bits')!.match(/<g class="mark-symbol role-mark[^>]*>([\s\S]*?)<\/g>/)![1].match(/<path/g) ?? []).length, 3);
  const html = fs.readFileSync(out, 'utf8');
  assert.match(html, /<h2>Demo<\/h2>/);
  assert.match(html, /<td>PTQ-minmax<\/td><td class="num">2<\/td><td class="num">0\.2000<\/td>/);
  assert.equal(s.absent.length, 1, 'only the export table is absent');
});

test('a directory that is not a run is refused naming it, and nothing is written', async () => {
  const notRun = path.join(runs.work, 'not-a-run');
  fs.mkdirSync(notRun);
  const out = path.join(runs.work, 'refused', 'report.html');
  await refused(writeReport({ runs: [runs.fp32, notRun], out }), new RegExp(`^RUN_DIR ${notRun}: not a run directory \\(no metrics\\.json or checkpoint\\.qat; make one with qat train`));
  await refused(writeReport({ runs: [path.join(runs.work, 'missing')], out }), /^RUN_DIR .*missing: no such directory$/);
  await refused(writeReport({ runs: [runs.exportJson], out }), /^RUN_DIR .*export\.json: not a directory/);
  fs.writeFileSync(path.join(notRun, 'metrics.json'), '{"history": [');
  await refused(writeReport({ runs: [notRun], out }), /^RUN_DIR .*metrics\.json: not valid JSON/);
  await refused(writeReport({ runs: [], out }), /give at least one RUN_DIR/);
  await refused(writeReport({ runs: [runs.fp32], exports: [path.join(runs.fp32, 'metrics.json')], out }), /^--exports .*metrics\.json: not an export report \(qat export --json FILE writes one/);
  await refused(writeReport({ runs: [runs.qat], layers: 'nothing*', out, threads: 1 }), /^--layers 'nothing\*' matches no quantized layer of the runs; layers: conv0, fc0$/);
  assert.equal(fs.existsSync(path.dirname(out)), false, 'no folder made for a refused report');
});

test('--out that cannot be a file is refused before any work; a missing folder is created', async () => {
  const dir = path.join(runs.work, 'a-folder.html');
  fs.mkdirSync(dir);
  await refused(writeReport({ runs: [runs.fp32], out: dir }), /a-folder\.html: is a directory; give a file path ending in \.html$/);
  await refused(writeReport({ runs: [runs.fp32], out: path.join(runs.exportJson, 'report.html') }), /export\.json is a file, not a folder$/);
  await refused(writeReport({ runs: [runs.fp32], out: path.join(runs.work, 'report.pdf') }), /give a path ending in \.html/);
  const nested = path.join(runs.work, 'new', 'folder', 'report.html');
  await writeReport({ runs: [runs.fp32], out: nested, threads: 1 });
  assert.match(fs.readFileSync(nested, 'utf8'), /^<!DOCTYPE html>/);
});

test('the report is written atomically: a refused run leaves the previous report whole and no temp file', async () => {
  const out = path.join(runs.work, 'atomic', 'report.html');
  await writeReport({ runs: [runs.fp32], out, threads: 1 });
  const before = fs.readFileSync(out);
  await refused(writeReport({ runs: [runs.fp32, path.join(runs.work, 'missing')], out }), /no such directory/);
  assert.deepEqual(fs.readFileSync(out), before);
  // A report replacing it goes through a temp sibling and a rename.
  await writeReport({ runs: [runs.fp32, runs.ptq], out, threads: 1 });
  assert.notDeepEqual(fs.readFileSync(out), before);
  assert.deepEqual(fs.readdirSync(path.dirname(out)), ['report.html']);
});

test('an export whose model file is gone keeps its row, without a latency, and says why', async () => {
  const moved = path.join(runs.work, 'moved-export.json');
  const report = JSON.parse(fs.readFileSync(runs.exportJson, 'utf8'));
  fs.writeFileSync(moved, JSON.stringify({ ...report, out: path.join(runs.work, 'deleted.onnx') }));
  const out = path.join(runs.work, 'moved.html');
  await writeReport({ runs: [runs.fp32], exports: [moved], out, threads: 1 });
  const html = fs.readFileSync(out, 'utf8');
  assert.match(html, /No latency for <code>[^<]*deleted\.onnx<\/code>: the model file is not there any more/);
  assert.match(html, /<td>[^<]*deleted\.onnx<\/td><td>qdq<\/td>/);
});
