"""G.711: bit-exact with audioop and with the pure-Python reference of the standard."""

from __future__ import annotations

import array
import math
import os
import warnings
from types import ModuleType

import g711_reference as ref
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from softphone.native import ffi, g711, lib

EXAMPLES = int(os.environ.get("SOFTPHONE_HYPOTHESIS_EXAMPLES", "300"))


def _audioop() -> ModuleType | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:  # removed in Python 3.13
            return None
    return audioop


audioop = _audioop()
needs_audioop = pytest.mark.skipif(audioop is None, reason="audioop is not in this Python")

ALL_PCM = array.array("h", range(-32768, 32768)).tobytes()
ALL_CODES = bytes(range(256))
ENCODERS = {"alaw": g711.alaw_encode, "ulaw": g711.ulaw_encode}
DECODERS = {"alaw": g711.alaw_decode, "ulaw": g711.ulaw_decode}


def pcm_bytes(samples: list[int]) -> bytes:
    return array.array("h", samples).tobytes()


def pcm_list(data: bytes) -> list[int]:
    a = array.array("h")
    a.frombytes(data)
    return a.tolist()


@needs_audioop
@pytest.mark.parametrize("law", ["alaw", "ulaw"])
def test_every_sample_and_code_matches_audioop(law: str) -> None:
    assert audioop is not None
    lin2 = audioop.lin2alaw if law == "alaw" else audioop.lin2ulaw
    to_lin = audioop.alaw2lin if law == "alaw" else audioop.ulaw2lin
    assert ENCODERS[law](ALL_PCM) == lin2(ALL_PCM, 2)
    assert DECODERS[law](ALL_CODES) == to_lin(ALL_CODES, 2)


@needs_audioop
@pytest.mark.parametrize("law", ["alaw", "ulaw"])
def test_reference_itself_matches_audioop(law: str) -> None:
    """The pure-Python reference is what stands in for audioop on Python >= 3.13."""
    assert audioop is not None
    lin2 = audioop.lin2alaw if law == "alaw" else audioop.lin2ulaw
    to_lin = audioop.alaw2lin if law == "alaw" else audioop.ulaw2lin
    assert ref.encode(law, list(range(-32768, 32768))) == lin2(ALL_PCM, 2)
    assert pcm_bytes(ref.decode(law, ALL_CODES)) == to_lin(ALL_CODES, 2)


@pytest.mark.parametrize("law", ["alaw", "ulaw"])
def test_every_sample_and_code_matches_reference(law: str) -> None:
    assert ENCODERS[law](ALL_PCM) == ref.encode(law, list(range(-32768, 32768)))
    assert pcm_list(DECODERS[law](ALL_CODES)) == ref.decode(law, ALL_CODES)


def test_known_code_points() -> None:
    # Silence and full scale, from the G.711 tables: A-law 0xD5/0x55 around zero, mu-law
    # 0xFF (positive zero); full scale A-law 0xAA/0x2A, mu-law 0x80/0x00.
    assert g711.alaw_encode(pcm_bytes([0, -1, 32767, -32768])) == bytes([0xD5, 0x55, 0xAA, 0x2A])
    assert g711.ulaw_encode(pcm_bytes([0, 32767, -32768])) == bytes([0xFF, 0x80, 0x00])
    assert pcm_list(g711.alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A]))) == [8, -8, 32256, -32256]
    assert pcm_list(g711.ulaw_decode(bytes([0xFF, 0x7F, 0x80, 0x00]))) == [0, 0, 32124, -32124]
    # bytes take a direct path, other buffers a buffer object: same answers
    for law in ("alaw", "ulaw"):
        assert ENCODERS[law](bytearray(ALL_PCM)) == ENCODERS[law](ALL_PCM)
        assert ENCODERS[law](memoryview(ALL_PCM).cast("h")) == ENCODERS[law](ALL_PCM)
        assert DECODERS[law](bytearray(ALL_CODES)) == DECODERS[law](ALL_CODES)


@pytest.mark.parametrize("law", ["alaw", "ulaw"])
def test_decoded_values_are_fixed_points(law: str) -> None:
    """Re-encoding a reconstruction level gives back the same level (the quantiser is
    idempotent on its own output)."""
    levels = DECODERS[law](ALL_CODES)
    assert DECODERS[law](ENCODERS[law](levels)) == levels


def _goertzel_power(x: list[float], freq: float, rate: int) -> float:
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for v in x:
        s1, s2 = v + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


