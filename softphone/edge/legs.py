"""A call is a set of legs: one ``Leg`` interface for every party of a call.

A leg has a name in its call ("a" the caller, "b" the other party: also its media leg), a kind
(what is on the other side), a signalling state (``LegState``), a media endpoint, DTMF in
(``on_dtmf``) and out (``send_dtmf``), hold and hang-up. The kinds today:

- app legs, parties the edge plays itself and that have no socket: ``EchoLeg`` (600: returns
  what it hears), ``ToneLeg`` (601: a continuous tone), ``PromptLeg`` (a notice or an
  announcement, once). Their media endpoint is frames at the bridge rate: ``speak(samples)``
  what they send this 20 ms, ``hear(pcm)`` what reached them. Facing a SIP caller they go onto
  that caller's bridge leg (``attach``): the tone and the prompt as its injected source, the
  echo as the bridge's own loop (decoded, mixed and encoded in the same tick);
- the SIP legs (``softphone.edge.sip_leg``): the caller's (``CallerLeg``, "a") and the
  callee's (``CalleeLeg``, "b", one INVITE per device rung) for desk phones, the trunk and the
  emergency gateway; their media endpoint is the call's ``RtpSession`` of that leg, hang-up is
  a BYE (or CANCEL), DTMF out RFC 4733;
- the browser leg: a SIP leg over WebSocket whose media endpoint is an aiortc peer connection
  instead of an ``RtpSession`` (``softphone.edge.browser`` for its offer/answer,
  ``softphone.media.webrtc`` for its media, on the same bridge as the others).

``FrameCall`` is a call made of legs with a frame endpoint only: it owns its legs, the relay
between them (mix-minus, one frame per tick of its clock), the policy channel it gives back
once, and its call-log line. It needs no socket and no loop: a clock and ``tick()``.
"""

from __future__ import annotations

import array
import enum
from collections.abc import Callable, Iterable
from typing import Protocol

from softphone.edge.calllog import CallLog, CallRecord
from softphone.media.bridge import FrameSource
from softphone.media.call import CallMedia
from softphone.media.echo import ToneSource


class LegState(enum.Enum):
    SETUP = "setup"          # being placed or ringing
    ANSWERED = "answered"    # media flows both ways
    HELD = "held"            # on hold: it neither sends nor hears
    ENDED = "ended"


class Leg(Protocol):
    """One party of a call, whatever it is."""

    name: str
    state: LegState
    on_dtmf: Callable[[Leg, str], None] | None   # a key this party pressed (DTMF in)

    @property
    def kind(self) -> str:
        """What is on the other side: "sip", "browser", or the app ("echo", "tone"...)."""
        ...

    def answer(self) -> None:
        """The party is connected: media flows."""
        ...

    def hold(self, on: bool) -> None:
        """Put the party on hold (``on``) or take it off."""
        ...

    def send_dtmf(self, digit: str) -> None:
        """A key pressed elsewhere in the call, for this party (DTMF out)."""
        ...

    def hang_up(self, cause: str) -> None:
        """The party leaves the call; idempotent."""
        ...


class FrameLeg(Leg, Protocol):
    """A leg whose media endpoint is frames at the bridge rate (no RTP of its own)."""

    def attach(self, media: CallMedia, toward: str) -> None:
        """Join the edge's media of a call, facing its leg ``toward``."""
        ...

    def speak(self, samples: int) -> bytes | None:
        """What it sends in this tick (``samples`` int16 samples), None when it is silent
        for good (a prompt that has finished)."""
        ...

    def hear(self, pcm: bytes) -> None:
        """What reached it in this tick."""
        ...


class AppLeg:
    """What every app leg shares: signalling state, hold, hang-up, the keys it received."""

    kind = "app"

    def __init__(self, name: str = "b") -> None:
        self.name = name
        self.state = LegState.SETUP
        self.on_dtmf: Callable[[Leg, str], None] | None = None
        self.keys: list[str] = []        # DTMF out: what was pressed for it, in order
        self.ended_by = ""

    def answer(self) -> None:
        if self.state is LegState.SETUP:
            self.state = LegState.ANSWERED

    def hold(self, on: bool) -> None:
        if self.state is not LegState.ENDED:
            self.state = LegState.HELD if on else LegState.ANSWERED

    def send_dtmf(self, digit: str) -> None:
        self.keys.append(digit)

    def hang_up(self, cause: str) -> None:
        if self.state is not LegState.ENDED:
            self.state = LegState.ENDED
            self.ended_by = cause

    def hear(self, pcm: bytes) -> None:
        return None

    def speak(self, samples: int) -> bytes | None:
        return bytes(2 * samples)

    def attach(self, media: CallMedia, toward: str) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.state.value})"


