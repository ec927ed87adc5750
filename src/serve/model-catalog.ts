import fs from 'node:fs';
import path from 'node:path';
import { LanguageModelJson, MODEL_JSON, readLanguageModelJson } from '../generate/model-json.js';
import { decodeModel } from '../onnx/model-io.js';
import { CHECKPOINT_FILE } from '../train/run-lifecycle.js';

/** The four kinds the page compares, in its order; `ternary` is any packed export (its label names the preset). */
export const MODEL_SLOTS = ['fp32', 'int8', 'int4', 'ternary'] as const;
export type ModelSlot = (typeof MODEL_SLOTS)[number];

export interface CatalogModel {
  /** Stable id in URLs (/models/<id>.onnx): the page never names a path. */
  id: string;
  slot: ModelSlot;
  label: string;
  file: string;
  bytes: number;
  /** Export format (qdq, int4, packed); undefined for the fp32 run model. */
  format?: string;
  preset?: string;
  /** From the export JSON when there is one: accuracy of the exported model in ORT and its agreement with the fake-quant model. */
  exportedAccuracy?: number;
  argmaxAgreement?: number;
  /** Test images that check ran on. */
  checkedSamples?: number;
  json?: string;
}

/**
 * An exported language model the page can generate with: a KV-cache decoder (qat export --from LM_RUN) with its
 * model.json beside it, tokenized as bytes (the page has no GPT-2 BPE tables).
 */
export interface CatalogLanguageModel {
  id: string;
  label: string;
  file: string;
  bytes: number;
  /** model.json: tokenizer, context, cache names, session config. */
  config: LanguageModelJson;
  /** From export.json beside it: the file's validation perplexity in ONNX Runtime. */
  valPerplexity?: number;
}

export interface Catalog {
  from: string;
  models: CatalogModel[];
  languageModels: CatalogLanguageModel[];
  /** Per missing slot, what makes it. */
  missing: { slot: ModelSlot; command: string }[];
  /** Files seen and left out, with the reason (not an MNIST-shaped classifier, unreadable). */
  skipped: { file: string; reason: string }[];
  /** The fp32 run directory (checkpoint.qat of an unquantized model) the in-page QAT starts from. */
  fp32Run?: string;
}

const FORMAT_SLOT: Record<string, ModelSlot> = { qdq: 'int8', int4: 'int4', packed: 'ternary' };

/** *.onnx and run directories under `dir`, at most `depth` levels down (the demo's layout is two). */
function walk(dir: string, depth: number, onnx: string[], runs: string[]): void {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  if (entries.some((e) => e.isFile() && e.name === CHECKPOINT_FILE)) runs.push(dir);
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    if (e.isFile() && e.name.endsWith('.onnx')) onnx.push(p);
    else if (e.isDirectory() && depth > 0) walk(p, depth - 1, onnx, runs);
  }
}

/** Whether a run directory's metrics.json (or config) says it trained without quantization. */
function runQuant(dir: string): { quant?: string; task?: string; method?: string } | undefined {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(dir, 'metrics.json'), 'utf8'));
    return m && typeof m === 'object' ? { quant: typeof m.quant === 'string' ? m.quant : undefined, task: m.task, method: m.method } : undefined;
  } catch {
    return undefined;
  }
}

function isFp32Run(dir: string): boolean {
  const m = runQuant(dir);
  return Boolean(m && !m.quant && m.task !== 'language-model' && m.method !== 'ptq' && fs.existsSync(path.join(dir, 'model.onnx')));
}

/** The export report (qat export --json) written for `file`: FILE.json beside it, or any .json in its folder whose `out` is it. */
function exportReport(file: string): { path: string; report: Record<string, unknown> } | undefined {
  const dir = path.dirname(file);
  const candidates = [file.replace(/\.onnx$/, '.json'), ...fs.readdirSync(dir).filter((n) => n.endsWith('.json')).map((n) => path.join(dir, n))];
  for (const c of new Set(candidates)) {
    try {
      const r = JSON.parse(fs.readFileSync(c, 'utf8'));
      // `out` is as given to qat export (relative to where it ran): the basename is what can be compared.
      if (r && typeof r === 'object' && typeof r.out === 'string' && typeof r.format === 'string' && path.basename(r.out) === path.basename(file)) {
        return { path: c, report: r };
      }
    } catch {
      // not an export report
    }
  }
  return undefined;
}

/** An image classifier the page can feed: float input [N, 1, 28, 28], [N, 10] logits. */
function mnistShaped(g: ReturnType<typeof decodeModel>): string | undefined {
  const input = g.inputs.filter((v) => !g.initializers.has(v.name));
  if (input.length !== 1) return `${input.length} inputs (the page feeds one image tensor)`;
  const dims = input[0].shape.slice(1).map(String).join(',');
  if (dims !== '1,28,28') return `input '${input[0].name}' has shape [${input[0].shape.join(', ')}], not [N, 1, 28, 28] (an MNIST image classifier)`;
  return undefined;
}

