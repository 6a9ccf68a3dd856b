"""G.711 A-law and mu-law (ITU-T G.711) through the native code in native/src/g711.c.

PCM is 16-bit signed, native byte order (little endian on every platform we ship), as
RTP payload handlers and audioop use it. Output is bit-exact with CPython's ``audioop``
(``lin2alaw``/``alaw2lin``/``lin2ulaw``/``ulaw2lin`` at width 2) for all 65,536 samples and
all 256 codes; tests/native checks that, and against a pure-Python reference of the
standard where audioop is gone (Python >= 3.13).

Why our own and not audioop: audioop is removed in Python 3.13, and its encoder searches
the segment table per sample (3-9 ns/sample on real speech, depending on the CPU). Ours
encodes 16 samples per AVX2 instruction sequence with no branch (about 0.13 ns/sample),
or one 64 Ki-entry table load per sample on other CPUs; decoding is a 256-entry table.

API:

* ``alaw_encode(pcm) -> bytes``, ``alaw_decode(data) -> bytes``, ``ulaw_encode``,
  ``ulaw_decode``: convenience forms that allocate the result.
* ``alaw_encode_into(src, dst) -> int`` (and the three others): the hot path. ``src`` and
  ``dst`` are bytes-like objects or long-lived cffi arrays (``ffi.new("int16_t[]", n)``,
  ``ffi.new("uint8_t[]", n)``, or slices of them such as ``Mixer.input_ptr(leg)``); making
  the pointer once per leg saves more than the conversion costs. A cffi array converts
  ``len(array)`` items; a bare cffi pointer is refused (it has no length). Returns the
  number of samples converted (all of ``src``).

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
CData = ffi.CData
_NO_LEN = "a cffi pointer has no length; pass an array (ffi.new or a slice such as p[0:n])"
_alaw_enc, _ulaw_enc = lib.sp_alaw_encode, lib.sp_ulaw_encode
_alaw_dec, _ulaw_dec = lib.sp_alaw_decode, lib.sp_ulaw_decode


class G711Error(ValueError):
    """A G.711 conversion was given something it cannot convert."""


def _count(buf: Any, itemsize: int, what: str) -> int:
    """Elements (samples or codes) in ``buf``: a cffi array counts its items (cffi checks
    the item type at the call), a bytes-like object its bytes / itemsize."""
    if isinstance(buf, ffi.CData):
        try:
            return len(buf)
        except TypeError:
            raise G711Error(f"{what}: a cffi pointer has no length; pass an array "
                            "(ffi.new or a slice such as p[0:n])") from None
    if isinstance(buf, memoryview):
        nb = buf.nbytes
    elif isinstance(buf, bytes | bytearray):
        nb = len(buf)
    else:
        raise G711Error(f"{what}: expected a bytes-like object or a cffi array, "
                        f"not {type(buf).__name__}")
    if nb % itemsize:
        raise G711Error(f"{what}: PCM has an odd byte count ({nb})")
    return nb // itemsize


def _ptr(buf: Any, ctype: str, writable: bool, what: str) -> Any:
    if isinstance(buf, ffi.CData):
        return buf
    try:
        return ffi.from_buffer(ctype, buf, require_writable=writable)
    except (TypeError, ValueError, BufferError) as exc:
        raise G711Error(f"{what}: unusable buffer: {exc}") from None


def _encode_into(fn: Any, name: str, src: Any, dst: Any) -> int:
    n = _count(src, 2, name)
    cap = _count(dst, 1, name)
    if cap < n:
        raise G711Error(f"{name}: destination holds {cap} codes, needs {n}")
    if fn(_ptr(src, _PCM, False, name), _ptr(dst, _CODES, True, name), n) != 0:
        raise G711Error(f"{name}: the native encoder refused its arguments")
    return n


def _encode(fn: Any, fn_bytes: Any, name: str, pcm: Buffer) -> bytes:
    n = _count(pcm, 2, name)
    out = bytearray(n)
    # a bytes frame (what RTP code holds) goes in as is: no buffer object per call
    src = pcm if type(pcm) is bytes else _ptr(pcm, _PCM, False, name)
    if (fn_bytes if type(pcm) is bytes else fn)(src, ffi.from_buffer(_CODES, out), n) != 0:
        raise G711Error(f"{name}: the native encoder refused its arguments")
    return bytes(out)


def _decode_into(fn: Any, name: str, src: Any, dst: Any) -> int:
    n = _count(src, 1, name)
    cap = _count(dst, 2, name)
    if cap < n:
        raise G711Error(f"{name}: destination holds {cap} samples, needs {n}")
    if fn(_ptr(src, _CODES, False, name), _ptr(dst, _PCM, True, name), n) != 0:
        raise G711Error(f"{name}: the native decoder refused its arguments")
    return n


def _decode(fn: Any, name: str, data: Buffer) -> bytes:
    n = _count(data, 1, name)
    out = bytearray(2 * n)
    # cffi passes bytes to a uint8_t pointer directly
    src = data if type(data) is bytes else _ptr(data, _CODES, False, name)
    if fn(src, ffi.from_buffer(_PCM, out), n) != 0:
        raise G711Error(f"{name}: the native decoder refused its arguments")
    return bytes(out)


def alaw_encode(pcm: Buffer) -> bytes:
    """16-bit PCM -> A-law, one byte per sample."""
    return _encode(_alaw_enc, lib.sp_alaw_encode_bytes, "alaw_encode", pcm)


def ulaw_encode(pcm: Buffer) -> bytes:
    """16-bit PCM -> mu-law, one byte per sample."""
    return _encode(_ulaw_enc, lib.sp_ulaw_encode_bytes, "ulaw_encode", pcm)


def alaw_decode(data: Buffer) -> bytes:
    """A-law bytes -> 16-bit PCM."""
    return _decode(_alaw_dec, "alaw_decode", data)


def ulaw_decode(data: Buffer) -> bytes:
    """mu-law bytes -> 16-bit PCM."""
    return _decode(_ulaw_dec, "ulaw_decode", data)


# The *_into forms are the per-frame hot path: two long-lived cffi arrays take a short
# path (their lengths are the counts, cffi checks the item types at the call); anything
# else goes through the checked conversion above.

def _into(kernel: Any, checked: Any, name: str, doc: str) -> Any:
    """One *_into function: the two-cffi-arrays short path, else ``checked`` (the same code
    for all four; the kernel and names are closure cells, as cheap as globals)."""

    def into(src: Any, dst: Any) -> int:
        if isinstance(src, CData) and isinstance(dst, CData):
            try:
                n, room = len(src), len(dst)
            except TypeError:
                raise G711Error(f"{name}: {_NO_LEN}") from None
            if room >= n:
                kernel(src, dst, n)
                return n
        result: int = checked(kernel, name, src, dst)
        return result

    into.__name__ = into.__qualname__ = name
    into.__doc__ = doc
    return into


_ENC_DOC = "Encode PCM ``src`` into ``dst`` (room for one code per sample); returns the count."
_DEC_DOC = "Decode ``src`` codes into PCM ``dst`` (room for one sample per code); returns the count."
alaw_encode_into = _into(_alaw_enc, _encode_into, "alaw_encode_into", _ENC_DOC)
ulaw_encode_into = _into(_ulaw_enc, _encode_into, "ulaw_encode_into", _ENC_DOC)
alaw_decode_into = _into(_alaw_dec, _decode_into, "alaw_decode_into", _DEC_DOC)
ulaw_decode_into = _into(_ulaw_dec, _decode_into, "ulaw_decode_into", _DEC_DOC)
