"""Audio checks on what a real peer decoded: read its WAV, look for a tone with Goertzel."""

from __future__ import annotations

import array
import wave
from pathlib import Path

from softphone.media.tone import rms, tone_power_ratio


def read_channel0(path: Path) -> tuple[bytes, int]:
    """Channel 0 of a 16-bit WAV of any channel count, and its rate."""
    with wave.open(str(path), "rb") as w:
        ch, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width != 2:
        raise ValueError(f"{path}: {8 * width}-bit samples, expected 16")
    a = array.array("h", raw)
    return (a[::ch].tobytes() if ch > 1 else a.tobytes()), rate


def tone_ratio(path: Path, freq: float, *, skip_s: float = 0.5, span_s: float = 1.0) -> float:
    """Goertzel share of ``freq`` in a window after ``skip_s`` (0 for silence or no audio)."""
    pcm, rate = read_channel0(path)
    start = int(skip_s * rate) * 2
    window = pcm[start:start + int(span_s * rate) * 2]
    if len(window) < rate // 5 * 2 or rms(window) < 100:
        return 0.0
    return tone_power_ratio(window, rate, freq)


def best_tone_ratio(paths: list[Path], freq: float) -> float:
    return max((tone_ratio(p, freq) for p in paths), default=0.0)
