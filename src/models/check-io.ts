import { DType, dtypeName } from '../ir/dtype.js';
import { Graph, Shape } from '../ir/graph.js';
import { InputError } from '../validate/schema.js';

const shown = (s: Shape) => `[${s.join(', ')}]`;

/**
 * A classifier fits a dataset: its input takes float32 [N, C, H, W] images of the dataset's sample shape (any
 * dimension may be symbolic) and its output is [N, classes] logits with the dataset's class count. Checked before
 * any session is created, so a mismatch is one line naming the model, not an ONNX Runtime error at the first step
 * (or a softmax that reads past each logits row).
 */
export function checkClassifierFitsData(graph: Graph, input: string, output: string, sampleShape: readonly number[], classes: number, source: string, data: string): void {
  const x = graph.typeOf(input);
  const want = ['N', ...sampleShape];
  if (x.dtype !== DType.FLOAT) throw new InputError(`${source}: input '${input}' is ${dtypeName[x.dtype] ?? x.dtype}; ${data} gives float32 images ${shown(want)}`);
  if (x.shape.length !== want.length || x.shape.slice(1).some((d, i) => typeof d === 'number' && d !== sampleShape[i])) {
    throw new InputError(`${source}: input '${input}' has shape ${shown(x.shape)}; ${data} gives images ${shown(want)} (rank ${want.length})`);
  }
  let y;
  try {
    y = graph.typeOf(output);
  } catch {
    return; // the output's type is not known before the session runs (checked on the logits then)
  }
  if (y.shape.length !== 2 || (typeof y.shape[1] === 'number' && y.shape[1] !== classes)) {
    throw new InputError(`${source}: output '${output}' has shape ${shown(y.shape)}; ${data} has ${classes} classes, so the logits must be [N, ${classes}]`);
  }
}
