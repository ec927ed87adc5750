/**
 * The fuzz suite's generators (fast-check) and targets, shared by test/fuzz/fuzz.test.ts (bounded, in CI) and
 * bench/fuzz.ts (longer). Generators mutate the corpus's valid base files: bytes (truncation, bit flips, byte
 * overwrites, insertions) and structure (dtypes, dims, names duplicated or left dangling, attributes, header
 * fields); targets are the real loaders and the `qat` command line. Every outcome must be a success or a clean
 * refusal: an Error of qatkit's (not a TypeError/RangeError from a bug), one line naming the input, in bounded time,
 * nothing written.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { loadModel } from '../../src/onnx/model-io';
import { importForTraining } from '../../src/models/resolve';
import { checkClassifierFitsData } from '../../src/models/check-io';
import { checkEvaluatedModel } from '../../src/export/evaluate-file';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { parseQuantConfig } from '../../src/quant/config-file';
import { planQuantization } from '../../src/quant/prepare';
import { resolveModel } from '../../src/models/resolve';
import { planTrain } from '../../src/train/run';
import { errorLine } from '../../src/cli/terminal';
import { joinCheckpoint, splitCheckpoint } from './checkpoint-bytes';
import { runCorpusCase } from './run-qat';
import { scratchDir } from './scratch.js';

const { onnx } = onnxProto;
const corpus = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/malformed');
export const BASE_ONNX = fs.readFileSync(path.join(corpus, 'onnx/base-valid.onnx'));
export const BASE_CHECKPOINT = fs.readFileSync(path.join(corpus, 'checkpoint/base-valid.qat'));

/** Longest a single case may take (a hang shows as a failure with its input). */
export const CASE_TIMEOUT_MS = 5000;

// ---------------- byte mutations ----------------
type ByteMutation = { kind: 'truncate'; at: number } | { kind: 'flip'; at: number; bit: number } | { kind: 'set'; at: number; value: number } | { kind: 'insert'; at: number; bytes: number[] };
const byteMutation = (): fc.Arbitrary<ByteMutation> =>
  fc.oneof(
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
    fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.constantFrom(0, 1, 0x7f, 0x80, 0xff, 0x0a, 0x1b) }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 8 }) }),
  );
function applyBytes(base: Uint8Array, ms: ByteMutation[]): Buffer {
  let b = Buffer.from(base);
  for (const m of ms) {
    const at = b.length ? m.at % b.length : 0;
    if (m.kind === 'truncate') b = b.subarray(0, at);
    else if (m.kind === 'flip' && b.length) b[at] ^= 1 << m.bit;
    else if (m.kind === 'set' && b.length) b[at] = m.value;
    else if (m.kind === 'insert') b = Buffer.concat([b.subarray(0, at), Buffer.from(m.bytes), b.subarray(at)]);
  }
  return b;
}
export const mutatedBytes = (base: Uint8Array) => fc.array(byteMutation(), { minLength: 1, maxLength: 3 }).map((ms) => applyBytes(base, ms));

