/**
 * QAT + LoRA on language models (Hu et al. 2021; the recipe of Meta's Llama 3.2 QAT + LoRA and torchao/torchtune's
 * QAT LoRA): every Linear keeps its weight frozen and fake-quantized as the preset says (scales frozen too), and
 * learns a float low-rank update on the unquantized input added to the quantized Linear's output:
 *
 *   y = Q(x) Q(W) + (alpha / r) (x A) B,   A [in, r] ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's kaiming_uniform(a=sqrt(5))),
 *                                          B [r, out] = 0, so training starts from the QAT model exactly.
 *
 * Only A and B are parameters, so the step graph differentiates nothing else: no weight gradient x^T dy of any
 * base Linear and no LSQ step-size gradient (which needs that same product) is computed, and the frozen weights'
 * fake quantization is a constant ONNX Runtime folds once. The token table / tied LM head takes no adapter.
 *
 * The adapters are not exported as a float side branch: mergeLoraAdapters folds them into the base weights
 * (W + (alpha / r) A B, transposed for Gemm transB) and the run's last phase trains the merged model with full QAT
 * at the trained step sizes, so the model `qat export` writes is the one the run measured last.
 */
import { GraphBuilder } from '../ir/builder.js';
import { attrInt } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { Model } from '../models/model.js';
import { Rng } from '../train/rng.js';

export interface LoraAdapter {
  /** The Linear (MatMul / Gemm node) and its base weight. */
  layer: string;
  weight: string;
  /** Adapter parameters: A [in, r], B [r, out]. */
  a: string;
  b: string;
  /** The base weight is [out, in] (Gemm transB = 1): the merged update is (A B)^T. */
  transposed: boolean;
  /** The Linear's own output and the sum with the adapter branch that its consumers read. */
  base: string;
  output: string;
  /** Nodes of the adapter branch (removed by the merge). */
  nodes: string[];
}

export interface LoraInfo {
  rank: number;
  alpha: number;
  adapters: LoraAdapter[];
  /** The parameters of the QAT model before adapters were added (they are parameters again after the merge). */
  frozen: string[];
}

/** alpha defaults to 2 x rank (torchtune's and Llama 3.2 QAT + LoRA's rank 16 / alpha 32), so the branch scales by 2. */
export function loraAlpha(rank: number, alpha?: number): number {
  return alpha ?? 2 * rank;
}

