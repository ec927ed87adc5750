// Text generation in the page with an exported language model: a KV-cache decoder (qat export --from LM_RUN) and its
// model.json, on ONNX Runtime Web. The rules are qat generate's (src/generate/kv-cache-generator.ts, docs/generation.md),
// so greedy tokens here equal `qat generate --model FILE --temperature 0`:
// - the prompt (its last `context` tokens) is prefilled with an empty past, then each token is one [1, 1] step whose
//   past is the previous step's present, at position P;
// - when P + 1 would pass the context, the cache is dropped and the newest floor(context / 2) tokens are prefilled
//   again at positions 0.. (gpt's learned positions and llama's rotary keys tie every cache entry to its position);
// - greedy: the largest logit, the lowest id on a tie, among ids the tokenizer can decode.
// Tokens are UTF-8 bytes (ids 0..255; 256 ends a document when model.json has endOfText).

const utf8 = new TextEncoder();

export class BytesTokenizer {
  constructor(endOfText) {
    this.endOfText = endOfText;
    this.vocabSize = endOfText === undefined ? 256 : 257;
  }

  encode(text) {
    return Array.from(utf8.encode(text));
  }

  /** A streaming decoder: a character split over several byte tokens appears once it is complete. */
  decoder() {
    const d = new TextDecoder('utf-8');
    return {
      write: (id) => (id < 256 ? d.decode(Uint8Array.of(id), { stream: true }) : ''),
      end: () => d.decode(),
    };
  }
}

/** model.json's session config entries ("a.b.c": "v") as onnxruntime-web's nested `extra` options. */
function extraOptions(sessionConfig = {}) {
  const extra = {};
  for (const [key, value] of Object.entries(sessionConfig)) {
    const parts = key.split('.');
    let at = extra;
    for (const p of parts.slice(0, -1)) at = at[p] ??= {};
    at[parts.at(-1)] = value;
  }
  return extra;
}

/**
 * Every cache tensor of the decoder: past_key_values.{i}.* inputs with their present.{i}.* outputs (model.json's
 * kvCache patterns). A float cache is key and value [1, heads, P, headSize] per layer; a cache stored quantized
 * (qat export of a --kv-bits run) has uint8 codes and float32 scales (and KIVI's float residual) per layer, each
 * [1, heads, P, width] with heads and width declared by the graph. The prefill feeds each at length 0.
 */
function cacheTensors(session, c) {
  const pastPrefix = c.kvCache.pastKey.split('{i}')[0];
  const presentPrefix = c.kvCache.presentKey.split('{i}')[0];
  const metadata = new Map((session.inputMetadata ?? []).map((m) => [m.name, m]));
  const tensors = [];
  for (const past of session.inputNames) {
    if (!past.startsWith(pastPrefix) || !/^\d+\./.test(past.slice(pastPrefix.length))) continue;
    const present = presentPrefix + past.slice(pastPrefix.length);
    if (!session.outputNames.includes(present)) throw new Error(`decoder graph: cache input '${past}' has no '${present}' output`);
    const m = metadata.get(past);
    const shape = m?.isTensor ? m.shape : [];
    const type = m?.isTensor ? m.type : 'float32';
    if (type !== 'float32' && type !== 'uint8') throw new Error(`decoder graph: cache input '${past}' is ${type}; the page feeds float32 or uint8 caches`);
    // A float key or value may leave its widths symbolic: model.json's heads and headSize then.
    const floatCache = type === 'float32' && /\.(key|value)$/.test(past);
    const heads = typeof shape[1] === 'number' ? shape[1] : c.heads;
    const width = typeof shape[3] === 'number' ? shape[3] : floatCache ? c.headSize : undefined;
    if (!heads || !width) throw new Error(`decoder graph: cache input '${past}' has shape [${shape.join(', ')}]; its heads and width must be fixed`);
    tensors.push({ past, present, type, emptyDims: [1, heads, 0, width] });
  }
  return tensors;
}

