// layerName (src/inspect/layers.ts): torch's module scope, else the node name without its op tail, never empty.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Node } from '../../src/ir/graph';
import { layerName } from '../../src/inspect/layers';

const node = (name: string, opType = 'MatMul'): Node => ({ opType, domain: '', name, inputs: ['x', 'w'], outputs: ['y'], attrs: {} });

test('layer names: scopes, container children by their state_dict path, top-level functional ops by their node name', () => {
  assert.equal(layerName(node('/blocks.0/attn/qkv/MatMul')), 'blocks.0.attn.qkv');
  assert.equal(layerName(node('/layer1/layer1.0/conv1/Conv', 'Conv')), 'layer1.0.conv1');
  assert.equal(layerName(node('/MatMul')), '/MatMul'); // F.linear(x, self.shared.weight) in forward itself
  assert.equal(layerName(node('fc1/MatMulInteger', 'MatMulIntegerToFloat')), 'fc1'); // an export's rewrite keeps the layer's name
  assert.equal(layerName(node('qkv/MatMul')), 'qkv');
  assert.equal(layerName(node('', 'Gemm')), 'Gemm -> y');
});
