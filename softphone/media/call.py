"""All the media of one call, for the edge: port pairs, RTP sessions, relay or bridge, cleanup.

The edge (B2BUA) talks to this one object per call:

1. ``reserve(leg)`` before writing an SDP: binds the leg's RTP/RTCP pair, a random one, in the
   name of the call's ``user`` (per-user cap) and as an ``emergency`` call or not (the range's
   emergency share); ``PortsExhausted`` propagates: the edge answers 503 + Retry-After and
   calls ``close()``. ``allow_sources(leg, hosts)``: where the leg's signalling comes from.
2. ``attach(leg, negotiated)`` once offer/answer is done: an ``RtpSession`` with the agreed
   payload types, telephone-event, clock rate and peer address, latching (``latch``) only to
   that address or the signalling's; ``update(leg, negotiated)`` on a re-INVITE (new address,
   hold: a peer that does not send is not timed out).
3. ``connect()``: two legs with the same codec and nothing to add -> the relay fast path
   (header rewrite, no decoding); anything else (transcoding, a prompt or notice, recording,
   more than two legs) -> a ``Bridge`` on the shared ``TickScheduler``. ``inject()`` and
   ``set_recorder()`` switch a relayed call to the bridge on the fly.
A browser's leg (``webrtc(leg)``, after ``reserve``): aiortc terminates its ICE/DTLS-SRTP on
the leg's reserved port (``softphone.media.webrtc``); ``attach`` then starts its PCM session,
which always joins the bridge.

4. ``close()``, whatever ended the call (BYE, CANCEL, error, RTP timeout): every session
   closed, every pair back in the allocator; idempotent. The allocator counts the objects
   not yet closed (``PortAllocator.media_objects``) so a test can prove that nothing leaked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from softphone.media.bridge import Bridge, BridgeLeg, FrameSource, TickScheduler
from softphone.media.dtmf import DtmfEvent
from softphone.media.ports import PortAllocator, PortPair
from softphone.media.session import RtpSession, SessionStats

if TYPE_CHECKING:
    from softphone.codecs.frame import FrameCodec
    from softphone.codecs.offer_answer import Negotiated
    from softphone.media.webrtc import WebRtcEndpoint

__all__ = ["CallMedia", "CallMediaError"]

log = logging.getLogger(__name__)


class CallMediaError(RuntimeError):
    """A leg used before ``reserve``/``attach``, or the call is already closed."""


class CallMedia:
    """One call's media (see the module docstring)."""

    def __init__(self, call_id: str, allocator: PortAllocator, scheduler: TickScheduler, *,
                 bridge_rate: int = 8000, jitter_min_ms: int = 20, jitter_max_ms: int = 200,
                 rtp_timeout: float | None = 30.0,
                 on_timeout: Callable[[CallMedia, str], None] | None = None,
                 on_dtmf: Callable[[CallMedia, str, DtmfEvent], None] | None = None,
                 user: str = "", emergency: bool = False,
                 latch: str = "address-only") -> None:
        self.call_id = call_id
        self.user = user  # whose ports (per-user cap); "" = nobody's
        self.emergency = emergency  # may take the range's emergency share, no per-user cap
        self.latch = latch
        self.sources: dict[str, frozenset[str]] = {}  # per leg: where its signalling comes from
        self.allocator = allocator
        self.scheduler = scheduler
        self.bridge_rate = bridge_rate
        self.jitter_min_ms = jitter_min_ms
        self.jitter_max_ms = jitter_max_ms
        self.rtp_timeout = rtp_timeout
        self.on_timeout = on_timeout
        self.on_dtmf = on_dtmf
        self.pairs: dict[str, PortPair] = {}
        self.sessions: dict[str, RtpSession] = {}
        self.codecs: dict[str, FrameCodec] = {}
        self.bridge: Bridge | None = None
        self.bridge_legs: dict[str, BridgeLeg] = {}
        self.endpoints: dict[str, WebRtcEndpoint] = {}  # browser legs (aiortc), by leg
        self.recorder: Callable[[bytes], None] | None = None
        self.closed = False
        self.relaying = False
        allocator.media_objects += 1

    # ------------------------------------------------------------------ set-up

    def reserve(self, leg: str, *, user: str | None = None,
                emergency: bool | None = None) -> PortPair:
        """Bind the leg's RTP/RTCP pair (its port goes in our SDP) for ``user`` (default: the
        call's), as an emergency call or not (default: the call's). Raises PortsExhausted."""
        if self.closed:
            raise CallMediaError(f"{self.call_id}: closed")
        pair = self.pairs.get(leg)
        if pair is None:
            pair = self.allocator.allocate(
                f"{self.call_id}/{leg}", user=self.user if user is None else user,
                emergency=self.emergency if emergency is None else emergency)
            self.pairs[leg] = pair
        return pair

    def allow_sources(self, leg: str, hosts: Iterable[str]) -> None:
        """The addresses ``leg``'s signalling comes from: RTP from them may latch too (symmetric
        RTP behind NAT), besides the SDP's address."""
        self.sources[leg] = frozenset(h for h in hosts if h)
        session = self.sessions.get(leg)
        if session is not None:
            session.allow_hosts(self.sources[leg])

    def webrtc(self, leg: str, codecs: Iterable[str]) -> WebRtcEndpoint:
        """The leg is a browser's: its peer connection, ICE on the leg's reserved port."""
        from softphone.media.webrtc import WebRtcEndpoint

        if self.closed:
            raise CallMediaError(f"{self.call_id}: closed")
        endpoint = self.endpoints.get(leg)
        if endpoint is None:
            def on_timeout(_s: RtpSession) -> None:
                self._timeout(leg)

            endpoint = WebRtcEndpoint(self.reserve(leg), allocator=self.allocator,
                                      name=f"{self.call_id}/{leg}", codecs=codecs,
                                      inactivity_timeout=self.rtp_timeout,
                                      on_timeout=on_timeout)
            self.endpoints[leg] = endpoint
        return endpoint

    def move(self, leg: str, to: str) -> None:
        """Leg ``leg``'s port (and browser endpoint) become leg ``to``'s, whose own port is
        given back (a call forked to a desk phone and a browser, the browser answered)."""
        if leg in self.sessions or to in self.sessions:
            raise CallMediaError(f"{self.call_id}: {leg} or {to} already has a session")
        old = self.pairs.pop(to, None)
        if old is not None:
            self.allocator.release(old)
        self.pairs[to] = self.pairs.pop(leg)
        endpoint = self.endpoints.pop(leg, None)
        if endpoint is not None:
            self.endpoints[to] = endpoint

    def drop(self, leg: str) -> None:
        """A reserved leg that will not be used (a fork that lost): its port back now."""
        if leg in self.sessions:
            raise CallMediaError(f"{self.call_id}: {leg} has a session")
        endpoint = self.endpoints.pop(leg, None)
        pair = self.pairs.pop(leg, None)
        if endpoint is not None:
            endpoint.close()  # gives the pair back once aiortc let go of it
        elif pair is not None:
            self.allocator.release(pair)

    async def attach(self, leg: str, negotiated: Negotiated,
                     codec: FrameCodec | None = None) -> RtpSession:
        """Start the leg's RTP session for what offer/answer agreed."""
        if self.closed:
            raise CallMediaError(f"{self.call_id}: closed")
        if leg in self.sessions:
            self.update(leg, negotiated)
            return self.sessions[leg]
        endpoint = self.endpoints.get(leg)
        if endpoint is not None:
            return await self._attach_webrtc(leg, endpoint, negotiated)
        if codec is None:
            from softphone.codecs.frame import codec_for

            codec = codec_for(negotiated)
        pair = self.reserve(leg)
        rtp_rate = codec.rtp_clock_rate

        def on_timeout(_s: RtpSession) -> None:
            self._timeout(leg)

        def on_dtmf(_s: RtpSession, ev: DtmfEvent) -> None:
            self._dtmf(leg, ev)

        session = RtpSession(
            pair, allocator=self.allocator,
            remote=(negotiated.remote_address, negotiated.remote_port),
            remote_rtcp=(negotiated.remote_rtcp_address, negotiated.remote_rtcp_port),
            payload_types=(negotiated.codec.payload_type,),
            dtmf_payload_type=negotiated.telephone_event_pt, clock_rate=rtp_rate,
            frame_samples=rtp_rate * 20 // 1000, lazy_jitter=True,
            jitter_min_ms=self.jitter_min_ms,
            jitter_max_ms=self.jitter_max_ms,
            inactivity_timeout=self.rtp_timeout if negotiated.receives else None,
            on_timeout=on_timeout, on_dtmf=on_dtmf, latch=self.latch,
            allowed_hosts=self.sources.get(leg, ()),
            name=f"{self.call_id}/{leg}")
        session.sending = negotiated.sends
        self.sessions[leg] = session
        self.codecs[leg] = codec
        await session.start()
        if self.closed:  # the call ended while the session started (``close()`` closed it)
            raise CallMediaError(f"{self.call_id}: closed")
        return session

    async def _attach_webrtc(self, leg: str, endpoint: WebRtcEndpoint,
                             negotiated: Negotiated) -> RtpSession:
        from softphone.media.webrtc import PcmCodec

        if endpoint.pc.remoteDescription is None:  # our offer: the browser's answer now
            await endpoint.accept(negotiated.remote_sdp.to_bytes())
        if self.closed:
            raise CallMediaError(f"{self.call_id}: closed")
        session = endpoint.session
        session.sending = negotiated.sends
        self.sessions[leg] = session
        self.codecs[leg] = PcmCodec(endpoint.codec or negotiated.codec.name)
        await session.start()
        return session

    def update(self, leg: str, negotiated: Negotiated, codec: FrameCodec | None = None) -> None:
        """A re-INVITE: the peer's new address, hold (no timeout while it does not send), and
        a new codec or payload numbering (the call is re-joined: relay or bridge again)."""
        session = self._session(leg)
        if leg in self.endpoints:  # a browser: aiortc renegotiated; hold is ours to apply
            session.set_inactivity_timeout(self.rtp_timeout if negotiated.receives else None)
            session.sending = negotiated.sends
            return
        current = self.codecs[leg]
        changed = (negotiated.codec.name.lower() != current.name.lower()
                   or negotiated.codec.payload_type not in session.payload_types
                   or negotiated.telephone_event_pt != session.dtmf_payload_type)
        if changed:
            if codec is None and negotiated.codec.name.lower() != current.name.lower():
                from softphone.codecs.frame import codec_for

                codec = codec_for(negotiated)
            new_codec = codec or current
            rate = new_codec.rtp_clock_rate
            session.reconfigure(payload_types=(negotiated.codec.payload_type,),
                                dtmf_payload_type=negotiated.telephone_event_pt,
                                clock_rate=rate, frame_samples=rate * 20 // 1000)
            if new_codec is not current:
                self.codecs[leg] = new_codec
                bleg = self.bridge_legs.pop(leg, None)
                if bleg is not None and self.bridge is not None:
                    self.bridge.remove_leg(bleg)  # re-added with the new codec below
            if self.relaying or self.bridge is not None:
                self.connect()
        remote = (negotiated.remote_address, negotiated.remote_port)
        if remote != session.remote:
            session.set_remote(remote, (negotiated.remote_rtcp_address,
                                        negotiated.remote_rtcp_port))
        session.set_inactivity_timeout(self.rtp_timeout if negotiated.receives else None)
        session.sending = negotiated.sends  # relay and bridge both stop sending on hold

    def _session(self, leg: str) -> RtpSession:
        try:
            return self.sessions[leg]
        except KeyError:
            raise CallMediaError(f"{self.call_id}: no RTP session for leg {leg!r}") from None

    # ------------------------------------------------------------------ relay or bridge

    def needs_bridge(self) -> bool:
        if len(self.sessions) != 2 or self.recorder is not None:
            return True
        if not all(s.relayable for s in self.sessions.values()):
            return True  # a browser leg: aiortc decodes, the bridge mixes
        if self.bridge is not None and any(b.source is not None
                                           for b in self.bridge.legs):
            return True
        a, b = self.codecs.values()
        return (a.name.lower(), a.clock_rate, a.rtp_clock_rate) != (
            b.name.lower(), b.clock_rate, b.rtp_clock_rate)

    def connect(self) -> None:
        """Relay fast path when the two legs can be joined without decoding, else the bridge."""
        if self.closed:
            raise CallMediaError(f"{self.call_id}: closed")
        if not self.needs_bridge():
            self._stop_bridge()
            a, b = self.sessions.values()
            a.relay_to(b)
            b.relay_to(a)
            self.relaying = True
            return
        self._start_bridge()

    def _start_bridge(self) -> Bridge:
        for s in self.sessions.values():
            s.relay_to(None)
        self.relaying = False
        if self.bridge is None:
            self.bridge = Bridge(rate=self.bridge_rate, max_legs=max(8, len(self.sessions)),
                                 name=self.call_id, recorder=self.recorder,
                                 on_dtmf=None)
            self.bridge.start(self.scheduler)
        for leg, session in self.sessions.items():
            if leg not in self.bridge_legs:
                bleg = self.bridge.add_leg(session, self.codecs[leg], leg)
                # the bridge relays digits; the call still hears about them
                session.on_dtmf = lambda _s, ev, leg=leg, bl=bleg: self._bridged_dtmf(leg, bl, ev)
                self.bridge_legs[leg] = bleg
        return self.bridge

    def _stop_bridge(self) -> None:
        if self.bridge is not None:
            self.bridge.close(close_sessions=False)
            self.bridge = None
            self.bridge_legs.clear()
            for leg, s in self.sessions.items():
                s.on_dtmf = lambda _s, ev, leg=leg: self._dtmf(leg, ev)

    def inject(self, leg: str, source: FrameSource | None,
               on_done: Callable[[CallMedia, str], None] | None = None) -> None:
        """Play a prompt/notice/tone to one leg only (switches a relayed call to the bridge)."""
        bridge = self._start_bridge()
        done = None if on_done is None else (lambda _bl: on_done(self, leg))
        bridge.inject(self.bridge_legs[leg], source, done)

    def set_recorder(self, recorder: Callable[[bytes], None] | None) -> None:
        """Tap the full mix (``bridge_rate`` Hz int16 frames); None stops recording."""
        self.recorder = recorder
        if recorder is not None:
            self._start_bridge().recorder = recorder
        elif self.bridge is not None:
            self.bridge.recorder = None

    def stats(self) -> dict[str, SessionStats]:
        """Per leg: packets, loss, jitter and RTT (RTCP) for the call log."""
        return {leg: s.stats for leg, s in self.sessions.items()}

    # ------------------------------------------------------------------ events

    def _dtmf(self, leg: str, event: DtmfEvent) -> None:
        if self.on_dtmf is not None:
            self.on_dtmf(self, leg, event)

    def _bridged_dtmf(self, leg: str, bleg: BridgeLeg, event: DtmfEvent) -> None:
        if self.bridge is not None:
            self.bridge._dtmf(bleg, event)
        self._dtmf(leg, event)

    def _timeout(self, leg: str) -> None:
        log.info("%s: RTP timeout on leg %s", self.call_id, leg)
        if self.on_timeout is not None:
            self.on_timeout(self, leg)
        else:
            self.close()

    # ------------------------------------------------------------------ end

    def close(self) -> None:
        """Free everything; safe to call from any path, any number of times."""
        if self.closed:
            return
        self.closed = True
        self.allocator.media_objects -= 1
        try:
            self._stop_bridge()
        finally:
            for s in self.sessions.values():
                try:
                    s.close()
                except Exception:
                    log.exception("%s: closing %s failed", self.call_id, s.name)
            for leg, pair in self.pairs.items():
                endpoint = self.endpoints.get(leg)
                if endpoint is not None:
                    endpoint.close()  # the pair goes back once aiortc let go of it
                else:
                    self.allocator.release(pair)
