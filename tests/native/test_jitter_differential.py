"""Differential tests: the C jitter buffer against the pure-Python reference.

Random network traces (delay, loss, duplicates, reordering, talkspurt gaps, SSRC changes,
sequence/timestamp jumps, wrap-around, bad payloads, clock drift) are replayed through both;
every put/get result, every released payload and the statistics after every call must be
identical.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import jitter_reference as ref  # beside this file; tests/native/conftest.py puts it on sys.path
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from softphone.native.jitter import STAT_FIELDS, JitterBuffer

EXAMPLES = int(os.environ.get("SOFTPHONE_HYPOTHESIS_EXAMPLES", "300"))


@dataclass(frozen=True)
class Put:
    at: float
    seq: int
    ts: int
    ssrc: int
    marker: bool
    payload: bytes


ACTIONS = ("normal",) * 12 + ("drop", "dup", "oversize", "empty", "gap", "ssrc", "seqjump",
                              "tsjump", "spike")


# Long traces keep one stream (no resync) so the 1024-packet window cycles; "step" moves the
# path delay by 900 ms (below the 1 s resync threshold), which walks transit out of the
# estimator's 4096 ms histogram and forces a rebase.
LONG_ACTIONS = ("normal",) * 30 + ("drop", "dup", "gap", "step")


def build_trace(rng: random.Random, n: int, *, clock_rate: int, frame: int, seq0: int,
                ts0: int, drift_ppm: float, sigma_ms: float,
                actions: tuple[str, ...] = ACTIONS) -> list[Put]:
    """Packets of one (or, after 'ssrc', several) RTP streams with their arrival times."""
    frame_ms = frame * 1000 / clock_rate
    seq, ts, ssrc = seq0, ts0, rng.getrandbits(32)
    send = 1000.0 + rng.random() * 20
    puts: list[Put] = []
    marker = True
    path = 0.0
    for i in range(n):
        action = rng.choice(actions)
        if action == "step":
            path = max(0.0, path + rng.choice((900.0, -900.0, 900.0)))
        delay = 30 + path + abs(rng.gauss(0, sigma_ms))
        if action == "gap":
            skip = rng.randint(2, 40)
            ts = (ts + skip * frame) & 0xFFFFFFFF
            send += skip * frame_ms
            marker = True
        elif action == "ssrc":
            ssrc, seq, ts, marker = rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(32), True
        elif action == "seqjump":
            seq = (seq + rng.randint(200, 60000)) & 0xFFFF
        elif action == "tsjump":
            ts = (ts + rng.randint(1, 1 << 31)) & 0xFFFFFFFF
        elif action == "spike":
            delay += rng.uniform(100, 1500)
        payload = i.to_bytes(4, "big")
        if action == "oversize":
            payload = bytes(2000)
        elif action == "empty":
            payload = b""
        at = send * (1 + drift_ppm * 1e-6) + delay
        if action != "drop":
            puts.append(Put(at, seq, ts, ssrc, marker, payload))
        if action == "dup":
            puts.append(Put(at + rng.uniform(0, 60), seq, ts, ssrc, marker, payload))
        marker = False
        seq = (seq + 1) & 0xFFFF
        ts = (ts + frame) & 0xFFFFFFFF
        send += frame_ms
    return puts


def replay(puts: list[Put], *, clock_rate: int, frame: int, capacity: int, min_delay: int,
           max_delay: int, tick_phase: float) -> None:
    kwargs = dict(clock_rate=clock_rate, frame_samples=frame, min_delay_ms=min_delay,
                  max_delay_ms=max_delay, capacity=capacity, max_payload=1500)
    c = JitterBuffer(**kwargs)
    py = ref.ReferenceJitterBuffer(**kwargs)
    frame_ms = frame * 1000 / clock_rate
    events: list[tuple[float, int, Put | None]] = [(p.at, 0, p) for p in puts]
    if puts:
        t, end = 1000.0 + tick_phase, max(p.at for p in puts) + 400
        while t < end:
            events.append((t, 1, None))
            t += frame_ms
    events.sort(key=lambda e: (e[0], e[1]))
    for step, (at, _kind, p) in enumerate(events):
        if p is not None:
            got = c.put(p.seq, p.ts, p.ssrc, p.marker, p.payload, at)
            want = py.put(p.seq, p.ts, p.ssrc, p.marker, p.payload, at)
            assert int(got) == want, f"put #{step} {p}"
        else:
            got_get = c.get(at)
            want_get = py.get(at)
            assert (int(got_get[0]), got_get[1]) == want_get, f"get #{step} at {at}"
        cs = c.stats
        want_stats = py.stats()
        got_stats = {name: getattr(cs, name) for name in STAT_FIELDS}
        assert got_stats == want_stats, f"stats after event #{step}"


@pytest.mark.timeout(600)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 400),
    profile=st.sampled_from([(8000, 160), (16000, 320), (48000, 960), (8000, 80)]),
    seq0=st.one_of(st.integers(65500, 65535), st.integers(0, 65535)),
    ts0=st.one_of(st.integers(2**32 - 5000, 2**32 - 1), st.integers(0, 2**32 - 1)),
    drift_ppm=st.sampled_from([0.0, 100.0, -100.0, 5000.0, -5000.0]),
    sigma_ms=st.sampled_from([0.0, 5.0, 30.0, 80.0]),
    capacity=st.sampled_from([2, 5, 16, 64]),
    bounds=st.sampled_from([(0, 1000), (20, 200), (40, 60)]),
    tick_phase=st.floats(0, 20, allow_nan=False),
)
def test_c_matches_reference_on_random_traces(seed: int, n: int, profile: tuple[int, int],
                                              seq0: int, ts0: int, drift_ppm: float,
                                              sigma_ms: float, capacity: int,
                                              bounds: tuple[int, int], tick_phase: float) -> None:
    clock_rate, frame = profile
    puts = build_trace(random.Random(seed), n, clock_rate=clock_rate, frame=frame, seq0=seq0,
                       ts0=ts0, drift_ppm=drift_ppm, sigma_ms=sigma_ms)
    replay(puts, clock_rate=clock_rate, frame=frame, capacity=capacity, min_delay=bounds[0],
           max_delay=bounds[1], tick_phase=tick_phase)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", [1, 2])
def test_c_matches_reference_on_long_trace(seed: int) -> None:
    """Long enough to cycle the 512-packet delay window and move its histogram base."""
    rng = random.Random(seed)
    puts = build_trace(rng, 3000, clock_rate=8000, frame=160, seq0=65000, ts0=2**32 - 160 * 700,
                       drift_ppm=300.0, sigma_ms=25.0, actions=LONG_ACTIONS)
    replay(puts, clock_rate=8000, frame=160, capacity=64, min_delay=20, max_delay=300,
           tick_phase=7.5)
