import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { z } from 'zod';
import { DType } from '../ir/dtype.js';
import { Tensor } from '../ir/tensor.js';
import { decodeModel, encodeModel } from '../onnx/model-io.js';
import { writeFileAtomic } from '../onnx/atomic-write.js';
import { Model } from '../models/model.js';
import { inferTypes } from '../ir/infer.js';
import { qatConfigSchema } from '../quant/config-file.js';
import { SCALE_METHODS } from '../quant/spec.js';
import { MAX_CHECKPOINT_BYTES, MAX_CHECKPOINT_HEADER_BYTES, MAX_RANK, MAX_TENSOR_BYTES } from '../validate/limits.js';
import { bool, InputError, intIn, oneOf, parseWith, text } from '../validate/schema.js';
import '../ops/index.js';
import '../quant/index.js';

/** Format 2: magic, version, header length, JSON header, payload, SHA-256 of all that precedes it. */
const MAGIC = 'QATKIT-CHECKPOINT\n';
export const CHECKPOINT_FORMAT = 2;
/** Format 1 (before issue 14): magic line with the version, header length, header, payload; no checksum. */
const MAGIC_V1 = 'QATKIT-CHECKPOINT-1\n';
const DIGEST_BYTES = 32;

/** Everything needed to continue a run exactly: model (with current values), optimizer state, step, RNG, config. */
export interface Checkpoint {
  model: Model;
  /** Optimizer state by graph-input name (e.g. 'adam_m/conv0.weight'). */
  optimizerState: Map<string, Tensor>;
  step: number;
  /** The data order and augmentation derive from (seed, epoch, batch), so the seed and step are the RNG state. */
  rng: { seed: number; step: number };
  config: Record<string, unknown>;
  metrics?: Record<string, unknown>;
  /** Format version of the file read (absent on a checkpoint built in memory). */
  format?: number;
}

const name = text('a name (a non-empty string)');
const names = z.array(name, { error: 'must be an array of names' });
const specSchema = z.looseObject({
  bits: intIn(1, 16),
  signed: bool(),
  symmetric: bool(),
  narrowRange: bool(),
  method: oneOf(SCALE_METHODS),
  granularity: z.discriminatedUnion(
    'kind',
    [
      z.strictObject({ kind: z.literal('per-tensor') }),
      z.strictObject({ kind: z.literal('per-channel'), axis: intIn(0, MAX_RANK - 1) }),
      z.strictObject({ kind: z.literal('per-group'), axis: intIn(0, MAX_RANK - 1), size: intIn(1, 1 << 20) }),
      z.strictObject({ kind: z.literal('per-token'), blockSize: intIn(1, 1 << 20).optional() }),
    ],
    { error: 'must be { "kind": per-tensor | per-channel | per-group | per-token, ... }' },
  ),
});
const quantSchema = z.looseObject({
  preset: z.string().optional(),
  method: z.literal('ptq').optional(),
  calib: z.string().optional(),
  config: qatConfigSchema,
  quantizers: z.array(
    z.looseObject({
      role: oneOf(['weight', 'activation'] as const),
      tensor: name,
      output: name,
      node: name,
      layers: names,
      spec: specSchema,
      scale: name.optional(),
      zeroPoint: name.optional(),
      learned: names,
      observer: z.strictObject({ min: name, max: name }).optional(),
    }),
  ),
  folded: z.array(z.looseObject({ conv: name, batchNorm: name, scaledWeight: name, weight: name, biasAdd: name.optional() })),
});
const lmSchema = z.looseObject({
  vocabSize: intIn(1, 1 << 24),
  context: intIn(1, 1 << 24),
  attentionMask: name.optional(),
  positionIds: name.optional(),
  arch: z
    .strictObject({ kind: oneOf(['gpt', 'llama'] as const), layers: intIn(1, 4096), heads: intIn(1, 4096), dim: intIn(1, 1 << 20), context: intIn(1, 1 << 24), vocabSize: intIn(1, 1 << 24), hidden: intIn(1, 1 << 22) })
    .optional(),
});
const span = { offset: intIn(0), length: intIn(0) };
const headerSchema = z.strictObject({
  step: intIn(0, 2 ** 31 - 1),
  rng: z.strictObject({ seed: intIn(0, 2 ** 32 - 1), step: intIn(0, 2 ** 31 - 1) }),
  config: z.record(z.string(), z.unknown(), { error: 'must be a JSON object' }),
  metrics: z.record(z.string(), z.unknown(), { error: 'must be a JSON object' }).optional(),
  payload: intIn(0).optional(),
  model: z.strictObject({
    name: z.string({ error: 'must be a string' }),
    task: oneOf(['classification', 'language-model'] as const).optional(),
    lm: lmSchema.optional(),
    input: name,
    output: name,
    params: names,
    runningStats: names,
    noDecay: names,
    observerStats: names.optional(),
    quant: quantSchema.optional(),
    ...span,
  }),
  tensors: z.array(
    z.strictObject({
      name,
      dtype: z.literal(DType.FLOAT, { error: 'must be 1 (float32: optimizer state is float32)' }),
      dims: z.array(intIn(0, 2 ** 31 - 1)).max(MAX_RANK, { error: `must have at most ${MAX_RANK} dims` }),
      ...span,
    }),
  ),
});
type Header = z.infer<typeof headerSchema>;