/** Reads `from`: the exported models per slot (first found wins, fp32 from an fp32 run's model.onnx), what is missing and how to make it. */
export function readCatalog(from: string): Catalog {
  const onnx: string[] = [];
  const runs: string[] = [];
  if (fs.existsSync(from) && fs.statSync(from).isDirectory()) walk(from, 2, onnx, runs);
  const fp32Runs = runs.filter(isFp32Run);
  const fp32Run = fp32Runs.find((r) => path.basename(r) === 'fp32') ?? fp32Runs[0];
  const models: CatalogModel[] = [];
  const languageModels: CatalogLanguageModel[] = [];
  const skipped: Catalog['skipped'] = [];
  for (const file of onnx) {
    const inRun = runs.includes(path.dirname(file));
    if (inRun && path.dirname(file) !== fp32Run) continue; // a run's own inference model, not an export
    if (!inRun && fs.existsSync(path.join(path.dirname(file), MODEL_JSON))) {
      const lm = languageModelEntry(file, languageModels);
      if ('reason' in lm) skipped.push({ file, reason: lm.reason });
      else languageModels.push(lm);
      continue;
    }
    let graph;
    try {
      graph = decodeModel(fs.readFileSync(file));
    } catch (e) {
      skipped.push({ file, reason: `not readable as ONNX: ${(e as Error).message.split('\n')[0]}` });
      continue;
    }
    const wrong = mnistShaped(graph);
    if (wrong) {
      skipped.push({ file, reason: wrong });
      continue;
    }
    const format = graph.metadata['qatkit.format'];
    let preset: string | undefined;
    try {
      preset = JSON.parse(graph.metadata['qatkit.quantization'] ?? '{}').preset ?? undefined;
    } catch {
      preset = undefined;
    }
    const slot = format ? FORMAT_SLOT[format] : inRun ? 'fp32' : undefined;
    if (!slot) {
      skipped.push({ file, reason: format ? `export format '${format}' has no place in the comparison` : 'not a qatkit export (no qatkit.format metadata) and not an fp32 run model' });
      continue;
    }
    if (models.some((m) => m.slot === slot)) {
      skipped.push({ file, reason: `a ${slot} model is shown already (${models.find((m) => m.slot === slot)!.file})` });
      continue;
    }
    const report = exportReport(file);
    const parity = report?.report.parity as { exported_accuracy?: number; argmax_agreement?: number; samples?: number } | undefined;
    const label = slot === 'fp32' ? 'fp32' : `${preset ?? 'custom'} ${format === 'qdq' ? 'int8 QDQ' : format === 'int4' ? 'int4' : 'packed'}`;
    models.push({
      id: slot,
      slot,
      label,
      file,
      bytes: fs.statSync(file).size,
      format,
      preset,
      exportedAccuracy: parity?.exported_accuracy,
      argmaxAgreement: parity?.argmax_agreement,
      checkedSamples: parity?.samples,
      json: report?.path,
    });
  }
  models.sort((a, b) => MODEL_SLOTS.indexOf(a.slot) - MODEL_SLOTS.indexOf(b.slot));
  const dir = from;
  const fp32 = fp32Run ?? path.join(dir, 'fp32');
  const qatExport = (preset: string, format: string, file: string) => {
    const run = runs.find((r) => runQuant(r)?.quant === preset && runQuant(r)?.method !== 'ptq') ?? path.join(dir, `qat-${preset}`);
    const exportIt = `npx qat export --from ${run} --format ${format} --out ${path.join(dir, file)}.onnx --json ${path.join(dir, file)}.json`;
    return runs.includes(run) ? exportIt : `npx qat train --from ${fp32} --quant ${preset} --out ${run} && ${exportIt}`;
  };
  const how: Record<ModelSlot, string> = {
    fp32: fs.existsSync(dir) ? `npx qat train --model lenet --data mnist --out ${path.join(dir, 'fp32')}` : `npx qat demo --out ${dir}`,
    int8: qatExport('w4a4', 'qdq', 'lenet-w4a4-qdq'),
    int4: qatExport('w4a4', 'int4', 'lenet-w4a4-int4'),
    ternary: qatExport('ternary', 'packed', 'lenet-ternary-packed'),
  };
  const missing = MODEL_SLOTS.filter((s) => !models.some((m) => m.slot === s)).map((slot) => ({ slot, command: how[slot] }));
  return { from, models, languageModels, missing, skipped, fp32Run };
}

/** A decoder export with model.json beside it, or why the page cannot generate with it. */
function languageModelEntry(file: string, taken: CatalogLanguageModel[]): CatalogLanguageModel | { reason: string } {
  let config: LanguageModelJson | undefined;
  try {
    config = readLanguageModelJson(file);
  } catch (e) {
    return { reason: (e as Error).message };
  }
  if (!config) return { reason: `no ${MODEL_JSON} beside it` };
  const generateInNode = `generate with npx qat generate --model ${file}`;
  if (!config.kvCache) return { reason: `not a KV-cache decoder (model.json has no kvCache); ${generateInNode}` };
  if (config.tokenizer !== 'bytes') return { reason: `tokenizer '${config.tokenizer}': the page tokenizes UTF-8 bytes only; ${generateInNode}` };
  const format = config.quantization?.format ?? 'fp32';
  const preset = config.quantization?.preset ?? undefined;
  // Ids are [a-z0-9]+ (the /models/<id>.onnx route): the format, numbered when two files share it.
  const base = `lm${format.replace(/[^a-z0-9]/g, '')}`;
  let id = base;
  for (let i = 2; taken.some((m) => m.id === id); i++) id = `${base}${i}`;
  let valPerplexity: number | undefined;
  try {
    const report = JSON.parse(fs.readFileSync(path.join(path.dirname(file), 'export.json'), 'utf8'));
    if (typeof report?.parity?.exported_val_perplexity === 'number') valPerplexity = report.parity.exported_val_perplexity;
  } catch {
    // no export report beside it: no perplexity shown
  }
  const arch = config.arch ?? 'decoder';
  return { id, label: `${arch} ${preset ? `${preset} ` : ''}${format}`, file, bytes: fs.statSync(file).size, config, valPerplexity };
}
