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

int sp_alaw_encode(const int16_t *pcm, uint8_t *out, long n)
{
    if (n < 0 || (n > 0 && (!pcm || !out))) return -1;
    ENSURE_TABLES();
    for (long i = 0; i < n; i++) out[i] = alaw_enc[(uint16_t)pcm[i]];
    return 0;
}

int sp_ulaw_encode(const int16_t *pcm, uint8_t *out, long n)
{
    if (n < 0 || (n > 0 && (!pcm || !out))) return -1;
    ENSURE_TABLES();
    for (long i = 0; i < n; i++) out[i] = ulaw_enc[(uint16_t)pcm[i]];
    return 0;
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
