import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Graph, Node } from '../ir/graph.js';
import * as ort from '../runtime/ort.js';
import { decodeModel, encodeModel } from '../onnx/model-io.js';
import { Session } from '../runtime/session.js';
import { lowerCustomOps } from '../runtime/lower.js';
import { fileSessionOptions } from '../generate/generator.js';
import { constantCones, findLayers, LayerSite } from '../inspect/layers.js';

/**
 * ORT kernels that compute in integers: QLinearConv / QGemm / QLinearMatMul (int8 x int8 -> int32 with
 * requantization), MatMulInteger / ConvInteger, MatMulIntegerToFloat and DynamicQuantizeMatMul (dynamic int8
 * activations), MatMulNBits (2/4/8-bit blocks; int8 compute at accuracy_level 4), GatherBlockQuantized.
 */
export const INTEGER_KERNELS = new Set(['QLinearConv', 'QGemm', 'QLinearMatMul', 'MatMulInteger', 'ConvInteger', 'MatMulIntegerToFloat', 'DynamicQuantizeMatMul', 'MatMulNBits', 'GatherBlockQuantized']);

export interface LayerKernel {
  /** The node that runs the layer in ORT's optimized model: 'com.microsoft.QLinearConv', 'Conv', 'FusedConv'. */
  op: string;
  integer: boolean;
  /** MatMulNBits: accuracy_level (4: int8 compute; 0-3: float compute on dequantized blocks). */
  accuracyLevel?: number;
}

export interface OptimizedModelOptions {
  threads?: number;
  /**
   * Session config entries the file is run with (model.json's sessionConfig): they change what ORT fuses, e.g.
   * session.qdq_matmulnbits_accuracy_level decides the accuracy_level of the MatMulNBits an int4 QDQ file becomes.
   */
  sessionConfig?: Record<string, string>;
}

/** The model ONNX Runtime actually runs: the graph after its optimizations (optimizedModelFilePath), decoded. */
export async function optimizedModel(graph: Graph, options: OptimizedModelOptions = {}): Promise<Graph> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qatkit-optimized-'));
  try {
    const file = path.join(dir, 'optimized.onnx');
    if (options.sessionConfig && Object.keys(options.sessionConfig).length) {
      // As qat eval / generate open the file (generator.ts fileSessionOptions), so the kernels are the ones they run.
      const inner = await ort.InferenceSession.create(encodeModel(lowerCustomOps(graph)), { ...fileSessionOptions(options.threads ?? 1, options.sessionConfig), optimizedModelFilePath: file });
      await inner.release();
    } else {
      const session = await Session.create(graph, { optimizedModelFilePath: file, threads: options.threads ?? 1 });
      await session.release();
    }
    return decodeModel(fs.readFileSync(file), { source: 'ORT optimized model' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Every op of ORT's optimized model, 'domain.OpType' (e.g. 'com.microsoft.QLinearConv'). */
export async function optimizedOps(graph: Graph, options: OptimizedModelOptions = {}): Promise<string[]> {
  return (await optimizedModel(graph, options)).nodes.map(qualifiedOp);
}

/** Conv, Gemm / MatMul, Gather: which kind of product an op (float, fused, integer, contrib) computes. */
function familyOf(opType: string): string {
  if (/Conv/.test(opType)) return 'conv';
  if (/Gather/.test(opType)) return 'gather';
  if (/MatMul|Gemm/.test(opType)) return 'matmul';
  return opType;
}

const qualifiedOp = (n: { domain: string; opType: string }) => (n.domain ? `${n.domain}.${n.opType}` : n.opType);

/**
 * Which kernel runs each layer in ORT's optimized model. A layer is matched to the optimized node that reads
 * one of the initializers its weight comes from (ORT keeps initializer names when it fuses DequantizeLinear ->
 * Conv into QLinearConv), else to the node named as the layer's node or '<name>_token_<k>' (names ORT gives
 * fused nodes), else to the node writing the layer's output.
 */
export async function layerKernels(graph: Graph, options: OptimizedModelOptions & { layers?: LayerSite[]; optimized?: Graph } = {}): Promise<Map<string, LayerKernel>> {
  const optimized = options.optimized ?? (await optimizedModel(graph, options));
  const layers = options.layers ?? findLayers(graph);
  const cones = constantCones(optimized);
  const candidates = optimized.nodes.filter((n) => !['DequantizeLinear', 'QuantizeLinear', 'Transpose', 'Reshape', 'Cast'].includes(n.opType));
  const readers = new Map<string, (typeof candidates)[number]>();
  for (const n of candidates) for (const i of n.inputs) for (const init of (i && cones.get(i)) || []) if (!readers.has(init)) readers.set(init, n);
  const out = new Map<string, LayerKernel>();
  const used = new Set<Node>();
  const unmatched: LayerSite[] = [];
  const record = (layer: LayerSite, node: Node) => {
    used.add(node);
    const level = node.attrs.accuracy_level;
    out.set(layer.node.name, {
      op: qualifiedOp(node),
      integer: INTEGER_KERNELS.has(node.opType),
      ...(node.opType === 'MatMulNBits' ? { accuracyLevel: level?.kind === 'int' ? level.value : 0 } : {}),
    });
  };
  for (const layer of layers) {
    const byInit = layer.weightInitializers.map((w) => readers.get(w)).find((n) => n !== undefined);
    const byName = optimized.nodes.find((n) => n.name === layer.node.name || n.name.startsWith(`${layer.node.name}_token_`));
    const byOutput = optimized.nodes.find((n) => n.outputs.includes(layer.output));
    const node = byInit ?? byName ?? byOutput;
    if (node) record(layer, node);
    else unmatched.push(layer);
  }
  // Layouts that rewrite the weights under new names (NCHWc convs with reordered filters): the remaining layers
  // of one op family take the remaining optimized nodes of that family in graph order, when the counts agree.
  for (const family of new Set(unmatched.map((l) => familyOf(l.node.opType)))) {
    const mine = unmatched.filter((l) => familyOf(l.node.opType) === family);
    const theirs = optimized.nodes.filter((n) => !used.has(n) && familyOf(n.opType) === family);
    if (mine.length === theirs.length) mine.forEach((l, i) => record(l, theirs[i]));
  }
  return out;
}
