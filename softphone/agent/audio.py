"""A call's audio: RTP on the call's own port pair, a source played into it, a sink for what
is received.

``--audio null``: silence is sent (the peer's RTP timers and NAT bindings stay alive) and what
is received is decoded and dropped. ``--audio device:NAME``: the sound device's microphone is
sent and what is received is played on its speaker (``softphone.agent.device``).
``--audio file:in.wav,out.wav``: in.wav (mono 16-bit, any
rate the resampler knows) is played into the call, from its start and again from the start
when it ends; what is received is decoded through the jitter buffer (lost frames concealed)
and written to out.wav at the codec's rate when the call ends (one file per call: the next
call writes it again). Mute sends silence instead of the source; while the call is on hold
(ours or the peer's) nothing is sent.

The media is :class:`~softphone.media.session.RtpSession` (RFC 3550 statistics and RTCP with
the RTT), whose counters the quality reports read. Every 20 ms on an absolute schedule: one
frame out, one frame out of the jitter buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from softphone.agent.device import DeviceAudio, DeviceError, DeviceInfo
from softphone.agent.notice import NOTICE_RATE
from softphone.codecs.frame import FrameCodec, codec_for
from softphone.media.dtmf import DtmfEvent, DtmfKind
from softphone.media.session import RtpSession
from softphone.media.tone import read_wav, write_wav
from softphone.native.jitter import GetResult
from softphone.native.resampler import RATES, Resampler
from softphone.phone.call import Call

log = logging.getLogger(__name__)

PTIME_MS = 20


class AudioSpecError(ValueError):
    """An ``--audio`` value that cannot be used."""


@dataclass(frozen=True)
class AudioSpec:
    """What ``--audio`` says: ``null``, ``file`` with the WAV to play and the one to write, or
    ``device`` with the sound device's name."""

    kind: str  # "null" | "file" | "device"
    play: Path | None = None
    record: Path | None = None
    device: str = ""

    @classmethod
    def parse(cls, text: str) -> AudioSpec:
        if text == "null":
            return cls("null")
        if text.startswith("file:"):
            play_s, comma, record_s = text[5:].partition(",")
            if not comma or not play_s or not record_s:
                raise AudioSpecError(f"must look like file:in.wav,out.wav, got {text!r}")
            return cls.files(play_s, record_s)
        if text.startswith("device:"):
            name = text[7:]
            if not name.strip() or any(ord(c) < 0x20 for c in name):
                raise AudioSpecError(f"must look like device:NAME (softphone agent "
                                     f"--list-devices lists them), got {text!r}")
            return cls("device", device=name)
        raise AudioSpecError(f"must be null, file:in.wav,out.wav or device:NAME, got {text!r}")

    @classmethod
    def files(cls, play: str | None, record: str | None) -> AudioSpec:
        """A WAV to play (None: silence) and one to write (None: nothing kept), checked."""
        if play is not None:
            try:
                _, rate = read_wav(play)
            except (OSError, ValueError) as exc:
                raise AudioSpecError(f"cannot play {play}: {exc}") from None
            if rate not in RATES:
                raise AudioSpecError(f"{play}: sample rate {rate} not among {RATES}")
        if record is not None and not Path(record).parent.is_dir():
            raise AudioSpecError(f"cannot record to {record}: no such directory")
        return cls("file", None if play is None else Path(play),
                   None if record is None else Path(record))

    def describe(self) -> str:
        if self.kind == "device":
            return f"device:{self.device}"
        return "null" if self.kind == "null" else f"file:{self.play},{self.record}"


