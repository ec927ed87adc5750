import { DType } from '../ir/dtype.js';
import { Graph, Node } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';

/** The tensor a Constant node produces, from whichever of its value attributes is set (ONNX Constant-13..21). */
export function constantNodeValue(node: Node): Tensor {
  const names = Object.keys(node.attrs);
  if (names.length !== 1) {
    throw new Error(`Constant node '${node.name}' must have exactly one value attribute, got [${names.join(', ')}]`);
  }
  const a = node.attrs[names[0]];
  switch (names[0]) {
    case 'value':
      if (a.kind === 'tensor') return a.value;
      break;
    case 'value_float':
      if (a.kind === 'float' || a.kind === 'int') return Tensor.float([], [a.value]);
      break;
    case 'value_floats':
      if (a.kind === 'floats' || a.kind === 'ints') return Tensor.float([a.value.length], a.value);
      break;
    case 'value_int':
      if (a.kind === 'int') return Tensor.int64([], [a.value]);
      break;
    case 'value_ints':
      if (a.kind === 'ints') return new Tensor(DType.INT64, [a.value.length], BigInt64Array.from(a.value, BigInt));
      break;
    default:
      throw new Error(
        `Constant node '${node.name}': attribute '${names[0]}' is not supported ` +
          `(qatkit reads value, value_float, value_floats, value_int, value_ints)`,
      );
  }
  throw new Error(`Constant node '${node.name}': attribute '${names[0]}' has the wrong kind (${a.kind})`);
}

/** Replaces every Constant node by an initializer holding its value (same value name). */
export function constantsToInitializers(graph: Graph): void {
  const kept: Node[] = [];
  for (const node of graph.nodes) {
    if (node.opType !== 'Constant' || node.domain !== '') {
      kept.push(node);
      continue;
    }
    const name = node.outputs[0];
    if (!name) throw new Error(`Constant node '${node.name}' has no output`);
    if (graph.initializers.has(name)) throw new Error(`Constant node '${node.name}' output '${name}' is also an initializer`);
    const value = constantNodeValue(node);
    graph.initializers.set(name, value);
    graph.types.set(name, { dtype: value.dtype, shape: value.dims });
  }
  graph.nodes = kept;
}
