/**
 * The written report in a real browser: headless Chromium (test/helpers/browser.ts) opens the HTML file from disk
 * (file://), with every non-file request aborted and recorded. The page shows no console error, asks for nothing
 * but itself, and each chart's SVG lays out data marks with real geometry (non-empty path data, rects and lines
 * with extent on screen), not just the markup the Node tests read. A full-page screenshot is written under the
 * test's temp dir for a person to look at.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser } from 'playwright-core';
import { writeReport } from '../../src/report/write-report';
import { chromiumMissing, launchChromium, watchPage } from '../helpers/browser';
import { chartsOf, dataMarks, ImageRuns, makeImageRuns } from './tiny-runs';

const missing = chromiumMissing();
let runs: ImageRuns;
let report = '';
let browser: Browser | undefined;

before(async () => {
  if (missing) return;
  runs = await makeImageRuns('qatkit-report-browser-');
  report = path.join(runs.work, 'report.html');
  await writeReport({ runs: [runs.fp32, runs.qat, runs.ptq], out: report, threads: 1, latencyReps: 3 });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  // The report and its screenshot stay for a person to look at; the runs go.
  if (runs) for (const d of [runs.fp32, runs.qat, runs.ptq]) fs.rmSync(d, { recursive: true, force: true });
});

interface ChartInBrowser {
  name: string;
  /** The SVG's size on screen. */
  width: number;
  height: number;
  /** Data marks (shapes in role-mark groups) with geometry: path data, or an on-screen extent. */
  drawn: number;
  /** Data marks in the markup, drawn or not. */
  marks: number;
}

test('the report opens from disk in Chromium with no console error, no request but itself, and every chart drawn with data marks', async (t) => {
  if (missing) return t.skip(missing);
  const page = await browser!.newPage({ viewport: { width: 1280, height: 900 } });
  const watch = await watchPage(page);
  const url = pathToFileURL(report).href;
  await page.goto(url, { waitUntil: 'load' });
  const charts: ChartInBrowser[] = await page.evaluate(() => {
    const doc = (globalThis as any).document;
    return Array.from(doc.querySelectorAll('figure.chart') as ArrayLike<any>).map((f: any) => {
      const svg = f.querySelector('svg');
      const box = svg.getBoundingClientRect();
      const shapes = Array.from(svg.querySelectorAll('g[class*="role-mark"] > path, g[class*="role-mark"] > rect, g[class*="role-mark"] > line') as ArrayLike<any>);
      const drawn = shapes.filter((s: any) => {
        if (s.tagName === 'path' && !/[0-9]/.test(s.getAttribute('d') ?? '')) return false;
        const r = s.getBoundingClientRect();
        return r.width > 0 || r.height > 0;
      }).length;
      return { name: f.dataset.chart, width: box.width, height: box.height, drawn, marks: shapes.length };
    });
  });
  const html = fs.readFileSync(report, 'utf8');
  const expected = chartsOf(html);
  assert.deepEqual(charts.map((c) => c.name), [...expected.keys()], 'the browser finds the charts the file holds, in order');
  assert.ok(charts.length >= 9, `${charts.length} charts`);
  for (const c of charts) {
    assert.ok(c.width > 100 && c.height > 50, `${c.name}: SVG laid out at ${c.width}x${c.height}`);
    assert.ok(c.drawn > 0, `${c.name}: no data mark with geometry (${c.marks} in the markup)`);
    // What Node counted in the file is what the browser parsed: the SVG survived HTML parsing whole.
    assert.equal(c.marks, dataMarks(expected.get(c.name)!), `${c.name}: data marks in the browser vs in the file`);
  }
  // Every table cell in the export table is there, and the section links resolve to sections.
  const anchors = await page.evaluate(() => Array.from((globalThis as any).document.querySelectorAll('nav a') as ArrayLike<any>).map((a: any) => Boolean((globalThis as any).document.querySelector(a.getAttribute('href')))));
  assert.ok(anchors.length > 0 && anchors.every(Boolean), 'every nav link names a section of the page');
  assert.deepEqual(watch.problems, []);
  assert.deepEqual(watch.offsite, [], 'the report asks for nothing off disk');
  assert.deepEqual(watch.requests, [url], 'the report loads nothing besides itself');
  const shot = path.join(runs.work, 'report.png');
  await page.screenshot({ path: shot, fullPage: true });
  assert.ok(fs.statSync(shot).size > 20_000, 'the screenshot has content');
  console.log(`report: ${charts.length} charts (${charts.map((c) => `${c.name} ${c.drawn}`).join(', ')}); screenshot ${shot}`);
  await page.close();
});
