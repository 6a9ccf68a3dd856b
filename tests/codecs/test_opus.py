"""Opus over the libopus bundled with PyAV: the tone survives, PLC and FEC fill losses, bad input is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from softphone.codecs.opus import (
    OpusCodecError,
    OpusDecoder,
    OpusEncoder,
    libopus_path,
    libopus_version,
    load_error,
    valid_frame_samples,
)


def frames(
    audio: Any, rate: int, count: int, freq: float = 1000.0, channels: int = 1
) -> list[bytes]:
    fs = rate // 50
    out = []
    for i in range(count):
        mono = np.frombuffer(audio.tone(freq, rate, fs, start=i * fs), dtype="<i2")
        out.append(np.repeat(mono, channels).astype("<i2").tobytes())
    return out


def diff_rms(a: bytes, b: bytes) -> float:
    x = np.frombuffer(a, dtype="<i2").astype(np.float64)
    y = np.frombuffer(b, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean((x - y) ** 2)))


def test_loads_the_libopus_bundled_with_pyav() -> None:
    """From the package install alone: the library in PyAV's wheel, not the system's."""
    assert libopus_version().startswith("libopus 1.")
    assert load_error() == ""
    assert "av.libs" in libopus_path() or "/av/.dylibs" in libopus_path(), libopus_path()


def test_an_opus_that_cannot_load_says_why_and_is_not_runnable() -> None:
    """The library is loaded once at import: a fresh interpreter with a broken one."""
    code = ("from softphone.codecs import opus, frame, registry\n"
            "print(repr(opus.load_error()))\n"
            "print(repr(frame.runnable(registry.codec_by_name('opus'))))\n"
            "print(repr(frame.runnable(registry.codec_by_name('PCMA'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "SOFTPHONE_LIBOPUS": "/dev/null"})
    assert out.returncode == 0, out.stderr
    load, opus_why, pcma_why = out.stdout.splitlines()
    assert "/dev/null" in load
    assert "Opus is not available" in opus_why and "/dev/null" in opus_why
    assert pcma_why == "''"


@pytest.mark.parametrize("rate", [48000, 16000, 8000])
def test_1khz_tone_survives_encode_decode(audio: Any, rate: int) -> None:
    enc, dec = OpusEncoder(rate), OpusDecoder(rate)
    packets = [enc.encode(f) for f in frames(audio, rate, 40)]
    assert all(0 < len(p) < 400 for p in packets)
    pcm = b"".join(dec.decode(p) for p in packets)
    assert len(pcm) == 40 * (rate // 50) * 2
    steady = pcm[10 * (rate // 50) * 2 :]  # past the encoder's look-ahead and ramp-up
    assert audio.tone_ratio(steady, rate, 1000) > 0.95
    assert audio.tone_ratio(steady, rate, 1300) < 0.01
    assert 4000 < audio.rms(steady) < 7000  # the 8000-peak sine has rms 5657


def test_stereo_and_other_frame_durations(audio: Any) -> None:
    enc, dec = OpusEncoder(48000, 2), OpusDecoder(48000, 2)
    out = b"".join(dec.decode(enc.encode(f)) for f in frames(audio, 48000, 20, channels=2))
    left = np.frombuffer(out, dtype="<i2")[0::2].astype("<i2").tobytes()
    assert audio.tone_ratio(left[len(left) // 2 :], 48000, 1000) > 0.95
    enc10 = OpusEncoder(48000)
    assert enc10.frame_samples(10) == 480 and enc10.frame_samples(2.5) == 120
    packet = enc10.encode(bytes(480 * 2))
    assert len(OpusDecoder(48000).decode(packet)) == 480 * 2
    assert valid_frame_samples(8000) == (20, 40, 80, 160, 320, 480)


def test_plc_continues_then_fades(audio: Any) -> None:
    enc, dec = OpusEncoder(48000), OpusDecoder(48000)
    for f in frames(audio, 48000, 15):
        dec.decode(enc.encode(f))
    concealed = [dec.decode(None) for _ in range(6)]
    assert all(len(c) == 1920 for c in concealed)
    assert audio.rms(concealed[0]) > 2000  # the tone goes on through the first lost frame
    assert audio.tone_ratio(concealed[0], 48000, 1000) > 0.5
    assert audio.rms(concealed[-1]) < 0.1 * audio.rms(concealed[0])  # then fades out
    assert len(dec.decode(b"")) == 1920  # an empty payload is a loss too
    assert len(dec.decode(None, frame_samples=480)) == 960


def test_inband_fec_recovers_a_lost_frame_better_than_plc(audio: Any) -> None:
    enc = OpusEncoder(48000, fec=True, expected_loss_percent=20)
    assert enc.get("inband_fec") == 1
    tone = frames(audio, 48000, 30)
    packets = [enc.encode(f) for f in tone]
    reference = OpusDecoder(48000)
    decoded = [reference.decode(p) for p in packets]
    with_fec, with_plc = OpusDecoder(48000), OpusDecoder(48000)
    for p in packets[:15]:
        with_fec.decode(p)
        with_plc.decode(p)
    recovered = with_fec.decode(packets[16], fec=True)  # frame 15 from packet 16's LBRR data
    concealed = with_plc.decode(None)
    assert audio.tone_ratio(recovered, 48000, 1000) > 0.95
    assert diff_rms(recovered, decoded[15]) < 0.25 * diff_rms(concealed, decoded[15])


def test_encoder_settings_are_applied() -> None:
    enc = OpusEncoder(16000, complexity=3, bitrate=24000, fec=False)
    assert enc.get("complexity") == 3
    assert enc.get("bitrate") == 24000
    assert enc.get("inband_fec") == 0
    with pytest.raises(OpusCodecError, match="no Opus encoder CTL"):
        enc.get("flux_capacitor")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"sample_rate": 44100}, "sample rate"),
        ({"channels": 3}, "channels"),
        ({"application": "music"}, "application"),
        ({"complexity": 11}, "complexity"),
        ({"bitrate": 100}, "bitrate"),
        ({"expected_loss_percent": 101}, "expected loss"),
    ],
)
def test_encoder_parameter_errors(kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(OpusCodecError, match=reason):
        OpusEncoder(**kwargs)


@pytest.mark.parametrize("size", [0, 1, 100, 1919, 1921, 1920 * 4])
def test_wrong_frame_sizes_are_refused(size: int) -> None:
    with pytest.raises(OpusCodecError, match="not an Opus frame at 48000 Hz x 1 ch"):
        OpusEncoder(48000).encode(bytes(size))
    with pytest.raises(OpusCodecError, match="not an Opus frame duration"):
        OpusEncoder(48000).frame_samples(15)


def test_decoder_errors() -> None:
    dec = OpusDecoder(48000)
    with pytest.raises(OpusCodecError, match="corrupted packet"):
        dec.decode(b"\xff\xff\xff")
    with pytest.raises(OpusCodecError, match="exceeds"):
        dec.decode(bytes(5000))
    with pytest.raises(OpusCodecError, match="multiple of 2.5 ms"):
        dec.decode(None, frame_samples=100)
    with pytest.raises(OpusCodecError, match="bytes or None"):
        dec.decode("abc")  # type: ignore[arg-type]
    with pytest.raises(OpusCodecError, match="channels"):
        OpusDecoder(48000, 0)
    assert issubclass(OpusCodecError, ValueError)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=400))
def test_any_payload_decodes_or_raises_opus_codec_error(data: bytes) -> None:
    dec = OpusDecoder(16000)
    try:
        pcm = dec.decode(data)
    except OpusCodecError:
        return
    assert len(pcm) % 2 == 0 and len(pcm) <= 16000 * 120 // 1000 * 2


def test_states_are_freed_with_their_objects() -> None:
    import gc
    import weakref

    enc = OpusEncoder()
    ref = weakref.ref(enc)
    finalizer = enc._finalizer
    del enc
    gc.collect()
    assert ref() is None and not finalizer.alive
