/**
 * A language-model demo directory in small (what `qat demo --lm --out DIR` leaves, in kind): a 1-block gpt of width
 * 32 and context 16 trained briefly on Moby Dick (bytes), QAT w4a8-g32 fine-tuned from it, and the QAT run
 * exported as int4 and MatMulNBits KV-cache decoders, each in its own folder with model.json and export.json beside it. The tests need
 * a real file of the kind, not a good model.
 */
import fs from 'node:fs';
import path from 'node:path';
import { runQatOk } from '../helpers/run-qat';

export interface LanguageModelFixture {
  dir: string;
  fp32Run: string;
  qatRun: string;
  /** The int4 decoder (model.onnx: INT4 DequantizeLinear -> MatMul) with model.json beside it. */
  int4: string;
  /** The same run as com.microsoft MatMulNBits (what qat demo --lm exports for b158). */
  matmulnbits: string;
}

const cli = runQatOk;

export async function buildLanguageModelFixture(dir: string): Promise<LanguageModelFixture> {
  fs.mkdirSync(dir, { recursive: true });
  const fp32Run = path.join(dir, 'gpt-fp32-run');
  const qatRun = path.join(dir, 'gpt-qat-w4a8-g32');
  const int4 = path.join(dir, 'gpt-w4a8-g32-int4', 'model.onnx');
  // 300 steps take it past the unigram stage (val perplexity about 14): greedy text is words, not only spaces.
  await cli(['train', '--model', 'gpt', '--data', 'moby-dick', '--layers', '1', '--heads', '2', '--dim', '32', '--context', '16', '--steps', '300', '--batch', '16', '--lr', '5e-3', '--threads', '1', '--out', fp32Run]);
  await cli(['train', '--from', fp32Run, '--quant', 'w4a8-g32', '--steps', '4', '--batch', '4', '--threads', '1', '--out', qatRun]);
  const matmulnbits = path.join(dir, 'gpt-w4a8-g32-matmulnbits', 'model.onnx');
  for (const [format, file] of [['int4', int4], ['matmulnbits', matmulnbits]]) {
    await cli(['export', '--from', qatRun, '--format', format, '--out', file, '--json', path.join(path.dirname(file), 'export.json'), '--parity-windows', '4', '--parity-prompts', '2', '--parity-tokens', '4', '--threads', '1']);
  }
  return { dir, fp32Run, qatRun, int4, matmulnbits };
}
