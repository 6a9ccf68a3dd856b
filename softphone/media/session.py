"""One call leg's RTP/RTCP endpoint: an asyncio DatagramProtocol on an allocated port pair.

Receive path, per datagram: parse the header (malformed -> counted discard), check the source
(symmetric RTP, below), account RFC 3550 statistics, then by payload type: telephone-event ->
``DtmfReceiver`` -> ``on_dtmf``; an audio PT of this leg -> the leg's native ``JitterBuffer``
(or, on the relay fast path, straight out of the other leg with the header rewritten);
anything else -> counted and dropped. No exception leaves ``datagram_received``.

Symmetric RTP / latching, as rtpengine's strict source and Asterisk's strictrtp with probation
do it (RTPbleed, CVE-2017-14099): nothing is used before the peer's SDP address is known
(``remote``; what waited in the socket buffer before ``start()`` is flushed unread). Until the
peer's first accepted packet we send to that SDP address; from then on to the source we latched.
Which source may latch depends on ``latch``:

- ``"address-only"`` (default): the packet's source address must be the SDP's or one of
  ``allowed_hosts`` (the address the peer's signalling came from); the port may differ
  (symmetric RTP behind NAT);
- ``"strict"``: only the SDP's own address and port;
- ``"any"``: any source, but only after ``probation`` consecutive in-sequence packets from it
  (for peers whose media leaves from another address than their SDP and SIP say).

Once latched, another source is dropped (``foreign_source``) unless it is the same address
(``"any"``: any address; ``"strict"``: never) and sends ``probation`` consecutive in-sequence
packets: a NAT rebinding is followed, a spray from elsewhere is not, and silence never re-opens
the latch. Every switch is logged and counted (``source_switches``). RTCP is accepted only from
the latched RTP address (before the latch: under the same rule as RTP; ``"strict"``: the SDP's
RTCP address); anything else is counted (``rtcp_foreign``) and ignored.

Send path: ``send_frame()`` stamps our SSRC, sequence and timestamp (random starts, RFC 3550
5.1) around an encoded payload; queued DTMF digits (``send_digit``) replace the audio packets
while they play. RTCP: an SR (or RR when we sent nothing) with SDES CNAME every
``rtcp_interval`` seconds, randomised by +-50 % (RFC 3550 6.3.1); incoming SR/RR give LSR/DLSR
and so the RTT; BYE is recorded. ``inactivity_timeout``: no RTP for that long -> ``on_timeout``
(once); the owner ends the call, and ``close()`` returns the ports to the allocator.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import secrets
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from softphone.media.dtmf import DtmfEvent, DtmfReceiver, DtmfSender
from softphone.media.ports import PortAllocator, PortPair
from softphone.media.rtcp import (
    Bye,
    ReceiverReport,
    ReceptionStats,
    RtcpError,
    RtcpPacket,
    SdesChunk,
    SenderReport,
    SourceDescription,
    build_rtcp,
    ntp_from_unix,
    parse_rtcp,
    rtt,
)
from softphone.media.rtp import RTP_HEADER_SIZE, RtpError, build_header, parse_rtp

if TYPE_CHECKING:
    from softphone.native.jitter import JitterBuffer

__all__ = ["LATCH_MODES", "RtpSession", "SessionStats"]

log = logging.getLogger(__name__)

Address = tuple[str, int]
_FIXED = struct.Struct("!BBHII")
LATCH_MODES = ("address-only", "strict", "any")
_FLUSH_MAX = 4096  # datagrams read and dropped per socket at start, at most


def _host(text: str) -> str:
    """An address in one spelling (``::1`` and ``0:0::1`` are the same host), IPv4-mapped
    IPv6 as IPv4; a name stays as it is."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@dataclass(frozen=True, slots=True)
