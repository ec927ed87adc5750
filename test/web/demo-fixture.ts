/**
 * A demo-like output directory (what `qat demo --out DIR` leaves, in small): an fp32 LeNet run, w4a4 and ternary QAT
 * runs fine-tuned from it, and their exports (int8 QDQ, int4, packed ternary) with the export JSON beside each file.
 * Schedules are a few steps: the tests need real files of each kind, not accurate models.
 */
import fs from 'node:fs';
import path from 'node:path';
import { exportRun } from '../../src/export/export-run';
import { ExportFormat } from '../../src/export/qdq';
import { Model } from '../../src/models/model';
import { DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run';

export interface DemoFixtureOptions {
  /** The classifier (default the demo's LeNet; test/helpers/tiny-model.ts for tests that only need the files). */
  model?: string | Model;
  fp32Steps?: number;
  qatSteps?: number;
  /** Which exports to write (default all three). */
  exports?: ('qdq' | 'int4' | 'packed')[];
}

export async function buildDemoFixture(dir: string, options: DemoFixtureOptions = {}): Promise<string> {
  const base = { ...DEFAULT_TRAIN_CONFIG, model: options.model ?? 'lenet', batch: 32, threads: 1, checkpointEvery: 0 };
  const fp32 = path.join(dir, 'fp32');
  await train({ ...base, steps: options.fp32Steps ?? 60 }, fp32);
  const prefix = typeof base.model === 'string' ? base.model : base.model.name;
  const exports = options.exports ?? ['qdq', 'int4', 'packed'];
  const runs: Record<string, string> = {};
  for (const quant of new Set(exports.map((f) => (f === 'packed' ? 'ternary' : 'w4a4')))) {
    runs[quant] = path.join(dir, `qat-${quant}`);
    await train({ ...base, steps: options.qatSteps ?? 4, lr: 2e-4, quant, from: fp32, calibBatches: 2 }, runs[quant]);
  }
  for (const format of exports) {
    const quant = format === 'packed' ? 'ternary' : 'w4a4';
    const name = `${prefix}-${quant}-${format}`;
    await exportRun({ from: runs[quant], out: path.join(dir, `${name}.onnx`), json: path.join(dir, `${name}.json`), format: format as ExportFormat, threads: 1, limit: 64, noVerify: true });
  }
  fs.writeFileSync(path.join(dir, 'README.txt'), 'demo fixture\n');
  return dir;
}
