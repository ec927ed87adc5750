// The language-model integer layers recomputed from their codes: closed forms, and the comparison with ONNX
// Runtime naming the first layer that differs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import '../../src/ops';
import '../../src/quant';
import { DType } from '../../src/ir/dtype';
import { Node } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { compareLanguageModelLayers, referenceGatherBlockQuantized, referenceMatMulIntegerToFloat, referenceMatMulNBits, referenceQuantizeLinear } from '../../src/reference/integer/lm-layers';
import { gpt } from '../../src/models/transformers';
import { prepareLanguageModelQat } from '../../src/quant/qat';
import { presetConfig } from '../../src/quant/presets';
import { buildLanguageModelDecoder } from '../../src/export/lm-decoder';
import { decoderLayoutOf, emptyPast } from '../../src/generate/decoder-layout';
import { fileSessionOptions, idsTensor, onesMask, positionsTensor } from '../../src/generate/generator';
import { INT4_SESSION_CONFIG } from '../../src/export/export-language-model';

const nbits = (attrs: Record<string, number>): Node => ({ opType: 'MatMulNBits', domain: 'com.microsoft', name: 'n', inputs: [], outputs: [], attrs: Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, { kind: 'int', value: v }])) });

test('MatMulNBits: 2-bit codes around zero point 2 times block scales (level 0); level 4 rounds x / (absmax / 127) per block first', () => {
  // K = 32 in two blocks of 16, N = 1: codes 3 (w = +1) in block 0, 1 (w = -1) in block 1; scales 0.5 and 2.
  const b = new Uint8Array(8);
  b.fill(0b11111111, 0, 4); // sixteen codes 3
  b.fill(0b01010101, 4, 8); // sixteen codes 1
  const x = Float32Array.from({ length: 32 }, (_, i) => (i < 16 ? 1 : 0.25));
  const node = nbits({ K: 32, N: 1, bits: 2, block_size: 16, accuracy_level: 0 });
  const scales = new Tensor(DType.FLOAT, [1, 2], Float32Array.of(0.5, 2));
  const y = referenceMatMulNBits(node, x, new Tensor(DType.UINT8, [1, 2, 4], b), scales);
  assert.equal(y[0], 16 * 1 * 0.5 + 16 * 0.25 * -2); // 8 - 8
  // Level 4: x = 0.3 and 1 alternating in a block: absmax 1, codes round(0.3 * 127) = 38 and 127.
  const x4 = Float32Array.from({ length: 32 }, (_, i) => (i % 2 ? 1 : 0.3));
  const y4 = referenceMatMulNBits(nbits({ K: 32, N: 1, bits: 2, block_size: 16, accuracy_level: 4 }), x4, new Tensor(DType.UINT8, [1, 2, 4], b), scales);
  const s = Math.fround(1 / 127);
  assert.ok(Math.abs(y4[0] - (8 * (38 + 127) * s * 0.5 - 8 * (38 + 127) * s * 2)) < 1e-5, String(y4[0]));
});

test('GatherBlockQuantized, MatMulIntegerToFloat and a blocked QuantizeLinear in closed form', () => {
  const gbq: Node = { opType: 'GatherBlockQuantized', domain: 'com.microsoft', name: 'g', inputs: [], outputs: [], attrs: { block_size: { kind: 'int', value: 2 }, bits: { kind: 'int', value: 8 } } };
  // Two rows of 4 uint8 codes around 128, scales per block of 2.
  const data = new Tensor(DType.UINT8, [2, 4], Uint8Array.of(128, 129, 130, 126, 0, 255, 128, 128));
  const rows = referenceGatherBlockQuantized(gbq, data, [1n, 0n], new Tensor(DType.FLOAT, [2, 2], Float32Array.of(1, 0.5, 0.25, 2)));
  assert.deepEqual([...rows], [-32, 31.75, 0, 0, 0, 1, 1, -1]);
  // (a - 128)(b - 128) summed: a = [130, 126], b = [[129], [127]]: 2 * 1 + (-2) * (-1) = 4, times 0.5 x 0.25.
  const y = referenceMatMulIntegerToFloat(new Tensor(DType.UINT8, [1, 2], Uint8Array.of(130, 126)), new Tensor(DType.UINT8, [2, 1], Uint8Array.of(129, 127)), Float32Array.of(0.5), Float32Array.of(0.25), 128, 128);
  assert.deepEqual([...y], [0.5]);
  // Half to even at the ties: 2.5 -> 2, 3.5 -> 4, then + 128, saturated.
  assert.deepEqual([...referenceQuantizeLinear(Float32Array.of(2.5, 3.5, 1000), Float32Array.of(1), [128], 3, 0, 255)], [130, 132, 255]);
});

test('the comparison names the first layer whose ORT output is not what its codes give: an int4 file run at ORT\'s default fusion level (int8 activations)', async () => {
  const model = prepareLanguageModelQat(gpt({ vocabSize: 64, layers: 1, heads: 2, dim: 32, context: 16, seed: 2 }), presetConfig('w4a16-g32', 'language-model'), 'w4a16-g32');
  const exported = await buildLanguageModelDecoder(model, { format: 'int4', threads: 1 });
  const ids = [[1, 5, 9, 13, 17, 21, 25, 29], [2, 4, 6, 8, 10, 12, 14, 16]];
  const feeds = (session: ort.InferenceSession) => {
    const layout = decoderLayoutOf(session, {});
    return { ...emptyPast(layout, 2), [layout.inputIds]: idsTensor(ids), [layout.positionIds!]: positionsTensor(2, 0, 8, layout.positionIdsSingleRow), [layout.attentionMask!]: onesMask(2, 8) };
  };
  const right = await compareLanguageModelLayers(exported.graph, feeds, fileSessionOptions(1, INT4_SESSION_CONFIG));
  assert.ok(right.passed && right.layers.length >= 5, JSON.stringify(right.firstMismatch));
  // Without the session option model.json carries, ORT fuses DequantizeLinear -> MatMul at accuracy_level 4.
  const wrong = await compareLanguageModelLayers(exported.graph, feeds, fileSessionOptions(1, {}));
  assert.equal(wrong.passed, false);
  assert.equal(wrong.firstMismatch!.node, right.layers[0].node);
  assert.ok(wrong.firstMismatch!.relativeDiff > 1e-3, String(wrong.firstMismatch!.relativeDiff));
});
