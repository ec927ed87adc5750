import type { Node } from '../ir/graph.js';

/**
 * Ops that move or select values without changing them. A quantized tensor stays on its grid through them, so an
 * activation quantizer sits at the tensor they start from (prepare.ts), the layers after them read its codes, and
 * the exports re-quantize those layer inputs with the same scale (exact: the values are already on the grid).
 */
export const VALUE_PRESERVING_OPS: ReadonlySet<string> = new Set(['MaxPool', 'Flatten', 'Reshape', 'Identity', 'Transpose', 'Squeeze', 'Unsqueeze']);

/** The value `value` is computed from through value-preserving ops only (standard domain, following input 0). */
export function passThroughSource(producers: Map<string, Node>, value: string): string {
  let v = value;
  for (let p = producers.get(v); p && p.domain === '' && VALUE_PRESERVING_OPS.has(p.opType); p = producers.get(v)) v = p.inputs[0];
  return v;
}
