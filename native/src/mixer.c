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

/*
 * (gain * x + 16384) >> 15 without 64-bit lanes: with gain = hi * 32768 + lo (lo < 32768)
 * the hi part is an exact multiple of 32768, so the floor shift splits into
 * hi * x + ((lo * x + 16384) >> 15), and |lo * x| < 2^30 fits int32. (Right shift of a
 * negative int is implementation defined in C99 and arithmetic on every compiler we use;
 * the reference uses the same floor.)
 */
static inline int32_t weigh(int32_t gain, int16_t x)
{
    const int32_t hi = gain >> 15, lo = gain & 0x7FFF;
    return hi * x + ((lo * x + 16384) >> 15);
}

/*
 * Unity gains: w_j = x_j. Per block the SP_MIX_BLOCK totals live in registers while the n
 * inputs stream past; then each leg's output is total - own (own re-read from L1).
 */
#if defined(__AVX2__)
#include <immintrin.h>

/*
 * 16 samples: two ymm registers of int32 totals, kept in unpack order (per 128-bit lane,
 * `lo` holds samples 0-3 / 8-11 and `hi` 4-7 / 12-15) so that the saturating pack (the
 * clamp) comes out in sample order. Legs are summed two at a time: interleave a pair and
 * multiply-add by ones (pmaddwd), which is a widening add. When every total of the block
 * fits int16 (normal speech levels), clamp16(total - own) is exactly the int16 saturating
 * subtract, one instruction per leg; otherwise the block goes the int32 way.
 */
static void mix_unity_blocks(const int16_t *in, int16_t *out, int16_t *record,
                             int32_t *total, int n, int ns, int nblocks)
{
    const __m256i ones = _mm256_set1_epi16(1), zero = _mm256_setzero_si256();
    const __m256i max16 = _mm256_set1_epi32(32767), min16 = _mm256_set1_epi32(-32768);
    for (int b = 0; b < nblocks; b++) {
        const int i0 = b * SP_MIX_BLOCK;
        __m256i lo = zero, hi = zero;
        int j = 0;
        for (; j + 1 < n; j += 2) {
            const __m256i a = _mm256_loadu_si256((const __m256i *)(in + (size_t)j * ns + i0));
            const __m256i c = _mm256_loadu_si256((const __m256i *)(in + (size_t)(j + 1) * ns + i0));
            lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(a, c), ones));
            hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(a, c), ones));
        }
        if (j < n) {
            const __m256i a = _mm256_loadu_si256((const __m256i *)(in + (size_t)j * ns + i0));
            lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(a, zero), ones));
            hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(a, zero), ones));
        }
        const __m256i t16 = _mm256_packs_epi32(lo, hi);
        if (record) _mm256_storeu_si256((__m256i *)(record + i0), t16);
        if (total) {
            _mm256_storeu_si256((__m256i *)(total + i0), _mm256_permute2x128_si256(lo, hi, 0x20));
            _mm256_storeu_si256((__m256i *)(total + i0 + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
        }
        if (!out) continue;
        const __m256i over = _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpgt_epi32(lo, max16), _mm256_cmpgt_epi32(min16, lo)),
            _mm256_or_si256(_mm256_cmpgt_epi32(hi, max16), _mm256_cmpgt_epi32(min16, hi)));
        if (_mm256_testz_si256(over, over)) {
            for (j = 0; j < n; j++) {
                const __m256i x = _mm256_loadu_si256((const __m256i *)(in + (size_t)j * ns + i0));
                _mm256_storeu_si256((__m256i *)(out + (size_t)j * ns + i0), _mm256_subs_epi16(t16, x));
            }
        } else {
            for (j = 0; j < n; j++) {
                const __m256i x = _mm256_loadu_si256((const __m256i *)(in + (size_t)j * ns + i0));
                const __m256i xl = _mm256_srai_epi32(_mm256_unpacklo_epi16(x, x), 16);
                const __m256i xh = _mm256_srai_epi32(_mm256_unpackhi_epi16(x, x), 16);
                _mm256_storeu_si256((__m256i *)(out + (size_t)j * ns + i0),
                                    _mm256_packs_epi32(_mm256_sub_epi32(lo, xl), _mm256_sub_epi32(hi, xh)));
            }
        }
    }
}
#elif defined(__SSE2__)
#include <emmintrin.h>

/* Baseline x86-64 (portable builds): four xmm registers of int32 totals per 16 samples;
 * sign extension by unpacking a sample with itself and shifting right arithmetically. */