/**
 * One file (format 2): the magic line `QATKIT-CHECKPOINT`, a little-endian uint32 format version, a uint32 header
 * length, a JSON header, then the ONNX bytes of the model and the raw optimizer-state tensors, then the SHA-256 of
 * everything before it. Written to a temp file, flushed and renamed, so an interrupted save never destroys the
 * previous checkpoint; a flipped bit or a truncated copy fails the checksum on load.
 */
export function saveCheckpoint(file: string, ckpt: Checkpoint): void {
  const blobs: Uint8Array[] = [];
  let offset = 0;
  const push = (bytes: Uint8Array) => {
    blobs.push(bytes);
    const at = offset;
    offset += bytes.byteLength;
    return { offset: at, length: bytes.byteLength };
  };
  const modelBytes = encodeModel(ckpt.model.graph);
  const m = ckpt.model;
  const header: Header = {
    step: ckpt.step,
    rng: ckpt.rng,
    config: ckpt.config,
    metrics: ckpt.metrics,
    model: { name: m.name, task: m.task, lm: m.lm as Header['model']['lm'], input: m.input, output: m.output, params: m.params, runningStats: m.runningStats, noDecay: m.noDecay, observerStats: m.observerStats, quant: m.quant as Header['model']['quant'], ...push(modelBytes) },
    tensors: [...ckpt.optimizerState].map(([name, t]) => ({
      name,
      dtype: t.dtype as DType.FLOAT,
      dims: t.dims,
      ...push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)),
    })),
  };
  header.payload = offset;
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const fixed = Buffer.alloc(8);
  fixed.writeUInt32LE(CHECKPOINT_FORMAT, 0);
  fixed.writeUInt32LE(json.length, 4);
  const parts = [Buffer.from(MAGIC), fixed, json, ...blobs.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength))];
  const hash = createHash('sha256');
  for (const p of parts) hash.update(p);
  writeFileAtomic(file, Buffer.concat([...parts, hash.digest()]));
}

/**
 * Reads and checks a checkpoint before anything is built from it: magic, format version (a newer one is refused
 * with its number), checksum, header schema (every field typed and in range), the spans of the model and of each
 * tensor inside the payload, the model itself (decodeModel's validation), that the names the header lists exist in
 * the model, and that every optimizer-state value is finite. Every refusal is one line naming the file.
 */