// ---------------- ONNX structure mutations ----------------
const weirdInt = fc.oneof(fc.integer({ min: -3, max: 70 }), fc.constantFrom(0, -1, 2 ** 31, 2 ** 40, Number.MAX_SAFE_INTEGER, 1e9));
type OnnxMutation = (m: OnnxTypes.ModelProto, pick: number, value: number) => void;
const ONNX_MUTATIONS: Record<string, OnnxMutation> = {
  dtype: (m, p, v) => void (at(m.graph!.initializer!, p).dataType = v),
  dims: (m, p, v) => void (at(m.graph!.initializer!, p).dims = [v, ...(at(m.graph!.initializer!, p).dims ?? []).slice(1)] as never),
  rank: (m, p, v) => void (at(m.graph!.initializer!, p).dims = Array.from({ length: Math.abs(v) % 12 }, () => 1) as never),
  danglingInput: (m, p) => void (at(m.graph!.node!, p).input![0] = `dangling_${p}`),
  duplicateNodeOutput: (m, p) => void (at(m.graph!.node!, p).output![0] = at(m.graph!.node!, p + 1).output![0]),
  duplicateInitializer: (m, p) => void m.graph!.initializer!.push({ ...at(m.graph!.initializer!, p) }),
  duplicateOutput: (m) => void m.graph!.output!.push({ ...m.graph!.output![0] }),
  renameOutput: (m, p) => void (m.graph!.output![0].name = at(m.graph!.node!, p).output![0] + (p % 2 ? '' : '_x')),
  dropNode: (m, p) => void m.graph!.node!.splice(p % m.graph!.node!.length, 1),
  swapNodes: (m, p) => {
    const n = m.graph!.node!;
    const [i, j] = [p % n.length, (p * 7 + 3) % n.length];
    [n[i], n[j]] = [n[j], n[i]];
  },
  cycle: (m, p) => void (at(m.graph!.node!, 0).input![0] = at(m.graph!.node!, p).output![0]),
  opType: (m, p, v) => void (at(m.graph!.node!, p).opType = ['', 'Conv', 'Gemm', 'If', 'Loop', 'Scan', 'Foo', 'Constant', 'Softmax', 'QuantizeLinear'][Math.abs(v) % 10]),
  intAttribute: (m, p, v) => {
    const attrs = at(m.graph!.node!, p).attribute ?? [];
    if (!attrs.length) return;
    const a = at(attrs, v);
    if (a.ints?.length) a.ints = a.ints.map(() => v);
    else a.i = v;
  },
  attributeType: (m, p, v) => {
    const attrs = at(m.graph!.node!, p).attribute ?? [];
    if (attrs.length) at(attrs, v).type = v;
  },
  irVersion: (m, _p, v) => void (m.irVersion = v as never),
  opset: (m, _p, v) => void (m.opsetImport![0].version = v as never),
  rawLength: (m, p, v) => {
    const t = at(m.graph!.initializer!, p);
    t.rawData = new Uint8Array(Math.abs(v) % 4096);
  },
  nanValue: (m, p, v) => {
    const t = at(m.graph!.initializer!, p);
    // An earlier mutation of the same case (rawLength) may have left bytes that are no whole float32.
    if (t.dataType !== 1 || !t.rawData?.length || t.rawData.length % 4) return;
    const a = new Float32Array(new Uint8Array(t.rawData).buffer);
    a[Math.abs(v) % a.length] = [NaN, Infinity, -Infinity, -1][Math.abs(v) % 4];
    t.rawData = new Uint8Array(a.buffer);
  },
  inputDims: (m, p, v) => {
    const dims = m.graph!.input![0].type!.tensorType!.shape!.dim!;
    dims[p % dims.length] = { dimValue: v } as never;
  },
  externalData: (m, p, v) => {
    const t = at(m.graph!.initializer!, p);
    t.rawData = new Uint8Array();
    t.dataLocation = 1;
    t.externalData = [{ key: 'location', value: ['../x', '/etc/passwd', 'weights.bin', '', '.', 'a/../../b'][Math.abs(v) % 6] }, { key: 'offset', value: String(v) }];
  },
  controlName: (m, p) => void (at(m.graph!.node!, p).name = `\u001b[31m\n${p}\u202e`),
};
function at<T>(list: T[], i: number): T {
  return list[Math.abs(i) % list.length];
}
const onnxMutation = fc.record({ kind: fc.constantFrom(...Object.keys(ONNX_MUTATIONS)), pick: fc.nat(), value: weirdInt });
export const mutatedOnnx = fc.oneof(
  mutatedBytes(BASE_ONNX),
  fc.array(onnxMutation, { minLength: 1, maxLength: 3 }).map((ms) => {
    const m = onnx.ModelProto.decode(BASE_ONNX);
    for (const x of ms) ONNX_MUTATIONS[x.kind](m, x.pick, x.value);
    return Buffer.from(onnx.ModelProto.encode(m).finish());
  }),
);

// ---------------- checkpoint header mutations (resealed) ----------------
const jsonish = fc.oneof(fc.constantFrom(null, true, 'abc', '', -1, 0, 1.5, 1e9, 2 ** 53, [], {}, [1, 2], { a: 1 }), fc.integer(), fc.string({ maxLength: 8 }));
const headerPaths = ['step', 'rng.step', 'rng.seed', 'payload', 'model.offset', 'model.length', 'model.input', 'model.output', 'model.params', 'model.params.0', 'model.runningStats', 'model.noDecay', 'model.name', 'model.task', 'model.lm', 'model.quant', 'tensors', 'tensors.0', 'tensors.0.name', 'tensors.0.dtype', 'tensors.0.dims', 'tensors.0.dims.0', 'tensors.0.offset', 'tensors.0.length', 'config', 'config.batch', 'config.lr', 'config.epochs', 'config.steps', 'config.model', 'config.data', 'config.threads', 'config.seed', 'config.optimizer', 'config.schedule', 'config.input', 'config.from', 'config.distill', 'config.quant', 'config.quantConfig', 'metrics', 'metrics.train_loss_last', 'extra'];
export const mutatedCheckpointHeader = fc.array(fc.record({ path: fc.constantFrom(...headerPaths), value: fc.oneof(jsonish, fc.constant(undefined)) }), { minLength: 1, maxLength: 3 }).map((edits) => {
  const parts = splitCheckpoint(BASE_CHECKPOINT);
  for (const e of edits) {
    const keys = e.path.split('.');
    let o: any = parts.header;
    for (const k of keys.slice(0, -1)) o = o !== null && typeof o === 'object' ? o[k] : undefined;
    // An edit that replaced a parent by an array can reach that array's `length`: skip it, it is not a header field.
    if (o !== null && typeof o === 'object' && !(Array.isArray(o) && keys.at(-1) === 'length')) {
      if (e.value === undefined) delete o[keys.at(-1)!];
      // A copy: fast-check hands out one instance of each constant, which two edits could nest into itself.
      else o[keys.at(-1)!] = structuredClone(e.value);
    }
  }
  return joinCheckpoint(parts);
});

