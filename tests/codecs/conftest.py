"""Helpers for the codec tests: SDP test data, tones and a Goertzel detector."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"


def sdp_data(name: str) -> bytes:
    return (DATA / name).read_bytes()


def tone(freq: float, rate: int, samples: int, amplitude: float = 8000.0, start: int = 0) -> bytes:
    """A sine as int16 little-endian PCM; ``start`` continues the phase of an earlier call."""
    n = np.arange(start, start + samples)
    return (amplitude * np.sin(2 * math.pi * freq * n / rate)).astype("<i2").tobytes()


def goertzel_power(pcm: bytes, rate: int, freq: float) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for v in x:
        s1, s2 = v + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def tone_ratio(pcm: bytes, rate: int, freq: float) -> float:
    """Share of the signal's energy at ``freq`` (1.0 = a pure tone at that bin)."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    total = float(np.sum(x * x))
    if total == 0.0:
        return 0.0
    # Goertzel power of a length-N block is (N/2)^2 A^2 / ... ; normalise by N/2 * energy.
    return goertzel_power(pcm, rate, freq) / (len(x) / 2 * total)


def rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


class Audio:
    """The helpers above as a fixture (test modules cannot import conftest under importlib)."""

    tone = staticmethod(tone)
    tone_ratio = staticmethod(tone_ratio)
    goertzel_power = staticmethod(goertzel_power)
    rms = staticmethod(rms)


@pytest.fixture
def audio() -> type[Audio]:
    return Audio


@pytest.fixture
def sdp_file() -> object:
    return sdp_data
