/**
 * Which 8-bit weight storage runs exactly on this CPU (`qat export --weight-type auto`, the default).
 *
 * ONNX Runtime's x86 kernels for uint8 activations x int8 weights (u8s8) on AVX2 or AVX-512 without VNNI add pairs
 * of products in int16 (VPMADDUBSW) and saturate, so a signed-weight QDQ model disagrees with its simulation there
 * (88.9% agreement on LeNet, docs/export-formats.md); u8u8 accumulates exactly everywhere. With VNNI (VPDPBUSD:
 * AVX-512 VNNI or AVX-VNNI) or AMX on x86, and the dot-product instructions on ARM (asimddp), u8s8 accumulates in
 * int32 and is exact, and int8 weights are the standard, faster form. The choice is for the CPU that exports (and
 * verifies parity, which would catch a wrong one); a file meant for another machine takes an explicit type.
 */
import fs from 'node:fs';

export const WEIGHT_TYPE_CHOICES = ['auto', 'uint8', 'int8'] as const;
export type WeightTypeChoice = (typeof WEIGHT_TYPE_CHOICES)[number];

export interface ResolvedWeightType {
  type: 'uint8' | 'int8';
  /** Why: the CPU feature found, or its absence. */
  reason: string;
}

const X86_EXACT = ['avx512_vnni', 'avx_vnni', 'amx_int8'];

/** `cpuinfo`: the text of /proc/cpuinfo (read when not given); `arch`: process.arch. */
export function exactWeightType(cpuinfo?: string, arch: string = process.arch): ResolvedWeightType {
  let text = cpuinfo;
  if (text === undefined) {
    try {
      text = fs.readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      text = '';
    }
  }
  const flags = new Set((/^(flags|Features)\s*:\s*(.*)$/m.exec(text)?.[2] ?? '').trim().split(/\s+/));
  if (arch === 'x64' || arch === 'ia32') {
    const found = X86_EXACT.find((f) => flags.has(f));
    return found
      ? { type: 'int8', reason: `CPU has ${found}: ORT's u8s8 kernels accumulate in int32 (exact)` }
      : { type: 'uint8', reason: 'CPU has no VNNI (avx512_vnni, avx_vnni): ORT\'s u8s8 kernels saturate in int16, u8u8 is exact' };
  }
  if (arch === 'arm64') {
    return flags.has('asimddp')
      ? { type: 'int8', reason: 'CPU has the ARM dot-product instructions (asimddp): u8s8 is exact' }
      : { type: 'uint8', reason: 'CPU lists no ARM dot-product instructions (asimddp): uint8 weights, exact on every kernel' };
  }
  return { type: 'uint8', reason: `architecture ${arch}: uint8 weights, exact on every kernel` };
}

/** The storage for a `--weight-type` choice. */
export function resolveWeightType(choice: WeightTypeChoice | undefined, cpuinfo?: string, arch?: string): ResolvedWeightType {
  if (choice === 'uint8' || choice === 'int8') return { type: choice, reason: `--weight-type ${choice}` };
  return exactWeightType(cpuinfo, arch);
}
