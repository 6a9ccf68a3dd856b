/* N-way saturating mixer with mix-minus, inject and a recorder mix (see mixer.h). */
#include "mixer.h"

#include <string.h>

/* 16 int32 lanes: one AVX-512 register or two AVX2 registers of running totals. */
#define SP_MIX_BLOCK 16

static inline int16_t clamp16(int32_t v)
{
    v = v > 32767 ? 32767 : v;
    v = v < -32768 ? -32768 : v;
    return (int16_t)v;
}

static inline int32_t weigh(int32_t gain, int16_t x)
{
    /* Arithmetic right shift of a negative int64: implementation defined in C99,
     * arithmetic (floor) on every compiler we build with; the reference uses floor too. */
    return (int32_t)(((int64_t)gain * x + 16384) >> 15);
}

/*
 * One block of `len` (<= SP_MIX_BLOCK) samples starting at `i0`. `unity` is a compile-time
 * constant after inlining, so two specialised loops come out of this one body.
 */
static inline void mix_block(const int16_t *restrict in, int16_t *restrict out,
                             int16_t *restrict record, int32_t *restrict total_out,
                             const int32_t *restrict gains, int n, int ns, int i0, int len,
                             int unity, int want_out)
{
    int32_t acc[SP_MIX_BLOCK];
    int32_t w[SP_MIX_MAX_LEGS][SP_MIX_BLOCK];
    for (int k = 0; k < SP_MIX_BLOCK; k++) acc[k] = 0;
    if (len == SP_MIX_BLOCK) {
        for (int j = 0; j < n; j++) {
            const int16_t *restrict p = in + (size_t)j * ns + i0;
            if (unity) {
                for (int k = 0; k < SP_MIX_BLOCK; k++) acc[k] += p[k];
            } else {
                const int32_t g = gains[j];
                for (int k = 0; k < SP_MIX_BLOCK; k++) {
                    w[j][k] = weigh(g, p[k]);
                    acc[k] += w[j][k];
                }
            }
        }
        if (record)
            for (int k = 0; k < SP_MIX_BLOCK; k++) record[i0 + k] = clamp16(acc[k]);
        if (total_out)
            for (int k = 0; k < SP_MIX_BLOCK; k++) total_out[i0 + k] = acc[k];
        if (want_out) {
            for (int j = 0; j < n; j++) {
                const int16_t *restrict p = in + (size_t)j * ns + i0;
                int16_t *restrict o = out + (size_t)j * ns + i0;
                if (unity) {
                    for (int k = 0; k < SP_MIX_BLOCK; k++) o[k] = clamp16(acc[k] - p[k]);
                } else {
                    for (int k = 0; k < SP_MIX_BLOCK; k++) o[k] = clamp16(acc[k] - w[j][k]);
                }
            }
        }
        return;
    }
    /* Tail shorter than a block (frame sizes that are not a multiple of 16). */
    for (int j = 0; j < n; j++) {
        const int16_t *p = in + (size_t)j * ns + i0;
        for (int k = 0; k < len; k++) {
            w[j][k] = unity ? p[k] : weigh(gains[j], p[k]);
            acc[k] += w[j][k];
        }
    }
    for (int k = 0; k < len; k++) {
        if (record) record[i0 + k] = clamp16(acc[k]);
        if (total_out) total_out[i0 + k] = acc[k];
    }
    if (want_out)
        for (int j = 0; j < n; j++)
            for (int k = 0; k < len; k++) out[(size_t)j * ns + i0 + k] = clamp16(acc[k] - w[j][k]);
}

static void mix_all(const int16_t *in, int16_t *out, int16_t *record, int32_t *total,
                    const int32_t *gains, int n, int ns, int unity, int want_out)
{
    for (int i0 = 0; i0 < ns; i0 += SP_MIX_BLOCK) {
        int len = ns - i0 < SP_MIX_BLOCK ? ns - i0 : SP_MIX_BLOCK;
        if (unity)
            mix_block(in, out, record, total, gains, n, ns, i0, len, 1, want_out);
        else
            mix_block(in, out, record, total, gains, n, ns, i0, len, 0, want_out);
    }
}

int sp_mix(const int16_t *in, int16_t *out, int16_t *record, const int32_t *gains,
           const int16_t *inject, const uint8_t *inject_on, int n, int ns, int flags)
{
    const int want_out = (flags & SP_MIX_OUTPUTS) != 0;
    const int want_rec = (flags & SP_MIX_RECORD) != 0;
    if (n < 0 || n > SP_MIX_MAX_LEGS || ns <= 0 || ns > SP_MIX_MAX_SAMPLES) return SP_MIX_EBADARG;
    if ((flags & ~(SP_MIX_OUTPUTS | SP_MIX_RECORD)) != 0) return SP_MIX_EBADARG;
    if (n > 0 && (!in || !gains)) return SP_MIX_EBADARG;
    if ((want_out && !out) || (want_rec && !record)) return SP_MIX_EBADARG;
    int unity = 1, any_inject = 0;
    for (int j = 0; j < n; j++) {
        if (gains[j] < 0 || gains[j] > SP_MIX_MAX_GAIN) return SP_MIX_EGAIN;
        unity &= gains[j] == SP_MIX_UNITY;
        if (want_out && inject_on && inject_on[j]) any_inject = 1;
    }
    if (any_inject && !inject) return SP_MIX_EBADARG;
    if (n == 0) {
        if (want_rec) memset(record, 0, (size_t)ns * sizeof *record);
        return 0;
    }
    /* The totals are kept only when a prompt is injected: those legs are redone below. */
    int32_t total[SP_MIX_MAX_SAMPLES];
    mix_all(in, want_out ? out : NULL, want_rec ? record : NULL, any_inject ? total : NULL,
            gains, n, ns, unity, want_out);
    if (any_inject) {
        for (int j = 0; j < n; j++) {
            if (!inject_on[j]) continue;
            const int16_t *p = in + (size_t)j * ns;
            const int16_t *q = inject + (size_t)j * ns;
            int16_t *o = out + (size_t)j * ns;
            const int32_t g = gains[j];
            for (int k = 0; k < ns; k++) {
                int32_t own = unity ? p[k] : weigh(g, p[k]);
                o[k] = clamp16(total[k] - own + q[k]);
            }
        }
    }
    return 0;
}

void sp_memcpy_bench(void *dst, const void *src, size_t nbytes, long iters)
{
    for (long i = 0; i < iters; i++) {
        memcpy(dst, src, nbytes);
        /* keep the compiler from collapsing the repeats into one copy */
        __asm__ volatile("" : : "r"(dst) : "memory");
    }
}
