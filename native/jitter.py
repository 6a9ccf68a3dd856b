"""Adaptive RTP jitter buffer (C, native/src/jitter.c) behind a typed Python face.

One ``JitterBuffer`` per RTP stream. ``put()`` takes each packet as it arrives; ``get()``
is called once per frame tick (20 ms) and answers FRAME (payload to decode), CONCEAL (a
frame is due but missing: run PLC) or EMPTY (nothing is due: silence/idle). Payloads are
opaque encoded bytes; the buffer orders, times and releases them. The C object and an
output buffer are allocated once per leg and kept for the leg's lifetime.

Why our own and not speexdsp's or pjmedia's: we need NetEq-style delay targeting on the
arrival-delay distribution with explicit min/max bounds, per-stream RFC 3550 statistics,
a pre-allocated ring and bit-exact differential tests against a Python reference; the
speexdsp buffer is compared side by side in bench/jitter_quality.py.

Algorithm (mirrored in tests/native/jitter_reference.py):

* Storage: a ring of ``capacity`` slots indexed by extended sequence number, each
  ``max_payload`` bytes, allocated at creation; no allocation per packet. Oversize or
  empty payloads are counted and discarded, never written.
* Sequence (16 bit) and timestamp (32 bit) are extended across wrap-around. A sequence
  jump of more than 3000 ahead or 100 behind is discarded (TOO_FAR) unless the next packet
  follows it (RFC 3550 A.1 probation): then the stream restarts. A new SSRC or a jump of
  more than 1 s in transit time (sender timestamp discontinuity) flushes and restarts.
* Delay estimate: transit = arrival - timestamp (ms) of every received packet goes into a
  sliding window of the last 1024 packets (a 1 ms histogram). The target playout offset is
  the window's 0.99 quantile; its distance above the window's fastest packet is the
  relative target delay, clamped to [min_delay_ms, max_delay_ms] (at least 60 ms during
  the first 50 packets). NetEq uses the 0.95 quantile plus time stretching; without time
  stretching 0.99 keeps late discards near 1 %.
* Playout: emitting the frame with timestamp T at tick ``now`` means offset O = now - T;
  a packet is on time iff its transit <= O. A talkspurt start (marker after a timestamp
  gap) or a restart after an underrun waits until O >= target, so the delay adapts in
  silence. Inside a talkspurt at most one correction per 5 ticks: hold (CONCEAL without
  advancing) when O < target - a quarter frame, drop one frame when O >= target + one frame
  (O moves on the tick grid in whole frames; the quarter-frame tolerance buys lower delay for
  few late packets, see bench/jitter_quality.py). Sender clock
  drift (+-100 ppm) moves transit slowly; the window follows and an occasional hold/drop
  (``frames_held``/``frames_dropped``) keeps the buffer from growing or starving.
* Statistics: RFC 3550 A.3 loss (expected - received) and A.8 interarrival jitter.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

from softphone.native import ffi, lib

__all__ = ["GetResult", "JitterBuffer", "JitterError", "JitterStats", "PutResult"]


class JitterError(ValueError):
    """Invalid argument to the jitter buffer (the packet itself was not accepted)."""


class GetResult(enum.IntEnum):
    FRAME = 0
    CONCEAL = 1
    EMPTY = 2


class PutResult(enum.IntEnum):
    OK = 0
    DUPLICATE = 1
    LATE = 2
    TOO_FAR = 3
    OVERSIZE = 4
    MALFORMED = 5
    RESYNC = 6  # accepted after flushing the previous stream (new SSRC, restart, ts jump)


@dataclass(frozen=True)
class JitterStats:
    received: int
    late_discarded: int
    lost: int
    duplicates: int
    reordered: int
    oversize: int
    malformed: int
    too_far: int
    overflow: int
    resyncs: int
    frames_played: int
    frames_concealed: int
    frames_dropped: int
    frames_held: int
    buffered: int
    jitter_rtp: int
    jitter_ms: float
    current_delay_ms: float
    target_delay_ms: float


STAT_FIELDS: tuple[str, ...] = tuple(JitterStats.__dataclass_fields__)
_PUT: tuple[PutResult, ...] = tuple(PutResult)  # rc -> member without an enum lookup
_GET: tuple[GetResult, ...] = tuple(GetResult)

_ARRIVAL_LIMIT_MS = 1e10  # the C side refuses larger clocks (integer overflow guard)


def _check_time(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise JitterError(f"{name} must be a number, not {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or abs(v) > _ARRIVAL_LIMIT_MS:
        raise JitterError(f"{name} out of range: {value!r}")
    return v


def _check_uint(name: str, value: int, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise JitterError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value < (1 << bits):
        raise JitterError(f"{name} out of range for {bits} bits: {value}")
    return value


class JitterBuffer:
    """One RTP stream's adaptive jitter buffer (see the module docstring)."""

    def __init__(self, *, clock_rate: int = 8000, frame_samples: int = 160,
                 min_delay_ms: int = 20, max_delay_ms: int = 200, capacity: int = 64,
                 max_payload: int = 1500) -> None:
        for name, value, lo, hi in (("clock_rate", clock_rate, 1000, 192000),
                                    ("frame_samples", frame_samples, 1, clock_rate),
                                    ("min_delay_ms", min_delay_ms, 0, 10000),
                                    ("max_delay_ms", max_delay_ms, min_delay_ms, 10000),
                                    ("capacity", capacity, 2, 4096),
                                    ("max_payload", max_payload, 1, 65536)):
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise JitterError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")
        ptr = lib.sp_jb_new(clock_rate, frame_samples, min_delay_ms, max_delay_ms, capacity,
                            max_payload)
        if ptr == ffi.NULL:
            raise MemoryError("sp_jb_new failed")
        self._jb: Any = ffi.gc(ptr, lib.sp_jb_free)
        self._out: Any = ffi.new("uint8_t[]", max_payload)
        self._out_len: Any = ffi.new("size_t *")
        self._stats: Any = ffi.new("sp_jb_stats *")
        self._out_obj: Any = None  # last get_into() target and its cffi view
        self._out_view: Any = None
        self._out_cap = 0
        self.clock_rate = clock_rate
        self.frame_samples = frame_samples
        self.max_payload = max_payload

    def put(self, seq: int, timestamp: int, ssrc: int, marker: bool,
            payload: bytes | bytearray | memoryview, arrival_ms: float) -> PutResult:
        """Insert one received packet. Bad header fields raise JitterError; oversize,
        empty, duplicate, late and far-out packets are counted discards (see PutResult)."""
        # Hot path: exact-type checks first, the descriptive checks only on failure.
        if not (type(seq) is int and 0 <= seq <= 0xFFFF and type(timestamp) is int
                and 0 <= timestamp <= 0xFFFFFFFF and type(ssrc) is int
                and 0 <= ssrc <= 0xFFFFFFFF):
            _check_uint("seq", seq, 16)
            _check_uint("timestamp", timestamp, 32)
            _check_uint("ssrc", ssrc, 32)
        if not (type(arrival_ms) is float and -_ARRIVAL_LIMIT_MS <= arrival_ms <= _ARRIVAL_LIMIT_MS):
            arrival_ms = _check_time("arrival_ms", arrival_ms)
        if type(payload) is bytes:
            n = len(payload)
            buf: Any = payload if 0 < n <= self.max_payload else ffi.NULL
        elif isinstance(payload, bytearray | memoryview):
            n = payload.nbytes if isinstance(payload, memoryview) else len(payload)
            # out-of-range lengths are counted by the C side without touching the bytes
            buf = ffi.from_buffer(payload) if 0 < n <= self.max_payload else ffi.NULL
        else:
            raise JitterError(f"payload must be bytes-like, not {type(payload).__name__}")
        rc = lib.sp_jb_put(self._jb, seq, timestamp, ssrc, 1 if marker else 0, buf, n, arrival_ms)
        if rc < 0:
            raise JitterError("sp_jb_put rejected its arguments")
        result: PutResult = _PUT[rc]
        return result

    def get(self, now_ms: float) -> tuple[GetResult, bytes | None]:
        """The frame due at this tick: (FRAME, payload), (CONCEAL, None) or (EMPTY, None)."""
        result, n = self.get_into(now_ms, self._out)
        if result is GetResult.FRAME:
            return result, ffi.buffer(self._out, n)[:]
        return result, None

    def get_into(self, now_ms: float, out: Any) -> tuple[GetResult, int]:
        """Zero-copy get: writes the payload into ``out`` (a writable buffer of at least
        max_payload bytes, or a cffi uint8_t array) and returns (result, nbytes)."""
        if not (type(now_ms) is float and -_ARRIVAL_LIMIT_MS <= now_ms <= _ARRIVAL_LIMIT_MS):
            now_ms = _check_time("now_ms", now_ms)
        if out is self._out_obj:  # the same buffer as last time: reuse its cffi view
            dst, cap = self._out_view, self._out_cap
        else:
            dst, cap = self._view(out)
            self._out_obj, self._out_view, self._out_cap = out, dst, cap
        rc = lib.sp_jb_get(self._jb, now_ms, dst, cap, self._out_len)
        if rc < 0:
            raise JitterError("sp_jb_get rejected its arguments")
        return _GET[rc], self._out_len[0]

    def _view(self, out: Any) -> tuple[Any, int]:
        if isinstance(out, ffi.CData):
            kind = ffi.typeof(out)
            if kind.kind != "array" or ffi.sizeof(kind.item) != 1:
                raise JitterError(f"out must be a byte array, not {kind.cname}")
            dst, cap = out, ffi.sizeof(out)
        else:
            try:
                dst = ffi.from_buffer(out, require_writable=True)
            except (TypeError, BufferError) as exc:
                raise JitterError(f"out must be a writable buffer: {exc}") from None
            cap = ffi.sizeof(dst)
        if cap < self.max_payload:
            raise JitterError(f"out holds {cap} bytes, needs max_payload={self.max_payload}")
        return dst, cap

    @property
    def stats(self) -> JitterStats:
        lib.sp_jb_get_stats(self._jb, self._stats)
        s = self._stats
        return JitterStats(**{name: getattr(s, name) for name in STAT_FIELDS})

    def reset(self) -> None:
        """Forget the stream, the buffered packets, the delay history and the statistics."""
        lib.sp_jb_reset(self._jb)
