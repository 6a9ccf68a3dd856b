"""Anchored media for one edge call: the two legs' RTP sessions and what joins them.

Every call's media passes through the edge on ports from the configured range (terms,
Annex 2: 20000-22000/udp), so the guard can play notices, record and transcode:

- same codec on both legs and nothing to mix -> the relay fast path (``RtpSession.relay_to``:
  header rewrite, no decoding);
- different codecs (OPUS <-> G.711), an echo test, a tone, a notice or a recording -> the
  20-ms bridge (``softphone.media.bridge``): jitter buffer, decode, resample, native mixer,
  encode.

Ports are taken from the allocator when a leg is created and given back in :meth:`close`,
whatever way the call ends; ``close`` is idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from softphone.codecs.offer_answer import Negotiated
from softphone.media.ports import PortAllocator, PortPair
from softphone.media.session import RtpSession

log = logging.getLogger(__name__)


@dataclass
class MediaLeg:
    name: str
    pair: PortPair
    negotiated: Negotiated | None = None
    session: RtpSession | None = None

    @property
    def port(self) -> int:
        return self.pair.rtp


@dataclass
class MediaSettings:
    host: str = "127.0.0.1"
    jitter_min_ms: int = 20
    jitter_max_ms: int = 200
    rtp_timeout: float = 30.0


@dataclass
class CallMedia:
    """The media of one call; ``on_timeout(reason)`` is called once when RTP stops."""

    key: str
    allocator: PortAllocator
    settings: MediaSettings
    on_timeout: Callable[[str], None]
    bridge_factory: Callable[[CallMedia], Any] | None = None
    legs: dict[str, MediaLeg] = field(default_factory=dict)
    mode: str = "idle"            # idle | relay | bridge | echo | tone
    _bridge: Any = None
    closed: bool = False

    def add_leg(self, name: str) -> MediaLeg:
        """Allocate a port pair for a leg (raises PortsExhausted when the range is full)."""
        if name in self.legs:
            return self.legs[name]
        pair = self.allocator.allocate(f"{self.key}/{name}")
        leg = MediaLeg(name, pair)
        self.legs[name] = leg
        return leg

    async def _session(self, leg: MediaLeg, neg: Negotiated) -> RtpSession:
        from softphone.codecs.frame import codec_for

        fc = codec_for(neg)
        if leg.session is not None:
            leg.session.close("renegotiated")
        frame = fc.frame_samples(neg.ptime or 20)
        rtp_frame = frame * fc.rtp_clock_rate // fc.clock_rate
        sess = RtpSession(
            leg.pair, allocator=None,
            remote=(neg.remote_address, neg.remote_port),
            remote_rtcp=(neg.remote_rtcp_address, neg.remote_rtcp_port),
            payload_types=(neg.codec.payload_type,),
            dtmf_payload_type=neg.telephone_event_pt,
            clock_rate=fc.rtp_clock_rate, frame_samples=rtp_frame,
            jitter_min_ms=self.settings.jitter_min_ms, jitter_max_ms=self.settings.jitter_max_ms,
            inactivity_timeout=self.settings.rtp_timeout,
            on_timeout=lambda s: self._timed_out(s), name=f"{self.key}/{leg.name}")
        leg.session = sess
        leg.negotiated = neg
        await sess.start()
        return sess

    def _timed_out(self, sess: RtpSession) -> None:
        if not self.closed:
            self.on_timeout(f"rtp-timeout:{sess.name}")

    async def connect(self, a: Negotiated, b: Negotiated) -> None:
        """Join legs "a" and "b" (relay when the codecs match, else the bridge)."""
        sa = await self._session(self.legs["a"], a)
        sb = await self._session(self.legs["b"], b)
        if self.closed:
            return
        if _same_codec(a, b) or self.bridge_factory is None:
            sa.relay_to(sb)
            sb.relay_to(sa)
            self.mode = "relay"
        else:
            self._start_bridge()

    async def local_app(self, a: Negotiated, mode: str) -> None:
        """An edge application on leg "a": "echo" (600) or "tone" (601)."""
        await self._session(self.legs["a"], a)
        self.mode = mode
        self._start_bridge()

    def _start_bridge(self) -> None:
        if self.bridge_factory is None:
            raise RuntimeError("no media bridge available")
        if self._bridge is None:
            self._bridge = self.bridge_factory(self)
            self.mode = self.mode if self.mode in ("echo", "tone") else "bridge"

    def set_hold(self, leg: str, neg: Negotiated) -> None:
        """A re-INVITE changed a leg's direction: stop or resume sending to it."""
        ml = self.legs.get(leg)
        if ml is None or ml.session is None:
            return
        ml.negotiated = neg
        ml.session.sending = neg.sends  # type: ignore[attr-defined]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._bridge is not None:
            try:
                self._bridge.close()
            except Exception:  # a failing bridge must not keep the ports
                log.exception("bridge close failed for %s", self.key)
            self._bridge = None
        for leg in self.legs.values():
            if leg.session is not None:
                leg.session.close("call ended")
            self.allocator.release(leg.pair)

    def stats(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, leg in self.legs.items():
            s = leg.session
            out[name] = {
                "port": leg.port,
                "codec": leg.negotiated.codec.name if leg.negotiated else "",
                "remote": f"{leg.negotiated.remote_address}:{leg.negotiated.remote_port}"
                if leg.negotiated else "",
                "in": s.packets_received if s else 0,
                "out": s.packets_sent if s else 0,
                "rtt_ms": round(s.rtt * 1000, 1) if s and s.rtt is not None else None,
            }
        return out


def _same_codec(a: Negotiated, b: Negotiated) -> bool:
    ca, cb = a.codec, b.codec
    return (ca.name.lower(), ca.clock_rate) == (cb.name.lower(), cb.clock_rate)
