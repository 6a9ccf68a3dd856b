/* G.711 tables and the encode/decode loops (see g711.h). */
#include "g711.h"

static uint8_t alaw_enc[65536];
static uint8_t ulaw_enc[65536];
static int16_t alaw_dec[256];
static int16_t ulaw_dec[256];
static volatile int tables_ready;

/* A-law: 13-bit magnitude (one's complement for negatives), segment = position of the top bit. */
static uint8_t alaw_of(int16_t sample)
{
    int v = sample >> 3; /* arithmetic shift: 13-bit two's complement */
    int mask;
    if (v >= 0) {
        mask = 0xD5;
    } else {
        mask = 0x55;
        v = -v - 1;
    }
    int seg = 0;
    while (seg < 8 && v > (0x20 << seg) - 1) seg++;
    if (seg >= 8) return (uint8_t)(0x7F ^ mask);
    int aval = seg << 4;
    aval |= (seg < 2 ? (v >> 1) : (v >> seg)) & 0x0F;
    return (uint8_t)(aval ^ mask);
}

/* mu-law: 14-bit magnitude, clipped at 8159, biased by 33, segment of the biased value. */
static uint8_t ulaw_of(int16_t sample)
{
    int v = sample >> 2;
    int mask;
    if (v < 0) {
        v = -v;
        mask = 0x7F;
    } else {
        mask = 0xFF;
    }
    if (v > 8159) v = 8159;
    v += 33;
    int seg = 0;
    while (seg < 8 && v > (0x40 << seg) - 1) seg++;
    if (seg >= 8) return (uint8_t)(0x7F ^ mask);
    int uval = (seg << 4) | ((v >> (seg + 1)) & 0x0F);
    return (uint8_t)(uval ^ mask);
}

static int16_t alaw_lin(uint8_t code)
{
    int a = code ^ 0x55;
    int t = (a & 0x0F) << 4;
    int seg = (a & 0x70) >> 4;
    if (seg == 0) t += 8;
    else if (seg == 1) t += 0x108;
    else t = (t + 0x108) << (seg - 1);
    return (int16_t)((a & 0x80) ? t : -t);
}

static int16_t ulaw_lin(uint8_t code)
{
    int u = ~code & 0xFF;
    int t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4);
    return (int16_t)((u & 0x80) ? (0x84 - t) : (t - 0x84));
}

static void build_tables(void)
{
    for (int i = 0; i < 65536; i++) {
        int16_t s = (int16_t)(i - 32768);
        alaw_enc[(uint16_t)s] = alaw_of(s);
        ulaw_enc[(uint16_t)s] = ulaw_of(s);
    }
    for (int c = 0; c < 256; c++) {
        alaw_dec[c] = alaw_lin((uint8_t)c);
        ulaw_dec[c] = ulaw_lin((uint8_t)c);
    }
    tables_ready = 1;
}

#if defined(__GNUC__)
/* Built when the extension loads, so the hot path never checks. */
__attribute__((constructor)) static void g711_init(void) { build_tables(); }
#define ENSURE_TABLES() ((void)0)
#else
#define ENSURE_TABLES() do { if (!tables_ready) build_tables(); } while (0)
#endif

#if defined(__AVX2__)
#include <immintrin.h>

/*
 * 16 samples per register, branch free, the same segment rules as alaw_of()/ulaw_of():
 * the segment comes from nibble lookups (pshufb), the per-lane right shift by the segment
 * is an unsigned high multiply by 2^(16 - shift) whose high byte is another lookup.
 * No 64 KiB table traffic; tests/native checks all 65,536 inputs through this path.
 */

/*
 * Segment = (bit length of the magnitude) - constant, from two nibble lookups: the top
 * nibble (mag >> hi) gives segments 4..7, the next one (mag >> mid) 0..3, the larger
 * answer wins. pshufb reads only bits 0-3 of an index byte and answers 0 when bit 7 is
 * set, so no masking is needed: bit 7 of (mag >> mid) can only be set when the top nibble
 * is non-zero (and wins), and every index's high byte is 0 -> table[0] = 0.
 */
