"""The media behind the test extensions: 600 echo, 601 tone / announcement.

Echo is audio-level: the caller's frames come out of the jitter buffer, are decoded, and go
back through the mixer's inject path into the same leg, then are encoded again. So it works
for any codec, shows the jitter buffer's delay and loss concealment like a real call, and a
tone sent in comes back as the same tone (tests check it with Goertzel).

The tone extension injects a ``ToneSource`` (a continuous or cadenced tone) or a
``PcmSource`` (an announcement, e.g. a WAV file resampled once to the bridge rate).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from softphone.media.bridge import Bridge, BridgeLeg
from softphone.media.session import RtpSession
from softphone.media.tone import ToneGenerator, read_wav

if TYPE_CHECKING:
    from softphone.codecs.frame import FrameCodec

__all__ = ["PcmSource", "ToneSource", "announcement", "echo_bridge", "tone_bridge"]


class ToneSource:
    """A tone at the bridge rate: continuous, or ``on_ms``/``off_ms`` cadence (425 Hz 1.5 s
    on, 3.5 s off is the European ringback), for ``duration_ms`` in total or forever."""

    def __init__(self, freqs: float | tuple[float, ...], rate: int, *, amplitude: int = 8000,
                 on_ms: int | None = None, off_ms: int = 0,
                 duration_ms: int | None = None) -> None:
        self.generator = ToneGenerator(freqs, rate, amplitude)
        self.rate = rate
        self.on_samples = None if on_ms is None else rate * on_ms // 1000
        self.off_samples = rate * off_ms // 1000
        self.remaining = None if duration_ms is None else rate * duration_ms // 1000
        self._pos = 0  # position in the cadence cycle

    def next_frame(self, samples: int) -> bytes | None:
        if self.remaining is not None:
            if self.remaining <= 0:
                return None
            self.remaining -= samples
        frame = self.generator.frame(samples)
        if self.on_samples is None:
            return frame
        on = self.on_samples
        cycle = on + self.off_samples
        out = bytearray(frame)
        i = 0
        while i < samples:  # walk the frame run by run: keep "on" runs, zero "off" runs
            phase = (self._pos + i) % cycle
            if phase < on:
                i += min(on - phase, samples - i)
            else:
                run = min(cycle - phase, samples - i)
                out[2 * i:2 * (i + run)] = bytes(2 * run)
                i += run
        self._pos = (self._pos + samples) % cycle
        return bytes(out)


class PcmSource:
    """Plays a PCM buffer (at the bridge rate) once, or ``loop`` times over."""

    def __init__(self, pcm: bytes, *, loop: bool = False) -> None:
        self.pcm = pcm
        self.loop = loop
        self._pos = 0

    def next_frame(self, samples: int) -> bytes | None:
        n = 2 * samples
        if self._pos >= len(self.pcm):
            if not self.loop or not self.pcm:
                return None
            self._pos = 0
        frame = self.pcm[self._pos:self._pos + n]
        self._pos += n
        return frame.ljust(n, b"\0")


def announcement(path: str | Path, rate: int, *, loop: bool = False) -> PcmSource:
    """A mono 16-bit WAV as a source at ``rate`` (resampled once, natively, if needed)."""
    pcm, file_rate = read_wav(path)
    if file_rate != rate:
        from softphone.native.resampler import Resampler

        pcm = Resampler(file_rate, rate).process(pcm)
    return PcmSource(pcm, loop=loop)


def echo_bridge(session: RtpSession, codec: FrameCodec, *, rate: int | None = None) -> Bridge:
    """Extension 600: a one-leg bridge that returns what the caller sends."""
    bridge = Bridge(rate=rate or codec.clock_rate, max_legs=1, name=f"echo:{session.name}")
    leg = bridge.add_leg(session, codec)
    leg.echo = True
    return bridge


def tone_bridge(session: RtpSession, codec: FrameCodec, *, freq: float = 1000.0,
                rate: int | None = None, source: ToneSource | PcmSource | None = None) -> Bridge:
    """Extension 601: a one-leg bridge playing a tone (or the given announcement)."""
    r = rate or codec.clock_rate
    bridge = Bridge(rate=r, max_legs=1, name=f"tone:{session.name}")
    leg: BridgeLeg = bridge.add_leg(session, codec)
    bridge.inject(leg, source or ToneSource(freq, r))
    return bridge
