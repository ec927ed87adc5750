import fs from 'node:fs';
import path from 'node:path';
import { CHECKPOINT_FILE } from '../train/run-lifecycle.js';
import { InputError } from '../validate/schema.js';
import { inspectOnnxFile } from './inspect-file.js';
import { inspectRun } from './inspect-model.js';
import { InspectReport } from './report.js';

export interface InspectPathOptions {
  /** ONNX files: ask ORT's optimized model which kernel runs each layer (default true). */
  kernels?: boolean;
  /** Runs: read the scale values (one ORT inference; default true). */
  scales?: boolean;
  threads?: number;
}

const WHAT = 'give an .onnx file or a run directory (made by qat train or qat quantize)';

/**
 * `qat inspect TARGET`: a run directory (its checkpoint.qat) or an .onnx file. Anything else is refused in one line
 * naming the path and what would be valid, before any file is parsed.
 */
export async function inspectPath(target: string, options: InspectPathOptions = {}): Promise<InspectReport> {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(target);
  } catch {
    throw new InputError(`qat inspect: '${target}': no such file or directory; ${WHAT}`);
  }
  if (stat.isDirectory()) {
    if (!fs.existsSync(path.join(target, CHECKPOINT_FILE))) {
      const model = path.join(target, 'model.onnx');
      const hint = fs.existsSync(model) ? `; to see its model file: qat inspect ${model}` : '';
      throw new InputError(`qat inspect: '${target}' is a directory without ${CHECKPOINT_FILE} (not a qatkit run)${hint}; ${WHAT}`);
    }
    return inspectRun(target, { scales: options.scales, threads: options.threads });
  }
  if (path.basename(target) === CHECKPOINT_FILE) throw new InputError(`qat inspect: '${target}' is a run's checkpoint: inspect its run directory, qat inspect ${path.dirname(target)}`);
  if (!stat.isFile() || !/\.onnx$/i.test(target)) throw new InputError(`qat inspect: '${target}' is not an .onnx file; ${WHAT}`);
  return inspectOnnxFile(target, { kernels: options.kernels, threads: options.threads });
}