static inline __m256i segment(__m256i mag, int hi, int mid)
{
    const __m256i top = _mm256_setr_epi8(0, 4, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7,
                                         0, 4, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7);
    const __m256i low = _mm256_setr_epi8(0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
                                         0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    return _mm256_max_epi16(_mm256_shuffle_epi8(top, _mm256_srli_epi16(mag, hi)),
                            _mm256_shuffle_epi8(low, _mm256_srli_epi16(mag, mid)));
}

/*
 * (mag >> shift(seg)) & 15 as the high half of mag * 2^(16 - shift): the multiplier's
 * high byte 2^(8 - shift) is looked up by segment (table below), its low byte is 0
 * (index byte with bit 7 set).
 */
static inline __m256i step(__m256i mag, __m256i seg, __m256i mult_table)
{
    const __m256i idx = _mm256_or_si256(_mm256_slli_epi16(seg, 8), _mm256_set1_epi16(0x80));
    return _mm256_and_si256(_mm256_mulhi_epu16(mag, _mm256_shuffle_epi8(mult_table, idx)),
                            _mm256_set1_epi16(0x0F));
}

static inline __m256i alaw16(__m256i x)
{
    /* shift = max(seg, 1): 2^(8-shift) for seg 0..7 */
    const __m256i mult = _mm256_setr_epi8((char)128, (char)128, 64, 32, 16, 8, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0,
                                          (char)128, (char)128, 64, 32, 16, 8, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m256i v = _mm256_srai_epi16(x, 3);
    const __m256i neg = _mm256_srai_epi16(v, 15);
    const __m256i mag = _mm256_xor_si256(v, neg); /* one's complement: -v - 1, < 4096 */
    const __m256i seg = segment(mag, 8, 4);
    const __m256i code = _mm256_or_si256(_mm256_slli_epi16(seg, 4), step(mag, seg, mult));
    /* even bits inverted, sign bit set for positive: 0xD5 or 0x55 */
    const __m256i flip = _mm256_xor_si256(_mm256_set1_epi16(0xD5),
                                          _mm256_and_si256(neg, _mm256_set1_epi16(0x80)));
    return _mm256_xor_si256(code, flip);
}

static inline __m256i ulaw16(__m256i x)
{
    /* shift = seg + 1: 2^(7-seg) for seg 0..7 */
    const __m256i mult = _mm256_setr_epi8(-128, 64, 32, 16, 8, 4, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0,
                                          -128, 64, 32, 16, 8, 4, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m256i v = _mm256_srai_epi16(x, 2);
    const __m256i neg = _mm256_srai_epi16(v, 15);
    __m256i mag = _mm256_min_epi16(_mm256_abs_epi16(v), _mm256_set1_epi16(8159));
    /* 8159 + 33 = 8192 is the standard's "out of range" case, code 0x7F: the same as
     * segment 7, step 15, i.e. the magnitude 8191 */
    mag = _mm256_min_epi16(_mm256_add_epi16(mag, _mm256_set1_epi16(33)), _mm256_set1_epi16(8191));
    const __m256i seg = segment(mag, 9, 5); /* 33 <= mag < 8192 */
    const __m256i code = _mm256_or_si256(_mm256_slli_epi16(seg, 4), step(mag, seg, mult));
    /* all bits inverted, sign bit set for negative: 0xFF or 0x7F */
    const __m256i flip = _mm256_xor_si256(_mm256_set1_epi16(0xFF),
                                          _mm256_and_si256(neg, _mm256_set1_epi16(0x80)));
    return _mm256_xor_si256(code, flip);
}

/* 16-bit codes -> bytes: packus interleaves 128-bit lanes, the permute restores order. */
#define PACK_STORE(at, a, b)                                                                \
    _mm256_storeu_si256((__m256i *)(out + (at)),                                            \
                        _mm256_permute4x64_epi64(_mm256_packus_epi16((a), (b)), 0xD8))
#define LOAD16(at) _mm256_loadu_si256((const __m256i *)(pcm + (at)))
/* 64 samples per turn: four independent vectors in flight are ~10 % faster than two. */
#define SIMD_ENCODE(law)                                                                    \
    for (; i + 64 <= n; i += 64) {                                                          \
        const __m256i a = law(LOAD16(i)), b = law(LOAD16(i + 16));                          \
        const __m256i c = law(LOAD16(i + 32)), d = law(LOAD16(i + 48));                     \
        PACK_STORE(i, a, b);                                                                \
        PACK_STORE(i + 32, c, d);                                                           \
    }                                                                                       \
    for (; i + 16 <= n; i += 16) { /* a last 16..48 samples */                              \
        const __m256i a = law(LOAD16(i));                                                   \
        const __m128i p = _mm_packus_epi16(_mm256_castsi256_si128(a),                       \
                                           _mm256_extracti128_si256(a, 1));                 \
        _mm_storeu_si128((__m128i *)(out + i), p);                                          \
    }
#else
#define SIMD_ENCODE(law)
#endif

int sp_alaw_encode(const int16_t *pcm, uint8_t *out, long n)
{
    if (n < 0 || (n > 0 && (!pcm || !out))) return -1;
    ENSURE_TABLES();
    long i = 0;
    SIMD_ENCODE(alaw16)
    for (; i < n; i++) out[i] = alaw_enc[(uint16_t)pcm[i]];
    return 0;
}

int sp_ulaw_encode(const int16_t *pcm, uint8_t *out, long n)
{
    if (n < 0 || (n > 0 && (!pcm || !out))) return -1;
    ENSURE_TABLES();
    long i = 0;
    SIMD_ENCODE(ulaw16)
    for (; i < n; i++) out[i] = ulaw_enc[(uint16_t)pcm[i]];
    return 0;
}

int sp_alaw_encode_bytes(const char *pcm, uint8_t *out, long n)
{
    return sp_alaw_encode((const int16_t *)(const void *)pcm, out, n);
}

int sp_ulaw_encode_bytes(const char *pcm, uint8_t *out, long n)
{
    return sp_ulaw_encode((const int16_t *)(const void *)pcm, out, n);
}

int sp_alaw_decode(const uint8_t *in, int16_t *pcm, long n)
{
    if (n < 0 || (n > 0 && (!pcm || !in))) return -1;
    ENSURE_TABLES();
    for (long i = 0; i < n; i++) pcm[i] = alaw_dec[in[i]];
    return 0;
}

int sp_ulaw_decode(const uint8_t *in, int16_t *pcm, long n)
{
    if (n < 0 || (n > 0 && (!pcm || !in))) return -1;
    ENSURE_TABLES();
    for (long i = 0; i < n; i++) pcm[i] = ulaw_dec[in[i]];
    return 0;
}

int16_t sp_alaw_to_linear(uint8_t code) { ENSURE_TABLES(); return alaw_dec[code]; }
int16_t sp_ulaw_to_linear(uint8_t code) { ENSURE_TABLES(); return ulaw_dec[code]; }
uint8_t sp_linear_to_alaw(int16_t sample) { ENSURE_TABLES(); return alaw_enc[(uint16_t)sample]; }
uint8_t sp_linear_to_ulaw(int16_t sample) { ENSURE_TABLES(); return ulaw_enc[(uint16_t)sample]; }
