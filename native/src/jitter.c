/* Adaptive jitter buffer: see jitter.h for the algorithm. Integer arithmetic throughout so
 * the pure-Python reference in tests/native/jitter_reference.py reproduces it exactly. */
#include "jitter.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define JB_WINDOW 1024         /* transit samples in the delay estimator (20 s at 50 pps) */
#define JB_HIST_SPAN 4096      /* 1 ms bins */
#define JB_QUANTILE_PM 990     /* target quantile, per mille */
#define JB_WARMUP 50           /* packets before the quantile alone sets the target */
#define JB_START_REL_MS 60
#define JB_MAX_DROPOUT 3000    /* RFC 3550 A.1 */
#define JB_MAX_MISORDER 100
#define JB_RESYNC_MS 1000      /* transit jump treated as a sender discontinuity */
#define JB_ADJUST_GAP 5        /* ticks between in-talkspurt hold/drop */
#define JB_UNDERRUN_IDLE 10    /* empty ticks concealed before going idle */
#define JB_SEQ_ORIGIN 65536    /* extended seq/ts start one cycle up: never negative */
#define JB_TS_ORIGIN 4294967296LL

enum { SLOT_EMPTY = 0, SLOT_FILLED = 1, SLOT_DONE = 2 };

typedef struct {
    int64_t seq;
    int64_t ts;
    uint32_t len;
    uint8_t state;
    uint8_t marker;
} jb_slot;

typedef struct {
    int32_t idx;   /* histogram bin holding the selected rank */
    int32_t above; /* samples in bins above idx */
} jb_rank;

struct sp_jb {
    int clock_rate, frame, min_delay_ms, max_delay_ms, capacity, max_payload;
    int64_t frame_us;
    jb_slot *slots;
    uint8_t *pool;
    /* stream */
    int have_stream;
    uint32_t ssrc;
    int64_t highest_seq, base_seq, last_ts;
    int probation;
    uint16_t bad_seq;
    int64_t stream_received, lost_before;
    int have_transit;
    int64_t last_transit_ms;
    int64_t jit_last_transit, jitter_q4;
    /* playout */
    int playing;
    int64_t next_seq, play_ts;
    int64_t count;
    int underrun, since_adjust;
    /* estimator */
    int64_t win[JB_WINDOW];
    int32_t win_n, win_pos;
    int64_t hist_base;
    uint16_t hist[JB_HIST_SPAN];
    jb_rank q, lo;
    sp_jb_stats st;
};

static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}

static int64_t ms_to_us(double ms) { return (int64_t)floor(ms * 1000.0 + 0.5); }

static int64_t ts_us(const sp_jb *jb, int64_t ts) { return floor_div(ts * 1000000, jb->clock_rate); }

/* ---- delay estimator: sliding window of transit (ms) with a histogram and two ranks ---- */

static int32_t hist_bin(const sp_jb *jb, int64_t v) {
    int64_t b = v - jb->hist_base;
    if (b < 0) return 0;
    if (b >= JB_HIST_SPAN) return JB_HIST_SPAN - 1;
    return (int32_t)b;
}

/* Moves a rank pointer so that it sits on the (k+1)-th largest sample. */
static void rank_fix(const sp_jb *jb, jb_rank *r, int32_t k) {
    if (jb->win_n == 0) return;
    for (;;) {
        if (r->above > k) {
            r->idx++;
            r->above -= jb->hist[r->idx];
        } else if (r->above + jb->hist[r->idx] <= k) {
            r->above += jb->hist[r->idx];
            r->idx--;
        } else {
            break;
        }
    }
}

static int32_t quantile_k(int32_t n) { return (int32_t)(((int64_t)n * (1000 - JB_QUANTILE_PM)) / 1000); }

static void ranks_fix(sp_jb *jb) {
    rank_fix(jb, &jb->q, quantile_k(jb->win_n));
    rank_fix(jb, &jb->lo, jb->win_n - 1);
}

static void hist_rebuild(sp_jb *jb) {
    memset(jb->hist, 0, sizeof jb->hist);
    for (int32_t i = 0; i < jb->win_n; i++) jb->hist[hist_bin(jb, jb->win[i])]++;
    jb->q.idx = 0;
    jb->q.above = jb->win_n - jb->hist[0];
    jb->lo = jb->q;
    ranks_fix(jb);
}

static void rank_add(jb_rank *r, int32_t b, int delta) {
    if (b > r->idx) r->above += delta;
}

