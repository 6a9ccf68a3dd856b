"""Mixer: bit-exact with the int32-accumulate-then-clamp reference, mix-minus heard on the
audio, prompt injection on one leg only, and bad input refused without touching buffers."""

from __future__ import annotations

import array
import math
import os
import random

import mix_reference as ref
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from softphone.native import ffi, lib
from softphone.native.mixer import MAX_GAIN, MAX_LEGS, UNITY, Mixer, MixerError

EXAMPLES = int(os.environ.get("SOFTPHONE_HYPOTHESIS_EXAMPLES", "300"))

gain = st.one_of(st.just(UNITY), st.integers(0, MAX_GAIN), st.sampled_from([0, 1, MAX_GAIN]))


@st.composite
def conferences(draw: st.DrawFn) -> tuple[int, int, list[list[int]], list[int],
                                          list[list[int] | None]]:
    """Sizes, gains and inject flags come from hypothesis; the samples of big conferences
    from a seeded generator (hypothesis caps the bytes one example may draw)."""
    ns = draw(st.sampled_from([1, 7, 15, 16, 17, 33, 160, 320, 960]))
    n = draw(st.one_of(st.integers(0, 6), st.integers(7, MAX_LEGS)))
    max_legs = draw(st.integers(max(n, 1), MAX_LEGS))
    rng = random.Random(draw(st.integers(0, 2**32)))
    loud = draw(st.booleans())  # all near full scale: the clamp is exercised every sample
    pool = [32767, -32768, 30000, -30000] if loud else [32767, -32768, 0, 1, -1]

    def frame() -> list[int]:
        return [rng.choice(pool) if rng.random() < (0.9 if loud else 0.1)
                else rng.randint(-32768, 32767) for _ in range(ns)]

    inputs = [frame() for _ in range(n)]
    unity = draw(st.booleans())
    gains = [UNITY] * n if unity else [draw(gain) for _ in range(n)]
    injects = [frame() if draw(st.booleans()) else None for _ in range(n)]
    return ns, max_legs, inputs, gains, injects


def load(m: Mixer, inputs: list[list[int]], gains: list[int],
         injects: list[list[int] | None]) -> None:
    for i, (x, g, inj) in enumerate(zip(inputs, gains, injects, strict=True)):
        m.set_input(i, array.array("h", x).tobytes())
        m.set_gain(i, g)
        m.set_inject(i, None if inj is None else array.array("h", inj).tobytes())


