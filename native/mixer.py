"""Conference mixer: N-way saturating mix with mix-minus, prompt injection and a recorder mix.

One ``Mixer`` per conference (or per two-party call that records or plays prompts). It owns
every buffer for its lifetime, as contiguous int16 blocks allocated once, so a 20-ms tick is
one crossing into C (native/src/mixer.c) with no pointer made per call:

* ``mixer.input(leg)``: writable ``memoryview`` (format ``h``, ``frame_samples`` long) that
  the leg's decoder writes into, e.g. ``alaw_decode_into(payload, mixer.input(leg))``;
  ``mixer.set_input(leg, pcm)`` copies a whole frame of bytes instead;
  ``mixer.input_ptr(leg)`` is the same memory as a cffi ``int16_t[]`` array for the
  ``*_into`` functions of softphone.native.g711 / resampler (no copy, no pointer per call).
* ``mixer.set_gain(leg, q15)``: Q15 gain, 32768 = unity, 0 = muted, at most 131072 (x4).
* ``mixer.set_inject(leg, pcm)`` / ``mixer.inject(leg)`` + ``mixer.enable_inject(leg)``:
  a prompt added to this leg's output only (the others and the recorder don't hear it);
  ``mixer.set_inject(leg, None)`` stops it.
* ``mixer.mix(active_legs)``: legs ``0 .. active_legs-1`` take part. Afterwards
  ``mixer.output(leg)`` holds clamp(sum of the other legs' weighted input + inject) and
  ``mixer.record`` holds clamp(sum of all weighted inputs). Both are read-only views of the
  mixer's buffers, valid until the next ``mix()``.

Arithmetic (bit-exact with tests/native/mix_reference.py): ``w = (gain * x + 16384) >> 15``
per sample, int32 sums, clamp to int16 at the end; mix-minus is the total minus the leg's
own ``w``, so no leg hears itself. Why our own: no library mixes N legs with mix-minus in one
pass, and numpy's per-call overhead alone costs more than this whole 32-leg mix.

Bad input (leg index, frame size, a negative or too large gain, N above ``max_legs``, a
frame of the wrong length) raises MixerError, a ValueError.
"""

from __future__ import annotations

from typing import Any

from softphone.native import ffi, lib

__all__ = ["MAX_GAIN", "MAX_LEGS", "MAX_SAMPLES", "UNITY", "Mixer", "MixerError"]

MAX_LEGS: int = int(lib.SP_MIX_MAX_LEGS)
UNITY: int = int(lib.SP_MIX_UNITY)
MAX_GAIN: int = int(lib.SP_MIX_MAX_GAIN)
MAX_SAMPLES: int = int(lib.SP_MIX_MAX_SAMPLES)
_OUTPUTS: int = int(lib.SP_MIX_OUTPUTS)
_RECORD: int = int(lib.SP_MIX_RECORD)
_sp_mix = lib.sp_mix


class MixerError(ValueError):
    """A mixer call was given a leg, gain, size or frame it cannot take."""


def _views(block: Any, legs: int, ns: int) -> list[memoryview]:
    whole = memoryview(ffi.buffer(block)).cast("h")
    return [whole[i * ns:(i + 1) * ns] for i in range(legs)]