static void estimator_add(sp_jb *jb, int64_t v) {
    if (jb->win_n == JB_WINDOW) { /* evict the oldest */
        int32_t b = hist_bin(jb, jb->win[jb->win_pos]);
        jb->hist[b]--;
        rank_add(&jb->q, b, -1);
        rank_add(&jb->lo, b, -1);
        jb->win_n--;
    }
    jb->win[jb->win_pos] = v;
    jb->win_pos = (jb->win_pos + 1) % JB_WINDOW;
    jb->win_n++;
    int64_t off = v - jb->hist_base;
    if (jb->win_n == 1 || off < 0 || off >= JB_HIST_SPAN) {
        jb->hist_base = v - JB_HIST_SPAN / 2;
        hist_rebuild(jb);
        return;
    }
    int32_t b = (int32_t)off;
    jb->hist[b]++;
    rank_add(&jb->q, b, 1);
    rank_add(&jb->lo, b, 1);
    ranks_fix(jb);
}

static void estimator_clear(sp_jb *jb) {
    jb->win_n = 0;
    jb->win_pos = 0;
    jb->hist_base = 0;
    memset(jb->hist, 0, sizeof jb->hist);
    jb->q.idx = jb->q.above = 0;
    jb->lo = jb->q;
}

/* Target playout offset in us (absolute: compare with now - ts); relative part in ms. */
static int64_t target_us(const sp_jb *jb, int64_t *rel_ms) {
    int64_t lo = jb->hist_base + jb->lo.idx;
    int64_t rel = (jb->hist_base + jb->q.idx) - lo;
    if (jb->win_n < JB_WARMUP && rel < JB_START_REL_MS) rel = JB_START_REL_MS;
    if (rel < jb->min_delay_ms) rel = jb->min_delay_ms;
    if (rel > jb->max_delay_ms) rel = jb->max_delay_ms;
    if (rel_ms) *rel_ms = rel;
    /* transit is floored to ms: +1 ms makes every sample of the quantile bin on time */
    return (lo + rel + 1) * 1000;
}

/* ---- ring ---- */

static jb_slot *slot_of(sp_jb *jb, int64_t seq) { return &jb->slots[seq % jb->capacity]; }

static void flush_ring(sp_jb *jb) {
    for (int i = 0; i < jb->capacity; i++) jb->slots[i].state = SLOT_EMPTY;
    jb->count = 0;
}

/* Lowest buffered packet at or after next_seq, or NULL. */
static jb_slot *find_head(sp_jb *jb) {
    if (jb->count == 0) return NULL;
    for (int64_t s = jb->next_seq; s < jb->next_seq + jb->capacity; s++) {
        jb_slot *sl = slot_of(jb, s);
        if (sl->state == SLOT_FILLED && sl->seq == s) return sl;
    }
    return NULL;
}

static void consume(sp_jb *jb, jb_slot *sl) {
    sl->state = SLOT_DONE;
    jb->count--;
    jb->next_seq = sl->seq + 1;
}

static void start_stream(sp_jb *jb, uint32_t ssrc, uint16_t seq, uint32_t ts) {
    if (jb->have_stream) jb->lost_before += (jb->highest_seq - jb->base_seq + 1) - jb->stream_received;
    flush_ring(jb);
    estimator_clear(jb);
    jb->have_stream = 1;
    jb->ssrc = ssrc;
    jb->highest_seq = JB_SEQ_ORIGIN + seq;
    jb->base_seq = jb->highest_seq;
    jb->last_ts = JB_TS_ORIGIN + ts;
    jb->probation = 0;
    jb->stream_received = 0;
    jb->have_transit = 0;
    jb->jitter_q4 = 0;
    jb->playing = 0;
    jb->next_seq = jb->highest_seq;
    jb->play_ts = 0;
    jb->underrun = 0;
    jb->since_adjust = 0;
}

sp_jb *sp_jb_new(int clock_rate, int frame_samples, int min_delay_ms, int max_delay_ms,
                 int capacity, int max_payload) {
    if (clock_rate < 1000 || clock_rate > 192000 || frame_samples < 1 ||
        frame_samples > clock_rate || min_delay_ms < 0 || max_delay_ms < min_delay_ms ||
        max_delay_ms > 10000 || capacity < 2 || capacity > 4096 || max_payload < 1 ||
        max_payload > 65536)
        return NULL;
    sp_jb *jb = calloc(1, sizeof *jb);
    if (!jb) return NULL;
    jb->slots = calloc((size_t)capacity, sizeof *jb->slots);
    jb->pool = malloc((size_t)capacity * (size_t)max_payload);
    if (!jb->slots || !jb->pool) {
        sp_jb_free(jb);
        return NULL;
    }
    jb->clock_rate = clock_rate;
    jb->frame = frame_samples;
    jb->frame_us = ((int64_t)frame_samples * 1000000) / clock_rate;
    jb->min_delay_ms = min_delay_ms;
    jb->max_delay_ms = max_delay_ms;
    jb->capacity = capacity;
    jb->max_payload = max_payload;
    sp_jb_reset(jb);
    return jb;
}