static inline void widen(__m128i x, __m128i *lo, __m128i *hi)
{
    *lo = _mm_srai_epi32(_mm_unpacklo_epi16(x, x), 16);
    *hi = _mm_srai_epi32(_mm_unpackhi_epi16(x, x), 16);
}

static void mix_unity_blocks(const int16_t *in, int16_t *out, int16_t *record,
                             int32_t *total, int n, int ns, int nblocks)
{
    for (int b = 0; b < nblocks; b++) {
        const int i0 = b * SP_MIX_BLOCK;
        __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0, l, h;
        for (int j = 0; j < n; j++) {
            const int16_t *p = in + (size_t)j * ns + i0;
            widen(_mm_loadu_si128((const __m128i *)p), &l, &h);
            a0 = _mm_add_epi32(a0, l);
            a1 = _mm_add_epi32(a1, h);
            widen(_mm_loadu_si128((const __m128i *)(p + 8)), &l, &h);
            a2 = _mm_add_epi32(a2, l);
            a3 = _mm_add_epi32(a3, h);
        }
        if (record) {
            _mm_storeu_si128((__m128i *)(record + i0), _mm_packs_epi32(a0, a1));
            _mm_storeu_si128((__m128i *)(record + i0 + 8), _mm_packs_epi32(a2, a3));
        }
        if (total) {
            _mm_storeu_si128((__m128i *)(total + i0), a0);
            _mm_storeu_si128((__m128i *)(total + i0 + 4), a1);
            _mm_storeu_si128((__m128i *)(total + i0 + 8), a2);
            _mm_storeu_si128((__m128i *)(total + i0 + 12), a3);
        }
        if (out) {
            for (int j = 0; j < n; j++) {
                const int16_t *p = in + (size_t)j * ns + i0;
                int16_t *o = out + (size_t)j * ns + i0;
                widen(_mm_loadu_si128((const __m128i *)p), &l, &h);
                _mm_storeu_si128((__m128i *)o,
                                 _mm_packs_epi32(_mm_sub_epi32(a0, l), _mm_sub_epi32(a1, h)));
                widen(_mm_loadu_si128((const __m128i *)(p + 8)), &l, &h);
                _mm_storeu_si128((__m128i *)(o + 8),
                                 _mm_packs_epi32(_mm_sub_epi32(a2, l), _mm_sub_epi32(a3, h)));
            }
        }
    }
}
#else
static void mix_unity_blocks(const int16_t *restrict in, int16_t *restrict out,
                             int16_t *restrict record, int32_t *restrict total, int n, int ns,
                             int nblocks)
{
    for (int b = 0; b < nblocks; b++) {
        const int i0 = b * SP_MIX_BLOCK;
        int32_t acc[SP_MIX_BLOCK];
        for (int k = 0; k < SP_MIX_BLOCK; k++) acc[k] = 0;
        for (int j = 0; j < n; j++) {
            const int16_t *restrict p = in + (size_t)j * ns + i0;
            for (int k = 0; k < SP_MIX_BLOCK; k++) acc[k] += p[k];
        }
        if (record)
            for (int k = 0; k < SP_MIX_BLOCK; k++) record[i0 + k] = clamp16(acc[k]);
        if (total)
            for (int k = 0; k < SP_MIX_BLOCK; k++) total[i0 + k] = acc[k];
        if (out) {
            for (int j = 0; j < n; j++) {
                const int16_t *restrict p = in + (size_t)j * ns + i0;
                int16_t *restrict o = out + (size_t)j * ns + i0;
                for (int k = 0; k < SP_MIX_BLOCK; k++) o[k] = clamp16(acc[k] - p[k]);
            }
        }
    }
}
#endif

static void mix_unity(const int16_t *in, int16_t *out, int16_t *record, int32_t *total,
                      int n, int ns)
{
    const int nblocks = ns / SP_MIX_BLOCK;
    mix_unity_blocks(in, out, record, total, n, ns, nblocks);
    for (int i = nblocks * SP_MIX_BLOCK; i < ns; i++) { /* tail: ns not a multiple of 16 */
        int32_t acc = 0;
        for (int j = 0; j < n; j++) acc += in[(size_t)j * ns + i];
        if (record) record[i] = clamp16(acc);
        if (total) total[i] = acc;
        if (out)
            for (int j = 0; j < n; j++) out[(size_t)j * ns + i] = clamp16(acc - in[(size_t)j * ns + i]);
    }
}

/* Any gains: the block's weighted samples are kept (w, L1-resident) for the mix-minus pass. */
#if defined(__AVX2__)
/* lo * x rounded is exactly pmulhrsw (lo < 32768 and x >= -32768 never hit its one
 * overflow case, -32768 * -32768); the hi * x part is added in int32. */
