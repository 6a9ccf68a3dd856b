/*
 * N-way conference mixer for int16 PCM frames (sp_mix).
 *
 * Buffers are contiguous [leg][frame_samples] int16 blocks owned by the caller (the Python
 * wrapper keeps them for the conference's lifetime). For the legs 0..n-1 one call computes
 *   w_j      = (gain_j * in_j + 16384) >> 15            (Q15 gain, 32768 = unity, rounded)
 *   record   = clamp16(sum_j w_j)                        (full mix for a recorder)
 *   out_i    = clamp16(sum_{j != i} w_j + inject_i)      (mix-minus; inject only if enabled)
 * with int32 accumulation: |w_j| <= 4 * 32768 and n <= 64 keep every sum far below 2^31,
 * so the result is exactly "int32 accumulate, then clamp".
 *
 * Kernel shape (PERF-ANCHORS 2.3, mix_sat_blocked): the frame is walked in blocks of
 * 16 samples; the block's int32 totals stay in registers while all n inputs are read, then
 * every leg's output is total - own, clamped. Inputs are read twice, the second time from
 * L1. Unity gains (the common case) take a path without multiplies, and a block whose
 * totals all fit int16 gets its mix-minus outputs by one saturating int16 subtract per leg
 * (exactly clamp16(total - own)). x86 builds use AVX2 (or SSE2 when built portable).
 */
#ifndef SP_MIXER_H
#define SP_MIXER_H

#include <stddef.h>
#include <stdint.h>

/* CDEF-BEGIN */
#define SP_MIX_MAX_LEGS 64
#define SP_MIX_UNITY 32768
#define SP_MIX_MAX_GAIN 131072
#define SP_MIX_MAX_SAMPLES 5760 /* 120 ms at 48 kHz */
#define SP_MIX_OUTPUTS 1
#define SP_MIX_RECORD 2
#define SP_MIX_EBADARG -1
#define SP_MIX_EGAIN -2
/*
 * in, out, inject: [max_legs][ns] int16 blocks (out/inject may be NULL when not used),
 * gains: n Q15 gains in [0, SP_MIX_MAX_GAIN], inject_on: n flags (NULL = no inject),
 * record: ns samples or NULL. flags: SP_MIX_OUTPUTS and/or SP_MIX_RECORD.
 * Returns 0, SP_MIX_EBADARG (n, ns or a needed pointer) or SP_MIX_EGAIN (a gain out of
 * range); on an error nothing is written.
 */
int sp_mix(const int16_t *in, int16_t *out, int16_t *record, const int32_t *gains,
           const int16_t *inject, const uint8_t *inject_on, int n, int ns, int flags);
/* The physical reference for bench/native.py: memcpy of nbytes, iters times, in C. */
void sp_memcpy_bench(void *dst, const void *src, size_t nbytes, long iters);
/* CDEF-END */

#endif
