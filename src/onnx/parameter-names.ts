import { Graph, Node } from '../ir/graph.js';

// Readable parameter names from PyTorch's node scopes. torch.onnx.export names a Linear weight it transposed
// (or a Conv weight it folded BN into) after the op that reads it, 'onnx::MatMul_74', but names the node by
// module path, '/blocks.0/attn/qkv/MatMul'; the parameter is then called 'blocks.0.attn.qkv.weight', as in the
// model's state_dict. The map from new to original names is kept in graph.metadata[PARAMETER_NAMES_KEY].

export const PARAMETER_NAMES_KEY = 'qatkit.parameter_names';

/** Names exporters generate rather than take from the model: 'onnx::MatMul_74', '123', '/attn/Constant_output_0'. */
export function isReadableName(name: string): boolean {
  return name !== '' && !name.startsWith('onnx::') && !/^\d+$/.test(name) && !name.startsWith('/');
}

/**
 * The module path of a torch node name: '/blocks.0/attn/qkv/MatMul' -> 'blocks.0.attn.qkv'; '' without one. A child
 * of a container (nn.Sequential, nn.ModuleList) is scoped by its full path ('/layer1/layer1.0/conv1/Conv' in
 * torchvision's ResNet), which replaces its parent's instead of extending it: 'layer1.0.conv1', as in state_dict.
 */
export function scopeOf(nodeName: string): string {
  if (!nodeName.startsWith('/')) return '';
  let path = '';
  for (const part of nodeName.split('/').filter(Boolean).slice(0, -1)) path = path && !part.startsWith(`${path}.`) ? `${path}.${part}` : part;
  return path;
}

/** What an input of an op is called in torch's modules. */
function roleOf(opType: string, index: number): string | undefined {
  switch (opType) {
    case 'MatMul':
    case 'Gather':
    case 'PRelu':
      return 'weight';
    case 'Gemm':
      return index === 2 ? 'bias' : 'weight';
    case 'Conv':
    case 'ConvTranspose':
    case 'LayerNormalization':
    case 'InstanceNormalization':
    case 'GroupNormalization':
      return index === 1 ? 'weight' : index === 2 ? 'bias' : undefined;
    case 'BatchNormalization':
      return ['', 'weight', 'bias', 'running_mean', 'running_var'][index] || undefined;
    case 'Add':
    case 'Sub':
      return 'bias';
    case 'Mul':
    case 'Div':
      return 'weight';
    default:
      return undefined;
  }
}

/** Ops a weight may pass through on its way to the layer that names it (a re-tied head's Transpose). */
const PASS_THROUGH = new Set(['Transpose', 'Identity', 'Cast', 'Reshape', 'Unsqueeze', 'Squeeze']);

/** 'scope.role' for a value from the first scoped layer that reads it (other than `skip`), or undefined. */
export function proposedName(value: string, consumers: Map<string, Node[]>, skip?: Node, seen = new Set<string>()): string | undefined {
  if (seen.has(value)) return undefined;
  seen.add(value);
  for (const node of consumers.get(value) ?? []) {
    if (node === skip) continue;
    const scope = scopeOf(node.name);
    const index = node.inputs.indexOf(value);
    const role = roleOf(node.opType, index);
    if (scope && role) return `${scope}.${role}`;
    if (PASS_THROUGH.has(node.opType) && index === 0) {
      const through = proposedName(node.outputs[0], consumers, skip, seen);
      if (through) return through;
    }
  }
  return undefined;
}

/** Renames a value everywhere in the graph (initializer, type, node inputs and outputs, graph inputs and outputs). */
export function renameValue(graph: Graph, from: string, to: string): void {
  const t = graph.initializers.get(from);
  if (t) {
    graph.initializers.delete(from);
    graph.initializers.set(to, t);
  }
  const type = graph.types.get(from);
  if (type) {
    graph.types.delete(from);
    graph.types.set(to, type);
  }
  const sv = graph.shapeValues.get(from);
  if (sv) {
    graph.shapeValues.delete(from);
    graph.shapeValues.set(to, sv);
  }
  for (const n of graph.nodes) {
    n.inputs = n.inputs.map((i) => (i === from ? to : i));
    n.outputs = n.outputs.map((o) => (o === from ? to : o));
  }
  for (const v of [...graph.inputs, ...graph.outputs]) if (v.name === from) v.name = to;
}

/**
 * Gives each of `names` whose name is not readable the name of its torch module ('h.0.attn.c_attn.weight'),
 * unique in the graph ('_1', '_2' appended where taken). Returns { new name: original name } and records it in
 * graph.metadata[PARAMETER_NAMES_KEY] (merged with earlier renames).
 */
export function readableParameterNames(graph: Graph, names: Iterable<string>): Record<string, string> {
  const consumers = graph.consumers();
  const renamed: Record<string, string> = {};
  const taken = (n: string) => graph.hasValue(n) || graph.nodes.some((node) => node.outputs.includes(n)) || graph.inputs.some((v) => v.name === n);
  for (const name of names) {
    if (isReadableName(name)) continue;
    const base = proposedName(name, consumers);
    if (!base) continue;
    let candidate = base;
    for (let k = 1; taken(candidate); k++) candidate = `${base}_${k}`;
    renameValue(graph, name, candidate);
    renamed[candidate] = name;
  }
  if (Object.keys(renamed).length > 0) {
    const earlier = graph.metadata[PARAMETER_NAMES_KEY] ? (JSON.parse(graph.metadata[PARAMETER_NAMES_KEY]) as Record<string, string>) : {};
    graph.metadata[PARAMETER_NAMES_KEY] = JSON.stringify({ ...earlier, ...renamed });
  }
  return renamed;
}

/** The original (exported) name of a parameter, where the importer renamed it. */
export function originalParameterName(graph: Graph, name: string): string {
  const map = graph.metadata[PARAMETER_NAMES_KEY];
  return (map && (JSON.parse(map) as Record<string, string>)[name]) || name;
}