@settings(max_examples=max(EXAMPLES // 2, 10), deadline=None)
@given(conf=conferences())
def test_random_conferences_match_reference(
        conf: tuple[int, int, list[list[int]], list[int], list[list[int] | None]]) -> None:
    ns, max_legs, inputs, gains, injects = conf
    m = Mixer(ns, max_legs)
    load(m, inputs, gains, injects)
    m.mix(len(inputs))
    outputs, record = ref.mix(inputs, gains, injects)
    assert m.record.tolist() == (record if inputs else [0] * ns)
    for i, expected in enumerate(outputs):
        assert m.output(i).tolist() == expected, f"leg {i}"


def test_full_conference_of_64_legs_at_48k() -> None:
    """The limit case, deterministic: 64 legs x 960 samples, mixed gains, two prompts."""
    rng = random.Random(64)
    ns = 960
    inputs = [[rng.randint(-32768, 32767) for _ in range(ns)] for _ in range(MAX_LEGS)]
    gains = [rng.choice([UNITY, 0, MAX_GAIN, rng.randint(0, MAX_GAIN)]) for _ in range(MAX_LEGS)]
    injects: list[list[int] | None] = [None] * MAX_LEGS
    injects[0] = [rng.randint(-32768, 32767) for _ in range(ns)]
    injects[63] = [32767] * ns
    m = Mixer(ns)
    load(m, inputs, gains, injects)
    m.mix(MAX_LEGS)
    outputs, record = ref.mix(inputs, gains, injects)
    assert m.record.tolist() == record
    assert [m.output(i).tolist() for i in range(MAX_LEGS)] == outputs


@pytest.mark.parametrize("n", [1, 2, 31, 32])
def test_quiet_and_loud_blocks_in_one_frame(n: int) -> None:
    """Speech-level blocks (every total fits int16: the kernel's saturating-subtract path)
    next to blocks whose totals overflow int16 (the int32 path), in one frame."""
    rng = random.Random(n)
    ns = 960
    inputs = []
    for _ in range(n):
        frame = []
        for block in range(ns // 16):
            scale = 300 if block % 3 else 32767  # two quiet blocks, then a loud one
            frame += [rng.randint(-scale, scale) for _ in range(16)]
        inputs.append(frame)
    for gains in ([UNITY] * n, [rng.randint(0, MAX_GAIN) for _ in range(n)]):
        injects: list[list[int] | None] = [None] * n
        injects[-1] = [rng.randint(-2000, 2000) for _ in range(ns)]
        m = Mixer(ns, 32)
        load(m, inputs, gains, injects)
        m.mix(n)
        outputs, record = ref.mix(inputs, gains, injects)
        assert m.record.tolist() == record
        assert [m.output(i).tolist() for i in range(n)] == outputs


@settings(max_examples=max(EXAMPLES // 6, 10), deadline=None)
@given(conf=conferences())
def test_record_only_and_outputs_only_match_the_full_mix(
        conf: tuple[int, int, list[list[int]], list[int], list[list[int] | None]]) -> None:
    ns, max_legs, inputs, gains, injects = conf
    full = Mixer(ns, max_legs)
    part = Mixer(ns, max_legs)
    load(full, inputs, gains, injects)
    load(part, inputs, gains, injects)
    full.mix(len(inputs))
    part.mix(len(inputs), outputs=False)
    assert part.record.tolist() == full.record.tolist()
    part.mix(len(inputs), record=False)
    for i in range(len(inputs)):
        assert part.output(i).tolist() == full.output(i).tolist()


def tone(freq: float, ns: int, rate: int, amp: float = 8000.0) -> bytes:
    return array.array("h", [round(amp * math.sin(2 * math.pi * freq * k / rate))
                             for k in range(ns)]).tobytes()


def power(x: memoryview | list[int], freq: float, rate: int) -> float:
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for v in x:
        s1, s2 = v + coeff * s1 - s2, s1
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / len(x) ** 2


def test_mix_minus_heard_on_the_audio() -> None:
    """Three legs talk on different tones: each hears the other two and not itself;
    the recorder hears all three; a prompt on leg 1 is heard by leg 1 only."""
    rate, ns = 16000, 320
    freqs = [500.0, 1000.0, 2000.0]
    prompt = 3000.0
    m = Mixer(ns, 8)
    for i, f in enumerate(freqs):
        m.set_input(i, tone(f, ns, rate))
    m.set_inject(1, tone(prompt, ns, rate))
    m.mix(3)
    heard = 8000.0 ** 2 / 4 * 0.5  # a tone's Goertzel power is amp^2/4; half as the bar
    for i in range(3):
        for j, f in enumerate(freqs):
            p = power(m.output(i), f, rate)
            assert (p > heard) if j != i else (p < heard * 1e-6), (i, j, p)
        assert (power(m.output(i), prompt, rate) > heard) == (i == 1)
    for f in freqs:
        assert power(m.record, f, rate) > heard
    assert power(m.record, prompt, rate) < heard * 1e-6


def test_saturation_and_gains() -> None:
    m = Mixer(4, 4)
    for i in range(4):
        m.set_input(i, array.array("h", [32767, -32768, 20000, 3]).tobytes())
    m.mix(4)
    assert m.record.tolist() == [32767, -32768, 32767, 12]
    assert m.output(0).tolist() == [32767, -32768, 32767, 9]
    m.set_gain(0, 0)          # muted: contributes nothing, still hears the others
    m.set_gain(1, UNITY // 2)  # -6 dB, rounded half up: 3 * 0.5 = 1.5 -> 2
    m.set_gain(2, MAX_GAIN)
    m.mix(4)
    assert m.record.tolist()[3] == 0 + 2 + 12 + 3
    assert m.output(0).tolist()[3] == 2 + 12 + 3
    assert m.gain(2) == MAX_GAIN


def test_buffers_are_long_lived() -> None:
    """The views and pointers a leg holds stay the same memory across ticks."""
    m = Mixer(160, 4)
    view = m.input(2)
    ptr = m.input_ptr(2)
    view[:] = array.array("h", [5] * 160)
    m.mix(3)
    assert m.output(0)[0] == 5 and m.output(2)[0] == 0
    assert m.input(2) is view and ffi.cast("intptr_t", m.input_ptr(2)) == ffi.cast("intptr_t", ptr)
    ptr[0] = 7
    m.mix(3)
    assert m.record[0] == 7 and m.record[1] == 5
    m.silence(2)
    m.mix(3)
    assert m.record.tolist() == [0] * 160
    with pytest.raises(TypeError):
        m.output(0)[0] = 1  # read-only: the outputs belong to the mixer


def test_any_buffer_shape_sets_a_frame() -> None:
    frame = array.array("h", range(-80, 80))
    m = Mixer(160, 4)
    m.set_input(0, frame.tobytes())
    m.set_input(1, bytearray(frame.tobytes()))
    m.set_input(2, memoryview(frame))               # format "h", 160 items
    m.set_inject(3, memoryview(frame.tobytes()))
    assert [m.input(i).tolist() for i in range(3)] == [frame.tolist()] * 3
    assert m.inject(3).tolist() == frame.tolist()
    with pytest.raises(MixerError, match="640 bytes"):
        m.set_input(0, memoryview(array.array("h", range(320))))  # 320 items = 640 bytes


def test_bad_input_raises_mixer_error() -> None:
    with pytest.raises(MixerError, match="max_legs"):
        Mixer(160, MAX_LEGS + 1)
    with pytest.raises(MixerError, match="frame_samples"):
        Mixer(0)
    m = Mixer(160, 4)
    with pytest.raises(MixerError, match="active_legs"):
        m.mix(5)
    with pytest.raises(MixerError, match="active_legs"):
        m.mix(-1)
    with pytest.raises(MixerError, match="gain"):
        m.set_gain(0, -1)
    with pytest.raises(ValueError):  # MixerError is a ValueError
        m.set_gain(0, MAX_GAIN + 1)
    with pytest.raises(MixerError, match="leg"):
        m.input(4)
    with pytest.raises(MixerError, match="319 bytes"):
        m.set_input(0, bytes(319))      # truncated payload
    with pytest.raises(MixerError, match="322 bytes"):
        m.set_input(0, bytes(322))      # oversize payload
    with pytest.raises(MixerError, match="bytes-like"):
        m.set_inject(0, "prompt")  # type: ignore[arg-type]
    assert m.gain(0) == UNITY


def test_c_side_refuses_without_writing() -> None:
    """Defence in depth: sp_mix itself checks N, sizes and gains and writes nothing."""
    ns = 16
    inp = ffi.new("int16_t[]", [1000] * (MAX_LEGS + 1) * ns)
    out = ffi.new("int16_t[]", [123] * (MAX_LEGS + 1) * ns)
    rec = ffi.new("int16_t[]", [123] * ns)
    gains = ffi.new("int32_t[]", [UNITY] * (MAX_LEGS + 1))
    flags = lib.SP_MIX_OUTPUTS | lib.SP_MIX_RECORD
    assert lib.sp_mix(inp, out, rec, gains, ffi.NULL, ffi.NULL, MAX_LEGS + 1, ns, flags) == lib.SP_MIX_EBADARG
    assert lib.sp_mix(inp, out, rec, gains, ffi.NULL, ffi.NULL, -1, ns, flags) == lib.SP_MIX_EBADARG
    assert lib.sp_mix(inp, out, rec, gains, ffi.NULL, ffi.NULL, 2, 0, flags) == lib.SP_MIX_EBADARG
    assert lib.sp_mix(inp, out, rec, gains, ffi.NULL, ffi.NULL, 2, lib.SP_MIX_MAX_SAMPLES + 1, flags) == lib.SP_MIX_EBADARG
    assert lib.sp_mix(inp, ffi.NULL, rec, gains, ffi.NULL, ffi.NULL, 2, ns, flags) == lib.SP_MIX_EBADARG
    gains[1] = -5
    assert lib.sp_mix(inp, out, rec, gains, ffi.NULL, ffi.NULL, 2, ns, flags) == lib.SP_MIX_EGAIN
    gains[1] = MAX_GAIN + 1
    assert lib.sp_mix(inp, out, rec, gains, ffi.NULL, ffi.NULL, 2, ns, flags) == lib.SP_MIX_EGAIN
    on = ffi.new("uint8_t[]", [1] * 2)
    gains[1] = UNITY
    assert lib.sp_mix(inp, out, rec, gains, ffi.NULL, on, 2, ns, flags) == lib.SP_MIX_EBADARG
    assert list(out) == [123] * len(out) and list(rec) == [123] * ns
    assert lib.sp_mix(inp, out, rec, gains, ffi.NULL, ffi.NULL, 2, ns, flags) == 0
    assert list(rec) == [2000] * ns and list(out)[:2 * ns] == [1000] * 2 * ns
