import { attrFloat } from '../ir/graph.js';
import { float64, KernelTable, required, values } from './kernel.js';

// BatchNormalization in inference form: y = (x - mean) / sqrt(var + epsilon) * scale + B, per channel (axis 1).

export const normKernels: KernelTable = {
  BatchNormalization: (node, inputs) => {
    const x = required(node, inputs, 0);
    const [v, scale, bias, mean, variance] = [0, 1, 2, 3, 4].map((i) => values(node, inputs, i));
    const eps = attrFloat(node, 'epsilon', 1e-5);
    const channels = x.dims[1] ?? 1;
    const inner = x.dims.slice(2).reduce((p, q) => p * q, 1);
    const out = new Float64Array(v.length);
    for (let i = 0; i < v.length; i++) {
      const c = Math.floor(i / inner) % channels;
      out[i] = ((v[i] - mean[c]) / Math.sqrt(variance[c] + eps)) * scale[c] + bias[c];
    }
    return [float64([...x.dims], out)];
  },
};
