import fs from 'node:fs';
import * as ort from 'onnxruntime-node';
import { Dataset } from '../data/dataset';
import { scoreLogits } from '../train/evaluate';

export interface FileEvalResult {
  samples: number;
  test_accuracy: number;
  test_loss: number;
  predictions: Uint8Array;
}

/**
 * Evaluates an ONNX file as deployed (ONNX Runtime loads the file itself: fp32, QDQ, int4 or packed) on a
 * dataset: its first input takes [N, C, H, W] pixels in [0, 1], its first output is the logits.
 */
export async function evaluateOnnxFile(file: string, data: Dataset, options: { threads?: number; batchSize?: number; limit?: number } = {}): Promise<FileEvalResult> {
  if (!fs.existsSync(file)) throw new Error(`--model: no such file '${file}'`);
  const session = await ort.InferenceSession.create(file, { intraOpNumThreads: options.threads ?? 2, interOpNumThreads: 1, logSeverityLevel: 3 });
  const [input, output] = [session.inputNames[0], session.outputNames[0]];
  const count = Math.min(data.count, options.limit ?? data.count);
  const per = data.shape.reduce((a, b) => a * b, 1);
  const batch = options.batchSize ?? 1000;
  const acc = { correct: 0, loss: 0, predictions: new Uint8Array(count) };
  try {
    for (let start = 0; start < count; start += batch) {
      const n = Math.min(batch, count - start);
      const x = new ort.Tensor('float32', data.images.subarray(start * per, (start + n) * per), [n, ...data.shape]);
      const logits = (await session.run({ [input]: x }, [output]))[output];
      if (logits.dims.length !== 2 || logits.dims[0] !== n) throw new Error(`model '${file}': output '${output}' has shape [${logits.dims}], expected [${n}, classes] logits`);
      scoreLogits(logits.data as Float32Array, data.labels, start, n, acc);
    }
  } finally {
    await session.release();
  }
  return { samples: count, test_accuracy: acc.correct / count, test_loss: acc.loss / count, predictions: acc.predictions };
}
