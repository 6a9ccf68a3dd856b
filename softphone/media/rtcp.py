"""RTCP (RFC 3550 section 6): SR/RR/SDES/BYE build and parse, reception statistics, RTT.

Sans-I/O: times come in as arguments (seconds on a wall clock for NTP fields, the caller's
monotonic clock for arrivals), nothing here owns a socket or a timer.

``ReceptionStats`` is the per-source bookkeeping of RFC 3550 appendix A: A.1 sequence
validation (probation, wrap-around, restart after a large jump), A.3 expected/lost and the
per-interval fraction lost, A.8 interarrival jitter with the integer estimator. ``rtt()``
derives the round trip from a report block's LSR/DLSR (6.4.1). We wrote this rather than use a
library because the Python RTP stacks at hand either omit RTCP statistics or tie them to their
own transports; this one is fed by our session's receive path.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "Bye",
    "ReceptionStats",
    "ReceiverReport",
    "ReportBlock",
    "RtcpError",
    "RtcpPacket",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "UnknownRtcp",
    "build_rtcp",
    "ntp_from_unix",
    "ntp_middle32",
    "parse_rtcp",
    "rtt",
]

SR, RR, SDES, BYE, APP = 200, 201, 202, 203, 204
SDES_CNAME = 1
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01

_HDR = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IB3sIIII")
_SR_INFO = struct.Struct("!IQIII")


class RtcpError(ValueError):
    """A malformed RTCP datagram or an out-of-range field (the session counts and drops it)."""


@dataclass(frozen=True, slots=True)
class ReportBlock:
    ssrc: int
    fraction_lost: int  # 0-255, loss fraction since the previous report x 256
    cumulative_lost: int  # signed 24-bit (duplicates can make it negative)
    highest_seq: int  # extended highest sequence number received
    jitter: int  # interarrival jitter, timestamp units
    lsr: int  # middle 32 bits of the last SR's NTP timestamp (0: none yet)
    dlsr: int  # delay since that SR, 1/65536 s


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int  # 64-bit NTP (32.32 fixed point)
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class SdesChunk:
    ssrc: int
    items: tuple[tuple[int, bytes], ...]  # (item type, value); CNAME is type 1


@dataclass(frozen=True, slots=True)
class SourceDescription:
    chunks: tuple[SdesChunk, ...]


@dataclass(frozen=True, slots=True)
class Bye:
    ssrcs: tuple[int, ...]
    reason: bytes = b""


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    """APP, feedback and anything else: kept opaque so a compound packet still parses."""

    packet_type: int
    count: int
    body: bytes


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | UnknownRtcp


def ntp_from_unix(unix_seconds: float) -> int:
    """64-bit NTP timestamp (seconds since 1900 in 32.32 fixed point) of a Unix time."""
    return int((unix_seconds + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits (16.16 seconds) used by LSR and RTT."""
    return (ntp >> 16) & 0xFFFFFFFF


def rtt(block: ReportBlock, arrival_ntp: int) -> float | None:
    """Round-trip time in seconds from a report block about our stream (RFC 3550 6.4.1):
    A - LSR - DLSR with A the block's arrival as NTP; None when the peer has no SR of ours."""
    if block.lsr == 0:
        return None
    a = ntp_middle32(arrival_ntp)
    value = (a - block.lsr - block.dlsr) & 0xFFFFFFFF
    if value > 0x7FFFFFFF:  # clock trouble or a stale block: negative, not a huge RTT
        return 0.0
    return value / 65536.0


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise RtcpError(f"{name} {value} is not 32-bit unsigned")


def _pack_block(b: ReportBlock) -> bytes:
    for name in ("ssrc", "highest_seq", "jitter", "lsr", "dlsr"):
        _check_u32(name, getattr(b, name))
    if not 0 <= b.fraction_lost <= 255:
        raise RtcpError(f"fraction_lost {b.fraction_lost} is not 0-255")
    lost = max(-0x800000, min(0x7FFFFF, b.cumulative_lost))  # clamp as A.3 says
    return _BLOCK.pack(b.ssrc, b.fraction_lost, (lost & 0xFFFFFF).to_bytes(3, "big"),
                       b.highest_seq, b.jitter, b.lsr, b.dlsr)


