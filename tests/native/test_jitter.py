"""Behaviour of the native jitter buffer, one scenario per test (8 kHz, 20 ms frames)."""

from __future__ import annotations

import math
import random

import pytest
from softphone.native.jitter import GetResult, JitterBuffer, JitterError, PutResult

FRAME = 160
SSRC = 0x11223344


def payload(i: int) -> bytes:
    return i.to_bytes(4, "big")


Put = tuple[float, int, int, bool, bytes]  # arrival ms, seq, timestamp, marker, payload


def stream(n: int, *, seq0: int = 1000, ts0: int = 5000, t0: float = 0.0,
           skip: tuple[int, ...] = (), extra: dict[int, float] | None = None) -> list[Put]:
    """Packet i sent at t0 + 20 i, arriving 0 ms later (+ extra[i]); skipped ones are lost."""
    extra = extra or {}
    return [(t0 + 20 * i + extra.get(i, 0.0), (seq0 + i) & 0xFFFF,
             (ts0 + i * FRAME) & 0xFFFFFFFF, i == 0, payload(i))
            for i in range(n) if i not in skip]


def play(jb: JitterBuffer, puts: list[Put], start_ms: float, ticks: int,
         ssrc: int = SSRC) -> list[tuple[GetResult, bytes | None]]:
    """Puts at their arrival times interleaved with one get per 20 ms tick."""
    events = sorted([(p[0], 0, k) for k, p in enumerate(puts)]
                    + [(start_ms + 20 * k + 5, 1, k) for k in range(ticks)])
    out: list[tuple[GetResult, bytes | None]] = []
    for at, kind, k in events:
        if kind == 0:
            _, seq, ts, marker, data = puts[k]
            jb.put(seq, ts, ssrc, marker, data, at)
        else:
            out.append(jb.get(at))
    return out


def drain(jb: JitterBuffer, start_ms: float, ticks: int) -> list[tuple[GetResult, bytes | None]]:
    return [jb.get(start_ms + 20 * k) for k in range(ticks)]


def frames(out: list[tuple[GetResult, bytes | None]]) -> list[int]:
    return [int.from_bytes(p, "big") for r, p in out if r is GetResult.FRAME and p is not None]


def frames_raw(out: list[tuple[GetResult, bytes | None]]) -> list[bytes]:
    return [p for r, p in out if r is GetResult.FRAME and p is not None]


def feed(jb: JitterBuffer, n: int, *, seq0: int = 1000, ts0: int = 5000) -> None:
    """All n packets handed over at once (before any get)."""
    for t, seq, ts, marker, data in stream(n, seq0=seq0, ts0=ts0):
        assert jb.put(seq, ts, SSRC, marker, data, t) is PutResult.OK


def test_in_order_stream_plays_every_frame_in_order_after_the_start_delay() -> None:
    jb = JitterBuffer()
    out = play(jb, stream(80), 0.0, 100)
    played = frames(out)
    # the first frame waits for the start target: 60 ms above the fastest packet so far
    first = [r for r, _ in out].index(GetResult.FRAME)
    assert first == 3  # ticks at 5, 25, 45 ms are too early; 65 ms >= 0 + 60 + 1
    s = jb.stats
    # with no jitter at all, the delay shrinks towards min_delay once the window has 50
    # packets: each step drops one frame
    assert played == sorted(played) and played[:40] == list(range(40))
    assert 1 <= s.frames_dropped <= 3 and len(played) == 80 - s.frames_dropped
    assert s.current_delay_ms <= 20 + 20
    assert (s.received, s.lost, s.late_discarded, s.duplicates) == (80, 0, 0, 0)


def test_reordered_packets_come_out_in_sequence() -> None:
    jb = JitterBuffer()
    out = play(jb, stream(30, extra={3: 25.0, 10: 30.0}), 0.0, 45)
    assert frames(out) == list(range(30))
    s = jb.stats
    assert (s.reordered, s.late_discarded, s.lost) == (2, 0, 0)