void sp_jb_free(sp_jb *jb) {
    if (!jb) return;
    free(jb->slots);
    free(jb->pool);
    free(jb);
}

void sp_jb_reset(sp_jb *jb) {
    if (!jb) return;
    flush_ring(jb);
    estimator_clear(jb);
    jb->have_stream = 0;
    jb->lost_before = 0;
    jb->stream_received = 0;
    jb->playing = 0;
    jb->jitter_q4 = 0;
    memset(&jb->st, 0, sizeof jb->st);
}

int sp_jb_put(sp_jb *jb, uint16_t seq, uint32_t timestamp, uint32_t ssrc, int marker,
              const uint8_t *payload, size_t len, double arrival_ms) {
    if (!jb || !isfinite(arrival_ms) || fabs(arrival_ms) > 1e10) return SP_JB_ERR_ARG;
    if (len > (size_t)jb->max_payload) {
        jb->st.oversize++;
        return SP_JB_PUT_OVERSIZE;
    }
    if (len == 0 || !payload) {
        jb->st.malformed++;
        return SP_JB_PUT_MALFORMED;
    }
    int result = SP_JB_PUT_OK;
    int64_t arrival_us = ms_to_us(arrival_ms);
    if (!jb->have_stream || ssrc != jb->ssrc) {
        if (jb->have_stream) {
            jb->st.resyncs++;
            result = SP_JB_PUT_RESYNC;
        }
        start_stream(jb, ssrc, seq, timestamp);
    }
    int32_t d = (int32_t)(uint16_t)(seq - (uint16_t)(jb->highest_seq & 0xFFFF));
    if (d >= 32768) d -= 65536;
    if (d > JB_MAX_DROPOUT || d < -JB_MAX_MISORDER) {
        if (jb->probation && seq == jb->bad_seq) { /* the sender really restarted */
            jb->st.resyncs++;
            start_stream(jb, ssrc, seq, timestamp);
            result = SP_JB_PUT_RESYNC;
            d = 0;
        } else {
            jb->st.too_far++;
            jb->probation = 1;
            jb->bad_seq = (uint16_t)(seq + 1);
            return SP_JB_PUT_TOO_FAR;
        }
    }
    jb->probation = 0;
    int64_t eseq = jb->highest_seq + d;
    int64_t dts = (int64_t)(uint32_t)(timestamp - (uint32_t)(jb->last_ts & 0xFFFFFFFFu));
    if (dts >= 2147483648LL) dts -= 4294967296LL;
    int64_t ets = jb->last_ts + dts;

    jb_slot *sl = slot_of(jb, eseq);
    if (sl->state != SLOT_EMPTY && sl->seq == eseq) {
        jb->st.duplicates++;
        return SP_JB_PUT_DUPLICATE;
    }
    int64_t transit_ms = floor_div(arrival_us - ts_us(jb, ets), 1000);
    if (jb->have_transit) {
        int64_t jump = transit_ms - jb->last_transit_ms;
        if (jump > JB_RESYNC_MS || jump < -JB_RESYNC_MS) {
            jb->st.resyncs++;
            start_stream(jb, ssrc, seq, timestamp);
            result = SP_JB_PUT_RESYNC;
            eseq = jb->highest_seq;
            ets = jb->last_ts;
            sl = slot_of(jb, eseq);
            transit_ms = floor_div(arrival_us - ts_us(jb, ets), 1000);
            d = 0;
        }
    }
    /* accepted from the network: statistics */
    jb->st.received++;
    jb->stream_received++;
    if (d < 0) jb->st.reordered++;
    if (eseq > jb->highest_seq) jb->highest_seq = eseq;
    jb->last_ts = ets;
    int64_t arrival_rtp = floor_div(arrival_us * jb->clock_rate, 1000000);
    int64_t jt = arrival_rtp - ets;
    if (jb->have_transit) {
        int64_t dd = jt - jb->jit_last_transit;
        if (dd < 0) dd = -dd;
        jb->jitter_q4 += dd - ((jb->jitter_q4 + 8) >> 4);
    }
    jb->jit_last_transit = jt;
    jb->have_transit = 1;
    jb->last_transit_ms = transit_ms;
    estimator_add(jb, transit_ms);

    if (eseq < jb->next_seq || (jb->playing && ets < jb->play_ts)) {
        jb->st.late_discarded++;
        if (eseq == jb->next_seq) jb->next_seq++;
        return SP_JB_PUT_LATE;
    }
    if (eseq >= jb->next_seq + jb->capacity) { /* ring full: make room, oldest first */
        int64_t keep_from = eseq - jb->capacity + 1;
        for (int i = 0; i < jb->capacity; i++) {
            jb_slot *o = &jb->slots[i];
            if (o->state == SLOT_FILLED && o->seq < keep_from) {
                o->state = SLOT_DONE;
                jb->count--;
                jb->st.overflow++;
            }
        }
        jb->next_seq = keep_from;
    }
    sl->seq = eseq;
    sl->ts = ets;
    sl->len = (uint32_t)len;
    sl->state = SLOT_FILLED;
    sl->marker = marker ? 1 : 0;
    memcpy(jb->pool + (size_t)(eseq % jb->capacity) * (size_t)jb->max_payload, payload, len);
    jb->count++;
    return result;
}

