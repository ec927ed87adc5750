import { GraphBuilder } from '../ir/builder.js';
import { attrFloat, attrInt, Graph, Node } from '../ir/graph.js';

export interface FoldedConv {
  conv: string;
  batchNorm: string;
  /** The weight value the conv now reads (W * gamma / sigma): weight quantizers attach here. */
  scaledWeight: string;
  weight: string;
  /** The Add of the conv's own bias after the unscale Div (absent without a bias): not a residual Add. */
  biasAdd?: string;
}

/**
 * BN folding for QAT (Jacob et al. 2018, section 3.2; Krishnamoorthi 2018, section 2.4; the form of PyTorch's
 * _ConvBnNd): each Conv whose only consumer is a BatchNormalization computes
 *   y = Conv(x, W * gamma / sqrt(running_var + eps)) / (gamma / sqrt(running_var + eps))  [+ conv bias]
 * and the BN stays after it. Weight quantizers attach to the scaled weight, which is exactly the folded weight
 * that the integer model uses. In training the BN normalises with batch statistics (so the scaling cancels);
 * once BN is frozen (inference form) the pair equals Conv(x, W_fold) + (beta - gamma * mean / sigma): what
 * the export computes. Folding edits `graph` in place.
 */
export function foldBatchNormForQat(graph: Graph): FoldedConv[] {
  const consumers = graph.consumers();
  const b = new GraphBuilder(graph, 'fold/');
  const folded: FoldedConv[] = [];
  const bnByInput = new Map<string, Node>();
  for (const n of graph.nodes) if (n.opType === 'BatchNormalization' && n.domain === '') bnByInput.set(n.inputs[0], n);
  const pending = graph.nodes;
  graph.nodes = [];
  for (const node of pending) {
    const bn = node.opType === 'Conv' ? bnByInput.get(node.outputs[0]) : undefined;
    const single = (consumers.get(node.outputs[0]) ?? []).length === 1;
    if (!bn || !single || !graph.initializers.has(node.inputs[1])) {
      graph.nodes.push(node);
      continue;
    }
    const [, gamma, , , runVar] = bn.inputs;
    const eps = attrFloat(bn, 'epsilon', 1e-5);
    const weight = node.inputs[1];
    const rank = b.rank(weight);
    // scale factor gamma / sqrt(var + eps): per output channel.
    const sigma = b.sqrt(b.add(runVar, b.scalarLike(eps, runVar)));
    const factor = b.div(gamma, sigma);
    const scaledWeight = b.op1('Mul', [weight, b.reshape(factor, [-1, ...Array(rank - 1).fill(1)])], {}, { outputs: [`${weight}/folded`] });
    const convOut = b.fresh(`${node.outputs[0]}_scaled`);
    const conv: Node = { ...node, inputs: [node.inputs[0], scaledWeight], outputs: [convOut] };
    b.addNode(conv);
    let y = b.div(convOut, b.reshape(factor, [1, -1, ...Array(rank - 2).fill(1)]));
    let biasAdd: string | undefined;
    if (node.inputs[2]) {
      y = b.add(y, b.reshape(node.inputs[2], [1, -1, ...Array(rank - 2).fill(1)]));
      biasAdd = graph.nodes.find((n) => n.outputs[0] === y)?.name;
    }
    b.op1('Identity', [y], {}, { outputs: [node.outputs[0]], name: `${node.name}/unscale` });
    folded.push({ conv: node.name, batchNorm: bn.name, scaledWeight, weight, ...(biasAdd ? { biasAdd } : {}) });
  }
  return folded;
}

/** What foldBatchNormForQat put between a folded conv and its BN. */
export interface FoldedChain {
  bn: Node;
  /** Div by the fold factor, the conv's own bias Add, Identity: the nodes between the conv and its BN. */
  between: Node[];
  factor: string;
  convBias?: string;
}

/**
 * A folded conv's Conv -> Div(c) [-> Add(b)] -> Identity -> inference BatchNormalization, each value read once and
 * none a graph output; undefined where the graph does not have that form (BN turned into batch-statistics form).
 */
export function foldedChain(graph: Graph, consumers: Map<string, Node[]>, conv: Node): FoldedChain | undefined {
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const between: Node[] = [];
  let factor: string | undefined;
  let convBias: string | undefined;
  for (let value = conv.outputs[0]; ; ) {
    const readers = consumers.get(value) ?? [];
    if (readers.length !== 1 || outputs.has(value)) return undefined;
    const n = readers[0];
    if (n.opType === 'BatchNormalization' && n.domain === '') {
      if (!factor || attrInt(n, 'training_mode', 0) !== 0 || n.outputs.slice(1).some((o) => o)) return undefined;
      return { bn: n, between, factor, convBias };
    }
    if (n.domain !== '') return undefined;
    if (n.opType === 'Div' && !factor && n.inputs[0] === value) factor = n.inputs[1];
    else if (n.opType === 'Add' && !convBias && n.inputs[0] === value) convBias = n.inputs[1];
    else if (n.opType !== 'Identity') return undefined;
    between.push(n);
    value = n.outputs[0];
  }
}
