"""Per-call quality: loss, jitter, RTT over an interval, and a MOS from a simplified E-model.

The E-model (ITU-T G.107) rates a connection with R = Ro - Is - Id - Ie,eff + A. Simplified
here as most VoIP monitors do it (and as G.107's defaults make it): Ro - Is = 93.2 (default
noise and loudness), A = 0 (no advantage factor) and

- Id, the delay impairment, from the one-way mouth-to-ear delay d in ms:
  ``Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3)`` (H the step function), with
  d = RTT / 2 (RTCP; 0 when not known yet) + the jitter buffer (2 x the interarrival jitter,
  at least 20 ms) + one 20 ms frame of packetisation;
- Ie,eff, the equipment impairment with random packet loss Ppl (percent):
  ``Ie,eff = Ie + (95 - Ie) Ppl / (Ppl + Bpl)``, with the codec's Ie and Bpl from ITU-T G.113
  Appendix I: G.711 with packet loss concealment Ie = 0, Bpl = 25.1; Opus has no G.113 entry,
  so it is given the same values (a conservative stand-in: Opus conceals at least as well).

R maps to MOS (G.107 Annex B): ``MOS = 1 + 0.035 R + R (R - 60) (100 - R) 7e-6`` for
0 < R < 100, 1 below, 4.5 above. A clean G.711 call gives R = 93.2 - 1 = 92.7 and MOS 4.4.
"""

from __future__ import annotations

from dataclasses import dataclass

# (Ie, Bpl) per codec name, lower case; see the module docstring
CODEC_IMPAIRMENT: dict[str, tuple[float, float]] = {
    "pcma": (0.0, 25.1),
    "pcmu": (0.0, 25.1),
    "opus": (0.0, 25.1),
}
R0_MINUS_IS = 93.2
FRAME_MS = 20.0


def delay_impairment(one_way_ms: float) -> float:
    d = max(0.0, one_way_ms)
    return 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)


def r_factor(loss_percent: float, one_way_ms: float, codec: str = "pcma") -> float:
    ie, bpl = CODEC_IMPAIRMENT.get(codec.lower(), (0.0, 25.1))
    ppl = min(100.0, max(0.0, loss_percent))
    ie_eff = ie + (95.0 - ie) * ppl / (ppl + bpl)
    return R0_MINUS_IS - delay_impairment(one_way_ms) - ie_eff


def mos_from_r(r: float) -> float:
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6


def one_way_delay_ms(rtt_ms: float | None, jitter_ms: float) -> float:
    return (rtt_ms or 0.0) / 2.0 + max(20.0, 2.0 * jitter_ms) + FRAME_MS


@dataclass(frozen=True)
class QualitySample:
    """What one report carries (also the quality event's fields)."""

    interval_s: float
    packets_received: int
    packets_expected: int
    lost: int
    loss_percent: float
    jitter_ms: float
    rtt_ms: float | None
    remote_loss_percent: float | None
    r_factor: float
    mos: float

    def as_dict(self) -> dict[str, float | int | None]:
        return {"interval_s": round(self.interval_s, 3),
                "packets_received": self.packets_received,
                "packets_expected": self.packets_expected, "lost": self.lost,
                "loss_percent": round(self.loss_percent, 2),
                "jitter_ms": round(self.jitter_ms, 2),
                "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 2),
                "remote_loss_percent": None if self.remote_loss_percent is None
                else round(self.remote_loss_percent, 2),
                "r_factor": round(self.r_factor, 1), "mos": round(self.mos, 2)}


class QualityMeter:
    """Differences of the media session's cumulative counters, one sample per interval."""

    def __init__(self, codec: str) -> None:
        self.codec = codec
        self._received = 0
        self._expected = 0
        self._lost = 0

    def sample(self, *, interval_s: float, received: int, expected: int, lost: int,
               jitter_ms: float, rtt_ms: float | None,
               remote_fraction_lost: float | None) -> QualitySample:
        d_recv = max(0, received - self._received)
        d_exp = max(0, expected - self._expected)
        d_lost = max(0, lost - self._lost)
        self._received, self._expected, self._lost = received, expected, lost
        loss = 100.0 * d_lost / d_exp if d_exp else 0.0
        remote = None if remote_fraction_lost is None else 100.0 * remote_fraction_lost
        # the worse direction rates the call: what we hear and what the peer says it hears
        worst = max(loss, remote or 0.0)
        r = r_factor(worst, one_way_delay_ms(rtt_ms, jitter_ms), self.codec)
        return QualitySample(interval_s, d_recv, d_exp, d_lost, loss, jitter_ms, rtt_ms, remote,
                             r, mos_from_r(r))
