/** Runs one qatkit quantizer op on ORT with its gradient: y = op(x) and dx of loss = sum(y * w), w = 1 + i * wStep. */
import '../../src/ops';
import '../../src/quant';
import { differentiate } from '../../src/autodiff/grad';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { Session } from '../../src/runtime/session';
import { toOrtTensor } from '../../src/runtime/tensors';
import { QATKIT } from '../../src/quant';

export async function runQuantizerOp(opType: string, dims: number[], x: number[], attrs: Record<string, number>, wStep: number) {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const xi = b.input('x', DType.FLOAT, dims);
  const y = b.op1(opType, [xi], attrs, { domain: QATKIT });
  const w = x.map((_, i) => 1 + i * wStep);
  const loss = b.sumAll(b.mul(y, b.constant(Tensor.float(dims, w))));
  const grads = differentiate(g, { loss, wrt: [xi] });
  b.output(y);
  const dx = b.output(b.identity(grads.get(xi)!));
  const s = await Session.create(g, { threads: 1 });
  const r = await s.run({ x: toOrtTensor(Tensor.float(dims, x)) });
  await s.release();
  return { y: Array.from(r[y].data as Float32Array), dx: Array.from(r[dx].data as Float32Array), w };
}
