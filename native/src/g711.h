/*
 * G.711 A-law and mu-law (ITU-T G.711).
 *
 * Encoding has no branches (the segment search of the reference code mispredicts on real
 * speech): with AVX2, 16 samples at a time by nibble lookups and multiplies (g711.c);
 * otherwise one lookup per sample in a 64 Ki-entry table indexed by the 16-bit sample.
 * Decoding is a 256-entry table. The tables are computed once from the segment rules of
 * the standard, bit-exact with CPython's audioop (the Sun/CCITT reference code): A-law on
 * the 13-bit scale (sample >> 3), mu-law on the 14-bit scale (sample >> 2).
 *
 * All functions take a sample/byte count and never read or write past it; n < 0 is refused.
 */
#ifndef SP_G711_H
#define SP_G711_H

#include <stddef.h>
#include <stdint.h>

/* CDEF-BEGIN */
int sp_alaw_encode(const int16_t *pcm, uint8_t *out, long n);
int sp_alaw_decode(const uint8_t *in, int16_t *pcm, long n);
int sp_ulaw_encode(const int16_t *pcm, uint8_t *out, long n);
int sp_ulaw_decode(const uint8_t *in, int16_t *pcm, long n);
/* The same encoders taking the PCM as bytes: cffi passes a Python bytes object to a char
 * pointer without making a buffer object (the bytes data is suitably aligned). */
int sp_alaw_encode_bytes(const char *pcm, uint8_t *out, long n);
int sp_ulaw_encode_bytes(const char *pcm, uint8_t *out, long n);
/* A decoded->re-encoded round trip helper for tests: the table entries themselves. */
int16_t sp_alaw_to_linear(uint8_t code);
int16_t sp_ulaw_to_linear(uint8_t code);
uint8_t sp_linear_to_alaw(int16_t sample);
uint8_t sp_linear_to_ulaw(int16_t sample);
/* CDEF-END */

#endif
