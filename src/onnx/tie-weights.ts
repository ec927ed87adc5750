import { Graph, Node } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { isReadableName, proposedName } from './parameter-names.js';

// Tied and untied weights in torch exports.
//
// A tied LM head (lm_head.weight = wte.weight) is one parameter read twice, Gather(W) and MatMul(x, W^T).
// torch.onnx.export's default constant folding writes W^T as a second initializer ('onnx::MatMul_289', [C, V]),
// which would train as a separate parameter: the importer re-ties initializers whose values are exactly equal,
// or equal transposed, by reading the original (through a Transpose) and says so in graph.metadata[TIED_KEY].
//
// torch also deduplicates initializers (torch/csrc/jit/passes/onnx/deduplicate_initializers.cpp): by storage
// (truly shared parameters) and, in inference exports, by value. Either way the duplicate becomes
// Identity(original) named after the duplicate. Value deduplication also merges parameters that are merely
// initialised alike: every LayerNorm's ones and zeros, and the layers of nn.TransformerEncoder, which are deep
// copies of one layer. Those train separately in PyTorch, so an Identity copy is given its own initializer when
// its values are all equal (a constant initialisation), or when its name and the original's differ only in layer
// indices ('encoder.layers.1.linear2.weight' vs 'encoder.layers.0.linear2.weight'); any other copy stays tied.
// The same sibling rule keeps equal initializers of sibling layers apart when re-tying.

export const TIED_KEY = 'qatkit.tied';
export const IMPORT_NOTES_KEY = 'qatkit.import_notes';

export interface TieRecord {
  /** The initializer removed (now computed from `of`). */
  copy: string;
  /** The parameter it reads. */
  of: string;
  transposed: boolean;
}

function isUniform(t: Tensor): boolean {
  const d = t.data as ArrayLike<number | bigint>;
  for (let i = 1; i < d.length; i++) if (d[i] !== d[0]) return false;
  return true;
}

/** Layer indices replaced: 'h.1.attn.c_attn.weight' -> 'h.#.attn.c_attn.weight'. */
const siblingPattern = (name: string) => name.replace(/(^|\.)\d+(?=\.|$)/g, '$1#');

function displayName(name: string, consumers: Map<string, Node[]>, skip?: Node): string {
  return isReadableName(name) ? name : (proposedName(name, consumers, skip) ?? name);
}

/**
 * Whether two parameters are the same parameter of sibling layers (a ModuleList / TransformerEncoder copy).
 * `copyNode`, the Identity that makes b from a, does not name a.
 */
function siblings(a: string, b: string, consumers: Map<string, Node[]>, copyNode?: Node): boolean {
  const [na, nb] = [displayName(a, consumers, copyNode), displayName(b, consumers)];
  return na !== nb && siblingPattern(na) === siblingPattern(nb);
}

export function addNote(graph: Graph, key: string, entry: unknown): void {
  const list = graph.metadata[key] ? (JSON.parse(graph.metadata[key]) as unknown[]) : [];
  list.push(entry);
  graph.metadata[key] = JSON.stringify(list);
}

/** Resolves torch's Identity(initializer) duplicates as described in the file comment. */
export function resolveInitializerCopies(graph: Graph, notes: string[]): void {
  const consumers = graph.consumers();
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const kept: Node[] = [];
  for (const node of graph.nodes) {
    const source = node.inputs[0];
    const copy = node.outputs[0];
    const t = node.opType === 'Identity' && node.domain === '' ? graph.initializers.get(source) : undefined;
    if (!t || !copy || outputs.has(copy) || graph.initializers.has(copy)) {
      kept.push(node);
      continue;
    }
    if (t.size > 1 && !isUniform(t) && !siblings(source, copy, consumers, node)) {
      // Shared storage: one parameter, read under both names.
      for (const n of graph.nodes) n.inputs = n.inputs.map((i) => (i === copy ? source : i));
      notes.push(`'${copy}' is a copy of '${source}' (torch shared them): one parameter`);
      addNote(graph, TIED_KEY, { copy, of: source, transposed: false } satisfies TieRecord);
      continue;
    }
    graph.initializers.set(copy, new Tensor(t.dtype, [...t.dims], t.data.slice()));
    graph.types.set(copy, { dtype: t.dtype, shape: [...t.dims] });
  }
  graph.nodes = kept;
}

