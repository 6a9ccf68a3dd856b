"""G.711 A-law (PCMA, PT 8) and µ-law (PCMU, PT 0) frame codecs for the media path.

The sample conversion is the native table code (``softphone.native.g711``, C through cffi,
bit-exact with the ITU reference); this module adds what a call leg needs around it: frame
sizes from the packet time, a check on the PCM length, and packet-loss concealment. G.711 has
no PLC of its own; ours is the simple one: the first lost frame replays the last good one at
half level, further losses are silence (a full G.711 Appendix I pitch-repetition PLC is not worth
it for the 20 ms gaps a jitter buffer leaves).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable

from softphone.native import g711 as native
from softphone.native.g711 import G711Error

__all__ = ["G711Codec", "G711Error"]

Converter = Callable[[bytes], bytes]


def _converters(law: str) -> tuple[Converter, Converter]:
    if law == "PCMA":
        return native.alaw_encode, native.alaw_decode
    return native.ulaw_encode, native.ulaw_decode


_SILENCE = {"PCMA": 0xD5, "PCMU": 0xFF}


class G711Codec:
    """A-law or µ-law at 8000 Hz mono, one RTP payload per call of encode/decode."""

    clock_rate = 8000
    rtp_clock_rate = 8000
    channels = 1

    def __init__(self, name: str, payload_type: int | None = None) -> None:
        law = name.upper()
        if law not in _SILENCE:
            raise G711Error(f"unknown G.711 law {name!r} (PCMA or PCMU)")
        self.name = law
        self.payload_type = (8 if law == "PCMA" else 0) if payload_type is None else payload_type
        self._encode, self._decode = _converters(law)
        self._last: bytes | None = None
        self._lost = 0
        self.silence_payload = bytes([_SILENCE[law]])

    def frame_samples(self, ptime_ms: int = 20) -> int:
        if ptime_ms <= 0 or (8 * ptime_ms) != int(8 * ptime_ms):
            raise G711Error(f"ptime {ptime_ms} ms does not give a whole number of samples")
        return int(8 * ptime_ms)

    def rtp_samples(self, ptime_ms: int = 20) -> int:
        """RTP timestamp increment per packet (the clock is the sample rate for G.711)."""
        return self.frame_samples(ptime_ms)

    def encode(self, pcm: bytes) -> bytes:
        """int16 little-endian mono PCM at 8000 Hz -> one G.711 payload (one byte per sample)."""
        if len(pcm) % 2:
            raise G711Error(f"PCM frame of {len(pcm)} bytes is not whole 16-bit samples")
        return bytes(self._encode(pcm))

    def decode(self, payload: bytes | None) -> bytes:
        """One payload -> int16 PCM; ``None`` conceals a lost packet (see module docstring)."""
        if payload is None:
            return self._conceal()
        pcm = bytes(self._decode(payload))
        self._last = pcm
        self._lost = 0
        return pcm

    def _conceal(self) -> bytes:
        self._lost += 1
        last = self._last
        if last is None:
            return bytes(2 * self.frame_samples())
        if self._lost > 1:
            return bytes(len(last))
        samples = array("h", last)
        if sys.byteorder == "big":
            samples.byteswap()
        faded = array("h", (s >> 1 for s in samples))
        if sys.byteorder == "big":
            faded.byteswap()
        return faded.tobytes()