def test_duplicate_is_counted_and_played_once() -> None:
    jb = JitterBuffer()
    assert jb.put(7, 0, SSRC, True, b"a", 0.0) is PutResult.OK
    assert jb.put(7, 0, SSRC, True, b"a", 1.0) is PutResult.DUPLICATE
    out = drain(jb, 0.0, 10)
    assert frames_raw(out) == [b"a"]
    # a copy arriving after the original was played is still a duplicate, not late
    assert jb.put(7, 0, SSRC, True, b"a", 200.0) is PutResult.DUPLICATE
    s = jb.stats
    assert (s.duplicates, s.received, s.late_discarded) == (2, 1, 0)


def test_late_packet_is_concealed_then_discarded() -> None:
    jb = JitterBuffer()
    out = play(jb, stream(30, skip=(20,)), 0.0, 40)
    i = frames(out).index(19)
    results = [r for r, _ in out]
    at = [k for k, (r, p) in enumerate(out) if p == payload(19)][0]
    assert results[at + 1] is GetResult.CONCEAL  # frame 20 due, missing: PLC
    assert frames(out)[i + 1] == 21
    assert jb.put(1020, 5000 + 20 * FRAME, SSRC, False, payload(20), 600.0) is PutResult.LATE
    s = jb.stats
    assert (s.late_discarded, s.lost, s.received) == (1, 0, 30)


def test_sequence_wraps_at_65535_without_loss() -> None:
    jb = JitterBuffer()
    out = play(jb, stream(40, seq0=65520, extra={15: 25.0}), 0.0, 60)
    assert frames(out) == list(range(40))
    s = jb.stats
    assert (s.lost, s.too_far, s.resyncs, s.late_discarded, s.reordered) == (0, 0, 0, 0, 1)


def test_timestamp_wraps_at_2_pow_32_without_resync() -> None:
    jb = JitterBuffer()
    out = play(jb, stream(40, ts0=2**32 - 10 * FRAME), 0.0, 60)
    assert frames(out) == list(range(40))
    assert jb.stats.resyncs == 0


def test_ssrc_change_flushes_and_restarts() -> None:
    jb = JitterBuffer()
    feed(jb, 10)
    out = drain(jb, 0.0, 5)  # some of the first stream still buffered
    assert jb.stats.buffered > 0
    assert jb.put(9, 77777, 0xABCDEF, True, b"new", 100.0) is PutResult.RESYNC
    s = jb.stats
    assert (s.resyncs, s.buffered) == (1, 1)
    out += drain(jb, 100.0, 10)
    assert b"new" in frames_raw(out)
    assert all(p != payload(9) for p in frames_raw(out))


def test_silence_gap_is_empty_and_marker_restarts_at_target() -> None:
    jb = JitterBuffer()
    spurt1 = stream(20)  # 0..380 ms
    # 1 s of silence (timestamps advance, sequence numbers continue), then talkspurt 2
    ts2 = 5000 + (20 + 50) * FRAME
    spurt2: list[Put] = [(1400.0 + 20 * k, 1020 + k, ts2 + k * FRAME, k == 0, payload(100 + k))
                         for k in range(10)]
    out = play(jb, spurt1 + spurt2, 0.0, 90)
    assert frames(out) == list(range(20)) + [100 + k for k in range(10)]
    results = [r for r, _ in out]
    last1 = [k for k, (r, p) in enumerate(out) if p == payload(19)][0]
    first2 = [k for k, (r, p) in enumerate(out) if p == payload(100)][0]
    assert first2 - last1 > 40
    assert results[last1 + 1:first2].count(GetResult.EMPTY) >= first2 - last1 - 12
    # the second talkspurt started at the target delay
    s = jb.stats
    assert s.current_delay_ms <= s.target_delay_ms + 21


