import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { DType } from '../../src/ir/dtype';
import { loadModel } from '../../src/onnx/model-io';
import { scratchDir } from '../helpers/scratch.js';

const { onnx } = onnxProto;
const EXTERNAL = onnx.TensorProto.DataLocation.EXTERNAL;

const WEIGHTS = Float32Array.from([1, 2, 3, 4, 5, 6]);

const temps: string[] = [];
after(() => temps.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
const tempDir = () => {
  const d = scratchDir('qatkit-ext-');
  temps.push(d);
  return d;
};

/** A folder <temp>/model holding model.onnx whose tensor 'w' ([2,3] float) lives in external data at `location`. */
function modelWithExternalTensor(location: string, offset = 0, length = WEIGHTS.byteLength): { dir: string; file: string } {
  const dir = path.join(tempDir(), 'model');
  fs.mkdirSync(dir);
  const model = onnx.ModelProto.encode({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'ext',
      initializer: [
        {
          name: 'w',
          dims: [2, 3],
          dataType: DType.FLOAT,
          dataLocation: EXTERNAL,
          externalData: [
            { key: 'location', value: location },
            { key: 'offset', value: String(offset) },
            { key: 'length', value: String(length) },
          ],
        },
      ],
      input: [],
      output: [],
    },
  }).finish();
  const file = path.join(dir, 'model.onnx');
  fs.writeFileSync(file, model);
  return { dir, file };
}

/** 16 bytes of padding, then the weights: exercises a non-zero offset. */
const weightsFileBytes = () => Buffer.concat([Buffer.alloc(16, 7), Buffer.from(WEIGHTS.buffer)]);

test('a tensor stored in external data (with an offset) loads', () => {
  const { dir, file } = modelWithExternalTensor('data/weights.bin', 16);
  fs.mkdirSync(path.join(dir, 'data'));
  fs.writeFileSync(path.join(dir, 'data', 'weights.bin'), weightsFileBytes());
  const w = loadModel(file).initializers.get('w')!;
  assert.deepEqual(w.dims, [2, 3]);
  assert.deepEqual(Array.from(w.data as Float32Array), Array.from(WEIGHTS));
});

/** Asserts loading refuses, with a message naming the tensor and the location. */
function assertRefused(file: string, location: string, why: RegExp): void {
  assert.throws(
    () => loadModel(file),
    (e: Error) => {
      assert.ok(e.message.includes(`tensor 'w'`), e.message);
      assert.ok(e.message.includes(`'${location}'`), e.message);
      assert.match(e.message, why);
      return true;
    },
  );
}

test('an absolute external data path is refused', () => {
  const outside = path.join(tempDir(), 'weights.bin');
  fs.writeFileSync(outside, weightsFileBytes());
  const { file } = modelWithExternalTensor(outside, 16);
  assertRefused(file, outside, /absolute paths are not allowed/);
});

test("an external data path with a '..' segment is refused", () => {
  const { dir, file } = modelWithExternalTensor('sub/../../weights.bin', 16);
  fs.writeFileSync(path.join(dir, '..', 'weights.bin'), weightsFileBytes());
  assertRefused(file, 'sub/../../weights.bin', /'\.\.' segments are not allowed/);
});

test('a symlink in the model folder that points outside it is refused', () => {
  const outsideDir = tempDir();
  fs.writeFileSync(path.join(outsideDir, 'secret.bin'), weightsFileBytes());
  const { dir, file } = modelWithExternalTensor('weights.bin', 16);
  fs.symlinkSync(path.join(outsideDir, 'secret.bin'), path.join(dir, 'weights.bin'));
  assertRefused(file, 'weights.bin', /outside the model folder/);
});

test('a symlink that stays inside the model folder is followed', () => {
  const { dir, file } = modelWithExternalTensor('link.bin', 16);
  fs.writeFileSync(path.join(dir, 'real.bin'), weightsFileBytes());
  fs.symlinkSync(path.join(dir, 'real.bin'), path.join(dir, 'link.bin'));
  assert.deepEqual(Array.from(loadModel(file).initializers.get('w')!.data as Float32Array), Array.from(WEIGHTS));
});

test('an offset + length past the end of the file is refused', () => {
  const { dir, file } = modelWithExternalTensor('weights.bin', 20);
  fs.writeFileSync(path.join(dir, 'weights.bin'), weightsFileBytes()); // 40 bytes; 20 + 24 > 40
  assertRefused(file, 'weights.bin', /past the end of the file \(40 bytes\)/);
});

test('a location naming a folder is refused', () => {
  const { dir, file } = modelWithExternalTensor('folder', 0);
  fs.mkdirSync(path.join(dir, 'folder'));
  assertRefused(file, 'folder', /not a regular file/);
});

test('a missing external data file is refused', () => {
  const { file } = modelWithExternalTensor('nope.bin', 0);
  assertRefused(file, 'nope.bin', /does not exist/);
});
