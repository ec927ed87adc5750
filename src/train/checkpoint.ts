import fs from 'node:fs';
import { DType, allocate } from '../ir/dtype';
import { Tensor } from '../ir/tensor';
import { decodeModel, encodeModel } from '../onnx/model-io';
import { writeFileAtomic } from '../onnx/atomic-write';
import { Model } from '../models/model';
import { inferTypes } from '../ir/infer';
import '../ops';
import '../quant';

const MAGIC = 'QATKIT-CHECKPOINT-1\n';

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
}

interface Header {
  step: number;
  rng: Checkpoint['rng'];
  config: Record<string, unknown>;
  metrics?: Record<string, unknown>;
  model: { name: string; task?: Model['task']; lm?: Model['lm']; input: string; output: string; params: string[]; runningStats: string[]; noDecay: string[]; observerStats?: string[]; quant?: Model['quant']; offset: number; length: number };
  tensors: { name: string; dtype: DType; dims: number[]; offset: number; length: number }[];
}

/**
 * One file: a magic line, a little-endian uint32 header length, a JSON header, then the ONNX bytes of the model
 * and the raw optimizer-state tensors. Written to a temp file and renamed, so an interrupted save never
 * destroys the previous checkpoint.
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
    model: { name: m.name, task: m.task, lm: m.lm, input: m.input, output: m.output, params: m.params, runningStats: m.runningStats, noDecay: m.noDecay, observerStats: m.observerStats, quant: m.quant, ...push(modelBytes) },
    tensors: [...ckpt.optimizerState].map(([name, t]) => ({
      name,
      dtype: t.dtype,
      dims: t.dims,
      ...push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)),
    })),
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  writeFileAtomic(file, Buffer.concat([Buffer.from(MAGIC), len, json, ...blobs.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength))]));
}

export function loadCheckpoint(file: string): Checkpoint {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`cannot read checkpoint '${file}': ${(e as Error).message}`);
  }
  if (buf.subarray(0, MAGIC.length).toString() !== MAGIC) throw new Error(`'${file}' is not a qatkit checkpoint (bad magic at byte 0)`);
  const hlen = buf.readUInt32LE(MAGIC.length);
  const start = MAGIC.length + 4;
  let header: Header;
  try {
    header = JSON.parse(buf.subarray(start, start + hlen).toString('utf8'));
  } catch (e) {
    throw new Error(`checkpoint '${file}': corrupt header at byte ${start} (${(e as Error).message})`);
  }
  const data = start + hlen;
  const slice = (offset: number, length: number, what: string) => {
    if (data + offset + length > buf.length) throw new Error(`checkpoint '${file}': ${what} runs past the end of the file (truncated?)`);
    return buf.subarray(data + offset, data + offset + length);
  };
  const hm = header.model;
  const graph = decodeModel(slice(hm.offset, hm.length, 'model'), { source: file });
  inferTypes(graph);
  const optimizerState = new Map<string, Tensor>();
  for (const t of header.tensors) {
    const bytes = slice(t.offset, t.length, `tensor '${t.name}'`);
    const arr = allocate(t.dtype, t.dims.reduce((a, b) => a * b, 1));
    new Uint8Array(arr.buffer).set(bytes);
    optimizerState.set(t.name, new Tensor(t.dtype, t.dims, arr));
  }
  return {
    model: { name: hm.name, ...(hm.task ? { task: hm.task } : {}), ...(hm.lm ? { lm: hm.lm } : {}), graph, input: hm.input, output: hm.output, params: hm.params, runningStats: hm.runningStats, noDecay: hm.noDecay, observerStats: hm.observerStats, quant: hm.quant },
    optimizerState,
    step: header.step,
    rng: header.rng,
    config: header.config,
    metrics: header.metrics,
  };
}
