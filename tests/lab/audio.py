"""Audio checks on what a real peer decoded: read its WAV, look for a tone with Goertzel."""

from __future__ import annotations

import array
import math
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
    """Goertzel share of ``freq`` over ``span_s`` after ``skip_s`` (0 for silence or no audio).

    The median over 100-ms windows: one phase jump (a frame the jitter buffer concealed or
    dropped, a player looping its file) cancels a long coherent Goertzel sum but is one window
    out of ten here, while a wrong tone or noise fails every window.
    """
    pcm, rate = read_channel0(path)
    start = int(skip_s * rate) * 2
    span = pcm[start:start + int(span_s * rate) * 2]
    if len(span) < rate // 5 * 2 or rms(span) < 100:
        return 0.0
    step = rate // 10 * 2
    ratios = sorted(tone_power_ratio(span[i:i + step], rate, freq)
                    for i in range(0, len(span) - step + 1, step))
    return ratios[len(ratios) // 2]


def best_tone_ratio(paths: list[Path], freq: float) -> float:
    return max((tone_ratio(p, freq) for p in paths), default=0.0)


def strongest_window(pcm: bytes, freq: float, rate: int = 8000, span_ms: int = 100) -> float:
    """The best Goertzel share of ``freq`` over ``span_ms`` windows, half-overlapping."""
    n = rate * span_ms // 1000 * 2
    best = 0.0
    for start in range(0, max(0, len(pcm) - n) + 1, n // 2):
        window = pcm[start:start + n]
        if rms(window) > 300:
            best = max(best, tone_power_ratio(window, rate, freq))
    return best


def envelope(pcm: bytes, rate: int) -> list[float]:
    """RMS of each 20 ms frame."""
    n = rate // 50 * 2
    return [rms(pcm[i:i + n]) for i in range(0, len(pcm) - n + 1, n)]


def best_correlation(a: list[float], b: list[float], max_lag: int = 50) -> float:
    """Pearson correlation of two envelopes at the lag (``b`` later) that fits best."""
    best = -1.0
    for lag in range(max_lag + 1):
        x, y = a, b[lag:lag + len(a)]
        m = min(len(x), len(y))
        if m < 50:
            break
        x, y = x[:m], y[:m]
        mx, my = sum(x) / m, sum(y) / m
        sxy = sum((p - mx) * (q - my) for p, q in zip(x, y, strict=True))
        sxx = sum((p - mx) ** 2 for p in x)
        syy = sum((q - my) ** 2 for q in y)
        if sxx and syy:
            best = max(best, sxy / math.sqrt(sxx * syy))
    return best
