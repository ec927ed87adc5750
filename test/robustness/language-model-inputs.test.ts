/**
 * Language-model inputs a hostile or careless user gives (issue 14): `qat train/quantize/generate/eval --from` an LM
 * run with flags, presets and quant configs that do not fit it, a quantized or image run where an fp32 LM run is
 * needed, and model.json files (the tokenizer and context of an exported decoder) that are malformed. Each is refused
 * through the real command line with one `qat: ` line naming the flag or file, exit 1 or 2, nothing on stdout,
 * nothing written, and the source run unchanged. The malformed decoder graphs themselves (past/present shapes) are
 * corpus entries (test/fixtures/malformed/decoder). One tiny fp32 gpt run, its QAT run and an image run are trained
 * once and shared (a few seconds).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { runCorpusCase } from '../helpers/run-qat';
import { DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run';
import { saveModel } from '../../src/onnx/model-io';
import { transformerDecoder } from '../../src/models/transformers';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { languageModelJson, writeLanguageModelJson } from '../../src/generate/model-json';
import { bytesTokenizer } from '../../src/data/tokenizers/bytes';
import { scratchDir } from '../helpers/scratch.js';

let work = '';
let lm = '';
let qat = '';
let image = '';
let decoderDir = '';

const LM = { ...DEFAULT_TRAIN_CONFIG, model: 'gpt', data: 'moby-dick', layers: 1, heads: 2, dim: 8, context: 8, steps: 2, batch: 2, lr: 2e-3, threads: 1, evalEvery: 0, checkpointEvery: 0 };

before(async () => {
  work = scratchDir('qatkit-lm-inputs-');
  lm = path.join(work, 'lm');
  qat = path.join(work, 'lm-qat');
  image = path.join(work, 'image');
  await train(LM, lm);
  await train({ ...LM, quant: 'w4a16-g32', from: lm, steps: 1 }, qat);
  await train({ ...DEFAULT_TRAIN_CONFIG, model: 'mlp', steps: 1, batch: 8, threads: 1, checkpointEvery: 0 }, image);
  decoderDir = path.join(work, 'decoder');
  fs.mkdirSync(decoderDir);
  const model = loadCheckpoint(path.join(lm, 'checkpoint.qat')).model;
  saveModel(transformerDecoder(model).graph, path.join(decoderDir, 'decoder.onnx'));
  writeLanguageModelJson(path.join(decoderDir, 'decoder.onnx'), languageModelJson(model, bytesTokenizer(), { kvCache: true }));
  const write = (name: string, content: unknown) => fs.writeFileSync(path.join(work, name), JSON.stringify(content));
  write('cnn-activations.json', { activation: { bits: 8, method: 'lsq', granularity: 'per-tensor' } });
  write('group-3.json', { preset: 'w4a16-g32', weight: { granularity: 'per-group', groupSize: 3 } });
  write('override-conv.json', { preset: 'w4a16-g32', overrides: [{ match: 'conv0', skip: true }] });
  write('lm-config.json', { preset: 'w4a16-g32', overrides: [{ match: 'blocks.0.mlp.*', weight: { bits: 8 } }] });
});

after(() => fs.rmSync(work, { recursive: true, force: true }));

function snapshot(dir: string): string {
  return fs
    .readdirSync(dir)
    .sort()
    .map((f) => `${f}:${createHash('sha256').update(fs.readFileSync(path.join(dir, f))).digest('hex')}`)
    .join(',');
}

/** Runs argv ({lm}, {qat}, {image}, {work}, {out} substituted) and returns the problems with how it was refused. */
async function refusal(argv: string[], expect: RegExp, code: 1 | 2): Promise<string[]> {
  const out = path.join(work, 'out');
  const sub = (a: string) => a.replace('{lm}', lm).replace('{qat}', qat).replace('{image}', image).replace('{work}', work).replace('{out}', out);
  const runs = [lm, qat, image, decoderDir];
  const before = runs.map(snapshot);
  const r = await runCorpusCase(argv.map(sub));
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  const problems: string[] = [];
  if (r.code !== code) problems.push(`exit code ${r.code}, expected ${code}`);
  if (lines.length !== 1 || !lines[0].startsWith('qat: ')) problems.push(`${lines.length} lines on stderr`);
  if (!expect.test(r.stderr)) problems.push(`does not match ${expect}`);
  if (/internal error|\n\s+at |Cannot read properties/.test(r.stderr)) problems.push('a bug surfaced');
  if (r.stdout !== '') problems.push(`stdout: ${r.stdout.slice(0, 80)}`);
  if (fs.existsSync(out) || fs.existsSync(`${out}.json`)) problems.push('an output was written');
  runs.forEach((dir, i) => snapshot(dir) !== before[i] && problems.push(`${path.basename(dir)} changed`));
  fs.rmSync(out, { recursive: true, force: true });
  return problems.map((p) => `${argv.join(' ')}: ${p}\n    stderr: ${r.stderr.trim()}`);
}

