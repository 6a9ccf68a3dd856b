"""The 20-ms media bridge: jitter buffer -> decode -> resample -> native mix -> encode -> RTP.

Per tick and per leg: ``JitterBuffer.get`` gives FRAME (decode), CONCEAL (the codec's PLC:
``decode(None)``) or EMPTY (silence); the PCM is resampled to the bridge rate with the native
``Resampler`` and written into the leg's ``Mixer`` input. Prompts (``inject``) and the echo
loop go into the leg's inject frame, heard by that leg only; a prompt advances only by the
frames actually sent on its leg (on hold it waits, see ``Bridge.inject``). Then one ``Mixer.mix()`` for the
whole conference gives every leg its mix-minus and the recorder its full mix; each leg's output
is resampled to its codec's rate, encoded and sent by its ``RtpSession``. Transcoding (Opus on
one leg, G.711 on the other) is nothing special: every leg has its own codec and resamplers.

``TickScheduler`` is the clock: deadlines are ``start + k * 20 ms`` on the loop's monotonic
clock (``loop.call_at``), never an accumulation of ``sleep(0.02)``, so the media clock does not
drift from the RTP clock of the peers. A late callback runs the missed ticks back to back (up
to ``max_catchup``; beyond that they are skipped and counted) so that each leg still pulls one
frame per 20 ms of real time. One scheduler can tick many bridges (all calls of an edge).
``Bridge.tick(now_ms)`` itself is synchronous and clock-free: tests drive it directly.

RFC 4733 digits received on a leg surface to ``on_dtmf(leg, event)`` and, with ``dtmf_relay``,
are sent again on the other legs (with their own telephone-event PT and timeline) when the
digit ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from softphone.media.dtmf import DtmfEvent, DtmfKind
from softphone.media.session import RtpSession

if TYPE_CHECKING:
    from softphone.codecs.frame import FrameCodec
    from softphone.native.mixer import Mixer
    from softphone.native.resampler import Resampler

__all__ = ["Bridge", "BridgeError", "BridgeLeg", "FrameSource", "TickScheduler"]

log = logging.getLogger(__name__)

PTIME_MS = 20
_FRAME, _CONCEAL = 0, 1  # softphone.native.jitter.GetResult values (an IntEnum)


class BridgeError(ValueError):
    """A leg the bridge cannot take (no jitter buffer, unsupported rate, bridge full)."""


class FrameSource(Protocol):
    """Audio to inject into one leg: ``next_frame(samples)`` returns that many int16 samples
    at the bridge rate, or None when it has finished."""

    def next_frame(self, samples: int) -> bytes | None: ...


class BridgeLeg:
    """One participant: its RTP session, its codec, its slot in the mixer."""

    def __init__(self, bridge: Bridge, session: RtpSession, codec: FrameCodec, slot: int,
                 name: str) -> None:
        from softphone.native.resampler import Resampler

        self.bridge = bridge
        self.session = session
        self.codec = codec
        self.slot = slot
        self.name = name
        self.rtp_frame_samples = codec.rtp_clock_rate * PTIME_MS // 1000
        self.codec_frame_samples = codec.frame_samples(PTIME_MS)
        self._rs_in: Resampler | None = None
        self._rs_out: Resampler | None = None
        if codec.clock_rate != bridge.rate:
            self._rs_in = Resampler(codec.clock_rate, bridge.rate)
            self._rs_out = Resampler(bridge.rate, codec.clock_rate)
        self.source: FrameSource | None = None
        self.on_source_done: Callable[[BridgeLeg], None] | None = None
        # the source's frame on its way: taken from the source, not yet sent on this leg (a
        # leg on hold or without a destination keeps it; the source waits)
        self._source_frame: bytes | None = None
        self.source_frames_sent = 0  # frames of injected sources actually sent on this leg
        self.echo = False
        self._heard_audio = False
        self._injecting = False
        # counters
        self.frames = 0
        self.concealed = 0
        self.empty = 0
        self.codec_errors = 0

    def __repr__(self) -> str:
        return f"BridgeLeg({self.name!r}, slot={self.slot}, codec={self.codec.name})"

    def _pull(self, now_ms: float) -> bytes:
        """This tick's PCM at the bridge rate."""
        bridge = self.bridge
        jb = self.session.jitter
        assert jb is not None
        result, payload = jb.get(now_ms)
        pcm: bytes | None = None
        try:
            if result == _FRAME:
                pcm = self.codec.decode(payload)
                self.frames += 1
                self._heard_audio = True
            elif result == _CONCEAL and self._heard_audio:
                pcm = self.codec.decode(None)
                self.concealed += 1
            else:
                self.empty += 1
        except Exception:  # a corrupt payload costs one frame, not the call
            self.codec_errors += 1
            log.debug("%s: decode failed", self.name, exc_info=True)
        if pcm is None:
            return bridge.silence
        if self._rs_in is not None:
            pcm = self._rs_in.process(pcm)
        if len(pcm) != bridge.frame_bytes:
            # only a peer ignoring our ptime 20 gets here; cut/pad rather than fail the call
            pcm = pcm[:bridge.frame_bytes].ljust(bridge.frame_bytes, b"\0")
        return pcm

    @property
    def sending(self) -> bool:
        """False on hold (sendonly/inactive towards this leg): nothing is encoded or sent."""
        return self.session.sending

    @sending.setter
    def sending(self, value: bool) -> None:
        self.session.sending = value

    def _push(self, pcm: bytes) -> bool:
        """Encode and send this tick's output; whether it went out on the wire."""
        if not self.session.sending:
            self.session.skip_frame(self.rtp_frame_samples)
            return False
        if self._rs_out is not None:
            pcm = self._rs_out.process(pcm)
        try:
            payload = self.codec.encode(pcm)
        except Exception:
            self.codec_errors += 1
            log.debug("%s: encode failed", self.name, exc_info=True)
            self.session.skip_frame(self.rtp_frame_samples)
            return False
        return self.session.send_frame(payload, samples=self.rtp_frame_samples)