static void mix_gain_blocks(const int16_t *in, int16_t *out, int16_t *record, int32_t *total,
                            const int32_t *gains, int n, int ns, int nblocks)
{
    __m256i wlo[SP_MIX_MAX_LEGS], whi[SP_MIX_MAX_LEGS];
    for (int b = 0; b < nblocks; b++) {
        const int i0 = b * SP_MIX_BLOCK;
        __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
        for (int j = 0; j < n; j++) {
            const __m256i x = _mm256_loadu_si256((const __m256i *)(in + (size_t)j * ns + i0));
            const __m256i m = _mm256_mulhrs_epi16(x, _mm256_set1_epi16((int16_t)(gains[j] & 0x7FFF)));
            __m256i a = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(m));
            __m256i c = _mm256_cvtepi16_epi32(_mm256_extracti128_si256(m, 1));
            const int g_hi = gains[j] >> 15;
            if (g_hi) {
                const __m256i gh = _mm256_set1_epi32(g_hi);
                a = _mm256_add_epi32(a, _mm256_mullo_epi32(gh, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(x))));
                c = _mm256_add_epi32(c, _mm256_mullo_epi32(gh, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(x, 1))));
            }
            wlo[j] = a;
            whi[j] = c;
            lo = _mm256_add_epi32(lo, a);
            hi = _mm256_add_epi32(hi, c);
        }
        if (record)
            _mm256_storeu_si256((__m256i *)(record + i0),
                                _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xD8));
        if (total) {
            _mm256_storeu_si256((__m256i *)(total + i0), lo);
            _mm256_storeu_si256((__m256i *)(total + i0 + 8), hi);
        }
        if (out)
            for (int j = 0; j < n; j++) {
                __m256i o = _mm256_packs_epi32(_mm256_sub_epi32(lo, wlo[j]), _mm256_sub_epi32(hi, whi[j]));
                _mm256_storeu_si256((__m256i *)(out + (size_t)j * ns + i0),
                                    _mm256_permute4x64_epi64(o, 0xD8));
            }
    }
}
#else
static void mix_gain_blocks(const int16_t *restrict in, int16_t *restrict out,
                            int16_t *restrict record, int32_t *restrict total,
                            const int32_t *restrict gains, int n, int ns, int nblocks)
{
    int32_t w[SP_MIX_MAX_LEGS][SP_MIX_BLOCK];
    for (int b = 0; b < nblocks; b++) {
        const int i0 = b * SP_MIX_BLOCK;
        int32_t acc[SP_MIX_BLOCK];
        for (int k = 0; k < SP_MIX_BLOCK; k++) acc[k] = 0;
        for (int j = 0; j < n; j++) {
            const int16_t *restrict p = in + (size_t)j * ns + i0;
            for (int k = 0; k < SP_MIX_BLOCK; k++) {
                w[j][k] = weigh(gains[j], p[k]);
                acc[k] += w[j][k];
            }
        }
        for (int k = 0; k < SP_MIX_BLOCK; k++) {
            if (record) record[i0 + k] = clamp16(acc[k]);
            if (total) total[i0 + k] = acc[k];
        }
        if (out)
            for (int j = 0; j < n; j++)
                for (int k = 0; k < SP_MIX_BLOCK; k++)
                    out[(size_t)j * ns + i0 + k] = clamp16(acc[k] - w[j][k]);
    }
}
#endif

static void mix_gain(const int16_t *in, int16_t *out, int16_t *record, int32_t *total,
                     const int32_t *gains, int n, int ns)
{
    const int nblocks = ns / SP_MIX_BLOCK;
    mix_gain_blocks(in, out, record, total, gains, n, ns, nblocks);
    for (int i = nblocks * SP_MIX_BLOCK; i < ns; i++) { /* tail: ns not a multiple of 16 */
        int32_t acc = 0;
        for (int j = 0; j < n; j++) acc += weigh(gains[j], in[(size_t)j * ns + i]);
        if (record) record[i] = clamp16(acc);
        if (total) total[i] = acc;
        if (out)
            for (int j = 0; j < n; j++)
                out[(size_t)j * ns + i] = clamp16(acc - weigh(gains[j], in[(size_t)j * ns + i]));
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
    if (unity)
        mix_unity(in, want_out ? out : NULL, want_rec ? record : NULL, any_inject ? total : NULL,
                  n, ns);
    else
        mix_gain(in, want_out ? out : NULL, want_rec ? record : NULL, any_inject ? total : NULL,
                 gains, n, ns);
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
