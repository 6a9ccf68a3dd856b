"""Pure-Python reference of native/src/jitter.c, written for clarity, not speed.

The delay estimator is computed by brute force (sort the window) where the C code keeps an
incremental histogram rank, so the differential test also checks that bookkeeping. All
arithmetic is integer (or the same IEEE double operations as the C code), so outputs and
statistics must match the C buffer exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

WINDOW = 1024
HIST_SPAN = 4096
QUANTILE_PM = 990
WARMUP = 50
START_REL_MS = 60
MAX_DROPOUT = 3000
MAX_MISORDER = 100
RESYNC_MS = 1000
ADJUST_GAP = 5
UNDERRUN_IDLE = 10
SEQ_ORIGIN = 65536
TS_ORIGIN = 1 << 32

PUT_OK, PUT_DUPLICATE, PUT_LATE, PUT_TOO_FAR, PUT_OVERSIZE, PUT_MALFORMED, PUT_RESYNC = range(7)
FRAME, CONCEAL, EMPTY = range(3)

STAT_COUNTERS = ("received", "late_discarded", "duplicates", "reordered", "oversize",
                 "malformed", "too_far", "overflow", "resyncs", "frames_played",
                 "frames_concealed", "frames_dropped", "frames_held")


def ms_to_us(ms: float) -> int:
    return math.floor(ms * 1000.0 + 0.5)


@dataclass
class Packet:
    seq: int
    ts: int
    marker: bool
    payload: bytes
    done: bool = False


@dataclass
class ReferenceJitterBuffer:
    clock_rate: int = 8000
    frame_samples: int = 160
    min_delay_ms: int = 20
    max_delay_ms: int = 200
    capacity: int = 64
    max_payload: int = 1500
    counters: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frame_us = self.frame_samples * 1_000_000 // self.clock_rate
        self.reset()

    # ---- bookkeeping ----
    def reset(self) -> None:
        self.ring: dict[int, Packet] = {}  # slot index -> packet (FILLED or DONE)
        self.window: list[int] = []
        self.hist_base = 0
        self.have_stream = False
        self.lost_before = 0
        self.stream_received = 0
        self.playing = False
        self.counters = {name: 0 for name in STAT_COUNTERS}
        self.current_delay_ms = 0.0
        self.target_delay_ms = 0.0
        self.jitter_q4 = 0
        self.highest_seq = self.base_seq = 0

    def ts_us(self, ts: int) -> int:
        return ts * 1_000_000 // self.clock_rate

    def start_stream(self, ssrc: int, seq: int, ts: int) -> None:
        if self.have_stream:
            self.lost_before += (self.highest_seq - self.base_seq + 1) - self.stream_received
        self.ring = {}
        self.window = []
        self.hist_base = 0
        self.have_stream = True
        self.ssrc = ssrc
        self.highest_seq = self.base_seq = SEQ_ORIGIN + seq
        self.last_ts = TS_ORIGIN + ts
        self.probation = False
        self.bad_seq = 0
        self.stream_received = 0
        self.have_transit = False
        self.last_transit_ms = 0
        self.jit_last_transit = 0
        self.jitter_q4 = 0
        self.playing = False
        self.next_seq = self.highest_seq
        self.play_ts = 0
        self.underrun = 0
        self.since_adjust = 0

    def filled(self) -> list[Packet]:
        return [p for p in self.ring.values() if not p.done]

    # ---- estimator ----
    def estimator_add(self, v: int) -> None:
        self.window.append(v)
        if len(self.window) > WINDOW:
            self.window.pop(0)
        off = v - self.hist_base
        if len(self.window) == 1 or off < 0 or off >= HIST_SPAN:
            self.hist_base = v - HIST_SPAN // 2

    def target_us(self) -> tuple[int, int]:
        bins = sorted(min(max(v - self.hist_base, 0), HIST_SPAN - 1) for v in self.window)
        n = len(bins)
        k = n * (1000 - QUANTILE_PM) // 1000
        lo = self.hist_base + bins[0]
        rel = self.hist_base + bins[n - 1 - k] - lo
        if n < WARMUP and rel < START_REL_MS:
            rel = START_REL_MS
        rel = min(max(rel, self.min_delay_ms), self.max_delay_ms)
        return (lo + rel + 1) * 1000, rel

    # ---- put ----
    def put(self, seq: int, ts: int, ssrc: int, marker: bool, payload: bytes,
            arrival_ms: float) -> int:
        c = self.counters
        if len(payload) > self.max_payload:
            c["oversize"] += 1
            return PUT_OVERSIZE
        if not payload:
            c["malformed"] += 1
            return PUT_MALFORMED
        result = PUT_OK
        arrival_us = ms_to_us(arrival_ms)
        if not self.have_stream or ssrc != self.ssrc:
            if self.have_stream:
                c["resyncs"] += 1
                result = PUT_RESYNC
            self.start_stream(ssrc, seq, ts)
        d = (seq - (self.highest_seq & 0xFFFF)) & 0xFFFF
        if d >= 32768:
            d -= 65536
        if d > MAX_DROPOUT or d < -MAX_MISORDER:
            if self.probation and seq == self.bad_seq:
                c["resyncs"] += 1
                self.start_stream(ssrc, seq, ts)
                result = PUT_RESYNC
                d = 0
            else:
                c["too_far"] += 1
                self.probation = True
                self.bad_seq = (seq + 1) & 0xFFFF
                return PUT_TOO_FAR
        self.probation = False
        eseq = self.highest_seq + d
        dts = (ts - (self.last_ts & 0xFFFFFFFF)) & 0xFFFFFFFF
        if dts >= 1 << 31:
            dts -= 1 << 32
        ets = self.last_ts + dts
        old = self.ring.get(eseq % self.capacity)
        if old is not None and old.seq == eseq:
            c["duplicates"] += 1
            return PUT_DUPLICATE
        transit_ms = (arrival_us - self.ts_us(ets)) // 1000
        if self.have_transit and abs(transit_ms - self.last_transit_ms) > RESYNC_MS:
            c["resyncs"] += 1
            self.start_stream(ssrc, seq, ts)
            result = PUT_RESYNC
            eseq, ets, d = self.highest_seq, self.last_ts, 0
            transit_ms = (arrival_us - self.ts_us(ets)) // 1000
        c["received"] += 1
        self.stream_received += 1
        if d < 0:
            c["reordered"] += 1
        self.highest_seq = max(self.highest_seq, eseq)
        self.last_ts = ets
        # RFC 3550 A.8, integer form
        jt = arrival_us * self.clock_rate // 1_000_000 - ets
        if self.have_transit:
            self.jitter_q4 += abs(jt - self.jit_last_transit) - ((self.jitter_q4 + 8) >> 4)
        self.jit_last_transit = jt
        self.have_transit = True
        self.last_transit_ms = transit_ms
        self.estimator_add(transit_ms)

        if eseq < self.next_seq or (self.playing and ets < self.play_ts):
            c["late_discarded"] += 1
            if eseq == self.next_seq:
                self.next_seq += 1
            return PUT_LATE
        if eseq >= self.next_seq + self.capacity:
            keep_from = eseq - self.capacity + 1
            for p in self.filled():
                if p.seq < keep_from:
                    p.done = True
                    c["overflow"] += 1
            self.next_seq = keep_from
        self.ring[eseq % self.capacity] = Packet(eseq, ets, bool(marker), bytes(payload))
        return result

    # ---- get ----
    def find_head(self) -> Packet | None:
        cands = [p for p in self.filled() if self.next_seq <= p.seq < self.next_seq + self.capacity]
        return min(cands, key=lambda p: p.seq) if cands else None

    def consume(self, p: Packet) -> None:
        p.done = True
        self.next_seq = p.seq + 1

    def due_head(self) -> Packet | None:
        h = self.find_head()
        while h is not None and h.ts < self.play_ts:
            self.consume(h)
            self.counters["late_discarded"] += 1
            h = self.find_head()
        return h

    def get(self, now_ms: float) -> tuple[int, bytes | None]:
        c = self.counters
        if not self.have_stream:
            return EMPTY, None
        now_us = ms_to_us(now_ms)
        tgt, rel = self.target_us()
        lo_us = (tgt // 1000 - rel - 1) * 1000
        self.target_delay_ms = float(rel)
        if self.playing:
            h = self.due_head()
            if (h is not None and h.seq == self.next_seq and h.marker
                    and h.ts >= self.play_ts + self.frame_samples):
                self.playing = False
        if not self.playing:
            h = self.find_head()
            if h is None or now_us - self.ts_us(h.ts) < tgt:
                return EMPTY, None
            self.playing = True
            self.play_ts = h.ts
            self.underrun = 0
            self.since_adjust = 0
        offset = now_us - self.ts_us(self.play_ts)
        self.current_delay_ms = (offset - lo_us) / 1000.0
        self.since_adjust += 1
        if self.since_adjust > ADJUST_GAP:
            if offset < tgt - self.frame_us // 4:
                self.since_adjust = 0
                c["frames_held"] += 1
                c["frames_concealed"] += 1
                return CONCEAL, None
            if offset >= tgt + self.frame_us:
                h = self.due_head()
                if h is not None and h.ts < self.play_ts + self.frame_samples:
                    self.consume(h)
                self.play_ts += self.frame_samples
                self.since_adjust = 0
                c["frames_dropped"] += 1
        h = self.due_head()
        if h is not None and h.ts < self.play_ts + self.frame_samples:
            self.consume(h)
            self.play_ts = h.ts + self.frame_samples
            self.underrun = 0
            c["frames_played"] += 1
            return FRAME, h.payload
        self.play_ts += self.frame_samples
        if h is None:
            self.underrun += 1
            if self.underrun > UNDERRUN_IDLE:
                self.playing = False
                return EMPTY, None
            c["frames_concealed"] += 1
            return CONCEAL, None
        if h.seq == self.next_seq:
            return EMPTY, None
        c["frames_concealed"] += 1
        return CONCEAL, None

    # ---- stats ----
    def stats(self) -> dict[str, int | float]:
        out: dict[str, int | float] = dict(self.counters)
        lost = self.lost_before
        if self.have_stream:
            lost += (self.highest_seq - self.base_seq + 1) - self.stream_received
        out["lost"] = lost
        out["buffered"] = len(self.filled())
        out["jitter_rtp"] = self.jitter_q4 >> 4
        out["jitter_ms"] = (self.jitter_q4 / 16.0) * 1000.0 / self.clock_rate
        out["current_delay_ms"] = self.current_delay_ms
        out["target_delay_ms"] = self.target_delay_ms
        return out
