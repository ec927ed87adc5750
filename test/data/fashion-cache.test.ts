import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { RawSplit, readSplitCache, writeSplitCache } from '../../src/data/cache';
import { packageInfo } from '../../src/data/package-dir';
import { loadFashionMnistRaw, parseClassFile, splitPerClass } from '../../src/data/fashion-mnist';
import { scratchDir } from '../helpers/scratch.js';

const dir = scratchDir('qatkit-cache-');
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

const record = (v: number) => new Array(784).fill(v);

function tinySplit(): RawSplit {
  const part = (name: string, count: number) => ({
    name,
    pixels: Uint8Array.from({ length: count * 4 }, (_, i) => (i * 37) & 255),
    labels: Uint8Array.from({ length: count }, (_, i) => i % 3),
    count,
    shape: [1, 2, 2] as [number, number, number],
    classes: 3,
  });
  return { train: part('tiny/train', 5), test: part('tiny/test', 2) };
}

const key = { package: 'tiny', version: '1.0.0', sourceBytes: [10, 20] };

test('cache: round trip returns the same split', () => {
  const file = path.join(dir, 'roundtrip.bin');
  const split = tinySplit();
  writeSplitCache(file, key, split);
  const read = readSplitCache(file, key);
  assert.ok('split' in read, 'miss' in read ? read.miss : '');
  assert.deepEqual({ ...read.split.train, pixels: Array.from(read.split.train.pixels), labels: Array.from(read.split.train.labels) },
    { ...split.train, pixels: Array.from(split.train.pixels), labels: Array.from(split.train.labels) });
  assert.deepEqual(Array.from(read.split.test.pixels), Array.from(split.test.pixels));
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temp file left behind');
});

test('cache: another version, truncation, a flipped byte and bad magic are misses with a reason', () => {
  const file = path.join(dir, 'invalid.bin');
  writeSplitCache(file, key, tinySplit());
  const good = fs.readFileSync(file);
  const miss = (bytes: Uint8Array, k: unknown = key) => {
    fs.writeFileSync(file, bytes);
    const r = readSplitCache(file, k);
    assert.ok('miss' in r, 'expected a cache miss');
    return r.miss;
  };
  assert.match(miss(good, { ...key, version: '1.0.1' }), /written for .*1\.0\.0.*expected .*1\.0\.1/);
  assert.match(miss(good.subarray(0, good.length - 3)), /payload bytes at offset \d+, header sizes need 35/);
  const flipped = Buffer.from(good);
  flipped[flipped.length - 10] ^= 1;
  assert.match(miss(flipped), /checksum mismatch/);
  assert.match(miss(Buffer.from('not a cache at all')), /bad magic at offset 0/);
  const absent = readSplitCache(path.join(dir, 'absent.bin'), key);
  assert.ok('miss' in absent && /no cache file/.test(absent.miss));
});

test('fashion-mnist records: empty records are skipped, bad ones name the file and record index', () => {
  const ok = JSON.stringify({ data: [record(1), [], record(2)] });
  assert.deepEqual(Array.from(parseClassFile(ok, 'ok.json', 2).subarray(783, 785)), [1, 2]);
  const short = JSON.stringify({ data: [record(1), [1, 2, 3]] });
  assert.throws(() => parseClassFile(short, 'short.json', 2), /short\.json record 1: expected an array of 784 pixels, got 3 values/);
  const big = record(0);
  big[5] = 256;
  assert.throws(() => parseClassFile(JSON.stringify({ data: [record(0), record(0), big] }), 'big.json', 3), /big\.json record 2: pixel 5 is 256/);
  const frac = record(0);
  frac[0] = 0.5;
  assert.throws(() => parseClassFile(JSON.stringify({ data: [frac] }), 'frac.json', 1), /frac\.json record 0: pixel 0 is 0\.5/);
  assert.throws(() => parseClassFile(ok, 'count.json', 3), /count\.json: 2 images, expected 3/);
  assert.throws(() => parseClassFile('{"data": 3}', 'shape.json', 1), /shape\.json: expected \{"data"/);
  assert.throws(() => parseClassFile('{', 'broken.json', 1), /broken\.json: invalid JSON/);
});

test('fashion-mnist split: per class, the first records go to train and the last to test', () => {
  const perClass = [0, 1].map((c) => Uint8Array.from({ length: 3 * 784 }, (_, i) => 10 * c + Math.floor(i / 784)));
  const { train, test: t } = splitPerClass(perClass, 2, 1);
  assert.deepEqual(Array.from(train.labels), [0, 0, 1, 1]);
  assert.deepEqual(Array.from(t.labels), [0, 1]);
  assert.deepEqual([0, 1, 2, 3].map((i) => train.pixels[i * 784]), [0, 1, 10, 11]);
  assert.deepEqual([0, 1].map((i) => t.pixels[i * 784]), [2, 12]);
});

test('fashion-mnist: an invalid cache falls back to parsing the JSON and is rewritten', () => {
  const cacheDir = path.join(dir, 'fm');
  fs.mkdirSync(cacheDir);
  const { version } = packageInfo('fashion-mnist');
  fs.writeFileSync(path.join(cacheDir, `fashion-mnist-${version}.bin`), 'garbage');
  const parsed = loadFashionMnistRaw({ cacheDir });
  assert.equal(parsed.from, 'json');
  assert.match(parsed.cacheMiss ?? '', /bad magic/);
  const cached = loadFashionMnistRaw({ cacheDir });
  assert.equal(cached.from, 'cache', cached.cacheMiss);
  assert.ok(Buffer.from(parsed.split.train.pixels).equals(Buffer.from(cached.split.train.pixels)));
});
