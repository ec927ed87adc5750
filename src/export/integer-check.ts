import type { Dataset } from '../data/dataset.js';
import { DType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { assertIntegerMatch, compareIntegerWithOrt } from '../reference/integer/compare-ort.js';

/** Test images the integer reference evaluator runs on: it is plain TypeScript, so a few dozen, not the test set. */
export const INTEGER_CHECK_SAMPLES = 32;

/** What `qat export` records of the integer reference evaluator against ORT's integer kernels. */
export type IntegerCheckReport =
  | {
      samples: number;
      /** Per compared layer: codes one step from ORT's (float vs fixed-point requantization) and further. */
      layers: { node: string; op: string; elements: number; off_by_one: number; mismatches: number; max_diff: number }[];
      off_by_one: number;
      elements: number;
      /** The first layer with a code more than one step from ORT's, or null. */
      first_mismatch: string | null;
      argmax_agreement: number;
      max_abs_logit_difference: number;
    }
  | { skipped: string };

/** Errors that mean "outside the evaluator's coverage" (an op or layout it does not run), not a wrong model. */
const COVERAGE = /the integer evaluator (has no kernel|runs 2-D|needs it quantized)/;

/**
 * Runs the integer reference evaluator (int8 x int8 -> int32, fixed-point requantization) on the exported
 * int8 model and compares it, layer by layer, with ONNX Runtime's integer kernels. Throws, naming the first
 * node whose codes differ by more than one step, unless `noVerify`; a model outside the evaluator's coverage
 * is reported as skipped with the reason.
 */
export async function checkIntegerReference(graph: Graph, input: string, test: Dataset, options: { threads?: number; noVerify?: boolean } = {}): Promise<IntegerCheckReport> {
  const n = Math.min(INTEGER_CHECK_SAMPLES, test.count);
  const size = test.shape.reduce((a, b) => a * b, 1);
  const feeds = new Map([[input, new Tensor(DType.FLOAT, [n, ...test.shape], test.images.slice(0, n * size))]]);
  let c;
  try {
    c = await compareIntegerWithOrt(graph, feeds, { threads: options.threads });
  } catch (e) {
    const message = (e as Error).message;
    if (COVERAGE.test(message)) return { skipped: message };
    throw e;
  }
  if (!options.noVerify) assertIntegerMatch(c);
  return {
    samples: n,
    layers: c.layers.map((l) => ({ node: l.node, op: l.opType, elements: l.elements, off_by_one: l.offByOne, mismatches: l.mismatches, max_diff: l.maxDiff })),
    off_by_one: c.offByOneTotal,
    elements: c.elementsTotal,
    first_mismatch: c.firstMismatch?.node ?? null,
    argmax_agreement: c.output.argmaxAgreement,
    max_abs_logit_difference: c.output.maxAbsDifference,
  };
}
