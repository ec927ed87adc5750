import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exactWeightType, resolveWeightType } from '../../src/export/weight-type';

const x86 = (flags: string) => `processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse sse2 avx avx2 ${flags}\n\nprocessor\t: 1\n`;

test('--weight-type auto: int8 only where ORT u8s8 kernels are exact (x86 VNNI or AMX, ARM dot product), else uint8', () => {
  assert.equal(exactWeightType(x86('fma bmi2'), 'x64').type, 'uint8'); // AVX2 only: VPMADDUBSW saturates
  assert.equal(exactWeightType(x86('avx512f avx512bw'), 'x64').type, 'uint8'); // AVX-512 without VNNI
  assert.deepEqual(exactWeightType(x86('avx512f avx512_vnni'), 'x64'), { type: 'int8', reason: "CPU has avx512_vnni: ORT's u8s8 kernels accumulate in int32 (exact)" });
  assert.equal(exactWeightType(x86('avx_vnni'), 'x64').type, 'int8');
  assert.equal(exactWeightType('processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 asimddp\n', 'arm64').type, 'int8');
  assert.equal(exactWeightType('processor\t: 0\nFeatures\t: fp asimd evtstrm\n', 'arm64').type, 'uint8');
  assert.equal(exactWeightType('', 'x64').type, 'uint8'); // unreadable cpuinfo: the type exact everywhere
  assert.equal(exactWeightType('', 'riscv64').type, 'uint8');
  // A flag named inside another word is not the flag.
  assert.equal(exactWeightType(x86('avx512_vnni_x'), 'x64').type, 'uint8');
  assert.deepEqual(resolveWeightType('int8', x86(''), 'x64'), { type: 'int8', reason: '--weight-type int8' });
  assert.equal(resolveWeightType('auto', x86('avx512_vnni'), 'x64').type, 'int8');
  assert.equal(resolveWeightType(undefined, x86(''), 'x64').type, 'uint8');
});
