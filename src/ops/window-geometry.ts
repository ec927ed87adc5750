import type { Dim, Node } from '../ir/graph.js';
import { attrInt, attrInts, attrString } from '../ir/graph.js';

/**
 * Where a sliding window reads (Conv, ConvTranspose, MaxPool, AveragePool), with auto_pad resolved to
 * explicit pads. Pure arithmetic shared by shape inference, gradient rules and the reference evaluator.
 */
export interface Window {
  kernel: number[];
  strides: number[];
  dilations: number[];
  padsBegin: number[];
  /** End pads, including any extension ceil_mode=1 adds (see resolveWindow). */
  padsEnd: number[];
  /** Per axis, how much of padsEnd ceil_mode=1 added beyond the node's pads (0 without ceil_mode). */
  ceilExtension?: number[];
}

const AUTO_PADS = ['NOTSET', 'VALID', 'SAME_UPPER', 'SAME_LOWER'];

function autoPad(node: Node): string {
  const a = attrString(node, 'auto_pad', 'NOTSET');
  if (!AUTO_PADS.includes(a)) throw new Error(`node '${node.name}' (${node.opType}): auto_pad '${a}' is not one of ${AUTO_PADS.join(', ')}`);
  return a;
}

function perAxis(node: Node, name: string, rank: number, fallback: number): number[] {
  const v = attrInts(node, name, undefined) ?? Array(rank).fill(fallback);
  if (v.length !== rank) throw new Error(`node '${node.name}' (${node.opType}): ${name} [${v}] must have ${rank} values, one per spatial axis`);
  return v;
}

function explicitPads(node: Node, rank: number): { begin: number[]; end: number[] } {
  const pads = attrInts(node, 'pads', undefined) ?? Array(2 * rank).fill(0);
  if (pads.length !== 2 * rank) {
    throw new Error(`node '${node.name}' (${node.opType}): pads [${pads}] must have ${2 * rank} values ([x1_begin, x2_begin, ..., x1_end, x2_end])`);
  }
  return { begin: pads.slice(0, rank), end: pads.slice(rank) };
}

export const dilatedKernel = (w: Window, i: number) => (w.kernel[i] - 1) * w.dilations[i] + 1;

function requireStatic(node: Node, spatial: Dim[], why: string): number[] {
  if (spatial.some((d) => typeof d !== 'number')) {
    throw new Error(`node '${node.name}' (${node.opType}): ${why} needs static spatial dims, got [${spatial}]`);
  }
  return spatial as number[];
}

/**
 * Resolves the window of Conv or a pooling op over input spatial dims `spatial` and returns the output
 * spatial dims (ONNX Conv/MaxPool output-shape formulas; SAME_UPPER puts the odd pad at the end,
 * SAME_LOWER at the beginning). Symbolic input dims give symbolic output dims. (ORT 1.30 refuses SAME_*
 * with dilation > 1 at run time; gradient rules always emit the resolved explicit pads.)
 */
