/**
 * Which ORT kernel a 2-bit MatMulNBits file runs on, decided by the parity check rather than assumed.
 *
 * ORT's LUT kernel (MLAS T-MAC style, session config 'mlas.use_lut_gemm'; Wei et al. 2024, "T-MAC: CPU
 * Renaissance via Table Lookup for Low-Bit LLM Deployment on Edge") is several times faster than the exact 2-bit
 * kernel at decode, but it rounds its activation lookup tables to int8 per group of 32 or 64 inputs, a second
 * rounding the simulation does not have (MLAS's own test accepts 5% relative error). Whether that stays within the
 * parity bounds depends on the trained model, so `auto` checks the file with the LUT kernel first and, where it
 * misses a bound, checks it again on the exact kernel and ships that: the proof always covers the kernel that
 * qat eval and qat generate will run (they read the choice from model.json).
 */
import { InputError } from '../validate/schema.js';
import { LmParityReport } from './lm-parity.js';

export const LUT_GEMM_MODES = ['auto', 'on', 'off'] as const;
export type LutGemmMode = (typeof LUT_GEMM_MODES)[number];

/** ORT's session config entry that turns the LUT kernel on for every eligible 2-bit MatMulNBits. */
export const LUT_GEMM_SESSION_CONFIG = { 'mlas.use_lut_gemm': '1' } as const;

export interface LutGemmChoice {
  mode: LutGemmMode;
  /** The file has 2-bit MatMulNBits weights, the only ones the LUT kernel runs. */
  eligible: boolean;
  used: boolean;
  reason: string;
  /** auto, when the LUT kernel missed a bound: its parity figures, kept beside the exact kernel's. */
  rejected?: { top1_agreement: number; mean_common_prefix: number; perplexity_relative_difference: number; failures: string[] };
}

export interface LutGemmDecision {
  sessionConfig: Record<string, string>;
  parity: LmParityReport;
  lut: LutGemmChoice;
}

/**
 * Runs `checkParity` with the session config each mode calls for and returns the config the file ships with.
 * `base` holds the entries the format needs regardless of the kernel (int4's fusion level); `on` keeps the LUT
 * kernel even when it fails (the caller then refuses the file, or writes it under --no-verify).
 */
export async function chooseLutGemm(
  mode: LutGemmMode,
  eligible: boolean,
  base: Record<string, string>,
  checkParity: (sessionConfig: Record<string, string>) => Promise<LmParityReport>,
): Promise<LutGemmDecision> {
  if (!eligible && mode === 'on') throw new InputError(`--lut-gemm on: the file has no 2-bit MatMulNBits weights, the only ones ORT's LUT kernel runs (export a b158 or 2-bit run with --format matmulnbits)`);
  if (!eligible || mode === 'off') {
    const reason = eligible ? '--lut-gemm off: the exact 2-bit kernel' : 'no 2-bit MatMulNBits weights';
    return { sessionConfig: { ...base }, parity: await checkParity({ ...base }), lut: { mode, eligible, used: false, reason } };
  }
  const withLut = { ...base, ...LUT_GEMM_SESSION_CONFIG };
  const lutParity = await checkParity(withLut);
  if (lutParity.passed || mode === 'on') {
    return { sessionConfig: withLut, parity: lutParity, lut: { mode, eligible, used: true, reason: lutParity.passed ? 'within the parity bounds on the LUT kernel' : '--lut-gemm on, parity failed on it' } };
  }
  const exactParity = await checkParity({ ...base });
  return {
    sessionConfig: { ...base },
    parity: exactParity,
    lut: {
      mode,
      eligible,
      used: false,
      reason: `the LUT kernel missed the parity bounds (${lutParity.failures.join('; ')}); the file runs on the exact 2-bit kernel`,
      rejected: {
        top1_agreement: lutParity.top1_agreement,
        mean_common_prefix: lutParity.greedy.mean_common_prefix,
        perplexity_relative_difference: lutParity.perplexity_relative_difference,
        failures: lutParity.failures,
      },
    },
  };
}