@pytest.mark.parametrize("ppm", [100.0, -100.0])
def test_sender_clock_drift_neither_grows_nor_starves(ppm: float) -> None:
    """10 minutes of continuous speech from a sender clock off by ppm."""
    rng = random.Random(5)
    jb = JitterBuffer()
    n = 30_000
    period = 20.0 / (1 + ppm * 1e-6)
    arrivals = [(i * period + 40 + rng.gauss(0, 3), i) for i in range(n)]
    arrivals.sort()
    a = 0
    delays: list[float] = []
    buffered: list[int] = []
    t = 3.0
    while t < n * 20 + 500:
        while a < n and arrivals[a][0] <= t:
            i = arrivals[a][1]
            jb.put(i & 0xFFFF, (i * FRAME) & 0xFFFFFFFF, SSRC, i == 0, payload(i), arrivals[a][0])
            a += 1
        jb.get(t)
        if t > 60_000:
            delays.append(jb.stats.current_delay_ms)
            buffered.append(jb.stats.buffered)
        t += 20
    s = jb.stats
    # 60 ms of drift over the call: corrected by a few drops (fast sender) or holds (slow)
    assert (s.frames_dropped if ppm > 0 else s.frames_held) >= 2
    assert max(buffered) <= 6
    assert max(delays) - min(delays) <= 45
    assert s.late_discarded <= n * 0.01
    assert s.frames_played >= n * 0.985


def test_oversize_and_empty_payloads_are_counted_discards() -> None:
    jb = JitterBuffer(max_payload=32)
    assert jb.put(1, 0, SSRC, True, bytes(33), 0.0) is PutResult.OVERSIZE
    assert jb.put(1, 0, SSRC, True, memoryview(bytes(1000)), 0.0) is PutResult.OVERSIZE
    assert jb.put(2, 160, SSRC, False, b"", 0.0) is PutResult.MALFORMED
    assert jb.put(3, 320, SSRC, False, memoryview(bytes(32)), 0.0) is PutResult.OK
    s = jb.stats
    assert (s.oversize, s.malformed, s.received, s.buffered) == (2, 1, 1, 1)
    out = drain(jb, 0.0, 10)
    assert frames_raw(out) == [bytes(32)]


def test_sequence_far_outside_the_window_is_discarded_then_resyncs_if_it_continues() -> None:
    jb = JitterBuffer()
    feed(jb, 10, seq0=100)
    assert jb.put(100 + 10_000, 5000 + 10 * FRAME, SSRC, False, b"x", 200.0) is PutResult.TOO_FAR
    assert jb.put(100 + 10 - 500 + 65536, 5000, SSRC, False, b"x", 200.0) is PutResult.TOO_FAR
    assert jb.stats.too_far == 2 and jb.stats.resyncs == 0
    # RFC 3550 A.1: two sequential packets after the jump mean the sender restarted
    assert jb.put(20_000, 5000 + 11 * FRAME, SSRC, False, b"y", 220.0) is PutResult.TOO_FAR
    assert jb.put(20_001, 5000 + 12 * FRAME, SSRC, False, b"z", 240.0) is PutResult.RESYNC
    assert jb.stats.resyncs == 1


def test_bad_arguments_raise_jitter_error() -> None:
    jb = JitterBuffer()
    with pytest.raises(JitterError):
        jb.put(65536, 0, SSRC, False, b"x", 0.0)
    with pytest.raises(JitterError):
        jb.put(-1, 0, SSRC, False, b"x", 0.0)
    with pytest.raises(JitterError):
        jb.put(0, 2**32, SSRC, False, b"x", 0.0)
    with pytest.raises(JitterError):
        jb.put(0, 0, 2**32, False, b"x", 0.0)
    with pytest.raises(JitterError):
        jb.put(0, 0, SSRC, False, b"x", math.nan)
    with pytest.raises(JitterError):
        jb.put(0, 0, SSRC, False, "text", 0.0)  # type: ignore[arg-type]
    with pytest.raises(JitterError):
        jb.get(math.inf)
    with pytest.raises(JitterError):
        jb.get_into(0.0, bytearray(10))  # smaller than max_payload
    with pytest.raises(JitterError):
        jb.get_into(0.0, bytes(1500))  # read-only
    with pytest.raises(JitterError):
        JitterBuffer(min_delay_ms=300, max_delay_ms=200)
    with pytest.raises(JitterError):
        JitterBuffer(capacity=1)
    assert jb.stats.received == 0