@pytest.mark.parametrize("law", ["alaw", "ulaw"])
def test_tone_survives_with_g711_snr(law: str) -> None:
    """A -10 dBFS 1 kHz tone through encode+decode: still 1 kHz, and the quantisation noise
    is at G.711's ~35-38 dB signal-to-noise ratio (a broken segment table is not)."""
    rate, n = 8000, 8000
    amp = 32767 * 10 ** (-10 / 20)
    tone = [round(amp * math.sin(2 * math.pi * 1000 * i / rate)) for i in range(n)]
    out = pcm_list(DECODERS[law](ENCODERS[law](pcm_bytes(tone))))
    p1k = _goertzel_power([float(v) for v in out], 1000, rate)
    for other in (500.0, 1500.0, 2000.0, 3000.0):
        assert _goertzel_power([float(v) for v in out], other, rate) < p1k * 1e-3
    noise = sum((a - b) ** 2 for a, b in zip(out, tone, strict=True)) / n
    signal = sum(v * v for v in tone) / n
    assert 10 * math.log10(signal / noise) > 33


frames = st.lists(st.integers(-32768, 32767), min_size=0, max_size=400)


@settings(max_examples=EXAMPLES, deadline=None)
@given(samples=frames, law=st.sampled_from(["alaw", "ulaw"]))
def test_random_frames_match_reference(samples: list[int], law: str) -> None:
    pcm = pcm_bytes(samples)
    codes = ENCODERS[law](pcm)
    assert codes == ref.encode(law, samples)
    assert pcm_list(DECODERS[law](codes)) == ref.decode(law, codes)


@settings(max_examples=EXAMPLES, deadline=None)
@given(samples=frames, law=st.sampled_from(["alaw", "ulaw"]), offset=st.integers(0, 7))
def test_into_variants_with_long_lived_buffers(samples: list[int], law: str, offset: int) -> None:
    """The hot-path forms write exactly n bytes/samples into long-lived cffi arrays and
    into bytearrays/memoryview slices, leaving the rest of the destination alone."""
    enc_into = g711.alaw_encode_into if law == "alaw" else g711.ulaw_encode_into
    dec_into = g711.alaw_decode_into if law == "alaw" else g711.ulaw_decode_into
    n = len(samples)
    pcm = pcm_bytes(samples)
    codes_c = ffi.new("uint8_t[]", n + 8)
    ffi.memmove(codes_c, b"\xee" * (n + 8), n + 8)
    assert enc_into(memoryview(pcm), codes_c) == n
    assert bytes(ffi.buffer(codes_c, n)) == ref.encode(law, samples)
    assert bytes(ffi.buffer(codes_c)[n:]) == b"\xee" * 8
    dst = bytearray(b"\x11" * (2 * n + 2 * offset + 2))
    view = memoryview(dst)[2 * offset:2 * offset + 2 * n]
    assert dec_into(bytes(ffi.buffer(codes_c, n)), view) == n
    assert pcm_list(bytes(view)) == ref.decode(law, bytes(ffi.buffer(codes_c, n)))
    assert dst[:2 * offset] == b"\x11" * (2 * offset) and dst[-2:] == b"\x11\x11"


def test_bad_input_is_a_g711_error() -> None:
    with pytest.raises(g711.G711Error, match="odd byte count"):
        g711.alaw_encode(b"\x00\x01\x02")
    with pytest.raises(g711.G711Error, match="odd byte count"):
        g711.ulaw_encode_into(b"\x00", bytearray(4))
    with pytest.raises(g711.G711Error, match="destination"):
        g711.alaw_encode_into(bytes(320), bytearray(159))
    with pytest.raises(g711.G711Error, match="destination"):
        g711.ulaw_decode_into(bytes(160), ffi.new("int16_t[]", 159))
    with pytest.raises(g711.G711Error, match="destination"):
        g711.alaw_encode_into(ffi.new("int16_t[]", 160), ffi.new("uint8_t[]", 100))
    with pytest.raises(g711.G711Error, match="no length"):
        g711.alaw_encode_into(ffi.new("int16_t[]", 160) + 0, ffi.new("uint8_t[]", 160))
    with pytest.raises(g711.G711Error, match="unusable"):
        g711.alaw_decode_into(bytes(10), bytes(20))  # read-only destination
    with pytest.raises(g711.G711Error, match="bytes-like"):
        g711.alaw_encode("not pcm")  # type: ignore[arg-type]
    assert isinstance(g711.G711Error("x"), ValueError)
    # the C side refuses a negative count or a missing buffer on its own
    pcm, codes = ffi.new("int16_t[]", 4), ffi.new("uint8_t[]", 4)
    assert lib.sp_alaw_encode(pcm, codes, -1) == -1
    assert lib.sp_ulaw_decode(codes, ffi.NULL, 4) == -1
    assert lib.sp_ulaw_encode(ffi.NULL, ffi.NULL, 0) == 0
    assert g711.alaw_encode(b"") == b"" and g711.ulaw_decode(b"") == b""
