/**
 * Labels that say exactly what a row is: the preset's bits as trained, and for an exported file how its codes are
 * stored (a w4a4 model in 8-bit QDQ containers is not "int8"). Derived from the config and the export's own layer
 * list, never from the format's name.
 */
import { ExportedLayer, ExportFormat } from '../export/qdq.js';
import { QatConfig } from '../quant/presets.js';

const FORMAT_NAMES: Record<ExportFormat, string> = { qdq: 'QDQ', int4: 'int4', packed: 'packed' };

/** 'ternary', 'binary' or 'N-bit': how a weight quantizer's codes are counted. */
function weightKind(bits: number, method: string): string {
  if (method === 'ternary') return 'ternary';
  if (method === 'binary') return 'binary';
  return `${bits}-bit`;
}

function storageName(storage: string): string {
  return storage === 'packed' ? 'packed bytes' : `${storage} containers`;
}

/** Groups `items` by key, keeping first-seen order, counting each group. */
function groups<T>(items: T[], key: (t: T) => string): { key: string; count: number }[] {
  const out: { key: string; count: number }[] = [];
  for (const t of items) {
    const k = key(t);
    const g = out.find((o) => o.key === k);
    if (g) g.count++;
    else out.push({ key: k, count: 1 });
  }
  return out;
}

/**
 * How an export stores its codes, e.g. "weights: 4-bit in int4 containers (2 layers), 8-bit in uint8 containers
 * (2); activations: 4-bit in uint8 containers (3), 8-bit in uint8 containers (1)".
 */
export function storageLabel(layers: ExportedLayer[]): string {
  const part = (role: 'weight' | 'activation') => {
    const g = groups(
      layers.filter((l) => l.role === role).sort((x, y) => x.bits - y.bits),
      (l) => `${role === 'weight' ? weightKind(l.bits, l.method) : `${l.bits}-bit`} in ${storageName(l.storage)}`,
    );
    return g.map((x, i) => `${x.key} (${x.count}${i === 0 ? (x.count === 1 ? ' tensor' : ' tensors') : ''})`).join(', ');
  };
  const w = part('weight');
  const a = part('activation');
  return [w && `weights ${w}`, a && `activations ${a}`].filter(Boolean).join('; ');
}

/** A short name of a format's file, e.g. "QDQ file" / "int4 file" / "packed file". */
export function formatLabel(format: ExportFormat): string {
  return `${FORMAT_NAMES[format]} file`;
}

/** What a preset trains, e.g. "4-bit weights (per-channel, lsq), 4-bit activations (per-tensor, lsq); first and last layers 8-bit". */
export function presetLabel(config: QatConfig): string {
  const role = (r: QatConfig['weight']) => `${r.granularity ?? 'per-tensor'}${r.granularity === 'per-group' ? ` of ${r.groupSize ?? 32}` : ''}, ${r.method}`;
  const w = `${weightKind(config.weight.bits, config.weight.method)} weights (${role(config.weight)})`;
  const a = config.activation.bits >= 16 ? 'float activations' : `${config.activation.bits}-bit activations (${role(config.activation)})`;
  const edges = config.firstLastBits !== null ? `; first and last layers ${config.firstLastBits}-bit` : '';
  return `${w}, ${a}${edges}`;
}
