import type { Node } from '../../ir/graph.js';
import type { IntValue } from './values.js';

/**
 * An integer reference kernel: a node's outputs from its inputs (undefined where an optional input is absent).
 * Quantized values travel as codes with their scale and zero point (see values.ts), so a kernel sees the QDQ
 * pattern around it as an integer engine's fused op would: Conv gets the codes of x and W, not their reals.
 */
export type IntegerKernel = (node: Node, inputs: (IntValue | undefined)[]) => IntValue[];

export type IntegerKernelTable = Record<string, IntegerKernel>;