def test_get_into_writes_in_place() -> None:
    jb = JitterBuffer(max_payload=160)
    feed(jb, 5)
    out = bytearray(160)
    seen = []
    for k in range(12):
        res, n = jb.get_into(20.0 * k, out)
        if res is GetResult.FRAME:
            seen.append(bytes(out[:n]))
    assert seen == [payload(i) for i in range(5)]


def test_rfc3550_interarrival_jitter_by_hand() -> None:
    """A.8 on four packets. Arrival in timestamp units (8 per ms): 0, 160, 360, 480; transit
    0, 0, 40, 0; |D| = 0, 40, 40. Integer form J16 += |D| - ((J16 + 8) >> 4): 0 -> 0 -> 40
    -> 77, so J = 77 / 16 = 4.8125 units = 0.6015625 ms (the float form gives 4.84375)."""
    jb = JitterBuffer()
    for i, at in enumerate([0.0, 20.0, 45.0, 60.0]):
        jb.put(i, i * FRAME, SSRC, i == 0, b"p", at)
    s = jb.stats
    assert s.jitter_rtp == 4
    assert s.jitter_ms == 77 / 16 / 8 * 1000 / 1000
    assert s.jitter_ms == pytest.approx(4.84375 / 8, abs=0.01)


def test_loss_is_expected_minus_received() -> None:
    jb = JitterBuffer()
    out = play(jb, stream(40, skip=(25, 26, 33)), 0.0, 50)
    assert frames(out) == [i for i in range(40) if i not in (25, 26, 33)]
    assert sum(1 for r, _ in out if r is GetResult.CONCEAL) >= 3
    assert jb.stats.lost == 3


def test_target_delay_follows_the_jitter_within_bounds() -> None:
    rng = random.Random(3)
    for sigma, bounds in ((2.0, (20, 200)), (40.0, (20, 200)), (80.0, (20, 150))):
        jb = JitterBuffer(min_delay_ms=bounds[0], max_delay_ms=bounds[1])
        for i in range(600):
            jb.put(i, i * FRAME, SSRC, i == 0, b"p", 20 * i + abs(rng.gauss(0, sigma)))
        target = jb.get(12_000.0) and jb.stats.target_delay_ms
        assert bounds[0] <= target <= bounds[1]
        if sigma == 2.0:
            assert target <= 25
        elif sigma == 40.0:
            assert 80 <= target <= 140  # 0.99 quantile of |N(0, 40)| is ~103 ms
        else:
            assert target == 150


def test_ring_overflow_and_reset() -> None:
    jb = JitterBuffer(capacity=8)
    feed(jb, 20)  # all at once, more than the ring holds
    s = jb.stats
    assert s.overflow == 12 and s.buffered == 8
    played = frames(drain(jb, 400.0, 12))  # arrived long ago: some dropped to cut delay
    assert played == sorted(played) and set(played) <= set(range(12, 20))
    assert len(played) + jb.stats.frames_dropped >= 8
    jb.reset()
    s = jb.stats
    assert (s.received, s.overflow, s.buffered, s.jitter_rtp) == (0, 0, 0, 0)
    assert jb.get(0.0) == (GetResult.EMPTY, None)


def test_get_into_accepts_a_cffi_byte_array_and_refuses_a_pointer() -> None:
    from softphone.native import ffi

    jb = JitterBuffer(max_payload=64)
    feed(jb, 3)
    arr = ffi.new("uint8_t[]", 64)
    got = [jb.get_into(20.0 * k, arr) for k in range(10)]
    assert [n for r, n in got if r is GetResult.FRAME] == [4, 4, 4]
    assert bytes(ffi.buffer(arr, 4)) == payload(2)
    with pytest.raises(JitterError):
        jb.get_into(200.0, ffi.new("uint8_t *"))
    with pytest.raises(JitterError):
        jb.get_into(200.0, ffi.new("int32_t[]", 64))
