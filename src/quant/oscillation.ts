import { GraphBuilder } from '../ir/builder.js';
import { DType } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { Model } from '../models/model.js';
import { StepPlugin } from '../train/step-graph.js';
import { quantRange } from './spec.js';

export interface OscillationOptions {
  /** Weight of the dampening loss (Nagel et al. 2022, eq. 7): lambda * sum((w - stopgrad(q(w)))^2); 0 = off. */
  dampen: number;
  /** Freeze weights whose oscillation frequency exceeds this (iterative freezing, Nagel et al. 2022 sec. 4.2); 0 = off. */
  freezeThreshold: number;
  /** EMA constant of the oscillation frequency. */
  momentum: number;
  /** A weight counts as oscillating in the reported fraction when its frequency exceeds this. */
  reportThreshold: number;
}

export const DEFAULT_OSCILLATION: OscillationOptions = { dampen: 0, freezeThreshold: 0, momentum: 0.01, reportThreshold: 0.005 };

/**
 * Oscillation tracking and control for low-bit weights (Nagel et al., "Overcoming Oscillations in
 * Quantization-Aware Training", ICML 2022), all inside the training step. Per quantized weight it keeps the
 * integer code of the previous step, the direction of its last change and an EMA of oscillations (a change
 * opposite to the previous change). Reports, per layer, the fraction of weights whose frequency exceeds the
 * report threshold and the fraction frozen. Dampening adds a loss pulling latent weights to their bin centres;
 * freezing keeps a weight's latent value fixed once its frequency passes the threshold (we freeze at the
 * current latent value rather than at the EMA of its codes: with folded BN the code-to-weight map moves).
 */
export function oscillationControl(options: OscillationOptions): StepPlugin {
  return {
    name: 'oscillation',
    build(b: GraphBuilder, _graph: Graph, model: Model) {
      const quant = model.quant;
      if (!quant) throw new Error('oscillation control needs a quantization-aware model (--quant)');
      const targets = quant.quantizers.filter(
        (z) => z.role === 'weight' && z.scale && z.spec.granularity.kind !== 'per-group' && (z.spec.method === 'minmax' || z.spec.method === 'lsq' || z.spec.method === 'lsq+'),
      );
      const state: { input: string; output: string; initial: Tensor }[] = [];
      const metrics: Record<string, string> = {};
      const dampTerms: string[] = [];
      const stop: string[] = [];
      const freezeMasks = new Map<string, string>();
      for (const z of targets) {
        const w = z.tensor;
        const dims = b.staticShape(w);
        const axis = z.spec.granularity.kind === 'per-channel' ? z.spec.granularity.axis : -1;
        const s = axis >= 0 ? b.reshape(z.scale!, dims.map((d, i) => (i === axis ? d : 1))) : z.scale!;
        const { qmin, qmax } = quantRange(z.spec);
        const q = b.op1('Clip', [b.op1('Round', [b.div(w, s)]), b.scalarLike(qmin, w), b.scalarLike(qmax, w)]);
        const layer = z.layers[0];
        const carried = (slot: string) => {
          const input = b.input(`oscillation/${layer}/${slot}`, DType.FLOAT, dims);
          return input;
        };
        const prevQ = carried('code');
        const prevDir = carried('direction');
        const freq = carried('frequency');
        const frozen = carried('frozen');
        // The first step has no previous code: prevDir = 0 everywhere, so no oscillation is counted.
        const delta = b.sub(q, prevQ);
        const dir = b.sign(delta);
        const changed = b.castLike(b.op1('Not', [b.equal(dir, b.scalarLike(0, dir))]), dir);
        const reversed = b.castLike(b.less(b.mul(dir, prevDir), b.scalarLike(0, dir)), dir);
        const oscillated = b.mul(changed, reversed);
        const m = b.scalarLike(options.momentum, freq);
        const freqNext = b.add(freq, b.mul(m, b.sub(oscillated, freq)));
        const dirNext = b.where(b.greater(changed, b.scalarLike(0.5, changed)), dir, prevDir);
        let frozenNext = frozen;
        if (options.freezeThreshold > 0) {
          frozenNext = b.op1('Max', [frozen, b.castLike(b.greater(freqNext, b.scalarLike(options.freezeThreshold, freqNext)), frozen)]);
        }
        const zeros = Tensor.float(dims, new Float32Array(dims.reduce((a, c) => a * c, 1)));
        const out = (v: string, slot: string) => b.op1('Identity', [v], {}, { outputs: [`oscillation/${layer}/${slot}/next`] });
        state.push({ input: prevQ, output: out(q, 'code'), initial: zeros });
        state.push({ input: prevDir, output: out(dirNext, 'direction'), initial: zeros });
        state.push({ input: freq, output: out(freqNext, 'frequency'), initial: zeros });
        state.push({ input: frozen, output: out(frozenNext, 'frozen'), initial: zeros });
        const fraction = (v: string) => b.op1('ReduceMean', [v], { keepdims: 0 });
        metrics[`oscillating/${layer}`] = fraction(b.castLike(b.greater(freqNext, b.scalarLike(options.reportThreshold, freqNext)), freqNext));
        metrics[`frozen/${layer}`] = fraction(frozenNext);
        if (options.dampen > 0) {
          const target = b.identity(b.mul(q, s));
          stop.push(target);
          const d = b.sub(w, target);
          dampTerms.push(b.sumAll(b.mul(d, d)));
        }
        const param = quant.folded.find((f) => f.scaledWeight === w)?.weight ?? w;
        if (options.freezeThreshold > 0) freezeMasks.set(param, frozenNext);
      }
      const loss = dampTerms.length ? b.mul(dampTerms.length === 1 ? dampTerms[0] : b.op1('Sum', dampTerms), b.constant(options.dampen)) : undefined;
      return {
        loss,
        stopGradient: stop,
        state,
        metrics,
        afterUpdate: (updated) => {
          for (const [param, mask] of freezeMasks) {
            updated.set(param, b.where(b.greater(mask, b.scalarLike(0.5, mask)), param, updated.get(param)!));
          }
        },
      };
    },
  };
}
