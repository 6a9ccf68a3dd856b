/*
 * Adaptive jitter buffer, one per RTP stream (sp_jb_*).
 *
 * Storage: a ring of `capacity` slots indexed by extended sequence number modulo capacity,
 * each with room for `max_payload` bytes, all allocated once in sp_jb_new(); put/get never
 * allocate. Payloads are opaque (encoded PCMA/PCMU/OPUS); the caller decodes and runs PLC
 * when get() says CONCEAL.
 *
 * Sequence numbers and timestamps are extended to 64 bits (16-bit seq and 32-bit timestamp
 * wrap-around). A sequence jump of more than 3000 forward or 100 backward is discarded
 * (TOO_FAR) unless the next packet continues from it, which restarts the stream (RFC 3550
 * A.1 probation). A new SSRC, or a jump of more than 1 s in transit time (sender timestamp
 * discontinuity), flushes the buffer and restarts the stream (counted in `resyncs`).
 *
 * Playout delay (NetEq-like): every received packet contributes its transit time
 * (arrival - timestamp, in ms) to a sliding window of the last 1024 packets, kept as a
 * 1 ms histogram. The target playout offset is the 0.99 quantile of that window; its
 * distance from the window's fastest packet (the relative arrival delay) is clamped to
 * [min_delay_ms, max_delay_ms] and reported as target_delay_ms. The 0.99 quantile (NetEq
 * uses 0.95 and time-stretches) keeps late discards near 1 % without time stretching.
 * During the first 50 packets the relative target is at least 60 ms.
 *
 * get(now) is called once per frame tick. Playing frame timestamp T at time `now` means a
 * playout offset O = now - T (ms); a packet is on time iff its transit <= O. At a talkspurt
 * start (marker after a timestamp gap) or after an underrun the first frame waits until
 * O >= target, so the delay adapts in silence. Within a talkspurt the offset is corrected
 * by one frame at most every 5 ticks: hold (emit CONCEAL without advancing) when
 * O < target - a quarter frame, drop a frame when O >= target + 1 frame (the tick grid
 * moves O in whole frames; the quarter-frame tolerance lowers the mean delay for few late
 * packets). This also absorbs sender clock drift: +-100 ppm moves transit by 0.1 ms/s, the
 * window follows and an occasional hold/drop corrects the offset.
 *
 * Statistics follow RFC 3550: lost = expected - received (A.3), interarrival jitter with
 * the integer estimator of A.8 (in timestamp units, scaled by 16).
 */
#ifndef SP_JITTER_H
#define SP_JITTER_H

#include <stddef.h>
#include <stdint.h>

/* CDEF-BEGIN */
typedef struct sp_jb sp_jb;

typedef struct {
    int64_t received;        /* unique packets accepted from the network (incl. late ones) */
    int64_t late_discarded;  /* arrived after their playout time */
    int64_t lost;            /* RFC 3550 A.3: expected - received, over all streams */
    int64_t duplicates;
    int64_t reordered;       /* arrived with a sequence number below the highest seen */
    int64_t oversize;        /* payload longer than max_payload: discarded */
    int64_t malformed;       /* empty payload: discarded */
    int64_t too_far;         /* sequence number far outside the window: discarded */
    int64_t overflow;        /* evicted because the ring was full */
    int64_t resyncs;         /* SSRC change, sequence restart or timestamp jump */
    int64_t frames_played;
    int64_t frames_concealed;
    int64_t frames_dropped;  /* delay reduction (too much buffered, drift) */
    int64_t frames_held;     /* delay increase inside a talkspurt (one CONCEAL inserted) */
    int64_t buffered;        /* packets waiting in the ring now */
    int64_t jitter_rtp;      /* RFC 3550 A.8 jitter, timestamp units */
    double jitter_ms;
    double current_delay_ms; /* playout offset above the fastest packet in the window */
    double target_delay_ms;
} sp_jb_stats;

sp_jb *sp_jb_new(int clock_rate, int frame_samples, int min_delay_ms, int max_delay_ms,
                 int capacity, int max_payload);
void sp_jb_free(sp_jb *jb);
void sp_jb_reset(sp_jb *jb);
int sp_jb_put(sp_jb *jb, uint16_t seq, uint32_t timestamp, uint32_t ssrc, int marker,
              const uint8_t *payload, size_t len, double arrival_ms);
int sp_jb_get(sp_jb *jb, double now_ms, uint8_t *out, size_t out_cap, size_t *out_len);
void sp_jb_get_stats(const sp_jb *jb, sp_jb_stats *out);
/* CDEF-END */

/* sp_jb_put results */
#define SP_JB_PUT_OK 0
#define SP_JB_PUT_DUPLICATE 1
#define SP_JB_PUT_LATE 2
#define SP_JB_PUT_TOO_FAR 3
#define SP_JB_PUT_OVERSIZE 4
#define SP_JB_PUT_MALFORMED 5
#define SP_JB_PUT_RESYNC 6 /* accepted, after flushing the previous stream */
#define SP_JB_ERR_ARG (-1)

/* sp_jb_get results */
#define SP_JB_FRAME 0
#define SP_JB_CONCEAL 1
#define SP_JB_EMPTY 2

#endif