async function allRefused(cases: [string[], RegExp, 1 | 2][]): Promise<void> {
  const failures: string[] = [];
  for (const [argv, expect, code] of cases) failures.push(...(await refusal(argv, expect, code)));
  assert.equal(failures.length, 0, `\n${failures.join('\n')}`);
}

test('qat train --from an LM run: presets, flags and source runs that do not fit it are refused before anything is written', async () => {
  await allRefused([
    [['train', '--from', '{lm}', '--quant', 'w4a4', '--out', '{out}'], /--quant: 'w4a4' is not a language-model preset; valid for language models: w8a8, w4a16-g32.*\('w4a4' is an image-model preset\)/, 1],
    [['train', '--from', '{qat}', '--quant', 'w4a16-g32', '--out', '{out}'], /--from .*lm-qat is a quantized run \(qat w4a16-g32\); start from an fp32 run/, 1],
    [['train', '--from', '{lm}', '--quant', 'w4a16-g32', '--out', '{lm}'], /is the run directory itself .*a run cannot start from itself/, 1],
    [['train', '--from', '{lm}', '--quant', 'w4a16-g32', '--data', 'sotu', '--out', '{out}'], /--data does not apply with --from: the run takes the model, data, input transform, tokenizer and context of /, 2],
    [['train', '--from', '{lm}', '--quant', 'w4a16-g32', '--tokenizer', 'gpt2', '--out', '{out}'], /--tokenizer does not apply with --from/, 2],
    [['train', '--from', '{lm}', '--quant', 'w4a16-g32', '--dim', '16', '--out', '{out}'], /--dim does not apply with --from/, 2],
    [['train', '--from', '{lm}', '--quant', 'w4a16-g32', '--epochs', '3', '--out', '{out}'], /--epochs does not apply to language-model runs \(the --from run's data moby-dick is text\)/, 2],
    [['train', '--from', '{lm}', '--quant', 'w4a16-g32', '--calib-batches', '3', '--out', '{out}'], /--calib-batches does not apply to language-model runs/, 2],
    [['train', '--from', '{image}', '--quant', 'w4a16-g32', '--out', '{out}'], /'w4a16-g32' is a language-model preset \(text --data\); valid for image models: /, 1],
    [['train', '--out', '{lm}', '--resume', '--quant', 'w8a8'], /--quant does not apply with --resume/, 2],
  ]);
});

test('qat train --from an LM run: quant configs are read as language-model configs and checked against its layers', async () => {
  await allRefused([
    [['train', '--from', '{lm}', '--quant-config', '{work}/cnn-activations.json', '--out', '{out}'], /language models take dynamic activation quantizers \(method absmax or minmax with granularity per-token, or bits 16 for float\); got lsq per-tensor/, 1],
    [['train', '--from', '{lm}', '--quant-config', '{work}/group-3.json', '--out', '{out}'], /--quant-config .*group-3\.json: .*layer '[^']+' has input width 8 .*not divisible by groupSize 3/, 1],
    [['train', '--from', '{lm}', '--quant-config', '{work}/override-conv.json', '--out', '{out}'], /--quant-config .*override-conv\.json: override 'conv0' matches no quantizable layer of model .*blocks\.0\./, 1],
    [['quantize', '--from', '{lm}', '--quant-config', '{work}/group-3.json', '--out', '{out}'], /not divisible by groupSize 3/, 1],
  ]);
  // The same file format with a language-model preset is accepted (the preset means what it means on a language model).
  const ok = await runCorpusCase(['train', '--from', lm, '--quant-config', path.join(work, 'lm-config.json'), '--steps', '1', '--out', path.join(work, 'ok'), '--dry-run']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /dry run: language-model run 'gpt' .*custom QAT/);
});

test('qat quantize --from an LM run: calibration flags, image presets and quantized sources are refused', async () => {
  await allRefused([
    [['quantize', '--from', '{lm}', '--quant', 'w4a16-g32', '--calib', 'kl', '--out', '{out}'], /--calib does not apply to language-model runs \(.* is trained on text\): their activations are dynamic \(per token\); calibrate GPTQ\/AWQ\/SmoothQuant with --method/, 2],
    [['quantize', '--from', '{lm}', '--quant', 'w4a16-g32', '--calib-batches', '4', '--out', '{out}'], /--calib-batches does not apply to language-model runs/, 2],
    [['quantize', '--from', '{lm}', '--quant', 'w4a4', '--out', '{out}'], /'w4a4' is not a language-model preset/, 1],
    [['quantize', '--from', '{qat}', '--quant', 'w4a16-g32', '--out', '{out}'], /is a quantization-aware run \(qat w4a16-g32\); PTQ needs an fp32 run/, 1],
    [['quantize', '--from', '{lm}', '--quant', 'w4a16-g32', '--out', '{lm}'], /is the run directory itself/, 1],
  ]);
});

test('qat generate / eval --from: an image run, a tokenizer other than the run\'s, a context beyond its positions are refused', async () => {
  await allRefused([
    [['generate', '--from', '{image}', '--prompt', 'a', '--tokens', '2'], /--from: '.*image' is an image-classification run \(data 'mnist'\); give a run trained on text/, 1],
    [['generate', '--from', '{lm}', '--prompt', 'a', '--tokens', '2', '--tokenizer', 'gpt2'], /--tokenizer gpt2 does not apply to --from .*: the run was trained with the bytes tokenizer/, 2],
    [['generate', '--from', '{lm}', '--prompt', 'a', '--tokens', '2', '--tokenizer', 'sentencepiece'], /--tokenizer must be one of bytes, gpt2, got 'sentencepiece'/, 1],
    [['generate', '--from', '{lm}', '--prompt', 'a', '--tokens', '2', '--context', '99'], /--context 99 is longer than the model's 8 positions; give --context 1\.\.8/, 1],
    [['eval', '--from', '{lm}', '--data', 'mnist'], /--data must be one of moby-dick, sotu or a path ending in \.txt for a language model, got 'mnist'/, 1],
  ]);
});

test('a malformed model.json beside a decoder (its tokenizer, context, tensor names) is refused naming model.json and the field', async () => {
  const file = path.join(decoderDir, 'model.json');
  const good = JSON.parse(fs.readFileSync(file, 'utf8'));
  const variants: [string, string, RegExp][] = [
    ['null', 'null', /model\.json: must be a JSON object \(format "qatkit-language-model"\), got null/],
    ['an array', '[1]', /model\.json: must be a JSON object .*got an array/],
    ['not JSON', '{"format": ', /model\.json: not valid JSON/],
    ['an unknown format', JSON.stringify({ ...good, format: 'hf-config' }), /model\.json: field "format" must be "qatkit-language-model", got "hf-config"/],
    ['an unknown tokenizer', JSON.stringify({ ...good, tokenizer: 'sentencepiece' }), /model\.json: field "tokenizer" must be one of bytes, gpt2, got "sentencepiece"/],
    ['a context of 0', JSON.stringify({ ...good, context: 0 }), /model\.json: field "context" must be an integer >= 1, got 0/],
    ['a fractional vocabulary', JSON.stringify({ ...good, vocabSize: 256.5 }), /model\.json: field "vocabSize" must be an integer >= 1, got 256\.5/],
    ['no inputs', JSON.stringify({ ...good, inputs: null }), /model\.json: field "inputs" must be an object with inputIds/],
    ['a numeric logits name', JSON.stringify({ ...good, outputs: { logits: 7 } }), /model\.json: field "outputs" must be an object with logits/],
    ['a null session config', JSON.stringify({ ...good, sessionConfig: null }), /model\.json: field "sessionConfig" must be an object of string values/],
  ];
  const failures: string[] = [];
  try {
    for (const [why, content, expect] of variants) {
      fs.writeFileSync(file, content);
      for (const argv of [
        ['generate', '--model', path.join(decoderDir, 'decoder.onnx'), '--prompt', 'ab', '--tokens', '2'],
        ['eval', '--model', path.join(decoderDir, 'decoder.onnx'), '--data', 'moby-dick'],
      ]) {
        const r = await runCorpusCase(argv);
        const lines = r.stderr.split('\n').filter((l) => l !== '');
        if (r.code !== 1 || lines.length !== 1 || !expect.test(r.stderr) || r.stdout !== '' || /internal error/.test(r.stderr)) {
          failures.push(`${why} [${argv[0]}]: exit ${r.code}, stderr ${r.stderr.trim()}, stdout ${r.stdout.slice(0, 60)}`);
        }
      }
    }
  } finally {
    fs.writeFileSync(file, JSON.stringify(good));
  }
  assert.equal(failures.length, 0, `\n${failures.join('\n')}`);
});