function equalData(a: Tensor, b: Tensor): boolean {
  const x = a.data as ArrayLike<number>;
  const y = b.data as ArrayLike<number>;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

function equalTransposed(a: Tensor, b: Tensor): boolean {
  if (a.dims.length !== 2 || b.dims.length !== 2 || a.dims[0] !== b.dims[1] || a.dims[1] !== b.dims[0]) return false;
  const [r, c] = a.dims;
  const x = a.data as ArrayLike<number>;
  const y = b.data as ArrayLike<number>;
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) if (x[i * c + j] !== y[j * r + i]) return false;
  return true;
}

/**
 * Re-ties `candidates` (float parameters) whose values are exactly equal, or equal transposed: the copy (the
 * unreadable name, else the later one) is removed and read from the original, through Transpose(perm 1,0) where
 * transposed. Uniform tensors and sibling-layer parameters are left apart (file comment). Returns what it tied.
 */
export function retieEqualInitializers(graph: Graph, candidates: Iterable<string>, notes: string[]): TieRecord[] {
  const consumers = graph.consumers();
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const buckets = new Map<string, string[]>();
  for (const name of candidates) {
    const t = graph.initializers.get(name);
    if (!t || t.size <= 1 || outputs.has(name) || isUniform(t)) continue;
    let min = Infinity;
    let max = -Infinity;
    const data = t.data as ArrayLike<number>;
    for (let i = 0; i < data.length; i++) {
      if (data[i] < min) min = data[i];
      if (data[i] > max) max = data[i];
    }
    const key = `${t.dtype}|${t.size}|${min}|${max}`;
    buckets.set(key, [...(buckets.get(key) ?? []), name]);
  }
  const tied: TieRecord[] = [];
  const removed = new Set<string>();
  const prelude: Node[] = [];
  for (const names of buckets.values()) {
    for (let i = 0; i < names.length; i++) {
      for (let j = i + 1; j < names.length; j++) {
        const [p, q] = [names[i], names[j]];
        if (removed.has(p) || removed.has(q) || siblings(p, q, consumers)) continue;
        const [tp, tq] = [graph.initializers.get(p)!, graph.initializers.get(q)!];
        const same = tp.dims.length === tq.dims.length && tp.dims.every((d, k) => d === tq.dims[k]) && equalData(tp, tq);
        const transposed = !same && equalTransposed(tp, tq);
        if (!same && !transposed) continue;
        // The original keeps its (readable) name; an exporter-made name marks the copy.
        const [of, copy] = !isReadableName(p) && isReadableName(q) ? [q, p] : [p, q];
        graph.initializers.delete(copy);
        removed.add(copy);
        if (transposed) {
          prelude.push({ opType: 'Transpose', domain: '', name: `${copy}/retied`, inputs: [of], outputs: [copy], attrs: { perm: { kind: 'ints', value: [1, 0] } } });
        } else {
          graph.types.delete(copy);
          renameValueInputs(graph, copy, of);
        }
        const record = { copy, of, transposed };
        tied.push(record);
        addNote(graph, TIED_KEY, record);
        notes.push(`'${copy}' equals ${transposed ? `Transpose('${of}')` : `'${of}'`} exactly: re-tied as one parameter`);
      }
    }
  }
  graph.nodes = [...prelude, ...graph.nodes];
  return tied;
}

function renameValueInputs(graph: Graph, from: string, to: string): void {
  for (const n of graph.nodes) n.inputs = n.inputs.map((i) => (i === from ? to : i));
}
