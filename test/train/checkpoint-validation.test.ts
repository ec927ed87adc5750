import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_TRAIN_CONFIG, train, TrainConfig } from '../../src/train/run';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { joinCheckpoint, splitCheckpoint, withHeader } from '../helpers/checkpoint-bytes';
import { scratchDir } from '../helpers/scratch.js';

const tmp = () => scratchDir('qatkit-ckpt-');
const base: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, model: 'mlp', steps: 4, batch: 32, threads: 2, checkpointEvery: 0 };
let good: Buffer;
let teacher: string;

before(async () => {
  const dir = tmp();
  await train(base, dir, { stopAtStep: 2 });
  good = fs.readFileSync(path.join(dir, 'checkpoint.qat'));
  teacher = tmp();
  await train({ ...base, steps: 2 }, teacher);
});

/** A run directory holding `bytes` as its checkpoint (and nothing else). */
function runWith(bytes: Uint8Array): string {
  const dir = tmp();
  fs.writeFileSync(path.join(dir, 'checkpoint.qat'), bytes);
  return dir;
}
const file = (dir: string) => path.join(dir, 'checkpoint.qat');

test('a flipped bit anywhere in a checkpoint fails its checksum, naming the file', () => {
  for (const at of [40, Math.floor(good.length / 2), good.length - 40]) {
    const bad = Buffer.from(good);
    bad[at] ^= 0x10;
    const dir = runWith(bad);
    assert.throws(() => loadCheckpoint(file(dir)), new RegExp(`checkpoint '${file(dir).replace(/[.\\/]/g, '\\$&')}': checksum mismatch`));
  }
});

test('a truncated checkpoint is refused', () => {
  for (const n of [0, 10, 30, good.length - 1]) assert.throws(() => loadCheckpoint(file(runWith(good.subarray(0, n)))), /not a qatkit checkpoint|truncated|checksum mismatch/);
});

test('a checkpoint of a newer format is refused with its version named', () => {
  const parts = splitCheckpoint(good);
  assert.throws(() => loadCheckpoint(file(runWith(joinCheckpoint({ ...parts, version: 3 })))), /format version 3 is newer than this qatkit reads \(versions 1\.\.2\); upgrade qatkit/);
});

test('format-1 checkpoints (no checksum) still load', () => {
  const { header, payload } = splitCheckpoint(good);
  const json = Buffer.from(JSON.stringify({ ...header, payload: undefined }));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  const ckpt = loadCheckpoint(file(runWith(Buffer.concat([Buffer.from('QATKIT-CHECKPOINT-1\n'), len, json, payload]))));
  assert.equal(ckpt.step, 2);
  assert.equal(ckpt.format, 1);
});

