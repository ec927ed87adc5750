/** The end of a demo: report.html (src/report), then summary.json, both written atomically into the output directory. */
import path from 'node:path';
import { writeFileAtomic } from '../onnx/atomic-write.js';
import { writeReport } from '../report/write-report.js';
import { DemoPhaseClock } from './phases.js';
import { DemoSummary, resultsTableOf } from './summary.js';

export const SUMMARY_FILE = 'summary.json';
export const REPORT_FILE = 'report.html';

export async function finishDemo(summary: Omit<DemoSummary, 'phases' | 'wall_seconds' | 'machine' | 'report' | 'finished'>, out: string, runs: string[], exportReports: string[], clock: DemoPhaseClock, title: string, threads: number): Promise<DemoSummary> {
  const partial = { ...summary, phases: clock.phases, wall_seconds: 0, machine: clock.machine(threads), report: REPORT_FILE, finished: '' } as DemoSummary;
  await clock.phase(`[${clock.count + 1}/${clock.count + 1}] writing ${path.join(out, REPORT_FILE)}`, () =>
    writeReport({ runs, exports: exportReports, out: path.join(out, REPORT_FILE), title, results: resultsTableOf(partial), threads }),
  );
  const done: DemoSummary = { ...partial, phases: clock.phases, wall_seconds: clock.elapsedSeconds(), machine: clock.machine(threads), finished: new Date().toISOString() };
  writeFileAtomic(path.join(out, SUMMARY_FILE), JSON.stringify(done, null, 2) + '\n');
  return done;
}