class CallAudio:
    """The media of one established call (see the module docstring)."""

    def __init__(self, call: Call, spec: AudioSpec, *,
                 on_dtmf: Callable[[str], object] | None = None,
                 notice: bytes = b"", objection_digit: str = "",
                 on_recording: Callable[[str], object] | None = None,
                 device: DeviceInfo | None = None,
                 output_device: DeviceInfo | None = None) -> None:
        """``device``: the sound device (microphone, and speaker unless ``output_device``
        names another). ``notice`` (16 kHz PCM) is played first when recording (R-REC-2):
        recording starts once it has been sent; ``objection_digit`` received stops it and deletes what was
        kept. ``on_recording`` hears "started" and "objected"."""
        neg = call.negotiated
        if neg is None or call.port_pair is None:
            raise ValueError(f"{call.call_id}: no negotiated media")
        self.call = call
        self.spec = spec
        self.codec: FrameCodec = codec_for(neg)
        self.codec_name = neg.codec.name
        self.frame = self.codec.frame_samples(PTIME_MS)
        self.muted = False
        self.on_dtmf = on_dtmf
        self._source = b""
        self._pos = 0
        if spec.kind == "file" and spec.play is not None:
            pcm, rate = read_wav(spec.play)
            if rate != self.codec.clock_rate:
                pcm = Resampler(rate, self.codec.clock_rate).process(pcm)
            self._source = pcm
        self._notice = b""
        if spec.record is not None and notice:
            self._notice = notice if self.codec.clock_rate == NOTICE_RATE else Resampler(
                NOTICE_RATE, self.codec.clock_rate).process(notice)
        self._notice_pos = 0
        self.recording = spec.record is not None and not self._notice
        self.objected = False
        self.notice_done = not self._notice
        self.objection_digit = objection_digit
        self.on_recording = on_recording
        self._recorded: list[bytes] = []
        self._digits: deque[str] = deque()
        self._gap = 3  # frames since the last digit ended (the first one goes at once)
        self._silence = bytes(2 * self.frame)
        self.session = RtpSession(
            call.port_pair, remote=(neg.remote_address, neg.remote_port),
            remote_rtcp=(neg.remote_rtcp_address, neg.remote_rtcp_port),
            payload_types=(neg.codec.payload_type,), dtmf_payload_type=neg.telephone_event_pt,
            clock_rate=self.codec.rtp_clock_rate,
            frame_samples=self.codec.rtp_samples(PTIME_MS), inactivity_timeout=None,
            on_dtmf=self._dtmf, name=f"agent-{call.call_id[:8]}")
        self.device = None if device is None else DeviceAudio(device, self.codec.clock_rate,
                                                             output_device)
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        call.on_end.append(lambda _c: self.close())

    async def start(self) -> None:
        await self.session.start()
        if self.device is not None:
            try:
                self.device.start()
            except DeviceError as exc:  # busy or gone since the start: this call in silence
                log.error("%s: %s: the call goes on without the device", self.call.call_id, exc)
                self.device = None
        self._task = asyncio.create_task(self._run(), name=f"audio {self.call.call_id}")

    def update_direction(self) -> None:
        """After an offer/answer: send only when the negotiated direction lets us."""
        neg = self.call.negotiated
        self.session.sending = neg is None or neg.direction in ("sendrecv", "sendonly")

    def _dtmf(self, _session: RtpSession, ev: DtmfEvent) -> None:
        if ev.kind is not DtmfKind.END:
            return
        if (ev.digit == self.objection_digit and self.spec.record is not None
                and not self.objected):
            # R-REC-2: the other party objects: stop, and keep nothing
            self.objected = True
            self.recording = False
            self._recorded.clear()
            if self.on_recording is not None:
                self.on_recording("objected")
        if self.on_dtmf is not None:
            self.on_dtmf(ev.digit)

    def queue_digits(self, digits: str) -> None:
        """RFC 4733 events, one after the other (100 ms each, 60 ms apart)."""
        self._digits.extend(digits)

    def _next_source(self) -> bytes:
        n = 2 * self.frame
        if self._notice_pos < len(self._notice):  # the notice first, even when muted
            out = self._notice[self._notice_pos:self._notice_pos + n]
            self._notice_pos += n
            if self._notice_pos >= len(self._notice) and not self.objected:
                self.notice_done = True
                self.recording = True
                if self.on_recording is not None:
                    self.on_recording("started")
            return out + bytes(n - len(out))
        if self.device is not None and not self.muted:
            return self.device.take(n)
        if self.muted or not self._source:
            return self._silence
        if self._pos + n > len(self._source):
            self._pos = 0
            if n > len(self._source):
                return self._silence
        out = self._source[self._pos:self._pos + n]
        self._pos += n
        return out

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        jitter = self.session.jitter
        while not self.closed:
            if self._digits and not self.session.dtmf_out.active:
                if self._gap >= 3:
                    self.session.send_digit(self._digits.popleft(), 100)
                    self._gap = 0
                else:
                    self._gap += 1
            self.session.send_frame(self.codec.encode(self._next_source()))
            if jitter is not None:
                result, payload = jitter.get(loop.time() * 1000.0)
                if result is GetResult.FRAME and payload is not None:
                    pcm = self.codec.decode(payload)
                elif result is GetResult.CONCEAL:
                    pcm = self.codec.decode(None)
                else:
                    pcm = self._silence
                if self.recording:
                    self._recorded.append(pcm)
                if self.device is not None:
                    self.device.give(pcm)
            n += 1
            await asyncio.sleep(max(0.0, start + n * PTIME_MS / 1000 - loop.time()))

    def close(self) -> None:
        """Stop the media and write the recording. Idempotent; called when the call ends."""
        if self.closed:
            return
        self.closed = True
        if self._task is not None:
            self._task.cancel()
        self.session.close("call ended")
        if self.device is not None:
            self.device.close()
        if self.spec.record is not None:
            try:
                if self.objected:
                    self.spec.record.unlink(missing_ok=True)  # an earlier call's is not this one's
                else:
                    write_wav(self.spec.record, b"".join(self._recorded),
                              self.codec.clock_rate)
            except OSError as exc:
                log.error("cannot write %s: %s", self.spec.record, exc)

    async def wait_closed(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
