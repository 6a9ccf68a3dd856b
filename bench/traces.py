"""Synthetic RTP network traces for the jitter-buffer benchmark (seeded, reproducible).

A trace is one G.711-like stream: 20 ms frames (160 samples at 8 kHz), packet i stamped
ts0 + 160*i by the sender. The sender's clock may drift: with +P ppm it runs fast, so
packet i leaves at i * 20 ms / (1 + P*1e-6) of receiver time. Each packet gets a one-way
network delay from the model below and may be lost; arrival = send + delay. Times are in
receiver milliseconds.

Models (``MODELS``, each ``(seed) -> Trace``):

* ``gauss-10/30/60``: i.i.d. Gaussian jitter, delay = 20 + 4*sigma + N(0, sigma^2) ms
  (floored at 20 ms). With sigma >= 20 ms packets routinely overtake each other; this is
  the textbook model and the hardest for a playout buffer.
* ``spikes``: 40 ms + N(0, 5^2) ms, plus every 8-15 s a delay spike: the delay jumps by
  150-400 ms and decays linearly back over 0.3-1 s (a queue filling and draining; the
  packets behind the spike arrive bunched up).
* ``ge-1%`` / ``ge-5%``: Gilbert-Elliott bursty loss with mean loss 1 % / 5 % and mean
  burst length 3 packets (bad state drops every packet: p(bad->good) = 1/3,
  p(good->bad) = L/(3(1-L))), on top of Gaussian jitter sigma 20 ms.
* ``reorder-1%``: 40 ms + N(0, 3^2) ms, and 1 % of packets held back an extra 25-60 ms, so
  they arrive after one to three of their successors.
* ``drift+100`` / ``drift-100``: sender clock +-100 ppm, Gaussian jitter sigma 10 ms,
  10 minutes (the drift accumulates to 60 ms).
* ``talkspurts``: speech on/off (talk 1-4 s, silence 0.4-2 s, no packets in silence,
  marker on the first packet of each talkspurt), Gaussian jitter sigma 30 ms.

The other traces last 5 minutes (15,000 packets).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

CLOCK_RATE = 8000
FRAME = 160
FRAME_MS = 20.0


@dataclass(frozen=True)
class Packet:
    index: int        # position in the sender's stream
    seq: int
    ts: int
    marker: bool
    send_ms: float    # receiver clock
    delay_ms: float   # one-way network delay
    lost: bool

    @property
    def arrival_ms(self) -> float:
        return self.send_ms + self.delay_ms


@dataclass(frozen=True)
class Trace:
    name: str
    packets: tuple[Packet, ...]
    drift_ppm: float

    @property
    def arrived(self) -> list[Packet]:
        return [p for p in self.packets if not p.lost]

    @property
    def min_delay_ms(self) -> float:
        return min(p.delay_ms for p in self.arrived)

    def relative_delays(self) -> list[float]:
        """Arrival delay of each received packet above the trace's fastest packet."""
        base = self.min_delay_ms
        return [p.delay_ms - base for p in self.arrived]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return math.nan
    s = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(s)))
    return s[rank - 1]


def _stream(rng: random.Random, n: int, drift_ppm: float,
            delay: Callable[[int, float], float], lost: Callable[[int], bool],
            talk: bool = False) -> tuple[Packet, ...]:
    seq0, ts0 = rng.getrandbits(16), rng.getrandbits(32)
    packets: list[Packet] = []
    frame_real = FRAME_MS / (1 + drift_ppm * 1e-6)
    slot = 0          # sender frame slots elapsed (ts advances through silence too)
    sent = 0
    while sent < n:
        talk_len = rng.randint(50, 200) if talk else n
        for k in range(min(talk_len, n - sent)):
            send = 1000.0 + slot * frame_real
            packets.append(Packet(index=sent, seq=(seq0 + sent) & 0xFFFF,
                                  ts=(ts0 + slot * FRAME) & 0xFFFFFFFF,
                                  marker=(k == 0), send_ms=send, delay_ms=delay(sent, send),
                                  lost=lost(sent)))
            sent += 1
            slot += 1
        if talk:
            slot += rng.randint(20, 100)
    return tuple(packets)


def gauss(sigma: float, seconds: int = 300) -> Callable[[int], Trace]:
    def make(seed: int) -> Trace:
        rng = random.Random(seed)
        base = 20 + 4 * sigma
        pk = _stream(rng, int(seconds * 50), 0.0,
                     lambda i, t: max(20.0, rng.gauss(base, sigma)), lambda i: False)
        return Trace(f"gauss-{sigma:g}", pk, 0.0)
    return make


def spikes(seed: int) -> Trace:
    rng = random.Random(seed)
    starts: list[tuple[float, float, float]] = []
    t = 1000.0
    while t < 1000 + 300_000:
        t += rng.uniform(8000, 15000)
        starts.append((t, rng.uniform(150, 400), rng.uniform(300, 1000)))

    def delay(i: int, send: float) -> float:
        d = max(25.0, rng.gauss(40, 5))
        for at, height, decay in starts:
            if at <= send < at + decay:
                d += height * (1 - (send - at) / decay)
        return d

    return Trace("spikes", _stream(rng, 15000, 0.0, delay, lambda i: False), 0.0)


def gilbert_elliott(loss: float) -> Callable[[int], Trace]:
    def make(seed: int) -> Trace:
        rng = random.Random(seed)
        p_bg = 1 / 3
        p_gb = loss * p_bg / (1 - loss)
        state = {"bad": False}

        def lost(i: int) -> bool:
            bad = state["bad"]
            state["bad"] = (rng.random() >= p_bg) if bad else (rng.random() < p_gb)
            return state["bad"]

        pk = _stream(rng, 15000, 0.0, lambda i, t: max(20.0, rng.gauss(100, 20)), lost)
        return Trace(f"ge-{loss * 100:g}%", pk, 0.0)
    return make


def reorder(seed: int) -> Trace:
    rng = random.Random(seed)

    def delay(i: int, t: float) -> float:
        d = max(30.0, rng.gauss(40, 3))
        if rng.random() < 0.01:
            d += rng.uniform(25, 60)
        return d

    return Trace("reorder-1%", _stream(rng, 15000, 0.0, delay, lambda i: False), 0.0)


def drift(ppm: float) -> Callable[[int], Trace]:
    def make(seed: int) -> Trace:
        rng = random.Random(seed)
        pk = _stream(rng, 30000, ppm, lambda i, t: max(20.0, rng.gauss(60, 10)), lambda i: False)
        return Trace(f"drift{ppm:+g}", pk, ppm)
    return make


def talkspurts(seed: int) -> Trace:
    rng = random.Random(seed)
    pk = _stream(rng, 12000, 0.0, lambda i, t: max(20.0, rng.gauss(140, 30)), lambda i: False,
                 talk=True)
    return Trace("talkspurts", pk, 0.0)


MODELS: dict[str, Callable[[int], Trace]] = {
    "gauss-10": gauss(10),
    "gauss-30": gauss(30),
    "gauss-60": gauss(60),
    "spikes": spikes,
    "ge-1%": gilbert_elliott(0.01),
    "ge-5%": gilbert_elliott(0.05),
    "reorder-1%": reorder,
    "drift+100": drift(100.0),
    "drift-100": drift(-100.0),
    "talkspurts": talkspurts,
}
