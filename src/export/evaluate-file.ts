import fs from 'node:fs';
import * as ort from '../runtime/ort.js';
import { Dataset } from '../data/dataset.js';
import { scoreLogits } from '../train/evaluate.js';
import { DType, dtypeName } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { loadModel } from '../onnx/model-io.js';
import { InputError } from '../validate/schema.js';

/**
 * What `qat eval` needs of a classifier file beyond loading: its first input takes float32 images of the dataset's
 * sample shape, and its first output, where the file declares it, is [N, classes] for the dataset's classes.
 */
export function checkEvaluatedModel(graph: Graph, data: Dataset, file: string): void {
  if (graph.inputs.length !== 1) throw new InputError(`model '${file}': a classifier takes one input (the images), this graph has ${graph.inputs.length}: ${graph.inputs.map((v) => v.name).join(', ')}`);
  if (graph.outputs.length === 0) throw new InputError(`model '${file}': the graph has no output (the logits)`);
  const x = graph.inputs[0];
  const want = ['N', ...data.shape];
  if (x.dtype !== DType.FLOAT) throw new InputError(`model '${file}': input '${x.name}' is ${dtypeName[x.dtype] ?? x.dtype}; ${data.name} gives float32 images [${want}]`);
  if (x.shape.length !== want.length || x.shape.slice(1).some((d, i) => typeof d === 'number' && d !== data.shape[i]) || (typeof x.shape[0] === 'number' && x.shape[0] < 1)) {
    throw new InputError(`model '${file}': input '${x.name}' has shape [${x.shape}]; ${data.name} gives images [${want}]`);
  }
  const y = graph.outputs[0];
  const last = y?.shape.at(-1);
  if (y && y.shape.length > 0 && (y.shape.length !== 2 || (typeof last === 'number' && last !== data.classes))) {
    throw new InputError(`model '${file}': output '${y.name}' is declared [${y.shape}]; ${data.name} has ${data.classes} classes, so the logits must be [N, ${data.classes}]`);
  }
}

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
  if (!fs.existsSync(file)) throw new InputError(`--model: no such file '${file}'`);
  // qatkit's own checks first (structure, sizes, NaN weights, BN variances, external data paths), so ONNX Runtime
  // only ever sees a well-formed model and a refusal names the file and the tensor.
  const graph = loadModel(file);
  checkEvaluatedModel(graph, data, file);
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(file, { intraOpNumThreads: options.threads ?? 2, interOpNumThreads: 1, logSeverityLevel: 3 });
  } catch (e) {
    throw new InputError(`model '${file}': ONNX Runtime cannot load it: ${(e as Error).message.split('\n')[0]}`);
  }
  const [input, output] = [session.inputNames[0], session.outputNames[0]];
  // A file exported with a fixed batch (PyTorch's dummy input of 1) is fed batches of that size.
  const fixedBatch = typeof graph.inputs[0].shape[0] === 'number' ? (graph.inputs[0].shape[0] as number) : undefined;
  const batch = fixedBatch ?? options.batchSize ?? 1000;
  let count = Math.min(data.count, options.limit ?? data.count);
  if (fixedBatch) count -= count % fixedBatch;
  if (count === 0) throw new InputError(`model '${file}': its input has a fixed batch of ${fixedBatch}, more than the ${Math.min(data.count, options.limit ?? data.count)} samples to evaluate`);
  const per = data.shape.reduce((a, b) => a * b, 1);
  const acc = { correct: 0, loss: 0, predictions: new Uint8Array(count) };
  try {
    for (let start = 0; start < count; start += batch) {
      const n = Math.min(batch, count - start);
      const x = new ort.Tensor('float32', data.images.subarray(start * per, (start + n) * per), [n, ...data.shape]);
      const logits = (await session.run({ [input]: x }, [output]))[output];
      if (logits.dims.length !== 2 || logits.dims[0] !== n || logits.dims[1] !== data.classes) {
        throw new InputError(`model '${file}': output '${output}' has shape [${logits.dims}]; ${data.name} has ${data.classes} classes, so the logits must be [${n}, ${data.classes}]`);
      }
      if (logits.type !== 'float32') throw new InputError(`model '${file}': output '${output}' is ${logits.type}; logits must be float32`);
      scoreLogits(logits.data as Float32Array, data.labels, start, n, acc);
    }
  } finally {
    await session.release();
  }
  return { samples: count, test_accuracy: acc.correct / count, test_loss: acc.loss / count, predictions: acc.predictions };
}