export function resolveWindow(node: Node, spatial: Dim[], kernel: number[]): { window: Window; outSpatial: Dim[] } {
  const rank = spatial.length;
  if (kernel.length !== rank) {
    throw new Error(`node '${node.name}' (${node.opType}): kernel [${kernel}] has ${kernel.length} axes but the input has ${rank} spatial axes`);
  }
  const ceil = attrInt(node, 'ceil_mode', 0) === 1;
  const mode = autoPad(node);
  const strides = perAxis(node, 'strides', rank, 1);
  const dilations = perAxis(node, 'dilations', rank, 1);
  const window: Window = { kernel, strides, dilations, padsBegin: Array(rank).fill(0), padsEnd: Array(rank).fill(0) };
  if (mode === 'NOTSET') {
    const p = explicitPads(node, rank);
    window.padsBegin = p.begin;
    window.padsEnd = p.end;
  }
  const outSpatial: Dim[] = spatial.map((d, i) => {
    if (typeof d !== 'number') {
      if (mode.startsWith('SAME')) requireStatic(node, spatial, `auto_pad ${mode}`);
      return `${node.outputs[0]}_d${i + 2}`;
    }
    const s = strides[i];
    if (mode.startsWith('SAME')) {
      const out = Math.ceil(d / s);
      const total = Math.max(0, (out - 1) * s + dilatedKernel(window, i) - d);
      const small = Math.floor(total / 2);
      window.padsBegin[i] = mode === 'SAME_UPPER' ? small : total - small;
      window.padsEnd[i] = total - window.padsBegin[i];
      return out;
    }
    const span = d + window.padsBegin[i] + window.padsEnd[i] - dilatedKernel(window, i);
    let out = Math.floor(span / s) + 1;
    if (ceil && span >= 0 && span % s !== 0) {
      // ceil_mode=1 (ONNX pooling; PyTorch's ceil_mode=True): one more window, unless it would start past the input
      // and its begin pad (onnxruntime pool_attributes.h, as PyTorch). It reads only pad beyond the node's end pad:
      // an end-pad extension that no value flows from (MaxPool) and that no divisor counts (AveragePool).
      if (out * s >= d + window.padsBegin[i]) {
        // onnxruntime's kernel drops that window, ONNX shape inference keeps it: the graph would not load.
        throw new Error(
          `node '${node.name}' (${node.opType}): ceil_mode=1 on spatial axis ${i} (size ${d}, pads ${window.padsBegin[i]}+${window.padsEnd[i]}, stride ${s}) ` +
            `puts the last window entirely in the end pad, where ONNX shape inference (${out + 1} outputs) and ONNX Runtime's kernel (${out}) disagree; ` +
            `export with ceil_mode=False or a smaller end pad`,
        );
      }
      {
        const extension = out * s + dilatedKernel(window, i) - (d + window.padsBegin[i] + window.padsEnd[i]);
        window.ceilExtension ??= Array(rank).fill(0);
        window.ceilExtension[i] = extension;
        window.padsEnd[i] += extension;
        out += 1;
      }
    }
    if (out < 1) {
      throw new Error(`node '${node.name}' (${node.opType}): window (kernel ${kernel[i]}, dilation ${dilations[i]}) does not fit spatial axis ${i} of size ${d} with pads ${window.padsBegin[i]}+${window.padsEnd[i]}`);
    }
    return out;
  });
  return { window, outSpatial };
}

/**
 * Resolves ConvTranspose's window: `spatial` are its input dims, the result its output dims. With
 * output_shape or SAME_* auto_pad the total padding is derived and split as the ONNX spec says (and ONNX
 * Runtime 1.30 does, checked in test/reference): the odd pad at the end for SAME_UPPER, at the beginning
 * otherwise.
 */