export function loadCheckpoint(file: string): Checkpoint {
  const fail = (why: string): never => {
    throw new InputError(`checkpoint '${file}': ${why}`);
  };
  let buf: Buffer;
  try {
    const stat = fs.statSync(file);
    if (!stat.isFile()) fail('not a regular file');
    if (stat.size > MAX_CHECKPOINT_BYTES) fail(`${stat.size} bytes, more than the ${MAX_CHECKPOINT_BYTES} a checkpoint may have`);
    buf = fs.readFileSync(file);
  } catch (e) {
    if (e instanceof InputError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(`cannot read checkpoint '${file}': ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  let format = 0;
  let headerStart = 0;
  let headerLength = 0;
  let end = buf.length;
  if (buf.subarray(0, MAGIC.length).toString('latin1') === MAGIC) {
    if (buf.length < MAGIC.length + 8 + DIGEST_BYTES) fail(`${buf.length} bytes: truncated (shorter than the fixed header and checksum)`);
    format = buf.readUInt32LE(MAGIC.length);
    if (format > CHECKPOINT_FORMAT) fail(`format version ${format} is newer than this qatkit reads (versions 1..${CHECKPOINT_FORMAT}); upgrade qatkit`);
    if (format < 2) fail(`format version ${format} is invalid in a version-2 file (corrupt)`);
    end = buf.length - DIGEST_BYTES;
    const digest = createHash('sha256').update(buf.subarray(0, end)).digest();
    if (!digest.equals(buf.subarray(end))) fail('checksum mismatch: the file is corrupt or truncated (its SHA-256 does not match the one it was written with)');
    headerLength = buf.readUInt32LE(MAGIC.length + 4);
    headerStart = MAGIC.length + 8;
  } else if (buf.subarray(0, MAGIC_V1.length).toString('latin1') === MAGIC_V1) {
    format = 1;
    if (buf.length < MAGIC_V1.length + 4) fail(`${buf.length} bytes: truncated`);
    headerLength = buf.readUInt32LE(MAGIC_V1.length);
    headerStart = MAGIC_V1.length + 4;
  } else {
    const newer = /^QATKIT-CHECKPOINT-(\d+)\n/.exec(buf.subarray(0, 40).toString('latin1'));
    if (newer) fail(`format version ${newer[1]} is not one this qatkit reads (versions 1..${CHECKPOINT_FORMAT}); upgrade qatkit`);
    fail('not a qatkit checkpoint (bad magic at byte 0)');
  }
  if (headerLength > MAX_CHECKPOINT_HEADER_BYTES || headerStart + headerLength > end) fail(`header length ${headerLength} runs past the end of the file (${buf.length} bytes)`);
  let raw: unknown;
  try {
    raw = JSON.parse(buf.subarray(headerStart, headerStart + headerLength).toString('utf8'));
  } catch (e) {
    fail(`corrupt header at byte ${headerStart} (${(e as Error).message})`);
  }
  const header = parseWith(headerSchema, raw, `checkpoint '${file}': header`);
  const data = headerStart + headerLength;
  const payload = end - data;
  if (format >= 2 && header.payload !== payload) fail(`header says the payload has ${header.payload} bytes, the file holds ${payload}`);
  if (header.rng.step !== header.step) fail(`rng.step ${header.rng.step} differs from step ${header.step}`);
  const slice = (offset: number, length: number, what: string) => {
    if (offset + length > payload) fail(`${what} (bytes ${offset}..${offset + length} of the payload) runs past its end (${payload} bytes; truncated?)`);
    return buf.subarray(data + offset, data + offset + length);
  };
  const hm = header.model;
  let graph;
  try {
    graph = decodeModel(slice(hm.offset, hm.length, 'the model'), { source: `${file} (model)` });
    inferTypes(graph);
  } catch (e) {
    if (e instanceof InputError) throw e;
    fail(`its model is invalid: ${(e as Error).message}`);
  }
  graph = graph!;
  const inputs = new Set(graph.inputs.map((v) => v.name));
  if (!inputs.has(hm.input)) fail(`model.input '${hm.input}' is not an input of its model (inputs: ${[...inputs].join(', ')})`);
  if (!graph.outputs.some((v) => v.name === hm.output)) fail(`model.output '${hm.output}' is not an output of its model`);
  for (const [key, list] of [['params', hm.params], ['runningStats', hm.runningStats], ['observerStats', hm.observerStats ?? []], ['noDecay', hm.noDecay]] as const) {
    const seen = new Set<string>();
    for (const n of list) {
      if (seen.has(n)) fail(`model.${key} lists '${n}' twice`);
      seen.add(n);
      const t = graph.initializers.get(n);
      if (!t) fail(`model.${key} names '${n}', which is not an initializer of its model`);
      if (key !== 'noDecay' && t!.dtype !== DType.FLOAT) fail(`model.${key} '${n}' is not float32`);
    }
  }
  const optimizerState = new Map<string, Tensor>();
  for (const t of header.tensors) {
    if (optimizerState.has(t.name)) fail(`tensor '${t.name}' appears twice`);
    const count = t.dims.reduce((a, b) => a * b, 1);
    if (count * 4 > MAX_TENSOR_BYTES) fail(`tensor '${t.name}' [${t.dims}] is larger than the ${MAX_TENSOR_BYTES}-byte limit`);
    if (t.length !== count * 4) fail(`tensor '${t.name}': ${t.length} bytes for dims [${t.dims}] of float32 (need ${count * 4})`);
    const bytes = slice(t.offset, t.length, `tensor '${t.name}'`);
    const arr = new Float32Array(count);
    new Uint8Array(arr.buffer).set(bytes);
    for (let i = 0; i < count; i++) if (!Number.isFinite(arr[i])) fail(`tensor '${t.name}' holds ${arr[i]} at index ${i}`);
    optimizerState.set(t.name, new Tensor(DType.FLOAT, t.dims, arr));
  }
  return {
    model: {
      name: hm.name,
      ...(hm.task ? { task: hm.task } : {}),
      ...(hm.lm ? { lm: hm.lm as Model['lm'] } : {}),
      graph,
      input: hm.input,
      output: hm.output,
      params: hm.params,
      runningStats: hm.runningStats,
      noDecay: hm.noDecay,
      observerStats: hm.observerStats,
      quant: hm.quant as unknown as Model['quant'],
    },
    optimizerState,
    step: header.step,
    rng: header.rng,
    config: header.config,
    metrics: header.metrics,
    format: format,
  };
}