test('header fields of the wrong type or out of range are refused, naming the field (checksum valid)', () => {
  const cases: [(h: Record<string, any>) => void, RegExp][] = [
    [(h) => (h.step = 'abc'), /header: step: must be an integer in 0\.\.2147483647, got "abc"/],
    [(h) => (h.step = -1), /header: step: must be an integer/],
    [(h) => delete h.model, /header: model: /],
    [(h) => (h.tensors[0].offset = 'x'), /header: tensors\[0\]\.offset: must be an integer/],
    [(h) => (h.tensors[0].dtype = 999), /header: tensors\[0\]\.dtype: must be 1 \(float32/],
    [(h) => (h.tensors[0].dims = [100000, 100000]), /tensor .* \[100000,100000\] is larger than the 2147483647-byte limit/],
    [(h) => (h.tensors[0].offset = 1e9), /runs past its end/],
    [(h) => (h.rng.step = 99), /rng\.step 99 differs from step 2/],
    [(h) => (h.model.params = [...h.model.params, 'ghost']), /model\.params names 'ghost', which is not an initializer/],
    [(h) => (h.model.input = 'nope'), /model\.input 'nope' is not an input of its model/],
    [(h) => (h.tensors = [...h.tensors, h.tensors[0]]), /tensor '.*' appears twice/],
    [(h) => (h.extra = 1), /header: extra: unknown key/],
  ];
  for (const [edit, re] of cases) assert.throws(() => loadCheckpoint(file(runWith(withHeader(good, edit)))), re, re.source);
});

test('NaN in an optimizer tensor is refused, naming the tensor', () => {
  const parts = splitCheckpoint(good);
  const t = parts.header.tensors[0];
  parts.payload.writeFloatLE(NaN, t.offset + 4);
  assert.throws(() => loadCheckpoint(file(runWith(joinCheckpoint(parts)))), new RegExp(`tensor '${t.name}' holds NaN at index 1`));
});

test('a missing or renamed optimizer tensor is refused on resume (never zero-filled)', async () => {
  const missing = runWith(withHeader(good, (h) => h.tensors.pop()));
  await assert.rejects(train(base, missing, { resume: true }), /optimizer state '.*' is missing \(the run cannot continue exactly without it\)/);
  const renamed = runWith(withHeader(good, (h) => (h.tensors[0].name = 'adam_m/renamed')));
  await assert.rejects(train(base, renamed, { resume: true }), /tensor 'adam_m\/renamed' is no optimizer state of this run's training step/);
});

test('a step past the run\'s end is refused on resume', async () => {
  const far = runWith(withHeader(good, (h) => ((h.step = 1e9), (h.rng.step = 1e9))));
  await assert.rejects(train(base, far, { resume: true }), /checkpoint '.*': step 1000000000 is past the run's end \(4 steps\)/);
  await assert.rejects(train({ ...base, steps: 1 }, runWith(good), { resume: true }), /--steps 1 is before the checkpoint's step 2/);
});

test('stored config fields of the wrong type are blamed on the checkpoint, not on a flag', async () => {
  const cases: [(c: Record<string, any>) => void, RegExp][] = [
    [(c) => (c.batch = 'abc'), /checkpoint '.*': config\.batch: must be an integer in 1\.\.65536, got "abc"/],
    [(c) => (c.lr = -1), /config\.lr: must be a finite number/],
    [(c) => (c.threads = 999), /config\.threads: must be an integer in 1\.\.256/],
    [(c) => (c.optimizer = 'rmsprop'), /config\.optimizer: must be one of adamw, adam, sgd/],
    [(c) => (c.quantConfig = { weight: { bits: 4 } }), /config\.quantConfig\.weight\.method: /],
    [(c) => (c.mystery = true), /config\.mystery: unknown key/],
  ];
  for (const [edit, re] of cases) {
    const dir = runWith(withHeader(good, (h) => edit(h.config)));
    await assert.rejects(train(base, dir, { resume: true }), (e: Error) => re.test(e.message) && !/(^|\s)--[a-z]/.test(e.message.split(':').slice(0, 3).join(':')), re.source);
  }
});

test('a checkpoint cannot redirect --resume: the source run it names is checked, and --from overrides it', async () => {
  const distilled = (from: string) => withHeader(good, (h) => Object.assign(h.config, { from, distill: { weight: 0.5, temperature: 2 } }));
  await assert.rejects(train(base, runWith(distilled('/etc')), { resume: true }), /no checkpoint at \/etc\/checkpoint\.qat \(not a qatkit run/);
  const self = tmp();
  fs.writeFileSync(file(self), distilled(self));
  await assert.rejects(train(base, self, { resume: true }), /is the run directory itself/);
  const moved = runWith(distilled(path.join(os.tmpdir(), 'qatkit-moved-away')));
  await assert.rejects(train(base, moved, { resume: true }), /no such run directory \(moved\? pass --from NEW_PATH\)/);
  const r = await train({ ...base, from: teacher }, moved, { resume: true });
  assert.equal(r.steps, 4);
  assert.equal((loadCheckpoint(file(moved)).config as any).from, teacher, 'the new location is what the run names from now on');
});

test('a checkpoint whose model is not valid ONNX is refused, naming the checkpoint', () => {
  const parts = splitCheckpoint(good);
  parts.payload.fill(0xff, parts.header.model.offset, parts.header.model.offset + 64);
  assert.throws(() => loadCheckpoint(file(runWith(joinCheckpoint(parts)))), /checkpoint\.qat \(model\): |checkpoint '.*': its model is invalid/);
});