export class LmGenerator {
  /** `model`: a catalog entry of /api/models ("languageModels": url, config = model.json). */
  static async create(ort, model) {
    const response = await fetch(model.url);
    if (!response.ok) throw new Error(`${model.url}: HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const session = await ort.InferenceSession.create(bytes, {
      executionProviders: ['wasm'],
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
      extra: extraOptions(model.config.sessionConfig),
    });
    return new LmGenerator(ort, model, session);
  }

  constructor(ort, model, session) {
    const c = model.config;
    this.ort = ort;
    this.model = model;
    this.session = session;
    this.context = c.context;
    this.keepOnSlide = Math.max(1, Math.floor(c.context / 2));
    this.tokenizer = new BytesTokenizer(c.endOfText);
    this.vocabLimit = Math.min(this.tokenizer.vocabSize, c.vocabSize);
    this.cache = cacheTensors(session, c);
    if (!this.cache.length || !c.heads || !c.headSize) throw new Error(`${model.file}: model.json and the graph name no KV cache (past inputs ${c.kvCache.pastKey}, heads, headSize)`);
  }

  int64(values, dims) {
    return new this.ort.Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), dims);
  }

  /** Runs `fresh` tokens after `pastLength` cached ones; returns the last position's logits. */
  async run(fresh, pastLength) {
    const c = this.model.config;
    const t = fresh.length;
    const feeds = {
      [c.inputs.inputIds]: this.int64(fresh, [1, t]),
      [c.inputs.positionIds]: this.int64(Array.from({ length: t }, (_, i) => pastLength + i), [1, t]),
      [c.inputs.attentionMask]: this.int64(new Array(pastLength + t).fill(1), [1, pastLength + t]),
    };
    for (const t of this.cache) {
      feeds[t.past] = pastLength === 0 ? new this.ort.Tensor(t.type, t.type === 'uint8' ? new Uint8Array(0) : new Float32Array(0), t.emptyDims) : this.past[t.present];
    }
    const out = await this.session.run(feeds);
    this.past = out;
    const logits = out[c.outputs.logits];
    const vocab = logits.dims[2];
    return logits.data.subarray((t - 1) * vocab, t * vocab);
  }

  greedy(logits) {
    let best = 0;
    let max = -Infinity;
    for (let i = 0; i < Math.min(this.vocabLimit, logits.length); i++) {
      if (logits[i] > max) {
        max = logits[i];
        best = i;
      }
    }
    return best;
  }

  /**
   * Greedy continuation of `prompt` (text): `maxTokens` ids; `onToken(id, text)` after each. Returns the ids, the
   * text and the timings (prefill: the first token's pass; decode: every later step, re-prefills included).
   */
  async generate(prompt, maxTokens, onToken = () => {}) {
    const promptIds = this.tokenizer.encode(prompt);
    if (!promptIds.length) throw new Error('the prompt is empty; type some text');
    const decoder = this.tokenizer.decoder();
    let rows = promptIds.slice(Math.max(0, promptIds.length - this.context));
    let slides = promptIds.length > this.context ? 1 : 0;
    const ids = [];
    let text = '';
    const t0 = performance.now();
    let logits = await this.run(rows, 0);
    const prefillMs = performance.now() - t0;
    let decodeMs = 0;
    for (let i = 0; i < maxTokens; i++) {
      const id = this.greedy(logits);
      ids.push(id);
      const piece = decoder.write(id);
      text += piece;
      await onToken(id, piece);
      if (i === maxTokens - 1) break;
      const t = performance.now();
      const cached = rows.length;
      rows.push(id);
      if (cached + 1 <= this.context) {
        logits = await this.run([id], cached);
      } else {
        slides++;
        rows = rows.slice(rows.length - this.keepOnSlide);
        logits = await this.run(rows, 0);
      }
      decodeMs += performance.now() - t;
    }
    text += decoder.end();
    const decodeSteps = maxTokens - 1;
    return { promptIds, ids, text, prefillMs, decodeMs, decodeSteps, decodeTokensPerSecond: decodeSteps ? (decodeSteps * 1000) / decodeMs : 0, slides };
  }

  async release() {
    this.past = undefined;
    await this.session.release();
  }
}
