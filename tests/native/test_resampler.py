"""Resampler: bit-exact with the reference, >= 60 dB stop band, flat pass band, a tone keeps
its frequency, frame boundaries are invisible, and bad input is refused."""

from __future__ import annotations

import array
import math
import os
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from resample_reference import ReferenceResampler
from softphone.native import ffi, lib
from softphone.native.resampler import RATES, Resampler, ResamplerError

EXAMPLES = int(os.environ.get("SOFTPHONE_HYPOTHESIS_EXAMPLES", "300"))
PAIRS = [(a, b) for a in RATES for b in RATES if a != b]
AMP = 16000.0


def pcm(samples: list[int] | np.ndarray) -> bytes:
    return array.array("h", [int(v) for v in samples]).tobytes()


def samples_of(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.int16).astype(np.float64)


def tone(freq: float, rate: int, seconds: float) -> np.ndarray:
    k = np.arange(int(rate * seconds))
    return np.round(AMP * np.sin(2 * np.pi * freq * k / rate)).astype(np.int16)


def run_frames(rs: Resampler, x: list[int] | np.ndarray, frame: int) -> np.ndarray:
    data = np.asarray(x, dtype=np.int16).tobytes()
    step = 2 * frame
    return samples_of(b"".join(rs.process(data[i:i + step]) for i in range(0, len(data), step)))