class Mixer:
    """Mix-minus conference of up to ``max_legs`` legs of ``frame_samples`` int16 samples."""

    def __init__(self, frame_samples: int, max_legs: int = MAX_LEGS) -> None:
        for name, value, hi in (("frame_samples", frame_samples, MAX_SAMPLES),
                                ("max_legs", max_legs, MAX_LEGS)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
                raise MixerError(f"{name} must be an int in [1, {hi}], got {value!r}")
        self.frame_samples = frame_samples
        self.max_legs = max_legs
        self.frame_bytes = 2 * frame_samples
        total = max_legs * frame_samples
        self._in: Any = ffi.new("int16_t[]", total)
        self._out: Any = ffi.new("int16_t[]", total)
        self._inject: Any = ffi.new("int16_t[]", total)
        self._record: Any = ffi.new("int16_t[]", frame_samples)
        self._gains: Any = ffi.new("int32_t[]", [UNITY] * max_legs)
        self._inject_on: Any = ffi.new("uint8_t[]", max_legs)
        self._in_views = _views(self._in, max_legs, frame_samples)
        self._out_views = [v.toreadonly() for v in _views(self._out, max_legs, frame_samples)]
        self._inject_views = _views(self._inject, max_legs, frame_samples)
        self._record_view = memoryview(ffi.buffer(self._record)).cast("h").toreadonly()
        ns = frame_samples
        self._in_arrays = [self._in[i * ns:(i + 1) * ns] for i in range(max_legs)]
        self._in_bytes = [v.cast("B") for v in self._in_views]
        self._inject_bytes = [v.cast("B") for v in self._inject_views]
        self._out_arrays = [self._out[i * ns:(i + 1) * ns] for i in range(max_legs)]
        self._flags_all = int(lib.SP_MIX_OUTPUTS | lib.SP_MIX_RECORD)

    def _leg(self, leg: int) -> int:
        if isinstance(leg, bool) or not isinstance(leg, int) or not 0 <= leg < self.max_legs:
            raise MixerError(f"leg must be an int in [0, {self.max_legs}), got {leg!r}")
        return leg

    def _frame(self, pcm: bytes | bytearray | memoryview, what: str) -> memoryview:
        try:
            view = memoryview(pcm).cast("B")
        except TypeError as exc:
            raise MixerError(f"{what} must be bytes-like: {exc}") from None
        if view.nbytes != self.frame_bytes:
            raise MixerError(f"{what} has {view.nbytes} bytes, a frame is {self.frame_bytes}")
        return view.cast("h")

    # --- per-leg buffers -------------------------------------------------------------
    def input(self, leg: int) -> memoryview:
        """Writable int16 view of the leg's input frame (decode straight into it)."""
        return self._in_views[self._leg(leg)]

    def input_ptr(self, leg: int) -> Any:
        """The leg's input frame as a cffi ``int16_t[frame_samples]`` array (decode or
        resample into it with no copy). Valid while the mixer lives."""
        return self._in_arrays[self._leg(leg)]

    def set_input(self, leg: int, pcm: bytes | bytearray | memoryview) -> None:
        """Copy one frame of 16-bit PCM into the leg's input."""
        if type(leg) is int and 0 <= leg < self.max_legs and len(pcm) == self.frame_bytes:
            try:  # the per-tick path: one slice copy into a byte view made at creation
                self._in_bytes[leg][:] = pcm
                return
            except (TypeError, ValueError):
                pass  # another buffer shape: checked below
        self._in_views[self._leg(leg)][:] = self._frame(pcm, "input frame")

    def silence(self, leg: int) -> None:
        """Zero the leg's input (a leg with no frame this tick)."""
        ffi.memmove(self.input_ptr(leg), bytes(self.frame_bytes), self.frame_bytes)

    def output(self, leg: int) -> memoryview:
        """Read-only int16 view of what the leg hears after the last mix()."""
        return self._out_views[self._leg(leg)]

    def output_ptr(self, leg: int) -> Any:
        """The leg's output frame as a cffi ``int16_t[frame_samples]`` array (feed an
        encoder without a copy). Valid while the mixer lives."""
        return self._out_arrays[self._leg(leg)]

    @property
    def record(self) -> memoryview:
        """Read-only int16 view of the full mix (all legs, no injects) after the last mix()."""
        return self._record_view

    # --- gains and prompts ---------------------------------------------------------------
    def set_gain(self, leg: int, gain_q15: int) -> None:
        """Q15 gain of the leg's contribution: 32768 = unity, 0 = muted, <= MAX_GAIN."""
        if isinstance(gain_q15, bool) or not isinstance(gain_q15, int):
            raise MixerError(f"gain must be an int (Q15), got {gain_q15!r}")
        if not 0 <= gain_q15 <= MAX_GAIN:
            raise MixerError(f"gain must be in [0, {MAX_GAIN}] (Q15), got {gain_q15}")
        self._gains[self._leg(leg)] = gain_q15

    def gain(self, leg: int) -> int:
        return int(self._gains[self._leg(leg)])

    def inject(self, leg: int) -> memoryview:
        """Writable int16 view of the leg's prompt frame (see enable_inject)."""
        return self._inject_views[self._leg(leg)]

    def enable_inject(self, leg: int, on: bool = True) -> None:
        self._inject_on[self._leg(leg)] = 1 if on else 0

    def set_inject(self, leg: int, pcm: bytes | bytearray | memoryview | None) -> None:
        """Add ``pcm`` (one frame) to this leg's output only; None stops injecting."""
        leg = self._leg(leg)
        if pcm is None:
            self._inject_on[leg] = 0
            return
        if type(pcm) is bytes and len(pcm) == self.frame_bytes:
            self._inject_bytes[leg][:] = pcm
        else:
            self._inject_views[leg][:] = self._frame(pcm, "inject frame")
        self._inject_on[leg] = 1

    # --- the tick ------------------------------------------------------------------------
    def mix(self, active_legs: int, *, outputs: bool = True, record: bool = True) -> None:
        """Mix legs 0..active_legs-1 into every output and the recorder mix, in one call."""
        if type(active_legs) is not int or not 0 <= active_legs <= self.max_legs:
            raise MixerError(f"active_legs must be an int in [0, {self.max_legs}], "
                             f"got {active_legs!r}")
        flags = self._flags_all if outputs and record else (
            (_OUTPUTS if outputs else 0) | (_RECORD if record else 0))
        rc = _sp_mix(self._in, self._out, self._record, self._gains, self._inject,
                     self._inject_on, active_legs, self.frame_samples, flags)
        if rc != 0:
            raise MixerError(f"sp_mix refused its arguments (code {rc})")