class SessionStats:
    packets_received: int
    octets_received: int
    packets_sent: int
    octets_sent: int
    malformed: int
    unknown_payload_type: int
    foreign_source: int
    dtmf_packets: int
    relayed: int
    errors: int
    lost: int  # RFC 3550 A.3 cumulative lost of what we receive
    expected: int
    jitter_ms: float  # A.8 interarrival jitter of what we receive
    rtt_ms: float | None  # from the peer's last report block about us
    remote_fraction_lost: float | None  # the peer's view of our stream (0.0-1.0)
    remote_cumulative_lost: int | None
    remote_jitter_ms: float | None
    rtcp_sent: int
    rtcp_received: int
    rtcp_malformed: int
    bye_received: bool
    latched: Address | None
    source_switches: int = 0  # latch moves to another source (after probation)
    flushed: int = 0  # datagrams waiting in the sockets before start(), dropped unread
    rtcp_foreign: int = 0  # RTCP from a source that is not the peer's


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Address], None],
                 on_error: Callable[[Exception], None]) -> None:
        # the session's handler itself, not a wrapper around it: one call less per packet.
        # Source addresses are compared as the socket gives them (4-tuples for IPv6).
        self.datagram_received = on_datagram  # type: ignore[method-assign,assignment]
        self.on_error = on_error

    def error_received(self, exc: Exception) -> None:
        self.on_error(exc)