/* Drops packets whose playout time has passed, returns the next buffered one. */
static jb_slot *due_head(sp_jb *jb) {
    jb_slot *h = find_head(jb);
    while (h && h->ts < jb->play_ts) {
        consume(jb, h);
        jb->st.late_discarded++;
        h = find_head(jb);
    }
    return h;
}

static int emit(sp_jb *jb, jb_slot *h, uint8_t *out, size_t *out_len) {
    memcpy(out, jb->pool + (size_t)(h->seq % jb->capacity) * (size_t)jb->max_payload, h->len);
    *out_len = h->len;
    consume(jb, h);
    jb->play_ts = h->ts + jb->frame;
    jb->underrun = 0;
    jb->st.frames_played++;
    return SP_JB_FRAME;
}

int sp_jb_get(sp_jb *jb, double now_ms, uint8_t *out, size_t out_cap, size_t *out_len) {
    if (!jb || !out || !out_len || out_cap < (size_t)jb->max_payload || !isfinite(now_ms) ||
        fabs(now_ms) > 1e10)
        return SP_JB_ERR_ARG;
    *out_len = 0;
    if (!jb->have_stream) return SP_JB_EMPTY;
    int64_t now_us = ms_to_us(now_ms);
    int64_t rel_ms = 0;
    int64_t tgt = target_us(jb, &rel_ms);
    int64_t lo_us = (jb->hist_base + jb->lo.idx) * 1000;
    jb->st.target_delay_ms = (double)rel_ms;

    if (jb->playing) {
        jb_slot *h = due_head(jb);
        /* talkspurt start after a timestamp gap: schedule it afresh at the target */
        if (h && h->seq == jb->next_seq && h->marker && h->ts >= jb->play_ts + jb->frame)
            jb->playing = 0;
    }
    if (!jb->playing) {
        jb_slot *h = find_head(jb);
        if (!h || now_us - ts_us(jb, h->ts) < tgt) return SP_JB_EMPTY;
        jb->playing = 1;
        jb->play_ts = h->ts;
        jb->underrun = 0;
        jb->since_adjust = 0;
    }
    int64_t offset = now_us - ts_us(jb, jb->play_ts);
    jb->st.current_delay_ms = (double)(offset - lo_us) / 1000.0;
    jb->since_adjust++;
    if (jb->since_adjust > JB_ADJUST_GAP) {
        /* Holds tolerate a quarter frame of shortfall: the tick grid leaves the offset up to
         * one frame above any target, and sitting a little lower is worth the rare late packet
         * (measured in bench/jitter_quality.py; half a frame made drift starve). */
        if (offset < tgt - jb->frame_us / 4) { /* too little buffered: wait one frame */
            jb->since_adjust = 0;
            jb->st.frames_held++;
            jb->st.frames_concealed++;
            return SP_JB_CONCEAL;
        }
        if (offset >= tgt + jb->frame_us) { /* too much: skip the due frame */
            jb_slot *h = due_head(jb);
            if (h && h->ts < jb->play_ts + jb->frame) consume(jb, h);
            jb->play_ts += jb->frame;
            jb->since_adjust = 0;
            jb->st.frames_dropped++;
        }
    }
    jb_slot *h = due_head(jb);
    if (h && h->ts < jb->play_ts + jb->frame) return emit(jb, h, out, out_len);
    jb->play_ts += jb->frame;
    if (!h) {
        if (++jb->underrun > JB_UNDERRUN_IDLE) {
            jb->playing = 0;
            return SP_JB_EMPTY;
        }
        jb->st.frames_concealed++;
        return SP_JB_CONCEAL;
    }
    if (h->seq == jb->next_seq) return SP_JB_EMPTY; /* timestamp gap, nothing missing */
    jb->st.frames_concealed++;
    return SP_JB_CONCEAL;
}

void sp_jb_get_stats(const sp_jb *jb, sp_jb_stats *out) {
    if (!jb || !out) return;
    *out = jb->st;
    out->lost = jb->lost_before;
    if (jb->have_stream) out->lost += (jb->highest_seq - jb->base_seq + 1) - jb->stream_received;
    out->buffered = jb->count;
    out->jitter_rtp = jb->jitter_q4 >> 4;
    out->jitter_ms = ((double)jb->jitter_q4 / 16.0) * 1000.0 / (double)jb->clock_rate;
}