// ---------------- quant configs ----------------
const quantValue = fc.oneof(jsonish, fc.constantFrom(2, 3, 4, 8, 16, 0.01, 'lsq', 'minmax', 'absmax', 'per-group', 'per-token', 'per-channel', 'w4a4', 'conv*', 'fc0', 'nope*', true, false));
const roleKeys = ['bits', 'method', 'granularity', 'groupSize', 'symmetric', 'rmsNorm', 'bitz', 'Bits'];
const role = fc.dictionary(fc.constantFrom(...roleKeys), quantValue, { maxKeys: 4 });
export const mutatedQuantConfig = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.record(
    {
      preset: fc.oneof(quantValue, fc.constantFrom('w8a8', 'w4a4', 'ternary')),
      weight: fc.oneof(role, quantValue),
      activation: fc.oneof(role, quantValue),
      firstLastBits: quantValue,
      foldBatchNorm: quantValue,
      observerMomentum: fc.oneof(quantValue, fc.double({ noNaN: false })),
      overrides: fc.oneof(fc.array(fc.record({ match: quantValue, weight: role, skip: quantValue }, { requiredKeys: [] }), { maxLength: 3 }), quantValue),
      wieght: role,
    },
    { requiredKeys: [] },
  ),
);

// ---------------- command lines ----------------
const flagValue = fc.oneof(
  fc.constantFrom('1', '2', '8', '0', '-1', '1e3', '0x10', ' 5', '5.0', '1.5', 'NaN', 'Infinity', '999999999999999999999', '', 'abc', '\u001b[2J', '../../etc', '0.5,0.5', 'mnist', 'moby-dick', 'lenet', 'mlp', 'w4a4', 'cosine', 'sgd', 'x.json', 'x.onnx'),
  fc.integer({ min: -5, max: 300 }).map(String),
);
const TRAIN_FLAGS = ['--model', '--data', '--epochs', '--steps', '--batch', '--optimizer', '--lr', '--weight-decay', '--schedule', '--warmup-steps', '--label-smoothing', '--clip-norm', '--augment-shift', '--seed', '--threads', '--input-scale', '--input-mean', '--input-std', '--quant', '--from', '--distill-weight', '--distill-temperature', '--bn-freeze-step', '--observer-freeze-step', '--calib-batches', '--oscillation-dampen', '--oscillation-freeze', '--tokenizer', '--context', '--layers', '--heads', '--dim', '--accumulate', '--eval-every', '--checkpoint-every', '--json'];
const SWITCHES = ['--resume', '--distill', '--bogus'];
export const trainArgv = fc.array(fc.oneof(fc.tuple(fc.constantFrom(...TRAIN_FLAGS), flagValue), fc.tuple(fc.constantFrom(...SWITCHES))), { maxLength: 5 }).map((pairs) => pairs.flat());

// ---------------- targets ----------------
const BUG = [TypeError, RangeError, ReferenceError, SyntaxError, EvalError, URIError];

