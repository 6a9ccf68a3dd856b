"""RTP packets (RFC 3550 section 5.1): parse and build, sans-I/O.

Written here rather than taken from a library because the edge needs two things the usual
packages (aiortc's rtp module, pylibsrtp users) do not give together: strict validation with
one exception type (``RtpError``, a counted discard in the session, never an escape from the
socket callback) and an in-place header rewrite for the relay fast path that touches 12 bytes
of a ``bytearray`` instead of re-serialising the packet.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "RTP_HEADER_SIZE",
    "RtpError",
    "RtpExtension",
    "RtpPacket",
    "build_header",
    "build_rtp",
    "is_rtcp",
    "parse_rtp",
    "rewrite_header",
]

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
_HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")


class RtpError(ValueError):
    """A datagram that is not a valid RTP packet (the session counts and drops it)."""


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """The header extension (RFC 3550 5.3.1): a 16-bit profile word and 32-bit-aligned data."""

    profile: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0  # padding octets on the wire, the count octet included (0 = none)

    def encode(self) -> bytes:
        return build_rtp(self)


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """RFC 5761 demultiplexing: second octet 192-223 is RTCP (SR/RR/SDES/BYE/APP/FB)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def parse_rtp(data: bytes | bytearray | memoryview) -> RtpPacket:
    """Parse one RTP datagram; ``RtpError`` names what is wrong with a malformed one."""
    n = len(data)
    if n < RTP_HEADER_SIZE:
        raise RtpError(f"datagram of {n} bytes is shorter than the 12-byte RTP header")
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data, 0)
    if b0 >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {b0 >> 6}, expected 2")
    cc = b0 & 0x0F
    offset = RTP_HEADER_SIZE + 4 * cc
    if offset > n:
        raise RtpError(f"CSRC count {cc} runs past the end of a {n}-byte datagram")
    csrcs = struct.unpack_from(f"!{cc}I", data, RTP_HEADER_SIZE) if cc else ()
    extension = None
    if b0 & 0x10:
        if offset + 4 > n:
            raise RtpError("extension bit set but the extension header is missing")
        profile, words = _EXT_HEADER.unpack_from(data, offset)
        end = offset + 4 + 4 * words
        if end > n:
            raise RtpError(f"header extension of {words} words runs past the datagram")
        extension = RtpExtension(profile, bytes(data[offset + 4:end]))
        offset = end
    end = n
    padding = 0
    if b0 & 0x20:
        padding = data[n - 1]
        if padding == 0 or offset + padding > n:
            raise RtpError(f"invalid padding count {padding}")
        end = n - padding
    return RtpPacket(
        payload_type=b1 & 0x7F,
        sequence=seq,
        timestamp=ts,
        ssrc=ssrc,
        payload=bytes(data[offset:end]),
        marker=bool(b1 & 0x80),
        csrcs=tuple(csrcs),
        extension=extension,
        padding=padding,
    )


def build_rtp(packet: RtpPacket) -> bytes:
    """Serialise ``packet``; out-of-range fields raise ``RtpError``."""
    p = packet
    if not 0 <= p.payload_type <= 127:
        raise RtpError(f"payload type {p.payload_type} is not 0-127")
    if not 0 <= p.sequence <= 0xFFFF:
        raise RtpError(f"sequence number {p.sequence} is not 16-bit")
    if not 0 <= p.timestamp <= 0xFFFFFFFF or not 0 <= p.ssrc <= 0xFFFFFFFF:
        raise RtpError("timestamp and SSRC must be 32-bit unsigned")
    if len(p.csrcs) > 15 or any(not 0 <= c <= 0xFFFFFFFF for c in p.csrcs):
        raise RtpError("at most 15 CSRCs, each 32-bit unsigned")
    if not 0 <= p.padding <= 255:
        raise RtpError(f"padding {p.padding} is not 0-255")
    b0 = (RTP_VERSION << 6) | len(p.csrcs)
    if p.padding:
        b0 |= 0x20
    if p.extension is not None:
        b0 |= 0x10
    b1 = p.payload_type | (0x80 if p.marker else 0)
    parts = [_HEADER.pack(b0, b1, p.sequence, p.timestamp, p.ssrc)]
    if p.csrcs:
        parts.append(struct.pack(f"!{len(p.csrcs)}I", *p.csrcs))
    if p.extension is not None:
        ext = p.extension
        if len(ext.data) % 4 or not 0 <= ext.profile <= 0xFFFF or len(ext.data) > 4 * 0xFFFF:
            raise RtpError("extension data must be a whole number of 32-bit words")
        parts.append(_EXT_HEADER.pack(ext.profile, len(ext.data) // 4))
        parts.append(ext.data)
    parts.append(p.payload)
    if p.padding:
        parts.append(bytes(p.padding - 1) + bytes((p.padding,)))
    return b"".join(parts)


def build_header(payload_type: int, sequence: int, timestamp: int, ssrc: int,
                 marker: bool = False) -> bytes:
    """The plain 12-byte header (no CSRC, extension or padding): the session's send path."""
    return _HEADER.pack(0x80, payload_type | (0x80 if marker else 0), sequence & 0xFFFF,
                        timestamp & 0xFFFFFFFF, ssrc)


def rewrite_header(packet: bytearray, payload_type: int, sequence: int, timestamp: int,
                   ssrc: int) -> None:
    """Relay fast path: give a received packet our PT/seq/ts/SSRC in place, keeping the
    marker bit, CSRCs, extension, padding and payload as they came."""
    if len(packet) < RTP_HEADER_SIZE:
        raise RtpError("packet shorter than an RTP header")
    marker = packet[1] & 0x80
    _HEADER.pack_into(packet, 0, packet[0], payload_type | marker, sequence & 0xFFFF,
                      timestamp & 0xFFFFFFFF, ssrc)