def _unpack_blocks(body: bytes, offset: int, count: int) -> tuple[ReportBlock, ...]:
    if offset + 24 * count > len(body):
        raise RtcpError(f"{count} report blocks do not fit in {len(body)} bytes")
    out = []
    for i in range(count):
        ssrc, frac, lost3, hseq, jit, lsr, dlsr = _BLOCK.unpack_from(body, offset + 24 * i)
        lost = int.from_bytes(lost3, "big")
        if lost & 0x800000:
            lost -= 0x1000000
        out.append(ReportBlock(ssrc, frac, lost, hseq, jit, lsr, dlsr))
    return tuple(out)


def _packet(ptype: int, count: int, body: bytes) -> bytes:
    if len(body) % 4:
        raise RtcpError("RTCP body must be a whole number of 32-bit words")
    if not 0 <= count <= 31:
        raise RtcpError(f"at most 31 items per RTCP packet, got {count}")
    return _HDR.pack(0x80 | count, ptype, len(body) // 4) + body


def _build_one(p: RtcpPacket) -> bytes:
    if isinstance(p, SenderReport):
        _check_u32("ssrc", p.ssrc)
        for name in ("rtp_timestamp", "packet_count", "octet_count"):
            _check_u32(name, getattr(p, name))
        if not 0 <= p.ntp_timestamp <= 0xFFFFFFFFFFFFFFFF:
            raise RtcpError("ntp_timestamp is not 64-bit unsigned")
        body = _SR_INFO.pack(p.ssrc, p.ntp_timestamp, p.rtp_timestamp, p.packet_count,
                           p.octet_count)
        body += b"".join(_pack_block(b) for b in p.reports)
        return _packet(SR, len(p.reports), body)
    if isinstance(p, ReceiverReport):
        _check_u32("ssrc", p.ssrc)
        body = struct.pack("!I", p.ssrc) + b"".join(_pack_block(b) for b in p.reports)
        return _packet(RR, len(p.reports), body)
    if isinstance(p, SourceDescription):
        chunks = []
        for c in p.chunks:
            _check_u32("ssrc", c.ssrc)
            raw = bytearray(struct.pack("!I", c.ssrc))
            for itype, value in c.items:
                if not 1 <= itype <= 255 or len(value) > 255:
                    raise RtcpError("SDES item type must be 1-255 and its value <= 255 bytes")
                raw += bytes((itype, len(value))) + value
            raw += b"\x00" * (4 - len(raw) % 4)  # END item plus padding to a word
            chunks.append(bytes(raw))
        return _packet(SDES, len(p.chunks), b"".join(chunks))
    if isinstance(p, Bye):
        for s in p.ssrcs:
            _check_u32("ssrc", s)
        body = b"".join(struct.pack("!I", s) for s in p.ssrcs)
        if p.reason:
            if len(p.reason) > 255:
                raise RtcpError("BYE reason longer than 255 bytes")
            reason = bytes((len(p.reason),)) + p.reason
            body += reason + b"\x00" * (-len(reason) % 4)
        return _packet(BYE, len(p.ssrcs), body)
    if isinstance(p, UnknownRtcp):
        if not 0 <= p.packet_type <= 255:
            raise RtcpError("packet type is not 8-bit")
        return _packet(p.packet_type, p.count, p.body)
    raise RtcpError(f"not an RTCP packet: {type(p).__name__}")


def build_rtcp(packets: list[RtcpPacket] | tuple[RtcpPacket, ...]) -> bytes:
    """A compound RTCP datagram (RFC 3550 6.1: start with SR or RR, include SDES CNAME)."""
    if not packets:
        raise RtcpError("a compound RTCP packet holds at least one packet")
    return b"".join(_build_one(p) for p in packets)


def _parse_sdes(body: bytes, count: int) -> SourceDescription:
    chunks = []
    off = 0
    for _ in range(count):
        if off + 4 > len(body):
            raise RtcpError("SDES chunk truncated")
        (ssrc,) = struct.unpack_from("!I", body, off)
        off += 4
        items = []
        while True:
            if off >= len(body):
                raise RtcpError("SDES chunk without END item")
            itype = body[off]
            if itype == 0:
                off += 1
                off += -off % 4  # skip to the next word boundary
                break
            if off + 2 > len(body) or off + 2 + body[off + 1] > len(body):
                raise RtcpError("SDES item runs past the packet")
            length = body[off + 1]
            items.append((itype, bytes(body[off + 2:off + 2 + length])))
            off += 2 + length
        chunks.append(SdesChunk(ssrc, tuple(items)))
    return SourceDescription(tuple(chunks))


def parse_rtcp(data: bytes | bytearray | memoryview) -> list[RtcpPacket]:
    """Parse a compound RTCP datagram; ``RtcpError`` for anything malformed."""
    raw = bytes(data)
    if len(raw) < 4:
        raise RtcpError(f"datagram of {len(raw)} bytes is shorter than an RTCP header")
    out: list[RtcpPacket] = []
    off = 0
    while off < len(raw):
        if off + 4 > len(raw):
            raise RtcpError("trailing bytes after the last RTCP packet")
        b0, ptype, words = _HDR.unpack_from(raw, off)
        if b0 >> 6 != 2:
            raise RtcpError(f"RTCP version {b0 >> 6}, expected 2")
        end = off + 4 + 4 * words
        if end > len(raw):
            raise RtcpError(f"RTCP length {words} words runs past the datagram")
        body = raw[off + 4:end]
        if b0 & 0x20:  # padding: only legal on the last packet of the compound
            if end != len(raw) or not body or body[-1] == 0 or body[-1] > len(body):
                raise RtcpError("invalid RTCP padding")
            body = body[:-body[-1]]
        count = b0 & 0x1F
        if ptype == SR:
            if len(body) < 24:
                raise RtcpError("SR shorter than its sender info")
            ssrc, ntp, rtpts, pc, oc = _SR_INFO.unpack_from(body, 0)
            out.append(SenderReport(ssrc, ntp, rtpts, pc, oc, _unpack_blocks(body, 24, count)))
        elif ptype == RR:
            if len(body) < 4:
                raise RtcpError("RR without SSRC")
            (ssrc,) = struct.unpack_from("!I", body, 0)
            out.append(ReceiverReport(ssrc, _unpack_blocks(body, 4, count)))
        elif ptype == SDES:
            out.append(_parse_sdes(body, count))
        elif ptype == BYE:
            if len(body) < 4 * count:
                raise RtcpError("BYE shorter than its SSRC list")
            ssrcs = struct.unpack_from(f"!{count}I", body, 0)
            reason = b""
            if len(body) > 4 * count:
                rlen = body[4 * count]
                if 4 * count + 1 + rlen > len(body):
                    raise RtcpError("BYE reason runs past the packet")
                reason = body[4 * count + 1:4 * count + 1 + rlen]
            out.append(Bye(tuple(ssrcs), reason))
        else:
            out.append(UnknownRtcp(ptype, count, body))
        off = end
    return out


class ReceptionStats:
    """One received source's RFC 3550 statistics (appendix A.1, A.3, A.8)."""

    MAX_DROPOUT = 3000
    MAX_MISORDER = 100
    MIN_SEQUENTIAL = 2

    def __init__(self, clock_rate: int) -> None:
        if clock_rate <= 0:
            raise RtcpError(f"clock rate must be positive, got {clock_rate}")
        self.clock_rate = clock_rate
        self.ssrc: int | None = None
        self.packets = 0  # every packet seen, valid or not for the statistics
        self.octets = 0
        self._reset(0)
        self.probation = self.MIN_SEQUENTIAL
        self._jitter_q4 = 0
        self._last_transit: int | None = None
        self.last_sr: int = 0  # middle 32 bits of the last SR from this source
        self.last_sr_arrival: float | None = None

    def _reset(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = 0x10001
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0

    def _update_seq(self, seq: int) -> bool:
        udelta = (seq - self.max_seq) & 0xFFFF
        if self.probation:
            if seq == (self.max_seq + 1) & 0xFFFF:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    # unlike A.1 literally, the packets seen on probation count as received
                    self._reset(seq)
                    self.base_seq = seq - (self.MIN_SEQUENTIAL - 1)
                    self.received = self.MIN_SEQUENTIAL
                    return True
            else:
                self.probation = self.MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < self.MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += 0x10000
            self.max_seq = seq
        elif udelta <= 0x10000 - self.MAX_MISORDER:
            if seq == self.bad_seq:
                # two sequential packets after a big jump: the source restarted
                self._reset(seq)
            else:
                self.bad_seq = (seq + 1) & 0xFFFF
                return False
        # else: duplicate or reordered packet, counted as received
        self.received += 1
        return True

    def update(self, ssrc: int, seq: int, timestamp: int, arrival: float, size: int = 0) -> bool:
        """Account one RTP packet (``arrival`` in seconds on the caller's monotonic clock).
        Returns False while the source is on probation or the packet is out of sequence."""
        if ssrc != self.ssrc:
            self.ssrc = ssrc
            self._reset(seq)
            self.max_seq = (seq - 1) & 0xFFFF
            self.probation = self.MIN_SEQUENTIAL
            self._last_transit = None
            self._jitter_q4 = 0
        self.packets += 1
        self.octets += size
        if not self.probation and seq == (self.max_seq + 1) & 0xFFFF:
            # the in-order packet, almost every packet: A.1 reduces to this
            if seq == 0:
                self.cycles += 0x10000
            self.max_seq = seq
            self.received += 1
            valid = True
        else:
            valid = self._update_seq(seq)
        # A.8: transit in timestamp units; the constant offset cancels in the difference
        transit = int(arrival * self.clock_rate) - timestamp
        if self._last_transit is not None:
            d = transit - self._last_transit
            if d < 0:
                d = -d
            if d < 0x80000000:  # a timestamp wrap or jump is not jitter
                self._jitter_q4 += d - ((self._jitter_q4 + 8) >> 4)
        self._last_transit = transit
        return valid

    def on_sender_report(self, sr: SenderReport, arrival: float) -> None:
        self.last_sr = ntp_middle32(sr.ntp_timestamp)
        self.last_sr_arrival = arrival

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        if self.received == 0 and self.probation:
            return 0
        return self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        return self.expected - self.received

    @property
    def jitter(self) -> int:
        """Interarrival jitter in timestamp units."""
        return self._jitter_q4 >> 4

    @property
    def jitter_ms(self) -> float:
        return 1000.0 * (self._jitter_q4 / 16.0) / self.clock_rate

    def report_block(self, now: float) -> ReportBlock | None:
        """The block for our next SR/RR (``now`` on the same clock as the arrivals); it starts
        a new loss interval. None before the first valid packet."""
        if self.ssrc is None or (self.received == 0 and self.probation):
            return None
        expected = self.expected
        expected_interval = expected - self.expected_prior
        self.expected_prior = expected
        received_interval = self.received - self.received_prior
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        dlsr = 0
        if self.last_sr_arrival is not None:
            dlsr = max(0, min(0xFFFFFFFF, int((now - self.last_sr_arrival) * 65536)))
        return ReportBlock(self.ssrc, fraction, self.lost, self.extended_max & 0xFFFFFFFF,
                           self.jitter & 0xFFFFFFFF, self.last_sr, dlsr)