def steady_second(in_rate: int, out_rate: int, freq: float) -> np.ndarray:
    """Exactly one second of output after a quarter second of settling, fed in 20-ms frames."""
    rs = Resampler(in_rate, out_rate)
    y = run_frames(rs, tone(freq, in_rate, 1.5), in_rate // 50)
    start = out_rate // 4
    return y[start:start + out_rate]


def level_db(y: np.ndarray, freq: int) -> float:
    """Amplitude at an integer frequency, in dB re AMP (1-s window: bins are 1 Hz, no leakage)."""
    spectrum = np.fft.rfft(y)
    return 20 * math.log10(2 * abs(spectrum[freq]) / len(y) / AMP)


@pytest.mark.parametrize("in_rate,out_rate", [p for p in PAIRS if p[0] > p[1]])
def test_stop_band_aliases_are_60_db_down(in_rate: int, out_rate: int) -> None:
    """Downsampling: a sweep of tones from the new Nyquist up to the old one (every 97 Hz,
    plus the edges) must not alias back above -60 dB re the same tone in the pass band."""
    nyq = out_rate // 2
    ref_rms = float(np.sqrt(np.mean(steady_second(in_rate, out_rate, 1000) ** 2)))
    worst = -200.0
    for freq in [*range(nyq, in_rate // 2, 97), in_rate // 2 - 1]:
        y = steady_second(in_rate, out_rate, freq)
        rms = float(np.sqrt(np.mean(y ** 2)))
        worst = max(worst, 20 * math.log10(max(rms, 1e-9) / ref_rms))
    assert worst <= -60.0, f"alias only {-worst:.1f} dB down"


@pytest.mark.parametrize("in_rate,out_rate", [p for p in PAIRS if p[0] < p[1]])
def test_stop_band_images_are_60_db_down(in_rate: int, out_rate: int) -> None:
    """Upsampling: everything the output holds above the input's Nyquist is imaging."""
    nyq = in_rate // 2
    for freq in [*range(100, int(0.85 * nyq), 300), int(0.85 * nyq)]:
        y = steady_second(in_rate, out_rate, freq)
        power = np.abs(np.fft.rfft(y)) ** 2
        image = float(power[nyq:].sum())
        assert 10 * math.log10(image / float(power[freq])) <= -60.0, freq


@pytest.mark.parametrize("in_rate,out_rate", PAIRS)
def test_pass_band_is_flat(in_rate: int, out_rate: int) -> None:
    edge = int(0.85 * min(in_rate, out_rate) / 2)
    levels = [level_db(steady_second(in_rate, out_rate, f), f)
              for f in (100, 440, 1000, edge // 2, edge)]
    assert max(levels) - min(levels) < 0.1 and all(abs(v) < 0.1 for v in levels), levels


def goertzel(y: np.ndarray, freq: float, rate: int) -> float:
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for v in y:
        s1, s2 = float(v) + coeff * s1 - s2, s1
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / len(y) ** 2


@pytest.mark.parametrize("in_rate,out_rate", PAIRS + [(8000, 8000)])
def test_one_khz_tone_survives(in_rate: int, out_rate: int) -> None:
    y = steady_second(in_rate, out_rate, 1000)[: out_rate // 10]  # 100 ms
    p = goertzel(y, 1000, out_rate)
    assert p > 0.8 * AMP**2 / 4
    for other in (700, 900, 1100, 1500):
        assert goertzel(y, other, out_rate) < p * 1e-4


def test_branches_pass_dc_at_exactly_unity() -> None:
    for a, b in PAIRS:
        rs = Resampler(a, b)
        for p in range(rs.up):
            assert sum(rs.taps[p::rs.up]) == 32768, (a, b, p)
        # DC in, DC out, exactly (after the filter has filled)
        y = run_frames(rs, [10000] * (a // 10), a // 50)
        assert set(y[-(b // 50):].tolist()) == {10000.0}


@st.composite
def streams(draw: st.DrawFn) -> tuple[int, int, list[list[int]]]:
    in_rate, out_rate = draw(st.sampled_from(PAIRS + [(16000, 16000)]))
    rng = random.Random(draw(st.integers(0, 2**32)))
    loud = draw(st.booleans())
    chunks = []
    for length in draw(st.lists(st.sampled_from([0, 1, 2, 5, 6, 7, 160, 320, 961, 1100]),
                                min_size=1, max_size=5)):
        chunks.append([rng.choice([32767, -32768]) if loud and rng.random() < 0.8
                       else rng.randint(-32768, 32767) for _ in range(length)])
    return in_rate, out_rate, chunks


@settings(max_examples=max(EXAMPLES // 5, 10), deadline=None)
@given(stream=streams())
def test_random_streams_match_reference(stream: tuple[int, int, list[list[int]]]) -> None:
    """Any chunking of any signal (full-scale square waves included: the clamp and the
    int32 sums' worst cases) gives the reference's output, and the same output as one call."""
    in_rate, out_rate, chunks = stream
    rs = Resampler(in_rate, out_rate)
    ref = ReferenceResampler(rs.up, rs.down, rs.taps)
    got: list[int] = []
    for chunk in chunks:
        expected = ref.process(chunk)
        assert rs.output_samples(len(chunk)) == len(expected)
        out = samples_of(rs.process(pcm(chunk))).astype(int).tolist()
        assert out == expected
        got += out
    whole = Resampler(in_rate, out_rate)
    assert samples_of(whole.process(pcm(sum(chunks, [])))).astype(int).tolist() == got


def test_worst_case_input_does_not_overflow() -> None:
    """Full scale with the taps' signs (the largest possible sums), per branch."""
    for a, b in PAIRS:
        rs = Resampler(a, b)
        ref = ReferenceResampler(rs.up, rs.down, rs.taps)
        per = len(rs.taps) // rs.up if rs.up > 1 else len(rs.taps)
        branch = rs.taps[0::rs.up][::-1] if rs.up > 1 else rs.taps[::-1]
        x = [32767 if t >= 0 else -32768 for t in branch] * 3 + [0] * per
        x += [-32768 if v > 0 else 32767 if v < 0 else 0 for v in x]
        assert samples_of(rs.process(pcm(x))).astype(int).tolist() == ref.process(x)


def test_into_and_reset() -> None:
    rs = Resampler(8000, 16000)
    x = pcm(tone(1000, 8000, 0.02))
    first = rs.process(x)
    dst = ffi.new("int16_t[]", 320)
    assert rs.process_into(x, dst) == 320
    assert bytes(ffi.buffer(dst)) != first  # history carried over: not a fresh start
    rs.reset()
    buf = bytearray(640)
    assert rs.process_into(memoryview(x), buf) == 320 and bytes(buf) == first
    assert Resampler(16000, 8000).delay == pytest.approx((120 - 1) / 2 / 2)


def test_bad_input_raises_resampler_error() -> None:
    for a, b in ((8000, 44100), (11025, 8000), (0, 8000)):
        with pytest.raises(ResamplerError, match="rates"):
            Resampler(a, b)
    rs = Resampler(48000, 8000)
    with pytest.raises(ResamplerError, match="odd"):
        rs.process(b"\x00\x01\x02")
    with pytest.raises(ResamplerError, match="needs 160"):
        rs.process_into(bytes(1920), bytearray(100))
    with pytest.raises(ResamplerError, match="unusable"):
        rs.process_into(bytes(1920), bytes(320))
    with pytest.raises(ResamplerError, match="needs 160"):  # cffi arrays, too short
        rs.process_into(ffi.new("int16_t[]", 960), ffi.new("int16_t[]", 159))
    with pytest.raises(ResamplerError, match="no length"):
        rs.process_into(ffi.new("int16_t[]", 960) + 0, ffi.new("int16_t[]", 160))
    with pytest.raises(ResamplerError, match="bytes-like"):
        rs.process([1, 2, 3])  # type: ignore[arg-type]
    assert isinstance(ResamplerError("x"), ValueError)


def test_c_side_refuses_without_consuming() -> None:
    assert lib.sp_rs_new(8000, 12000) == ffi.NULL
    raw = ffi.gc(lib.sp_rs_new(16000, 8000), lib.sp_rs_free)
    x = ffi.new("int16_t[]", [1000] * 321)
    out = ffi.new("int16_t[]", 200)
    assert lib.sp_rs_process(raw, x, 321, out, 160) == lib.SP_RS_ESPACE  # needs 161
    assert lib.sp_rs_process(raw, x, -1, out, 200) == lib.SP_RS_EBADARG
    assert lib.sp_rs_process(raw, ffi.NULL, 5, out, 200) == lib.SP_RS_EBADARG
    assert lib.sp_rs_process(raw, x, 321, out, 200) == 161
    fresh = Resampler(16000, 8000)
    assert bytes(ffi.buffer(out, 322)) == fresh.process(bytes(ffi.buffer(x)))