/** The QAT model with float adapters on every quantized Linear; only the adapters are parameters. */
export function addLoraAdapters(model: Model, options: { rank: number; alpha?: number; seed: number }): Model {
  const quant = model.quant;
  if (!quant) throw new Error(`model '${model.name}': QAT + LoRA needs a quantization-aware model (--quant)`);
  if (quant.lora) throw new Error(`model '${model.name}' already has LoRA adapters`);
  const { rank } = options;
  const alpha = loraAlpha(rank, options.alpha);
  const graph = model.graph.clone();
  const b = new GraphBuilder(graph, 'lora/');
  const byName = new Map(graph.nodes.map((n) => [n.name, n]));
  const activationInput = new Map(quant.quantizers.filter((z) => z.role === 'activation').map((z) => [z.output, z.tensor]));
  const adapters: LoraAdapter[] = [];
  const scale = b.constant(Tensor.float([], [alpha / rank]));
  for (const z of quant.quantizers) {
    if (z.role !== 'weight') continue;
    for (const layer of z.layers) {
      const node = byName.get(layer);
      // Linears reading the fake-quantized weight directly; the embedding Gather and the tied head's Transpose take none.
      if (!node || (node.opType !== 'MatMul' && node.opType !== 'Gemm') || node.inputs[1] !== z.output) continue;
      const dims = graph.typeOf(z.tensor).shape as number[];
      if (dims.length !== 2) continue;
      const transposed = node.opType === 'Gemm' && attrInt(node, 'transB', 0) === 1;
      if (node.opType === 'Gemm' && attrInt(node, 'transA', 0) === 1) continue;
      const [fanIn, fanOut] = transposed ? [dims[1], dims[0]] : dims;
      if (rank > Math.min(fanIn, fanOut)) throw new Error(`--lora-rank ${rank} is larger than layer '${layer}' allows (${fanIn} in, ${fanOut} out)`);
      const rng = Rng.derive(options.seed, 0x10ba, adapters.length);
      const bound = 1 / Math.sqrt(fanIn);
      const a = b.initializer(`${z.tensor}/lora_a`, Tensor.float([fanIn, rank], Array.from({ length: fanIn * rank }, () => rng.range(-bound, bound))));
      const bw = b.initializer(`${z.tensor}/lora_b`, Tensor.float([rank, fanOut], new Array(rank * fanOut).fill(0)));
      const before = graph.nodes.length;
      // The adapter reads the Linear's float input (before its activation quantizer), as torchao's QAT LoRA does.
      const x = activationInput.get(node.inputs[0]) ?? node.inputs[0];
      const base = node.outputs[0];
      const delta = b.mul(b.matmul(b.matmul(x, a), bw), scale);
      const output = b.add(base, delta);
      const added = graph.nodes.slice(before);
      const own = new Set(added);
      for (const n of graph.nodes) if (!own.has(n)) n.inputs = n.inputs.map((i) => (i === base ? output : i));
      graph.outputs.forEach((o) => {
        if (o.name === base) o.name = output;
      });
      adapters.push({ layer, weight: z.tensor, a, b: bw, transposed, base, output, nodes: added.map((n) => n.name) });
    }
  }
  if (!adapters.length) throw new Error(`model '${model.name}': no quantized Linear (MatMul/Gemm with a fake-quantized weight) to put LoRA adapters on`);
  const output = graph.outputs.find((o) => o.name === model.output)?.name ?? model.output;
  const params = adapters.flatMap((x) => [x.a, x.b]);
  return { ...model, graph, output, params, quant: { ...quant, lora: { rank, alpha, adapters, frozen: [...model.params] } } };
}

/** The QAT model with each adapter folded into its base weight, W + (alpha / r) A B, every parameter trainable again. */
export function mergeLoraAdapters(model: Model): Model {
  const lora = model.quant?.lora;
  if (!lora) throw new Error(`model '${model.name}' has no LoRA adapters to merge`);
  const graph = model.graph.clone();
  const s = lora.alpha / lora.rank;
  for (const ad of lora.adapters) {
    const w = graph.initializers.get(ad.weight)!;
    const a = graph.initializers.get(ad.a)!.data as Float32Array;
    const bw = graph.initializers.get(ad.b)!.data as Float32Array;
    const [fanIn, r] = graph.initializers.get(ad.a)!.dims;
    const fanOut = graph.initializers.get(ad.b)!.dims[1];
    const merged = Float32Array.from(w.data as Float32Array);
    for (let i = 0; i < fanIn; i++) {
      for (let o = 0; o < fanOut; o++) {
        let d = 0;
        for (let k = 0; k < r; k++) d += a[i * r + k] * bw[k * fanOut + o];
        merged[ad.transposed ? o * fanIn + i : i * fanOut + o] += s * d;
      }
    }
    graph.initializers.set(ad.weight, new Tensor(w.dtype, [...w.dims], merged));
    const drop = new Set(ad.nodes);
    graph.nodes = graph.nodes.filter((n) => !drop.has(n.name));
    for (const n of graph.nodes) n.inputs = n.inputs.map((i) => (i === ad.output ? ad.base : i));
    graph.outputs.forEach((o) => {
      if (o.name === ad.output) o.name = ad.base;
    });
    graph.initializers.delete(ad.a);
    graph.initializers.delete(ad.b);
  }
  // Constants only the adapter branches read (the alpha / r scale).
  const read = new Set(graph.nodes.flatMap((n) => n.inputs));
  for (const name of [...graph.initializers.keys()]) if (name.startsWith('lora/') && !read.has(name)) graph.initializers.delete(name);
  const output = lora.adapters.find((ad) => ad.output === model.output)?.base ?? model.output;
  const { lora: _l, ...quant } = model.quant!;
  return { ...model, graph, output, params: [...lora.frozen], quant };
}
