// fp32 vs PTQ vs QAT accuracy table for lenet on MNIST and Fashion-MNIST (issue 4's targets).
// Usage: node --import tsx bench/qat-table.ts [--data mnist,fashion-mnist] [--presets w8a8,w4a8,...]
//        [--qat-epochs N] [--qat-lr X] [--distill] [--out bench/out/qat-table] [--json FILE]
// Every figure comes from this run (fp32 runs are reused from --out when present). QAT fine-tunes from the
// fp32 run; PTQ reports the best of the four calibration methods on the same fake-quant graph.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_TRAIN_CONFIG, train, CHECKPOINT_FILE } from '../src/train/run';
import { quantizeRun } from '../src/train/ptq-run';
import { CALIB_KINDS } from '../src/quant/ptq';
import { DatasetName } from '../src/data';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: 'mnist,fashion-mnist' },
    presets: { type: 'string', default: 'w8a8,w4a8,w4a4,w2a8,ternary,binary' },
    'qat-epochs': { type: 'string', default: '1' },
    'qat-lr': { type: 'string', default: '2e-4' },
    distill: { type: 'boolean', default: false },
    out: { type: 'string', default: 'bench/out/qat-table' },
    json: { type: 'string' },
    threads: { type: 'string', default: '2' },
  },
});
const fp32Epochs: Record<string, number> = { mnist: 2, 'fashion-mnist': 5 };
const threads = Number(values.threads);
const rows: Record<string, unknown>[] = [];
const pct = (x: number) => (x * 100).toFixed(2);

for (const data of values.data!.split(',') as DatasetName[]) {
  const fp32Dir = path.join(values.out!, `${data}-fp32`);
  if (!fs.existsSync(path.join(fp32Dir, CHECKPOINT_FILE))) {
    console.error(`[${data}] training fp32 lenet for ${fp32Epochs[data]} epochs`);
    await train({ ...DEFAULT_TRAIN_CONFIG, model: 'lenet', data, epochs: fp32Epochs[data], threads }, fp32Dir);
  }
  const fp32 = JSON.parse(fs.readFileSync(path.join(fp32Dir, 'metrics.json'), 'utf8')).test_accuracy as number;
  for (const preset of values.presets!.split(',')) {
    let ptqBest = { acc: -1, calib: '' };
    for (const calib of CALIB_KINDS) {
      const r = await quantizeRun({ from: fp32Dir, quant: preset, calib, calibBatches: 8, threads }, path.join(values.out!, `${data}-ptq-${preset}-${calib}`));
      if (r.test_accuracy > ptqBest.acc) ptqBest = { acc: r.test_accuracy, calib };
    }
    console.error(`[${data}] ${preset}: PTQ ${pct(ptqBest.acc)} (${ptqBest.calib}); QAT fine-tuning ...`);
    const qat = await train(
      {
        ...DEFAULT_TRAIN_CONFIG,
        model: 'lenet',
        data,
        epochs: Number(values['qat-epochs']),
        lr: Number(values['qat-lr']),
        quant: preset,
        from: fp32Dir,
        threads,
        distill: values.distill ? { weight: 0.5, temperature: 2 } : undefined,
      },
      path.join(values.out!, `${data}-qat-${preset}`),
    );
    const row = { data, preset, fp32, ptq: ptqBest.acc, ptq_calib: ptqBest.calib, qat: qat.test_accuracy, qat_minus_fp32_pt: (qat.test_accuracy - fp32) * 100, qat_ms_per_step: qat.ms_per_step_median };
    rows.push(row);
    console.error(`[${data}] ${preset}: fp32 ${pct(fp32)}  PTQ ${pct(ptqBest.acc)}  QAT ${pct(qat.test_accuracy)}`);
  }
}
console.log('| data | quant | fp32 | PTQ (best calib) | QAT | QAT - fp32 (pt) |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.data} | ${r.preset} | ${pct(r.fp32 as number)} | ${pct(r.ptq as number)} (${r.ptq_calib}) | ${pct(r.qat as number)} | ${(r.qat_minus_fp32_pt as number).toFixed(2)} |`);
}
if (values.json) fs.writeFileSync(values.json, JSON.stringify(rows, null, 2) + '\n');