export function resolveTransposeWindow(
  node: Node,
  spatial: Dim[],
  kernel: number[],
): { window: Window; outSpatial: Dim[]; outputPadding: number[] } {
  const rank = spatial.length;
  if (kernel.length !== rank) {
    throw new Error(`node '${node.name}' (${node.opType}): kernel [${kernel}] has ${kernel.length} axes but the input has ${rank} spatial axes`);
  }
  const mode = autoPad(node);
  const strides = perAxis(node, 'strides', rank, 1);
  const dilations = perAxis(node, 'dilations', rank, 1);
  const outputPadding = perAxis(node, 'output_padding', rank, 0);
  let outputShape = attrInts(node, 'output_shape', undefined);
  if (outputShape && outputShape.length === rank + 2) outputShape = outputShape.slice(2);
  if (outputShape && outputShape.length !== rank) {
    throw new Error(`node '${node.name}' (ConvTranspose): output_shape [${outputShape}] must have ${rank} spatial values`);
  }
  const window: Window = { kernel, strides, dilations, padsBegin: Array(rank).fill(0), padsEnd: Array(rank).fill(0) };
  const derived = outputShape !== undefined || mode.startsWith('SAME');
  if (mode === 'NOTSET' && !derived) {
    const p = explicitPads(node, rank);
    window.padsBegin = p.begin;
    window.padsEnd = p.end;
  }
  if (derived) requireStatic(node, spatial, outputShape ? 'output_shape' : `auto_pad ${mode}`);
  const outSpatial: Dim[] = spatial.map((d, i) => {
    if (typeof d !== 'number') return `${node.outputs[0]}_d${i + 2}`;
    const full = strides[i] * (d - 1) + outputPadding[i] + dilatedKernel(window, i);
    if (derived) {
      const out = outputShape ? outputShape[i] : d * strides[i];
      const total = full - out;
      if (total < 0) throw new Error(`node '${node.name}' (ConvTranspose): output size ${out} on spatial axis ${i} exceeds the full transposed size ${full}`);
      const small = Math.floor(total / 2);
      window.padsBegin[i] = mode === 'SAME_UPPER' ? small : total - small;
      window.padsEnd[i] = total - window.padsBegin[i];
      return out;
    }
    const out = full - window.padsBegin[i] - window.padsEnd[i];
    if (out < 1) throw new Error(`node '${node.name}' (ConvTranspose): pads leave no output on spatial axis ${i}`);
    return out;
  });
  return { window, outSpatial, outputPadding };
}

/** Explicit ONNX attributes for emitting a node with this window (auto_pad resolved). */
export function windowAttrs(w: Window): { strides: number[]; dilations: number[]; pads: number[] } {
  return { strides: w.strides, dilations: w.dilations, pads: [...w.padsBegin, ...w.padsEnd] };
}

/** Output size of a window along one axis (the NOTSET formula with the window's explicit pads). */
export function windowOutputSize(w: Window, axis: number, size: number): number {
  return Math.floor((size + w.padsBegin[axis] + w.padsEnd[axis] - dilatedKernel(w, axis)) / w.strides[axis]) + 1;
}

/**
 * output_padding that makes ConvTranspose with window `w` map `inSize` back to exactly `outSize`
 * (the input gradient of a strided Conv: (H + pads - dilated kernel) mod stride).
 */
export function transposeOutputPadding(w: Window, axis: number, inSize: number, outSize: number): number {
  return outSize - (w.strides[axis] * (inSize - 1) + dilatedKernel(w, axis) - w.padsBegin[axis] - w.padsEnd[axis]);
}

/**
 * How many input positions each output of AveragePool divides by along one axis (ONNX AveragePool as onnxruntime
 * computes it): count_include_pad=0 counts the window's positions inside the input; count_include_pad=1 also its
 * positions in the node's pads, but not in a ceil_mode extension.
 */
export function averagePoolDivisors(w: Window, axis: number, inSize: number, outSize: number, includePad: boolean): number[] {
  const extension = w.ceilExtension?.[axis] ?? 0;
  return Array.from({ length: outSize }, (_, o) => {
    const start = o * w.strides[axis] - w.padsBegin[axis];
    const end = start + dilatedKernel(w, axis);
    if (includePad) return Math.min(end, inSize + w.padsEnd[axis] - extension) - start;
    return Math.min(end, inSize) - Math.max(start, 0);
  });
}

/** AveragePool's divisor of every output position (row-major over the output's spatial axes). */
export function averagePoolDivisorGrid(w: Window, inSpatial: number[], outSpatial: number[], includePad: boolean): Float64Array {
  const perAxis = inSpatial.map((size, i) => averagePoolDivisors(w, i, size, outSpatial[i], includePad));
  return new Float64Array(outSpatial.reduce((p, q) => p * q, 1)).map((_, flat) => {
    let count = 1;
    for (let i = outSpatial.length - 1; i >= 0; i--) {
      count *= perAxis[i][flat % outSpatial[i]];
      flat = Math.floor(flat / outSpatial[i]);
    }
    return count;
  });
}