/** A refusal is clean: one of qatkit's errors, whose one-line form names the input. */
export function assertCleanRefusal(e: unknown, name: string | undefined): void {
  if (!(e instanceof Error)) throw new Error(`threw a non-Error: ${String(e)}`);
  if (BUG.some((k) => e.constructor === k)) throw new Error(`a bug surfaced: ${e.constructor.name}: ${e.message}\n${e.stack}`);
  const line = errorLine(e.message);
  if (name && !line.includes(name)) throw new Error(`the error does not name '${name}': ${line}`);
  if (/Cannot read properties|Invalid (typed )?array length|is not a function|undefined \(reading/.test(line)) throw new Error(`an internal message surfaced: ${line}`);
}

function timed<T>(what: string, run: () => T): T {
  const t0 = Date.now();
  const r = run();
  const ms = Date.now() - t0;
  if (ms > CASE_TIMEOUT_MS) throw new Error(`${what} took ${ms} ms (limit ${CASE_TIMEOUT_MS})`);
  return r;
}

const scratch = () => scratchDir('qatkit-fuzz-');

/** The ONNX loaders of train and eval on a mutated model file: accepted, or refused cleanly naming the file. */
export function onnxTarget(bytes: Uint8Array): void {
  const dir = scratch();
  const file = path.join(dir, 'm.onnx');
  fs.writeFileSync(file, bytes);
  try {
    timed('loading', () => {
      try {
        const m = importForTraining(file);
        checkClassifierFitsData(m.graph, m.input, m.output, [1, 28, 28], 10, file, 'mnist');
      } catch (e) {
        assertCleanRefusal(e, 'm.onnx');
      }
      try {
        checkEvaluatedModel(loadModel(file), { name: 'mnist', shape: [1, 28, 28], classes: 10 } as never, file);
      } catch (e) {
        assertCleanRefusal(e, 'm.onnx');
      }
    });
    if (fs.readdirSync(dir).length !== 1) throw new Error(`files were written: ${fs.readdirSync(dir)}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A byte-mutated checkpoint is always refused (checksum); a resealed header edit is accepted or refused cleanly, also by --resume's plan. */
export async function checkpointTarget(bytes: Uint8Array, mustRefuse: boolean): Promise<void> {
  const dir = scratch();
  const file = path.join(dir, 'checkpoint.qat');
  fs.writeFileSync(file, bytes);
  try {
    const t0 = Date.now();
    let loaded = false;
    try {
      loadCheckpoint(file);
      loaded = true;
    } catch (e) {
      assertCleanRefusal(e, file);
    }
    if (loaded && mustRefuse && !Buffer.from(bytes).equals(BASE_CHECKPOINT)) throw new Error('a byte-mutated checkpoint was accepted');
    if (loaded) {
      try {
        await planTrain({} as never, dir, { resume: true, maxThreads: 2 });
      } catch (e) {
        assertCleanRefusal(e, undefined);
      }
    }
    if (Date.now() - t0 > CASE_TIMEOUT_MS) throw new Error(`took ${Date.now() - t0} ms`);
    const left = fs.readdirSync(dir);
    if (left.length !== 1) throw new Error(`files were written: ${left}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

let lenet: ReturnType<typeof resolveModel> | undefined;
/** A quant config is refused cleanly naming the file, or is a config whose values are in range and plan LeNet. */
export function quantConfigTarget(raw: unknown): void {
  timed('parsing', () => {
    let config;
    try {
      config = parseQuantConfig(raw, 'q.json');
    } catch (e) {
      assertCleanRefusal(e, 'q.json');
      return;
    }
    if (!(config.observerMomentum > 0 && config.observerMomentum <= 1)) throw new Error(`observerMomentum ${config.observerMomentum} accepted`);
    if (typeof config.foldBatchNorm !== 'boolean') throw new Error(`foldBatchNorm ${String(config.foldBatchNorm)} accepted`);
    lenet ??= resolveModel('lenet', 'mnist', 0);
    try {
      planQuantization(lenet, config);
    } catch (e) {
      assertCleanRefusal(e, undefined);
    }
  });
}

/** `qat train ... --dry-run`: exit 0 having written nothing, or 1/2 with one `qat:` line; never a bug, never a directory. */
export async function cliTarget(argv: string[]): Promise<void> {
  const dir = scratch();
  const out = path.join(dir, 'out');
  try {
    const r = await runCorpusCase(['train', ...argv, '--dry-run', '--out', out]);
    const lines = r.stderr.split('\n').filter(Boolean);
    if (r.code === 0) {
      if (!/^dry run: /.test(r.stdout)) throw new Error(`exit 0 without a dry-run line: ${r.stdout}`);
    } else {
      if (r.code !== 1 && r.code !== 2) throw new Error(`exit code ${r.code}: ${r.stderr}`);
      if (lines.length !== 1 || !lines[0].startsWith('qat: ')) throw new Error(`not one 'qat:' line: ${JSON.stringify(r.stderr)}`);
      if (/internal error|\n\s+at /.test(r.stderr)) throw new Error(`a bug surfaced: ${r.stderr}`);
    }
    if (/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/.test(r.stdout + r.stderr)) throw new Error('a raw control character reached the terminal');
    if (fs.existsSync(out) || fs.readdirSync(dir).length) throw new Error(`files were written: ${fs.readdirSync(dir)}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