class RtpSession:
    """RTP + RTCP for one leg (see the module docstring).

    ``payload_types`` are the audio PTs accepted from the peer (all decoded by the leg's one
    codec); ``send_payload_type`` is what we stamp on audio we send (default the first)."""

    relayable = True  # the relay fast path may forward its packets undecoded

    def __init__(self, pair: PortPair, *, allocator: PortAllocator | None = None,
                 remote: Address | None = None, remote_rtcp: Address | None = None,
                 payload_types: Iterable[int] = (8,), send_payload_type: int | None = None,
                 dtmf_payload_type: int | None = 101, clock_rate: int = 8000,
                 frame_samples: int = 160, jitter: JitterBuffer | None = None,
                 use_jitter: bool = True, lazy_jitter: bool = False,
                 jitter_min_ms: int = 20, jitter_max_ms: int = 200,
                 inactivity_timeout: float | None = 30.0,
                 on_timeout: Callable[[RtpSession], None] | None = None,
                 on_dtmf: Callable[[RtpSession, DtmfEvent], None] | None = None,
                 rtcp_interval: float = 5.0, latch: str = "address-only",
                 allowed_hosts: Iterable[str] = (), probation: int = 4,
                 cname: str | None = None, ssrc: int | None = None, name: str = "") -> None:
        if latch not in LATCH_MODES:
            raise ValueError(f"latch must be one of {', '.join(LATCH_MODES)}, got {latch!r}")
        if probation < 1:
            raise ValueError(f"probation must be >= 1 packet, got {probation}")
        self.pair = pair
        self.allocator = allocator
        self.name = name or pair.owner
        self.remote = remote
        self.remote_rtcp = remote_rtcp or ((remote[0], remote[1] + 1) if remote else None)
        self.payload_types = frozenset(payload_types)
        if not self.payload_types:
            raise ValueError("an RTP session needs at least one audio payload type")
        self.send_payload_type = (send_payload_type if send_payload_type is not None
                                  else min(self.payload_types))
        self.dtmf_payload_type = dtmf_payload_type
        self.clock_rate = clock_rate
        self.frame_samples = frame_samples
        self._jitter_delays = (jitter_min_ms, jitter_max_ms)
        # lazy: a relayed leg never decodes, so its buffer is made when a bridge takes the leg
        self.lazy_jitter = lazy_jitter and jitter is None and use_jitter
        self.jitter = jitter
        if jitter is None and use_jitter and not lazy_jitter:
            self.ensure_jitter()
        self.inactivity_timeout = inactivity_timeout
        self.on_timeout = on_timeout
        self.on_dtmf = on_dtmf
        self.rtcp_interval = rtcp_interval
        self.latch = latch
        self.probation = probation
        self.allowed_hosts = frozenset(_host(h) for h in allowed_hosts)
        self._hosts = self._sdp_hosts()
        self.ssrc = ssrc if ssrc is not None else secrets.randbits(32)
        self.cname = (cname or f"{self.name}@{pair.host}").encode()[:255]
        self.seq = secrets.randbits(16)
        self.timestamp = secrets.randbits(32)
        self.dtmf_in = DtmfReceiver(clock_rate)
        self.dtmf_out = DtmfSender(clock_rate, packet_ms=max(1, frame_samples * 1000 // clock_rate))
        self.reception = ReceptionStats(clock_rate)
        # relay fast path: packets go out of ``_relay`` with its SSRC and continuous seq/ts
        self._relay: RtpSession | None = None
        self._relay_pt: dict[int, int] = {}
        self._relay_src: int | None = None
        self._relay_seq_off = 0
        self._relay_ts_off = 0
        self._latched: Address | None = None
        self._latched_rtcp: Address | None = None
        # a source on probation: address, last sequence number, consecutive packets
        self._candidate: Address | None = None
        self._candidate_seq = 0
        self._candidate_count = 0
        self._last_rx: float | None = None
        self._started_at = 0.0
        self._marker_next = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._rtcp_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._timed_out = False
        self.closed = False
        self.sending = True  # False while the peer is on hold towards us (sendonly/inactive)
        # counters
        self.packets_received = 0
        self.octets_received = 0
        self.packets_sent = 0
        self.octets_sent = 0
        self.malformed = 0
        self.unknown_payload_type = 0
        self.foreign_source = 0
        self.dtmf_packets = 0
        self.relayed = 0
        self.errors = 0
        self.no_destination = 0
        self.rtcp_sent = 0
        self.rtcp_received = 0
        self.rtcp_malformed = 0
        self.rtcp_foreign = 0
        self.source_switches = 0
        self.flushed = 0
        self.bye_received = False
        self.rtt: float | None = None
        self.remote_report: tuple[float, int, float] | None = None  # fraction, cum lost, jitter ms
        self._sent_since_report = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def local(self) -> Address:
        return (self.pair.host, self.pair.rtp)

    async def start(self) -> None:
        """Adopt the pair's sockets and start the RTCP and inactivity timers."""
        if self._rtp is not None or self.closed:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._flush()
        # A call can end while a transport is being made (a BYE right after the answer):
        # ``close()`` then only closes what it can see, so each transport is handed over as
        # soon as it exists and one made for a closed session is closed here. uvloop's
        # transport owns the descriptor: closing the socket object does not free it.
        t1, _ = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._on_rtp, self._on_socket_error), sock=self.pair.rtp_sock)
        if self.closed:
            t1.close()
            return
        self._rtp = t1
        try:
            t2, _ = await loop.create_datagram_endpoint(
                lambda: _Endpoint(self._on_rtcp, self._on_socket_error),
                sock=self.pair.rtcp_sock)
        except OSError:
            if self.closed:  # its socket was closed with the session: nothing to start
                return
            raise
        if self.closed:
            t2.close()
            return
        self._rtcp = t2
        self._started_at = loop.time()
        if self.rtcp_interval > 0:
            self._schedule_rtcp()
        self._schedule_idle_check()

    def close(self, reason: str = "") -> None:
        """Send RTCP BYE, close both sockets, cancel timers, release the ports. Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self._relay is not None:
            self._relay = None
        try:
            if self._rtcp is not None and self._rtcp_destination() is not None:
                self._send_rtcp_packets(
                    [*self._report_packets(), Bye((self.ssrc,), reason.encode()[:255])])
        except Exception:  # a failing BYE must not keep the ports
            log.exception("%s: RTCP BYE failed", self.name)
        for timer in (self._rtcp_timer, self._idle_timer):
            if timer is not None:
                timer.cancel()
        for transport in (self._rtp, self._rtcp):
            if transport is not None:
                transport.close()
        if self.allocator is not None:
            self.allocator.release(self.pair)
        else:
            self.pair.rtp_sock.close()
            self.pair.rtcp_sock.close()

    def _flush(self) -> None:
        """Drop, unread, what reached the sockets before the peer's SDP was known (RTP sprayed
        at the port between the offer and the answer must not be played nor latched to)."""
        for sock in (self.pair.rtp_sock, self.pair.rtcp_sock):
            for _ in range(_FLUSH_MAX):
                try:
                    sock.recv(2048)
                except OSError:  # BlockingIOError: empty; anything else: nothing to read
                    break
                self.flushed += 1
        if self.flushed:
            log.info("%s: %d datagram(s) received before the answer dropped", self.name,
                     self.flushed)

    def _sdp_hosts(self) -> frozenset[str]:
        sdp = {_host(a[0]) for a in (self.remote, self.remote_rtcp) if a is not None}
        return self.allowed_hosts | sdp

    def set_remote(self, remote: Address, remote_rtcp: Address | None = None, *,
                   allowed_hosts: Iterable[str] | None = None) -> None:
        """A new SDP address (re-INVITE): forget the latch, send there until the peer speaks;
        ``allowed_hosts`` replaces the signalling addresses when given."""
        self.remote = remote
        self.remote_rtcp = remote_rtcp or (remote[0], remote[1] + 1)
        if allowed_hosts is not None:
            self.allowed_hosts = frozenset(_host(h) for h in allowed_hosts)
        self._hosts = self._sdp_hosts()
        self._latched = None
        self._latched_rtcp = None
        self._candidate = None

    def allow_hosts(self, hosts: Iterable[str]) -> None:
        """The addresses the peer's signalling came from, accepted as RTP sources besides
        the SDP's (``"address-only"``)."""
        self.allowed_hosts = frozenset(_host(h) for h in hosts)
        self._hosts = self._sdp_hosts()

    def ensure_jitter(self) -> JitterBuffer:
        """The leg's jitter buffer, made now if it has none yet (at the session's clock)."""
        if self.jitter is None:
            from softphone.native.jitter import JitterBuffer

            self.jitter = JitterBuffer(clock_rate=self.clock_rate,
                                       frame_samples=self.frame_samples,
                                       min_delay_ms=self._jitter_delays[0],
                                       max_delay_ms=self._jitter_delays[1])
        return self.jitter

    def reconfigure(self, *, payload_types: Iterable[int], send_payload_type: int | None = None,
                    dtmf_payload_type: int | None = None, clock_rate: int | None = None,
                    frame_samples: int | None = None) -> None:
        """A re-INVITE changed the codec or its payload numbers. A new RTP clock or frame
        size gets a fresh jitter buffer and fresh statistics (a new stream, for RTCP too)."""
        pts = frozenset(payload_types)
        if not pts:
            raise ValueError("an RTP session needs at least one audio payload type")
        self.payload_types = pts
        self.send_payload_type = send_payload_type if send_payload_type is not None else min(pts)
        self.dtmf_payload_type = dtmf_payload_type
        rate = clock_rate or self.clock_rate
        frame = frame_samples or self.frame_samples
        if (rate, frame) != (self.clock_rate, self.frame_samples):
            self.clock_rate = rate
            self.frame_samples = frame
            if self.jitter is not None:
                from softphone.native.jitter import JitterBuffer

                self.jitter = JitterBuffer(clock_rate=rate, frame_samples=frame,
                                           min_delay_ms=self._jitter_delays[0],
                                           max_delay_ms=self._jitter_delays[1])
            self.reception = ReceptionStats(rate)
            self.dtmf_in = DtmfReceiver(rate)
            self.dtmf_out = DtmfSender(rate, packet_ms=max(1, frame * 1000 // rate))
            self._marker_next = True
        if self._relay is not None:
            self.relay_to(self._relay)  # the PT map follows the new numbers

    def set_inactivity_timeout(self, seconds: float | None) -> None:
        """None disables the check (on hold: a sendonly peer legitimately sends nothing)."""
        self.inactivity_timeout = seconds
        if self._loop is not None:
            self._last_rx = self._loop.time()
        self._timed_out = False

    # ------------------------------------------------------------------ receive path

    def _on_socket_error(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: the peer is not there (yet); timeouts decide
        self.errors += 1

    def _on_probation(self, addr: Address, seq: int) -> bool:
        """True when ``addr`` has now sent ``probation`` consecutive in-sequence packets."""
        if addr == self._candidate and seq == (self._candidate_seq + 1) & 0xFFFF:
            self._candidate_count += 1
        else:
            self._candidate = addr
            self._candidate_count = 1
        self._candidate_seq = seq
        if self._candidate_count >= self.probation:
            self._candidate = None
            return True
        return False

    def _source_ok(self, addr: Address, seq: int) -> bool:
        """A packet from ``addr``, which is not the latched source: may it latch (or move the
        latch)? The rules are in the module docstring; a refusal is counted."""
        latched = self._latched
        remote = self.remote
        ok = False
        if remote is not None:  # nothing is used before the peer's SDP is known
            mode = self.latch
            host = _host(addr[0])
            if latched is None:
                if mode == "address-only":
                    ok = host in self._hosts
                elif mode == "strict":
                    ok = (host, addr[1]) == (_host(remote[0]), remote[1])
                else:
                    ok = self._on_probation(addr, seq)
                if ok:
                    self._latched = addr
                    self._candidate = None
                    log.debug("%s: RTP latched to %s", self.name, addr)
                    return True
            elif mode != "strict" and (mode == "any" or host == _host(latched[0])):
                if self._on_probation(addr, seq):
                    self._latched = addr
                    self._latched_rtcp = None
                    self.source_switches += 1
                    log.warning("%s: RTP source moved %s -> %s after %d in-sequence packets",
                                self.name, latched, addr, self.probation)
                    return True
        self.foreign_source += 1
        if self.foreign_source & (self.foreign_source - 1) == 0:  # 1st, 2nd, 4th...: no flood
            log.info("%s: RTP from %s dropped (%s; latched %s; %d so far)", self.name, addr,
                     "before the peer's SDP" if remote is None else f"latch={self.latch}",
                     latched, self.foreign_source)
        return False

    def _rtcp_source_ok(self, addr: Address) -> bool:
        """RTCP from the latched RTP address (any port); before the RTP latch, by the RTP
        rule; ``"strict"``: the SDP's RTCP address only."""
        if addr == self._latched_rtcp:
            return True
        remote_rtcp = self.remote_rtcp
        if self.remote is None or remote_rtcp is None:
            return False
        host = _host(addr[0])
        if self.latch == "strict":
            return (host, addr[1]) == (_host(remote_rtcp[0]), remote_rtcp[1])
        latched = self._latched
        if latched is not None:
            return host == _host(latched[0])
        return self.latch == "address-only" and host in self._hosts

    def _on_rtp(self, data: bytes, addr: Address) -> None:
        """Every RTP datagram of the leg; the relay path is written out inline because it is
        the per-packet cost of every relayed call."""
        try:
            if len(data) < RTP_HEADER_SIZE or data[0] >> 6 != 2:
                self.malformed += 1
                return
            loop = self._loop
            now = loop.time() if loop is not None else time.monotonic()
            b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data, 0)
            pt = b1 & 0x7F
            audio = pt in self.payload_types
            if not audio and pt != self.dtmf_payload_type:
                self.unknown_payload_type += 1
                return
            payload: bytes | None = None
            if b0 & 0x3F:
                # CSRCs, extension or padding: the full parser finds where the payload is
                try:
                    payload = parse_rtp(data).payload
                except RtpError:
                    self.malformed += 1
                    return
            if addr != self._latched and not self._source_ok(addr, seq):
                return
            self.packets_received += 1
            self.octets_received += len(data)
            self._last_rx = now
            self.reception.update(ssrc, seq, ts, now, len(data))
            if not audio:
                # the common case is a plain 12-byte header: the payload follows it
                self._dtmf(data[RTP_HEADER_SIZE:] if payload is None else payload, ts)
            out = self._relay
            if out is None:
                if audio and self.jitter is not None:
                    if payload is None:
                        payload = data[RTP_HEADER_SIZE:]
                    if payload:
                        self.jitter.put(seq, ts, ssrc, bool(b1 & 0x80), payload, now * 1000.0)
                return
            # relay: rewrite PT/seq/ts/SSRC only; CSRCs, extension and padding travel as is
            out_pt = self._relay_pt.get(pt)
            if out_pt is None:
                self.unknown_payload_type += 1
                return
            if ssrc != self._relay_src:
                # a new incoming stream: continue the other leg's sequence and timeline
                self._relay_src = ssrc
                self._relay_seq_off = (out.seq - seq) & 0xFFFF
                self._relay_ts_off = (out.timestamp - ts) & 0xFFFFFFFF
            out_seq = (seq + self._relay_seq_off) & 0xFFFF
            out_ts = (ts + self._relay_ts_off) & 0xFFFFFFFF
            packet = bytearray(data)
            _FIXED.pack_into(packet, 0, b0, out_pt | (b1 & 0x80), out_seq, out_ts, out.ssrc)
            if (out_seq - out.seq) & 0xFFFF < 0x8000:  # keep the other leg's counters moving
                out.seq = (out_seq + 1) & 0xFFFF
                out.timestamp = out_ts
            dest = out._latched or out.remote
            transport = out._rtp
            if dest is None or transport is None or out.closed or not out.sending:
                out.no_destination += 1
                return
            transport.sendto(packet, dest)
            out.packets_sent += 1
            out.octets_sent += len(packet)
            out._sent_since_report = True
            self.relayed += 1
        except Exception:
            self.errors += 1
            if self.errors & (self.errors - 1) == 0:  # 1st, 2nd, 4th, 8th...: no log flood
                log.exception("%s: RTP packet from %s dropped (%d so far)", self.name, addr,
                              self.errors)

    def _dtmf(self, payload: bytes, ts: int) -> None:
        self.dtmf_packets += 1
        events = self.dtmf_in.receive(payload, ts)
        if self.on_dtmf is not None:
            for ev in events:
                self.on_dtmf(self, ev)

    # ------------------------------------------------------------------ relay fast path

    def relay_to(self, other: RtpSession | None, pt_map: dict[int, int] | None = None) -> None:
        """Forward what this leg receives out of ``other`` without decoding (same codec on
        both legs, nothing to mix, record or announce). ``pt_map`` maps our PTs to the other
        leg's (default: audio PTs to its send PT, telephone-event to its telephone-event).
        None turns the fast path off (packets go to the jitter buffer again)."""
        self._relay = other
        self._relay_src = None
        if other is None:
            return
        mapping = {pt: other.send_payload_type for pt in self.payload_types}
        if self.dtmf_payload_type is not None and other.dtmf_payload_type is not None:
            mapping[self.dtmf_payload_type] = other.dtmf_payload_type
        mapping.update(pt_map or {})
        self._relay_pt = mapping

    # ------------------------------------------------------------------ send path

    def _destination(self) -> Address | None:
        return self._latched or self.remote

    def _rtcp_destination(self) -> Address | None:
        return self._latched_rtcp or self.remote_rtcp or (
            (self._latched[0], self._latched[1] + 1) if self._latched else None)

    def _send_rtp(self, packet: bytes | bytearray) -> bool:
        dest = self._destination()
        if not self.sending:
            return False
        if dest is None or self._rtp is None or self.closed:
            self.no_destination += 1
            return False
        self._rtp.sendto(packet, dest)
        self.packets_sent += 1
        self.octets_sent += len(packet)
        self._sent_since_report = True
        return True

    def send_frame(self, payload: bytes, *, samples: int | None = None,
                   marker: bool = False) -> bool:
        """Send one encoded frame (or, while a digit plays, its telephone-event packet instead)
        and advance the timestamp by ``samples`` (default one frame). True when ``payload``
        itself went out (not on hold, a destination known, no digit in its place)."""
        if self.dtmf_payload_type is not None and self.dtmf_out.active:
            pkt = self.dtmf_out.next_packet(self.timestamp)
            if pkt is not None:
                header = build_header(self.dtmf_payload_type, self.seq, pkt.timestamp, self.ssrc,
                                      pkt.marker)
                if self._send_rtp(header + pkt.payload):
                    self.seq = (self.seq + 1) & 0xFFFF
                self.timestamp = (self.timestamp + (samples or self.frame_samples)) & 0xFFFFFFFF
                self._marker_next = True
                return False
        seq = self.seq
        ts = self.timestamp
        self.timestamp = (ts + (samples or self.frame_samples)) & 0xFFFFFFFF
        if not self.sending:
            self._marker_next = True
            return False
        # _send_rtp() inlined: once per leg per 20 ms on every bridged call
        dest = self._latched or self.remote
        transport = self._rtp
        if dest is None or transport is None or self.closed:
            self.no_destination += 1
            return False
        packet = _FIXED.pack(0x80, self.send_payload_type | (
            0x80 if marker or self._marker_next else 0), seq, ts, self.ssrc) + payload
        transport.sendto(packet, dest)
        self.seq = (seq + 1) & 0xFFFF
        self._marker_next = False
        self.packets_sent += 1
        self.octets_sent += len(packet)
        self._sent_since_report = True
        return True

    def skip_frame(self, samples: int | None = None) -> None:
        """Nothing to send this tick (silence suppression): keep the timeline, mark the next."""
        self.timestamp = (self.timestamp + (samples or self.frame_samples)) & 0xFFFFFFFF
        self._marker_next = True

    def send_digit(self, digit: str, duration_ms: int = 100) -> None:
        """Queue an RFC 4733 digit; it goes out on the next ``send_frame`` ticks."""
        if self.dtmf_payload_type is None:
            raise ValueError(f"{self.name}: the peer did not negotiate telephone-event")
        self.dtmf_out.start(digit, duration_ms)

    # ------------------------------------------------------------------ RTCP

    def _schedule_rtcp(self) -> None:
        if self._loop is None or self.closed:
            return
        delay = self.rtcp_interval * random.uniform(0.5, 1.5)
        self._rtcp_timer = self._loop.call_later(delay, self._rtcp_tick)

    def _rtcp_tick(self) -> None:
        try:
            if self._rtcp_destination() is not None:
                self._send_rtcp_packets(self._report_packets())
        except Exception:
            self.errors += 1
            log.exception("%s: RTCP report failed", self.name)
        self._schedule_rtcp()

    def _report_packets(self) -> list[RtcpPacket]:
        now = self._loop.time() if self._loop is not None else time.monotonic()
        block = self.reception.report_block(now)
        blocks = (block,) if block is not None else ()
        first: RtcpPacket
        if self._sent_since_report or self.packets_sent:
            first = SenderReport(self.ssrc, ntp_from_unix(time.time()), self.timestamp,
                                 self.packets_sent & 0xFFFFFFFF, self.octets_sent & 0xFFFFFFFF,
                                 blocks)
        else:
            first = ReceiverReport(self.ssrc, blocks)
        self._sent_since_report = False
        return [first, SourceDescription((SdesChunk(self.ssrc, ((1, self.cname),)),))]

    def _send_rtcp_packets(self, packets: list[RtcpPacket]) -> None:
        dest = self._rtcp_destination()
        if dest is None or self._rtcp is None:
            return
        self._rtcp.sendto(build_rtcp(packets), dest)
        self.rtcp_sent += 1

    def _on_rtcp(self, data: bytes, addr: Address) -> None:
        if not self._rtcp_source_ok(addr):  # not even parsed: a BYE or report from a stranger
            self.rtcp_foreign += 1
            return
        try:
            packets = parse_rtcp(data)
        except RtcpError:
            self.rtcp_malformed += 1
            return
        except Exception:
            self.errors += 1
            log.exception("%s: RTCP packet from %s dropped", self.name, addr)
            return
        self.rtcp_received += 1
        self._latched_rtcp = addr
        now = self._loop.time() if self._loop is not None else time.monotonic()
        arrival_ntp = ntp_from_unix(time.time())
        for p in packets:
            if isinstance(p, SenderReport | ReceiverReport):
                if isinstance(p, SenderReport) and p.ssrc == self.reception.ssrc:
                    self.reception.on_sender_report(p, now)
                for block in p.reports:
                    if block.ssrc != self.ssrc:
                        continue
                    value = rtt(block, arrival_ntp)
                    if value is not None:
                        self.rtt = value
                    self.remote_report = (block.fraction_lost / 256.0, block.cumulative_lost,
                                          1000.0 * block.jitter / self.clock_rate)
            elif isinstance(p, Bye):
                self.bye_received = True

    # ------------------------------------------------------------------ inactivity

    def _schedule_idle_check(self) -> None:
        if self._loop is None or self.closed:
            return
        period = min(1.0, self.inactivity_timeout / 4) if self.inactivity_timeout else 1.0
        self._idle_timer = self._loop.call_later(period, self._idle_check)

    def _idle_check(self) -> None:
        if self.closed or self._loop is None:
            return
        timeout = self.inactivity_timeout
        if timeout is not None and not self._timed_out:
            last = self._last_rx if self._last_rx is not None else self._started_at
            if self._loop.time() - last >= timeout:
                self._timed_out = True
                log.info("%s: no RTP for %.1f s", self.name, timeout)
                if self.on_timeout is not None:
                    try:
                        self.on_timeout(self)
                    except Exception:
                        self.errors += 1
                        log.exception("%s: on_timeout failed", self.name)
        self._schedule_idle_check()

    # ------------------------------------------------------------------ stats

    @property
    def stats(self) -> SessionStats:
        remote = self.remote_report
        return SessionStats(
            packets_received=self.packets_received,
            octets_received=self.octets_received,
            packets_sent=self.packets_sent,
            octets_sent=self.octets_sent,
            malformed=self.malformed,
            unknown_payload_type=self.unknown_payload_type,
            foreign_source=self.foreign_source,
            dtmf_packets=self.dtmf_packets,
            relayed=self.relayed,
            errors=self.errors,
            lost=self.reception.lost,
            expected=self.reception.expected,
            jitter_ms=self.reception.jitter_ms,
            rtt_ms=None if self.rtt is None else self.rtt * 1000.0,
            remote_fraction_lost=None if remote is None else remote[0],
            remote_cumulative_lost=None if remote is None else remote[1],
            remote_jitter_ms=None if remote is None else remote[2],
            rtcp_sent=self.rtcp_sent,
            rtcp_received=self.rtcp_received,
            rtcp_malformed=self.rtcp_malformed,
            bye_received=self.bye_received,
            latched=self._latched,
            source_switches=self.source_switches,
            flushed=self.flushed,
            rtcp_foreign=self.rtcp_foreign,
        )
