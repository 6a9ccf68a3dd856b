"""Tone generator and Goertzel detector: the yardstick of every audio assertion."""

from __future__ import annotations

from pathlib import Path

import pytest

from softphone.media.tone import (
    ToneError,
    ToneGenerator,
    detect_tone,
    read_wav,
    rms,
    tone,
    tone_power_ratio,
    write_wav,
)


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_a_tone_is_detected_at_its_frequency_only(rate: int) -> None:
    pcm = tone(1000, rate, rate // 5)
    assert tone_power_ratio(pcm, rate, 1000) > 0.95
    assert tone_power_ratio(pcm, rate, 1300) < 0.02
    assert detect_tone(pcm, rate, 1000) and not detect_tone(pcm, rate, 697)
    assert 8000 * 0.70 < rms(pcm) < 8000 * 0.72  # A / sqrt(2)


def test_silence_and_noise_like_input_are_not_tones() -> None:
    assert not detect_tone(bytes(3200), 8000, 1000)
    assert tone_power_ratio(bytes(3200), 8000, 1000) == 0.0
    quiet = tone(1000, 8000, 1600, amplitude=50)
    assert not detect_tone(quiet, 8000, 1000)  # below the level floor


def test_generator_is_phase_continuous_across_frames() -> None:
    g = ToneGenerator(440, 8000)
    frames = b"".join(g.frame(160) for _ in range(10))
    assert frames == tone(440, 8000, 1600)


def test_dual_tone_carries_both_frequencies() -> None:
    pcm = ToneGenerator((697.0, 1209.0), 8000, 10000).frame(1600)
    assert tone_power_ratio(pcm, 8000, 697) > 0.4 and tone_power_ratio(pcm, 8000, 1209) > 0.4


def test_bad_parameters() -> None:
    with pytest.raises(ToneError):
        ToneGenerator(5000, 8000)
    with pytest.raises(ToneError):
        rms(b"\x00")


def test_wav_round_trip(tmp_path: Path) -> None:
    pcm = tone(425, 16000, 1600)
    write_wav(tmp_path / "t.wav", pcm, 16000)
    assert read_wav(tmp_path / "t.wav") == (pcm, 16000)
    (tmp_path / "bad.wav").write_bytes(b"RIFF....nonsense")
    with pytest.raises(ToneError):
        read_wav(tmp_path / "bad.wav")


def test_period_table_matches_the_sine_within_one_step() -> None:
    from array import array

    g = ToneGenerator((350, 440), 8000)  # dial tone: period 8000 / gcd(8000, 350, 440) = 800
    g.frame(12345)  # far into the stream, across many periods
    fast = array("h", g.frame(3000))
    exact = g._compute(12345, 3000)
    assert max(abs(a - b) for a, b in zip(fast, exact, strict=True)) <= 1
