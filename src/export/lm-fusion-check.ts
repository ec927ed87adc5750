/**
 * What ONNX Runtime actually runs for an exported language model: the optimized model ORT saves
 * (optimizedModelFilePath, graph optimization level 'all') is read back and its weight MatMuls listed. A MatMul
 * whose B is still a constant or a DequantizeLinear output (with K > 1: a layer, not an outer product) did not become MatMulNBits: for the int4 (QDQ) form,
 * that is a layer running in float, which the export refuses unless --allow-float. The qdq form's Linears are
 * counted as integer products.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from '../runtime/ort.js';
import { decodeModel } from '../onnx/model-io.js';
import { fileSessionOptions } from '../generate/generator.js';

export interface FusionReport {
  /** MatMulNBits nodes in ORT's optimized model, and their accuracy_level attributes. */
  matmul_nbits: number;
  accuracy_levels: number[];
  /** Integer-product nodes (MatMulIntegerToFloat, MatMulInteger, DynamicQuantizeMatMul): the qdq form's Linears. */
  integer_matmuls: number;
  /** Weight MatMuls ORT left in float (B an initializer or a DequantizeLinear output), by node name. */
  float_matmuls: string[];
}

const INTEGER_MATMULS = new Set(['MatMulIntegerToFloat', 'MatMulInteger', 'DynamicQuantizeMatMul']);

export async function checkFusion(file: string, sessionConfig: Record<string, string> = {}): Promise<FusionReport> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qatkit-fusion-'));
  const optimized = path.join(dir, 'optimized.onnx');
  try {
    const session = await ort.InferenceSession.create(file, { ...fileSessionOptions(1, sessionConfig), optimizedModelFilePath: optimized });
    await session.release();
    const g = decodeModel(fs.readFileSync(optimized), { baseDir: dir, source: optimized });
    const producers = g.producers();
    const nbits = g.nodes.filter((n) => n.opType === 'MatMulNBits');
    const float = g.nodes.filter((n) => {
      if (n.opType !== 'MatMul' && n.opType !== 'FusedMatMul' && n.opType !== 'Gemm') return false;
      const b = n.inputs[1];
      const dq = producers.get(b);
      const dims = g.initializers.get(b)?.dims ?? (dq?.opType === 'DequantizeLinear' ? g.initializers.get(dq.inputs[0])?.dims : undefined);
      // A constant B of K = 1 is an outer product (rotary angles: positions x inv_freq, an imported torch.outer), not a layer.
      const k = n.opType === 'Gemm' && n.attrs.transB?.kind === 'int' && n.attrs.transB.value === 1 ? dims?.at(-1) : dims?.at(-2);
      return dims !== undefined && (k === undefined || k > 1);
    });
    return {
      matmul_nbits: nbits.length,
      accuracy_levels: [...new Set(nbits.map((n) => (n.attrs.accuracy_level?.kind === 'int' ? n.attrs.accuracy_level.value : 0)))].sort(),
      integer_matmuls: g.nodes.filter((n) => INTEGER_MATMULS.has(n.opType)).length,
      float_matmuls: float.map((n) => n.name),
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
