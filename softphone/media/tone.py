"""Tones and tone detection on 16-bit PCM (native byte order, mono, any sample rate).

Used by the tone/announcement extension (601) and by the tests, which check audio on the audio:
a tone sent at one end must come out at the other. The detector is a Goertzel filter at the
exact frequency (not a DFT bin), normalised by the signal energy so that a clean sine scores
about 1.0 and silence or another frequency scores near 0. Small enough that pulling numpy in
for it would not pay; WAV files go through the standard library's ``wave``.
"""

from __future__ import annotations

import math
import sys
import wave
from array import array
from pathlib import Path

__all__ = [
    "ToneError",
    "ToneGenerator",
    "detect_tone",
    "read_wav",
    "rms",
    "tone",
    "tone_power_ratio",
    "write_wav",
]


class ToneError(ValueError):
    """Bad tone parameters or an unsupported WAV file."""


def _samples(pcm: bytes | bytearray | memoryview) -> array[int]:
    if len(pcm) % 2:
        raise ToneError(f"16-bit PCM needs an even byte count, got {len(pcm)}")
    a = array("h")
    a.frombytes(bytes(pcm))
    return a


class ToneGenerator:
    """A phase-continuous sum of sines: ``frame(n)`` returns the next ``n`` samples."""

    def __init__(self, freqs: float | tuple[float, ...], rate: int, amplitude: int = 8000) -> None:
        self.freqs = (freqs,) if isinstance(freqs, int | float) else tuple(freqs)
        if rate <= 0 or not self.freqs or any(not 0 < f < rate / 2 for f in self.freqs):
            raise ToneError(f"frequencies {self.freqs} must lie in (0, {rate / 2}) Hz")
        if not 0 <= amplitude <= 32767:
            raise ToneError(f"amplitude {amplitude} is not 0-32767")
        self.rate = rate
        self.amplitude = amplitude
        self._n = 0
        self._steps = [2 * math.pi * f / rate for f in self.freqs]
        # Whole-Hz tones repeat every rate / gcd(rate, freqs) samples (at most one second):
        # compute that period once and slice it, so a tone costs a copy per frame, not a sine
        # per sample (the 601 extension plays one per call).
        self._table: bytes | None = None
        if all(float(f).is_integer() for f in self.freqs):
            period = rate // math.gcd(rate, *(int(f) for f in self.freqs))
            self._table = self._compute(0, period).tobytes() * 2  # doubled: slices wrap freely
            self._period = period

    def _compute(self, start: int, samples: int) -> array[int]:
        amp = self.amplitude / len(self.freqs)
        return array("h", (
            int(round(amp * sum(math.sin(w * (start + i)) for w in self._steps)))
            for i in range(samples)
        ))

    def frame(self, samples: int) -> bytes:
        start = self._n
        self._n += samples
        table = self._table
        if table is None:
            return self._compute(start, samples).tobytes()
        period = self._period
        out = bytearray()
        pos = start % period
        while samples > 0:
            take = min(samples, period)
            out += table[2 * pos:2 * (pos + take)]
            samples -= take
            pos = (pos + take) % period
        return bytes(out)


def tone(freq: float, rate: int, samples: int, amplitude: int = 8000) -> bytes:
    """``samples`` of a sine at ``freq`` Hz."""
    return ToneGenerator(freq, rate, amplitude).frame(samples)


def rms(pcm: bytes | bytearray | memoryview) -> float:
    a = _samples(pcm)
    if not a:
        return 0.0
    return math.sqrt(sum(x * x for x in a) / len(a))


def tone_power_ratio(pcm: bytes | bytearray | memoryview, rate: int, freq: float) -> float:
    """Share of the signal's energy at ``freq`` (Goertzel): ~1.0 for a clean sine, ~0 without."""
    x = _samples(pcm)
    n = len(x)
    energy = float(sum(v * v for v in x))
    if n == 0 or energy == 0.0:
        return 0.0
    w = 2 * math.pi * freq / rate
    coeff = 2 * math.cos(w)
    s1 = s2 = 0.0
    for v in x:
        s0 = v + coeff * s1 - s2
        s2 = s1
        s1 = s0
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    return power / (energy * n / 2)


def median_tone_ratio(pcm: bytes | bytearray | memoryview, rate: int, freq: float, *,
                      window_ms: int = 100) -> float:
    """The median Goertzel share of ``freq`` over ``window_ms`` windows (0 for no audio).

    One long Goertzel sum is halved by a single phase step (a frame a jitter buffer dropped
    or concealed, a bridge's 20 ms clock slipping against the sender's), although every window
    around it holds a clean tone; a wrong tone or noise fails every window. So a tone is judged
    window by window."""
    step = max(1, rate * window_ms // 1000) * 2
    data = bytes(pcm)
    ratios = sorted(tone_power_ratio(data[i:i + step], rate, freq)
                    for i in range(0, len(data) - step + 1, step))
    return ratios[len(ratios) // 2] if ratios else 0.0


def detect_tone(pcm: bytes | bytearray | memoryview, rate: int, freq: float, *,
                min_ratio: float = 0.5, min_rms: float = 100.0) -> bool:
    """True when ``freq`` carries at least ``min_ratio`` of a signal that is not near silence."""
    return rms(pcm) >= min_rms and tone_power_ratio(pcm, rate, freq) >= min_ratio


def write_wav(path: str | Path, pcm: bytes, rate: int) -> None:
    """Mono 16-bit little-endian WAV."""
    data = pcm
    if sys.byteorder == "big":
        a = _samples(pcm)
        a.byteswap()
        data = a.tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data)


def read_wav(path: str | Path) -> tuple[bytes, int]:
    """(pcm, rate) of a mono 16-bit WAV; other layouts raise ``ToneError``."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getnchannels() != 1 or w.getsampwidth() != 2:
                raise ToneError(f"{path}: need mono 16-bit PCM, got {w.getnchannels()} "
                                f"channels of {8 * w.getsampwidth()} bits")
            rate = w.getframerate()
            data = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ToneError(f"{path}: not a readable WAV file: {exc}") from None
    if sys.byteorder == "big":
        a = _samples(data)
        a.byteswap()
        data = a.tobytes()
    return data, rate
