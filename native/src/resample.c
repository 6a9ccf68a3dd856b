/* Polyphase FIR resampler (see resample.h). */
#include "resample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RS_PI 3.14159265358979323846
#define RS_CHUNK 1024           /* input samples per inner pass: bounds the work buffer */
#define RS_ATTEN_DB 72.0
#define RS_PASS_FRACTION 0.85

struct sp_rs {
    int up, down;               /* L, M (one of them is 1) */
    int taps;                   /* prototype length K */
    int per_out;                /* taps per output, K / L (up) or K (down), padded to 16 */
    int hist;                   /* input samples of history: per_out - 1 */
    long next;                  /* decimation: input index of the next output, this call */
    int16_t *proto;             /* h[0..K-1], natural order */
    int16_t *phase;             /* [L][per_out], reversed so outputs are forward dot products */
    int16_t *buf;               /* [hist + RS_CHUNK] */
};

static double bessel_i0(double x)
{
    double sum = 1.0, term = 1.0, half = x / 2.0;
    for (int k = 1; k < 200; k++) {
        term *= (half / k) * (half / k);
        sum += term;
        if (term < 1e-17 * sum) break;
    }
    return sum;
}

static int valid_rate(int r) { return r == 8000 || r == 16000 || r == 48000; }

/* Kaiser-windowed sinc, quantised to Q15 with each polyphase branch summing to unity. */
static int design(sp_rs *rs, int in_rate, int out_rate)
{
    const int high = in_rate > out_rate ? in_rate : out_rate;
    const int low = in_rate < out_rate ? in_rate : out_rate;
    const int L = rs->up;
    int K;
    if (L == 1 && rs->down == 1) {
        K = 1; /* 1:1 is a copy; the single tap is never used */
    } else {
        const double fstop = low / 2.0, fpass = RS_PASS_FRACTION * fstop;
        const double dw = 2.0 * RS_PI * (fstop - fpass) / high;
        K = (int)ceil((RS_ATTEN_DB - 8.0) / (2.285 * dw)) + 1;
        K = (K + L - 1) / L * L;
    }
    rs->taps = K;
    rs->proto = malloc(sizeof(int16_t) * (size_t)K);
    double *h = malloc(sizeof(double) * (size_t)K);
    if (!rs->proto || !h) { free(h); return -1; }
    if (K == 1) {
        h[0] = 0.5;
    } else {
        const double fc = (RS_PASS_FRACTION + 1.0) / 2.0 * (low / 2.0) / high; /* cycles/sample */
        const double beta = 0.1102 * (RS_ATTEN_DB - 8.7);
        const double mid = (K - 1) / 2.0, i0b = bessel_i0(beta);
        for (int k = 0; k < K; k++) {
            double t = k - mid;
            double sinc = t == 0.0 ? 2.0 * fc : sin(2.0 * RS_PI * fc * t) / (RS_PI * t);
            double r = t / mid;
            double win = bessel_i0(beta * sqrt(fmax(0.0, 1.0 - r * r))) / i0b;
            h[k] = L * sinc * win;
        }
    }
    /* Each branch (phase p of the interpolator, or the whole decimator) must pass DC at
     * exactly 32768/32768: the rounding residue goes to the branch's largest tap. */
    const int branches = K == 1 ? 0 : L;
    if (K == 1) rs->proto[0] = 16384;
    for (int p = 0; p < branches; p++) {
        long sum = 0;
        int big = p;
        for (int k = p; k < K; k += branches) {
            double v = round(h[k] * 32768.0);
            if (v > 32767.0) v = 32767.0;
            if (v < -32768.0) v = -32768.0;
            rs->proto[k] = (int16_t)v;
            sum += rs->proto[k];
            if (fabs(h[k]) > fabs(h[big])) big = k;
        }
        long fixed = rs->proto[big] + (32768 - sum);
        if (fixed > 32767 || fixed < -32768) { free(h); return -1; }
        rs->proto[big] = (int16_t)fixed;
    }
    free(h);
    return 0;
}

sp_rs *sp_rs_new(int in_rate, int out_rate)
{
    if (!valid_rate(in_rate) || !valid_rate(out_rate)) return NULL;
    sp_rs *rs = calloc(1, sizeof *rs);
    if (!rs) return NULL;
    rs->up = out_rate > in_rate ? out_rate / in_rate : 1;
    rs->down = in_rate > out_rate ? in_rate / out_rate : 1;
    if (design(rs, in_rate, out_rate) != 0) { sp_rs_free(rs); return NULL; }
    /* Each branch is zero-padded at its old end to a multiple of 16 taps, so the dot
     * products run in whole vectors; the zeros multiply history that is one step older. */
    const int raw = rs->up > 1 ? rs->taps / rs->up : rs->taps;
    const int L = rs->up, P = raw == 1 ? 1 : (raw + 15) / 16 * 16, pad = P - raw;
    rs->per_out = P;
    rs->hist = P - 1;
    rs->phase = calloc((size_t)L * (size_t)P, sizeof(int16_t));
    rs->buf = calloc((size_t)rs->hist + RS_CHUNK, sizeof(int16_t));
    if (!rs->phase || !rs->buf) { sp_rs_free(rs); return NULL; }
    for (int p = 0; p < L; p++)
        for (int j = 0; j < raw; j++)
            rs->phase[p * P + pad + j] = rs->proto[p + (raw - 1 - j) * L];
    /* The int32 lanes of dot_lanes(): each sums |tap| * 32768 at worst, below 2^31.
     * (A long sinc's whole |tap| sum is about 2.2 in Q15 units: one int32 would not do.) */
    for (int p = 0; p < L && P > 1; p++) {
        long lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int j = 0; j < P; j++) {
            if (rs->phase[p * P + j] == -32768) { sp_rs_free(rs); return NULL; }
            lane[(j % 16) / 2] += labs((long)rs->phase[p * P + j]);
        }
        for (int k = 0; k < 8; k++)
            if (lane[k] > 65535) { sp_rs_free(rs); return NULL; }
    }
    return rs;
}