class EchoLeg(AppLeg):
    """600: sends back what it heard. On the edge's bridge, the bridge's own echo loop does
    it within the tick; between frame legs, one frame later."""

    kind = "echo"

    def __init__(self, name: str = "b") -> None:
        super().__init__(name)
        self._heard: bytes | None = None

    def hear(self, pcm: bytes) -> None:
        self._heard = pcm

    def speak(self, samples: int) -> bytes | None:
        heard, self._heard = self._heard, None
        return heard if heard is not None and len(heard) == 2 * samples else bytes(2 * samples)

    def attach(self, media: CallMedia, toward: str) -> None:
        media.bridge_legs[toward].echo = True


class SourceLeg(AppLeg):
    """A party that plays a ``FrameSource`` (it is one itself, for the bridge's inject)."""

    def __init__(self, source: FrameSource, name: str = "b") -> None:
        super().__init__(name)
        self.source = source

    def speak(self, samples: int) -> bytes | None:
        return self.source.next_frame(samples)

    def next_frame(self, samples: int) -> bytes | None:
        return self.speak(samples)

    def attach(self, media: CallMedia, toward: str) -> None:
        media.inject(toward, self)


class ToneLeg(SourceLeg):
    """601: a continuous tone."""

    kind = "tone"

    def __init__(self, hz: float, rate: int, name: str = "b") -> None:
        super().__init__(ToneSource(hz, rate), name)


class PromptLeg(SourceLeg):
    """A notice or an announcement, played once; ``speak`` gives None when it is over."""

    kind = "prompt"


def app_leg(app: str, *, tone_hz: float, rate: int) -> AppLeg:
    """The app leg behind one of the edge's own numbers ("echo" 600, "tone" 601)."""
    if app == "echo":
        return EchoLeg()
    if app == "tone":
        return ToneLeg(tone_hz, rate)
    raise ValueError(f"no app leg {app!r}")


class FrameCall:
    """A call of legs with frame endpoints: owns them, relays their audio (each hears the sum
    of the others, clipped), passes keys on, and at its end gives the policy channel back
    once and writes its call-log line. Driven by ``tick()`` every 20 ms of ``clock``."""

    def __init__(self, key: str, legs: Iterable[FrameLeg], *, clock: Callable[[], float],
                 record: CallRecord, call_log: CallLog, rate: int = 16000, ptime_ms: int = 20,
                 release: Callable[[], object] | None = None,
                 on_dtmf: Callable[[str, str], object] | None = None) -> None:
        self.key = key
        self.legs = {leg.name: leg for leg in legs}
        self.clock = clock
        self.record = record
        self.call_log = call_log
        self.samples = rate * ptime_ms // 1000
        self.release = release      # the policy channel: given back once, at the end
        self.report_dtmf = on_dtmf  # (leg, digit) to the policy (the objection key)
        self.ended = False
        for leg in self.legs.values():
            leg.on_dtmf = self._dtmf

    def answer(self) -> None:
        for leg in self.legs.values():
            leg.answer()
        self.record.answered = self.clock()

    def tick(self) -> None:
        """One frame of every leg to every other leg (mix-minus); a leg on hold neither
        sends nor hears."""
        if self.ended:
            return
        live = [leg for leg in self.legs.values() if leg.state is LegState.ANSWERED]
        spoken = {leg.name: leg.speak(self.samples) for leg in live}
        for leg in live:
            others = [pcm for name, pcm in spoken.items() if name != leg.name and pcm]
            leg.hear(_mix(others, self.samples))

    def _dtmf(self, leg: Leg, digit: str) -> None:
        if self.ended:
            return
        for other in self.legs.values():
            if other is not leg and other.state is not LegState.ENDED:
                other.send_dtmf(digit)
        if self.report_dtmf is not None:
            self.report_dtmf(leg.name, digit)

    def hang_up(self, leg_name: str, cause: str) -> None:
        """A leg hangs up: the call ends for all, once."""
        if self.ended:
            return
        self.ended = True
        for leg in self.legs.values():
            leg.hang_up(cause)
        rec = self.record
        rec.ended = self.clock()
        rec.end_cause = f"{leg_name}:{cause}"
        rec.status = 200 if rec.answered is not None else 0
        if self.release is not None:
            self.release()
        self.call_log.write(rec)


def _mix(frames: list[bytes], samples: int) -> bytes:
    if not frames:
        return bytes(2 * samples)
    if len(frames) == 1:
        return frames[0]
    acc = [0] * samples
    for pcm in frames:
        for i, s in enumerate(array.array("h", pcm[:2 * samples])):
            acc[i] += s
    return array.array("h", (max(-32768, min(32767, s)) for s in acc)).tobytes()
