/*
 * Polyphase FIR resampler for the telephony rates 8, 16 and 48 kHz (sp_rs_*).
 *
 * Integer ratios only (1:2, 1:3, 1:6 and their inverses; 1:1 is a plain copy). One
 * prototype low-pass at the higher rate, a Kaiser-windowed sinc designed when the
 * resampler is made: pass band up to 0.85 x the lower Nyquist (3.4 kHz at 8 kHz,
 * 6.8 kHz at 16 kHz), stop band from the lower Nyquist on, 72 dB design attenuation so that
 * the Q15 tap rounding still leaves >= 60 dB. Taps are Q15 int16, each branch zero-padded
 * to a multiple of 16; each output is a dot product in eight int32 lanes (pmaddwd's shape;
 * sp_rs_new refuses tap sets whose per-lane absolute sums could overflow) added in int64,
 * rounded half up and clamped. The Python reference in tests/native reproduces it exactly.
 *
 * Upsampling by L: output n*L+p = sum_j h[p + j*L] * x[n - j] (phase p of the prototype).
 * Downsampling by M: output at input index t (t = 0, M, 2M, ... across calls) =
 * sum_k h[k] * x[t - k]. Filter history and the decimation phase carry across calls, so a
 * stream can be fed in frames of any length; the signal before the first sample is zero.
 */
#ifndef SP_RESAMPLE_H
#define SP_RESAMPLE_H

#include <stddef.h>
#include <stdint.h>

/* CDEF-BEGIN */
#define SP_RS_EBADARG -1
#define SP_RS_ESPACE -2
typedef struct sp_rs sp_rs;
/* NULL for a rate pair other than 8000/16000/48000 (or allocation failure). */
sp_rs *sp_rs_new(int in_rate, int out_rate);
void sp_rs_free(sp_rs *rs);
void sp_rs_reset(sp_rs *rs);
/* Number of output samples the next sp_rs_process() of n_in samples will produce. */
long sp_rs_output_len(const sp_rs *rs, long n_in);
/* Returns the number of samples written, SP_RS_EBADARG or SP_RS_ESPACE (out_cap too small;
 * nothing consumed). */
long sp_rs_process(sp_rs *rs, const int16_t *in, long n_in, int16_t *out, long out_cap);
/* up = L, down = M, taps = prototype length; returns 0. */
int sp_rs_info(const sp_rs *rs, int *up, int *down, int *taps);
/* Copies min(cap, taps) prototype taps h[0..] (natural order) and returns the tap count. */
int sp_rs_taps(const sp_rs *rs, int16_t *dst, int cap);
/* CDEF-END */

#endif