class Bridge:
    """A conference of legs mixed every 20 ms at ``rate`` Hz (8000, 16000 or 48000)."""

    def __init__(self, *, rate: int = 8000, max_legs: int = 8, name: str = "bridge",
                 recorder: Callable[[bytes], None] | None = None,
                 on_dtmf: Callable[[BridgeLeg, DtmfEvent], None] | None = None,
                 dtmf_relay: bool = True) -> None:
        from softphone.native.mixer import Mixer
        from softphone.native.resampler import RATES

        if rate not in RATES:
            raise BridgeError(f"bridge rate must be one of {RATES}, got {rate}")
        self.rate = rate
        self.name = name
        self.frame_samples = rate * PTIME_MS // 1000
        self.frame_bytes = 2 * self.frame_samples
        self.silence = bytes(self.frame_bytes)
        self.mixer: Mixer = Mixer(self.frame_samples, max_legs)
        self.legs: list[BridgeLeg] = []
        self.recorder = recorder
        self.on_dtmf = on_dtmf
        self.dtmf_relay = dtmf_relay
        self.ticks = 0
        self.closed = False
        self._scheduler: TickScheduler | None = None
        self._own_scheduler = False

    # ------------------------------------------------------------------ legs

    def add_leg(self, session: RtpSession, codec: FrameCodec, name: str = "") -> BridgeLeg:
        if self.closed:
            raise BridgeError(f"{self.name} is closed")
        if session.jitter is None and session.lazy_jitter:
            session.ensure_jitter()
        if session.jitter is None:
            raise BridgeError(f"{session.name}: a bridged leg needs a jitter buffer")
        if len(self.legs) >= self.mixer.max_legs:
            raise BridgeError(f"{self.name} is full ({self.mixer.max_legs} legs)")
        from softphone.native.resampler import RATES

        if codec.clock_rate not in RATES:
            raise BridgeError(f"codec rate {codec.clock_rate} is not one of {RATES}")
        if session.clock_rate != codec.rtp_clock_rate:
            # the jitter buffer times frames on the RTP clock: a mismatch would stretch them
            raise BridgeError(f"{session.name}: session clock {session.clock_rate} Hz, "
                              f"codec {codec.name} RTP clock {codec.rtp_clock_rate} Hz")
        leg = BridgeLeg(self, session, codec, len(self.legs), name or session.name)
        self.mixer.set_gain(leg.slot, 32768)
        self.mixer.set_inject(leg.slot, None)
        self.legs.append(leg)
        session.relay_to(None)
        session.on_dtmf = lambda _s, ev, leg=leg: self._dtmf(leg, ev)
        return leg

    def remove_leg(self, leg: BridgeLeg, *, close_session: bool = False) -> None:
        """Take a leg out (the last leg moves into its mixer slot); idempotent."""
        if leg not in self.legs:
            return
        last = self.legs.pop()
        if last is not leg:
            gain = self.mixer.gain(last.slot)
            self.legs[leg.slot] = last
            last.slot = leg.slot
            self.mixer.set_gain(last.slot, gain)
            last._injecting = True  # make the next tick rewrite the new slot's inject state
        self.mixer.set_inject(len(self.legs), None)
        leg.session.on_dtmf = None
        if close_session:
            leg.session.close("left the bridge")

    def set_gain(self, leg: BridgeLeg, gain_q15: int) -> None:
        """What the others hear of ``leg``: 32768 unity, 0 muted."""
        self.mixer.set_gain(leg.slot, gain_q15)

    def inject(self, leg: BridgeLeg, source: FrameSource | None,
               on_done: Callable[[BridgeLeg], None] | None = None) -> None:
        """Play ``source`` to ``leg`` only (a prompt, a recording notice, a tone); None stops.
        ``on_done`` runs when the source has finished and every frame of it was sent on the
        leg: a leg on hold (sendonly/inactive towards it) sends nothing, so the source pauses
        there and resumes where it was when the leg sends again."""
        leg.source = source
        leg.on_source_done = on_done
        leg._source_frame = None

    # ------------------------------------------------------------------ the tick

    def tick(self, now_ms: float) -> None:
        """One 20-ms frame for every leg (``now_ms`` on the clock the sessions stamp
        arrivals with: the loop's monotonic time in ms)."""
        if self.closed:
            return
        self.ticks += 1
        mixer = self.mixer
        legs = self.legs
        frame_bytes = self.frame_bytes
        for leg in legs:
            pcm = leg._pull(now_ms)
            slot = leg.slot
            mixer.set_input(slot, pcm)
            source = leg.source
            if source is None and not leg.echo:
                if leg._injecting:  # only a change of state crosses into the mixer
                    mixer.set_inject(slot, None)
                    leg._injecting = False
                continue
            inject: bytes | None = pcm if leg.echo else None
            if source is not None and leg.session.sending:  # on hold: the source waits
                frame = leg._source_frame
                if frame is None:
                    frame = source.next_frame(self.frame_samples)
                if frame is None:
                    leg.source = None
                    done, leg.on_source_done = leg.on_source_done, None
                    if done is not None:
                        done(leg)
                else:  # with echo on too, the prompt wins and the echo pauses
                    if len(frame) != frame_bytes:
                        frame = frame[:frame_bytes].ljust(frame_bytes, b"\0")
                    leg._source_frame = inject = frame
            if inject is not None:
                if len(inject) != frame_bytes:
                    inject = inject[:frame_bytes].ljust(frame_bytes, b"\0")
                mixer.set_inject(slot, inject)
                leg._injecting = True
            elif leg._injecting:
                mixer.set_inject(slot, None)
                leg._injecting = False
        recorder = self.recorder
        mixer.mix(len(legs), record=recorder is not None)
        if recorder is not None:
            recorder(bytes(mixer.record))
        output = mixer.output
        for leg in legs:
            if leg._push(bytes(output(leg.slot))) and leg._source_frame is not None:
                leg._source_frame = None  # heard: the source may go on
                leg.source_frames_sent += 1

    def _dtmf(self, leg: BridgeLeg, event: DtmfEvent) -> None:
        if self.on_dtmf is not None:
            try:
                self.on_dtmf(leg, event)
            except Exception:
                log.exception("%s: on_dtmf failed", self.name)
        if self.dtmf_relay and event.kind is DtmfKind.END and event.digit in "0123456789*#ABCD":
            ms = max(40, event.duration * 1000 // max(1, leg.session.clock_rate))
            for other in self.legs:
                if other is not leg and other.session.dtmf_payload_type is not None:
                    other.session.send_digit(event.digit, ms)

    # ------------------------------------------------------------------ running

    def start(self, scheduler: TickScheduler | None = None) -> None:
        """Tick on ``scheduler`` (shared by many bridges) or on one of our own."""
        if self._scheduler is not None:
            return
        if scheduler is None:
            scheduler = TickScheduler()
            self._own_scheduler = True
        self._scheduler = scheduler
        scheduler.add(self)
        scheduler.start()

    def close(self, *, close_sessions: bool = True) -> None:
        """Stop ticking and (by default) close every leg's session, releasing its ports."""
        if self.closed:
            return
        self.closed = True
        if self._scheduler is not None:
            self._scheduler.remove(self)
            if self._own_scheduler:
                self._scheduler.stop()
            self._scheduler = None
        for leg in list(self.legs):
            self.remove_leg(leg, close_session=close_sessions)


class TickScheduler:
    """Drift-free 20-ms ticks for a set of bridges on one event loop (see module docstring)."""

    def __init__(self, period: float = PTIME_MS / 1000, *, max_catchup: int = 10) -> None:
        # 10 frames = 200 ms, the jitter buffer's default ceiling: a stall up to that long is
        # made up (a burst the peers' buffers absorb), a longer one loses frames
        self.period = period
        self.max_catchup = max_catchup
        self.bridges: list[Bridge] = []
        self.ticks = 0  # deadlines served (each runs every bridge once)
        self.late = 0  # deadlines served more than one period after they were due
        self.skipped = 0  # deadlines given up (the loop was blocked too long)
        self.errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._t0 = 0.0
        self._k = 0

    @property
    def running(self) -> bool:
        return self._handle is not None

    def add(self, bridge: Bridge) -> None:
        if bridge not in self.bridges:
            self.bridges.append(bridge)

    def remove(self, bridge: Bridge) -> None:
        if bridge in self.bridges:
            self.bridges.remove(bridge)

    def start(self) -> None:
        if self._handle is not None:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._t0 = loop.time()
        self._k = 0
        self._handle = loop.call_at(self._t0, self._run)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        due = self._t0 + self._k * self.period
        behind = int((now - due) / self.period)  # whole periods we are late
        if behind > self.max_catchup:
            self.skipped += behind - self.max_catchup
            self._k += behind - self.max_catchup
            due = self._t0 + self._k * self.period
        while due <= now:
            if now - due >= self.period:
                self.late += 1
            for bridge in list(self.bridges):
                try:
                    bridge.tick(due * 1000.0)
                except Exception:
                    self.errors += 1
                    if self.errors & (self.errors - 1) == 0:  # powers of two: no log flood
                        log.exception("%s: tick failed (%d so far)", bridge.name, self.errors)
            self.ticks += 1
            self._k += 1
            due = self._t0 + self._k * self.period
        if self._handle is not None:
            self._handle = loop.call_at(due, self._run)
