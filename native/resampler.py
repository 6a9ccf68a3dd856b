"""Sample-rate conversion between 8, 16 and 48 kHz (polyphase FIR in native/src/resample.c).

``Resampler(in_rate, out_rate)`` is one stream's converter: the filter history (and, when
decimating, the output phase) carries across calls, so consecutive 20-ms frames come out as
one continuous signal. ``process(pcm) -> bytes`` converts a frame; ``process_into(src, dst)``
writes into a caller's buffer (or a long-lived cffi int16 array, e.g. a mixer leg's
``input_ptr``) and returns the sample count. Ratios are 1:2,
1:3, 1:6 and their inverses (1:1 copies). The filter passes up to 0.85 of the lower Nyquist
(3.4 kHz for narrowband, 6.8 kHz for wideband) and stops >= 60 dB from the lower Nyquist on;
``delay`` is its group delay in output samples.

Why our own: speexdsp's resampler is float and not bit-reproducible against a reference,
and numpy/scipy are not runtime dependencies; this one is integer (Q15 taps, int32 sums),
checked bit-exact against tests/native/resample_reference.py.

Bad input (unsupported rates, odd byte counts, a destination too small) raises
ResamplerError, a ValueError.
"""

from __future__ import annotations

from typing import Any

from softphone.native import ffi, lib

__all__ = ["RATES", "Resampler", "ResamplerError"]

RATES: tuple[int, ...] = (8000, 16000, 48000)
CData = ffi.CData
_process = lib.sp_rs_process


class ResamplerError(ValueError):
    """A resampler was asked for an unsupported conversion or given a bad buffer."""


def _samples(buf: Any) -> int:
    """int16 samples in ``buf``: a cffi int16 array's length, or bytes / 2."""
    if isinstance(buf, ffi.CData):
        try:
            return len(buf)
        except TypeError:
            raise ResamplerError("a cffi pointer has no length; pass an array "
                                 "(ffi.new or a slice such as p[0:n])") from None
    if isinstance(buf, memoryview):
        nb = buf.nbytes
    elif isinstance(buf, bytes | bytearray):
        nb = len(buf)
    else:
        raise ResamplerError(f"expected a bytes-like object or a cffi array, "
                             f"not {type(buf).__name__}")
    if nb & 1:
        raise ResamplerError(f"PCM has an odd byte count ({nb})")
    return nb >> 1


class Resampler:
    """One stream's in_rate -> out_rate converter (see the module docstring)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if in_rate not in RATES or out_rate not in RATES:
            raise ResamplerError(f"rates must be among {RATES}, got {in_rate} -> {out_rate}")
        ptr = lib.sp_rs_new(in_rate, out_rate)
        if ptr == ffi.NULL:
            raise MemoryError("sp_rs_new failed")
        self._rs: Any = ffi.gc(ptr, lib.sp_rs_free)
        info = ffi.new("int[3]")
        lib.sp_rs_info(self._rs, info, info + 1, info + 2)
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.up = int(info[0])
        self.down = int(info[1])
        n_taps = int(info[2])
        taps = ffi.new("int16_t[]", n_taps)
        lib.sp_rs_taps(self._rs, taps, n_taps)
        self.taps: tuple[int, ...] = tuple(taps)
        self._out: Any = ffi.new("int16_t[]", 1)

    @property
    def delay(self) -> float:
        """Group delay of the filter, in output samples (0 for 1:1)."""
        if self.up == self.down == 1:
            return 0.0
        return (len(self.taps) - 1) / 2 / self.down

    def output_samples(self, n_in: int) -> int:
        """How many samples the next process() of ``n_in`` input samples returns."""
        n = int(lib.sp_rs_output_len(self._rs, n_in))
        if n < 0:
            raise ResamplerError(f"bad input length {n_in}")
        return n

    def _src(self, pcm: Any) -> tuple[Any, int]:
        n = _samples(pcm)
        if isinstance(pcm, ffi.CData):
            return pcm, n
        try:
            return ffi.from_buffer("int16_t[]", pcm), n
        except (TypeError, ValueError, BufferError) as exc:
            raise ResamplerError(f"unusable buffer: {exc}") from None

    def process(self, pcm: bytes | bytearray | memoryview) -> bytes:
        """Convert the next piece of the stream (any length; 20-ms frames in practice)."""
        src, n_in = self._src(pcm)
        need = self.output_samples(n_in)
        if need > len(self._out):
            self._out = ffi.new("int16_t[]", need)
        n = lib.sp_rs_process(self._rs, src, n_in, self._out, len(self._out))
        if n < 0:
            raise ResamplerError(f"sp_rs_process refused its arguments (code {n})")
        return bytes(ffi.buffer(self._out, 2 * n))

    def process_into(self, src: Any, dst: Any) -> int:
        """Convert ``src`` into ``dst`` (bytes-like or cffi int16 array); returns samples."""
        if isinstance(src, CData) and isinstance(dst, CData):
            # hot path: long-lived arrays; the C side checks the room and consumes nothing
            # if it is short
            n = _process(self._rs, src, _samples(src), dst, _samples(dst))
            if n >= 0:
                return int(n)
        ptr, n_in = self._src(src)
        need = self.output_samples(n_in)
        cap = _samples(dst)
        if cap < need:
            raise ResamplerError(f"destination holds {cap} samples, needs {need}")
        if isinstance(dst, ffi.CData):
            out = dst
        else:
            try:
                out = ffi.from_buffer("int16_t[]", dst, require_writable=True)
            except (TypeError, ValueError, BufferError) as exc:
                raise ResamplerError(f"unusable destination: {exc}") from None
        n = lib.sp_rs_process(self._rs, ptr, n_in, out, cap)
        if n < 0:
            raise ResamplerError(f"sp_rs_process refused its arguments (code {n})")
        return int(n)

    def reset(self) -> None:
        """Forget the history (a new stream starts from silence)."""
        lib.sp_rs_reset(self._rs)