void sp_rs_free(sp_rs *rs)
{
    if (!rs) return;
    free(rs->proto);
    free(rs->phase);
    free(rs->buf);
    free(rs);
}

void sp_rs_reset(sp_rs *rs)
{
    if (!rs) return;
    memset(rs->buf, 0, sizeof(int16_t) * ((size_t)rs->hist + RS_CHUNK));
    rs->next = 0;
}

long sp_rs_output_len(const sp_rs *rs, long n_in)
{
    if (!rs || n_in < 0) return SP_RS_EBADARG;
    if (rs->down == 1) return n_in * rs->up;
    if (n_in <= rs->next) return 0;
    return (n_in - rs->next + rs->down - 1) / rs->down;
}

/*
 * Dot product of n (a multiple of 16) samples and Q15 taps in eight int32 lanes: lane k
 * sums the products of positions 2k and 2k+1 of every 16 (pmaddwd's shape), and the eight
 * lanes are added in int64. sp_rs_new checks that no lane can overflow (per lane,
 * sum |tap| * 32768 < 2^31); a single int32 sum could, for a worst-case input.
 */
#if defined(__AVX2__)
#include <immintrin.h>

static inline int64_t dot_lanes(const int16_t *x, const int16_t *h, int n)
{
    __m256i acc = _mm256_setzero_si256();
    for (int j = 0; j < n; j += 16)
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(x + j)),
                                                      _mm256_loadu_si256((const __m256i *)(h + j))));
    __m256i q = _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(acc)),
                                 _mm256_cvtepi32_epi64(_mm256_extracti128_si256(acc, 1)));
    __m128i d = _mm_add_epi64(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    return _mm_cvtsi128_si64(d) + _mm_extract_epi64(d, 1);
}
#else
static inline int64_t dot_lanes(const int16_t *restrict x, const int16_t *restrict h, int n)
{
    int32_t lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int j = 0; j < n; j += 16)
        for (int k = 0; k < 8; k++)
            lane[k] += (int32_t)x[j + 2 * k] * h[j + 2 * k] + (int32_t)x[j + 2 * k + 1] * h[j + 2 * k + 1];
    int64_t sum = 0;
    for (int k = 0; k < 8; k++) sum += lane[k];
    return sum;
}
#endif

static inline int16_t dot_q15(const int16_t *x, const int16_t *h, int n)
{
    int64_t acc = (dot_lanes(x, h, n) + 16384) >> 15;
    if (acc > 32767) acc = 32767;
    if (acc < -32768) acc = -32768;
    return (int16_t)acc;
}

long sp_rs_process(sp_rs *rs, const int16_t *in, long n_in, int16_t *out, long out_cap)
{
    if (!rs || n_in < 0 || out_cap < 0 || (n_in > 0 && !in)) return SP_RS_EBADARG;
    const long need = sp_rs_output_len(rs, n_in);
    if (need > out_cap) return SP_RS_ESPACE;
    if (need > 0 && !out) return SP_RS_EBADARG;
    const int L = rs->up, M = rs->down, P = rs->per_out, H = rs->hist;
    if (L == 1 && M == 1) {
        if (n_in > 0) memcpy(out, in, sizeof(int16_t) * (size_t)n_in);
        return n_in;
    }
    long written = 0;
    for (long done = 0; done < n_in;) {
        const long c = n_in - done < RS_CHUNK ? n_in - done : RS_CHUNK;
        memcpy(rs->buf + H, in + done, sizeof(int16_t) * (size_t)c);
        if (M == 1) {
            for (long n = 0; n < c; n++)
                for (int p = 0; p < L; p++)
                    out[written++] = dot_q15(rs->buf + n, rs->phase + (size_t)p * P, P);
        } else {
            for (; rs->next < c; rs->next += M)
                out[written++] = dot_q15(rs->buf + rs->next, rs->phase, P);
            rs->next -= c;
        }
        memmove(rs->buf, rs->buf + c, sizeof(int16_t) * (size_t)H);
        done += c;
    }
    return written;
}

int sp_rs_info(const sp_rs *rs, int *up, int *down, int *taps)
{
    if (!rs || !up || !down || !taps) return SP_RS_EBADARG;
    *up = rs->up;
    *down = rs->down;
    *taps = rs->taps;
    return 0;
}

int sp_rs_taps(const sp_rs *rs, int16_t *dst, int cap)
{
    if (!rs || cap < 0 || (cap > 0 && !dst)) return SP_RS_EBADARG;
    int n = cap < rs->taps ? cap : rs->taps;
    memcpy(dst, rs->proto, sizeof(int16_t) * (size_t)n);
    return rs->taps;
}
