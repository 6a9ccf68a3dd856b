"""G.711 A-law and mu-law (ITU-T G.711) through the native tables in native/src/g711.c.

PCM is 16-bit signed, native byte order (little endian on every platform we ship), as
RTP payload handlers and audioop use it. Output is bit-exact with CPython's ``audioop``
(``lin2alaw``/``alaw2lin``/``lin2ulaw``/``ulaw2lin`` at width 2) for all 65,536 samples and
all 256 codes; tests/native checks that, and against a pure-Python reference of the
standard where audioop is gone (Python >= 3.13).

Why our own and not audioop: audioop is removed in Python 3.13, and its encoder searches
the segment table per sample (about 9 ns/sample on real speech); a 64 Ki-entry table
lookup is one load per sample with no branch to mispredict.

API:

* ``alaw_encode(pcm) -> bytes``, ``alaw_decode(data) -> bytes``, ``ulaw_encode``,
  ``ulaw_decode``: convenience forms that allocate the result.
* ``alaw_encode_into(src, dst) -> int`` (and the three others): the hot path. ``src`` and
  ``dst`` are bytes-like objects or long-lived cffi arrays (``ffi.new("int16_t[]", n)``,
  ``ffi.new("uint8_t[]", n)``); making the pointer once per leg saves more than the
  conversion costs. Returns the number of samples converted (all of ``src``).

Bad input (odd PCM byte count, a destination too small, a non-buffer) raises G711Error.
"""

from __future__ import annotations

from typing import Any

from softphone.native import ffi, lib

__all__ = [
    "G711Error",
    "alaw_decode",
    "alaw_decode_into",
    "alaw_encode",
    "alaw_encode_into",
    "ulaw_decode",
    "ulaw_decode_into",
    "ulaw_encode",
    "ulaw_encode_into",
]

Buffer = bytes | bytearray | memoryview
_PCM = "int16_t[]"
_CODES = "uint8_t[]"


class G711Error(ValueError):
    """A G.711 conversion was given something it cannot convert."""


def _nbytes(buf: Any) -> int:
    if isinstance(buf, ffi.CData):
        return int(ffi.sizeof(buf))
    if isinstance(buf, memoryview):
        return buf.nbytes
    if isinstance(buf, bytes | bytearray):
        return len(buf)
    raise G711Error(f"expected a bytes-like object or a cffi array, not {type(buf).__name__}")


def _ptr(buf: Any, ctype: str, writable: bool) -> Any:
    if isinstance(buf, ffi.CData):
        return buf
    try:
        return ffi.from_buffer(ctype, buf, require_writable=writable)
    except (TypeError, ValueError, BufferError) as exc:
        raise G711Error(f"unusable buffer: {exc}") from None


def _encode_into(fn: Any, name: str, src: Any, dst: Any) -> int:
    nb = _nbytes(src)
    if nb & 1:
        raise G711Error(f"{name}: PCM has an odd byte count ({nb})")
    n = nb >> 1
    if _nbytes(dst) < n:
        raise G711Error(f"{name}: destination holds {_nbytes(dst)} bytes, needs {n}")
    if fn(_ptr(src, _PCM, False), _ptr(dst, _CODES, True), n) != 0:
        raise G711Error(f"{name}: the native encoder refused its arguments")
    return n


def _encode(fn: Any, name: str, pcm: Buffer) -> bytes:
    nb = _nbytes(pcm)
    if nb & 1:
        raise G711Error(f"{name}: PCM has an odd byte count ({nb})")
    out = bytearray(nb >> 1)
    if fn(_ptr(pcm, _PCM, False), ffi.from_buffer(_CODES, out), nb >> 1) != 0:
        raise G711Error(f"{name}: the native encoder refused its arguments")
    return bytes(out)


def _decode_into(fn: Any, name: str, src: Any, dst: Any) -> int:
    n = _nbytes(src)
    if _nbytes(dst) < 2 * n:
        raise G711Error(f"{name}: destination holds {_nbytes(dst)} bytes, needs {2 * n}")
    if fn(_ptr(src, _CODES, False), _ptr(dst, _PCM, True), n) != 0:
        raise G711Error(f"{name}: the native decoder refused its arguments")
    return n


def _decode(fn: Any, name: str, data: Buffer) -> bytes:
    n = _nbytes(data)
    out = bytearray(2 * n)
    if fn(_ptr(data, _CODES, False), ffi.from_buffer(_PCM, out), n) != 0:
        raise G711Error(f"{name}: the native decoder refused its arguments")
    return bytes(out)


def alaw_encode(pcm: Buffer) -> bytes:
    """16-bit PCM -> A-law, one byte per sample."""
    return _encode(lib.sp_alaw_encode, "alaw_encode", pcm)


def ulaw_encode(pcm: Buffer) -> bytes:
    """16-bit PCM -> mu-law, one byte per sample."""
    return _encode(lib.sp_ulaw_encode, "ulaw_encode", pcm)


def alaw_decode(data: Buffer) -> bytes:
    """A-law bytes -> 16-bit PCM."""
    return _decode(lib.sp_alaw_decode, "alaw_decode", data)


def ulaw_decode(data: Buffer) -> bytes:
    """mu-law bytes -> 16-bit PCM."""
    return _decode(lib.sp_ulaw_decode, "ulaw_decode", data)


def alaw_encode_into(src: Any, dst: Any) -> int:
    """Encode PCM ``src`` into ``dst`` (>= half its bytes); returns the sample count."""
    return _encode_into(lib.sp_alaw_encode, "alaw_encode_into", src, dst)


def ulaw_encode_into(src: Any, dst: Any) -> int:
    """Encode PCM ``src`` into ``dst`` (>= half its bytes); returns the sample count."""
    return _encode_into(lib.sp_ulaw_encode, "ulaw_encode_into", src, dst)


def alaw_decode_into(src: Any, dst: Any) -> int:
    """Decode A-law ``src`` into PCM ``dst`` (>= twice its bytes); returns the sample count."""
    return _decode_into(lib.sp_alaw_decode, "alaw_decode_into", src, dst)


def ulaw_decode_into(src: Any, dst: Any) -> int:
    """Decode mu-law ``src`` into PCM ``dst`` (>= twice its bytes); returns the sample count."""
    return _decode_into(lib.sp_ulaw_decode, "ulaw_decode_into", src, dst)
