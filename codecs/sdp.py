"""SDP session descriptions (RFC 8866, which obsoletes RFC 4566): model, parser, serializer.

Our own parser rather than a library because the offer/answer core needs exactly this: lexical
tolerance (LF-only line ends, trailing blank lines, an empty ``s=`` as some stacks send) but
structural strictness (``v=0`` first, then ``o=`` and ``s=``, ``t=`` before the first ``m=``, a
``c=`` for every media, only the line types allowed at each level), with a :class:`SdpError` whose
message names the line and the fault. Unknown attributes are kept, in order, and written back
unchanged, so a B2BUA can pass through what it does not interpret.

Accessors cover what the media path needs: rtpmap/fmtp (RFC 8866 §6.6/§6.15), ptime, direction
(§6.7), ``a=rtcp`` (RFC 3605) and telephone-event (RFC 4733). IPv4 and IPv6 (``c=IN IP6``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = [
    "DIRECTIONS",
    "Attribute",
    "Bandwidth",
    "Connection",
    "MediaDescription",
    "Origin",
    "RtcpAttribute",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "Timing",
    "parse_sdp",
]

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")

# Line types in the order RFC 8866 §5 allows them at session level, and at media level.
_SESSION_ORDER = "vosiuepcbtrzka"
_MEDIA_TYPES = frozenset("icbka")
_MAX_SDP_SIZE = 65536
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")


class SdpError(ValueError):
    """A session description that cannot be accepted; the message names the line and the fault."""


@dataclass(slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>``."""

    username: str = "-"
    session_id: int = 0
    session_version: int = 0
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "127.0.0.1"

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(slots=True)
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (address may carry /ttl for multicast)."""

    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "127.0.0.1"

    @classmethod
    def for_address(cls, address: str) -> Connection:
        """The c= value for an IP literal: IP6 when it is an IPv6 address, IP4 otherwise."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return cls("IN", "IP4", address)
        return cls("IN", "IP6" if ip.version == 6 else "IP4", address)

    @property
    def host(self) -> str:
        """The address without a multicast /ttl or /count suffix."""
        return self.address.split("/", 1)[0]

    @property
    def is_hold_address(self) -> bool:
        """RFC 2543-style hold: ``c=IN IP4 0.0.0.0`` (RFC 3264 §8.4 still asks us to honour it)."""
        return self.host in ("0.0.0.0", "::")

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(slots=True)
class Bandwidth:
    """``b=<bwtype>:<bandwidth>`` (kbit/s for AS and CT, bit/s for TIAS)."""

    bwtype: str
    value: int

    def __str__(self) -> str:
        return f"{self.bwtype}:{self.value}"


@dataclass(slots=True)
class Timing:
    """``t=<start-time> <stop-time>`` with its ``r=`` repeat lines kept as text."""

    start: int = 0
    stop: int = 0
    repeats: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Attribute:
    """``a=<name>`` (a property, value None) or ``a=<name>:<value>``."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]``."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1

    def __str__(self) -> str:
        tail = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{tail}"


@dataclass(frozen=True, slots=True)
class RtcpAttribute:
    """RFC 3605 ``a=rtcp:<port> [<nettype> <addrtype> <address>]``."""

    port: int
    connection: Connection | None = None


def _parse_int(text: str, what: str, lo: int = 0, hi: int | None = None, where: str = "") -> int:
    # ``what``/``where`` are only formatted on error: this runs for every number of every body.
    if not text.isdigit() or not text.isascii():
        raise SdpError(f"{where}{': ' if where else ''}{what}: {text!r} is not a decimal number")
    value = int(text)
    if value < lo or (hi is not None and value > hi):
        raise SdpError(f"{where}{': ' if where else ''}{what}: {value} out of range")
    return value


def _is_dotted_quad(host: str) -> bool:
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not (part.isdigit() and part.isascii() and len(part) <= 3 and int(part) <= 255):
            return False
    return True


def _parse_connection(value: str, where: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpError(f"{where}: c= needs '<nettype> <addrtype> <address>', got {value!r}")
    nettype, addrtype, address = parts
    if nettype == "IN":
        host = address.split("/", 1)[0]
        if addrtype == "IP4":
            # A dotted quad must be a valid one; anything else is taken as a host name.
            if host.replace(".", "").isdigit() and not _is_dotted_quad(host):
                raise SdpError(f"{where}: {host!r} is not an IPv4 address")
        elif addrtype == "IP6":
            if ":" in host:
                try:
                    ipaddress.IPv6Address(host)
                except ValueError:
                    raise SdpError(f"{where}: {host!r} is not an IPv6 address") from None
        else:
            raise SdpError(f"{where}: unknown address type {addrtype!r} (IP4 or IP6)")
    return Connection(nettype, addrtype, address)


@dataclass(slots=True)
class MediaDescription:
    """One ``m=`` section: ``m=<media> <port>[/<number of ports>] <proto> <fmt> ...``."""

    media: str = "audio"
    port: int = 0
    proto: str = "RTP/AVP"
    formats: list[str] = field(default_factory=list)
    number_of_ports: int | None = None
    title: str | None = None
    connections: list[Connection] = field(default_factory=list)
    bandwidths: list[Bandwidth] = field(default_factory=list)
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)

    # -- attributes ---------------------------------------------------------------------------

    def get_attributes(self, name: str) -> list[str | None]:
        """Values of every ``a=name`` in order (None for property attributes)."""
        return [a.value for a in self.attributes if a.name == name]

    def get_attribute(self, name: str) -> str | None:
        """Value of the first ``a=name``; None when absent or a property attribute."""
        for a in self.attributes:
            if a.name == name:
                return a.value
        return None

    def has_attribute(self, name: str) -> bool:
        return any(a.name == name for a in self.attributes)

    # -- RTP payload formats ------------------------------------------------------------------

    @property
    def is_rtp(self) -> bool:
        return "RTP/" in self.proto

    @property
    def payload_types(self) -> list[int]:
        """The m= formats as RTP payload type numbers (RTP protocols only)."""
        if not self.is_rtp:
            raise SdpError(f"m={self.media} with proto {self.proto} has no RTP payload types")
        return [int(f) for f in self.formats]

    def rtpmaps(self, *, skip_malformed: bool = False) -> dict[int, RtpMap]:
        """Every ``a=rtpmap`` by payload type; a malformed one raises SdpError unless skipped."""
        maps: dict[int, RtpMap] = {}
        for value in self.get_attributes("rtpmap"):
            try:
                rtpmap = _parse_rtpmap(value)
            except SdpError:
                if skip_malformed:
                    continue
                raise
            maps[rtpmap.payload_type] = rtpmap
        return maps

    def fmtps(self) -> dict[str, str]:
        """``a=fmtp:<format> <parameters>`` by format (as text, so non-RTP formats work too)."""
        out: dict[str, str] = {}
        for value in self.get_attributes("fmtp"):
            if value is None:
                raise SdpError("a=fmtp without a value")
            fmt, _, params = value.partition(" ")
            out[fmt] = params.strip()
        return out

    def fmtp(self, payload_type: int | str) -> str | None:
        return self.fmtps().get(str(payload_type))

    def _int_attribute(self, name: str) -> int | None:
        value = self.get_attribute(name)
        if value is None:
            return None
        # Some stacks write "a=ptime:20.0" or "a=ptime: 20"; the number is what matters.
        text = value.strip()
        if text.endswith(".0"):
            text = text[:-2]
        return _parse_int(text, f"a={name}", 1, 100000)

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in milliseconds, None when absent."""
        return self._int_attribute("ptime")

    @property
    def maxptime(self) -> int | None:
        return self._int_attribute("maxptime")

    @property
    def direction(self) -> str | None:
        """The media-level direction attribute, None when the media has none (see effective)."""
        for a in self.attributes:
            if a.name in DIRECTIONS and a.value is None:
                return a.name
        return None

    def set_direction(self, direction: str) -> None:
        """Replace any direction attribute of this media by ``direction``."""
        if direction not in DIRECTIONS:
            raise SdpError(f"unknown direction {direction!r}")
        kept = [a for a in self.attributes if not (a.name in DIRECTIONS and a.value is None)]
        self.attributes = [*kept, Attribute(direction)]

    @property
    def rtcp(self) -> RtcpAttribute | None:
        """RFC 3605 ``a=rtcp``, None when absent."""
        value = self.get_attribute("rtcp")
        if value is None:
            return None
        parts = value.split()
        port = _parse_int(parts[0], "a=rtcp port", 0, 65535)
        if len(parts) == 1:
            return RtcpAttribute(port)
        if len(parts) != 4:
            raise SdpError(f"a=rtcp:{value}: needs '<port>' or '<port> IN <addrtype> <address>'")
        return RtcpAttribute(port, _parse_connection(" ".join(parts[1:]), "a=rtcp"))

    def telephone_events(self) -> dict[int, RtpMap]:
        """RFC 4733 telephone-event payload types offered here (any clock rate), by PT."""
        return {
            pt: m for pt, m in self.rtpmaps().items() if m.encoding.lower() == "telephone-event"
        }

    def lines(self) -> list[str]:
        port = f"{self.port}/{self.number_of_ports}" if self.number_of_ports else str(self.port)
        out = [f"m={self.media} {port} {self.proto} {' '.join(self.formats)}"]
        if self.title is not None:
            out.append(f"i={self.title}")
        out.extend(f"c={c}" for c in self.connections)
        out.extend(f"b={b}" for b in self.bandwidths)
        if self.key is not None:
            out.append(f"k={self.key}")
        out.extend(f"a={a}" for a in self.attributes)
        return out


def _parse_rtpmap(value: str | None) -> RtpMap:
    if value is None:
        raise SdpError("a=rtpmap without a value")
    pt_text, _, rest = value.strip().partition(" ")
    pt = _parse_int(pt_text, "a=rtpmap payload type", 0, 127)
    parts = rest.strip().split("/")
    if len(parts) not in (2, 3) or not parts[0]:
        raise SdpError(f"a=rtpmap:{value}: needs '<pt> <encoding>/<clock rate>[/<channels>]'")
    rate = _parse_int(parts[1], "clock rate", 1, None, f"a=rtpmap:{pt}")
    channels = _parse_int(parts[2], "channels", 1, 255, f"a=rtpmap:{pt}") if len(parts) == 3 else 1
    return RtpMap(pt, parts[0], rate, channels)


@dataclass(slots=True)
class SessionDescription:
    """A whole SDP body; media sections in ``media``, in their order."""

    origin: Origin = field(default_factory=Origin)
    session_name: str = "-"
    version: int = 0
    information: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = field(default_factory=list)
    times: list[Timing] = field(default_factory=lambda: [Timing()])
    timezone: str | None = None
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)

    @property
    def direction(self) -> str | None:
        """The session-level direction attribute, None when absent."""
        for a in self.attributes:
            if a.name in DIRECTIONS and a.value is None:
                return a.name
        return None

    def effective_direction(self, media: MediaDescription) -> str:
        """Media level, else session level, else sendrecv (RFC 8866 §6.7)."""
        return media.direction or self.direction or "sendrecv"

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """The media's own c= when it has one, else the session's."""
        return media.connections[0] if media.connections else self.connection

    def to_str(self) -> str:
        lines = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        if self.information is not None:
            lines.append(f"i={self.information}")
        if self.uri is not None:
            lines.append(f"u={self.uri}")
        lines.extend(f"e={e}" for e in self.emails)
        lines.extend(f"p={p}" for p in self.phones)
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines.extend(f"b={b}" for b in self.bandwidths)
        for t in self.times:
            lines.append(f"t={t.start} {t.stop}")
            lines.extend(f"r={r}" for r in t.repeats)
        if self.timezone is not None:
            lines.append(f"z={self.timezone}")
        if self.key is not None:
            lines.append(f"k={self.key}")
        lines.extend(f"a={a}" for a in self.attributes)
        for m in self.media:
            lines.extend(m.lines())
        return "\r\n".join(lines) + "\r\n"

    def to_bytes(self) -> bytes:
        """The body as sent: UTF-8, CRLF line ends (RFC 8866 §5)."""
        return self.to_str().encode("utf-8")


def _split_lines(data: bytes | str) -> list[str]:
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        if len(raw) > _MAX_SDP_SIZE:
            raise SdpError(f"body of {len(raw)} bytes exceeds {_MAX_SDP_SIZE}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpError(f"not UTF-8 at byte {exc.start}") from None
    elif isinstance(data, str):
        text = data
        if len(text) > _MAX_SDP_SIZE:
            raise SdpError(f"body of {len(text)} characters exceeds {_MAX_SDP_SIZE}")
    else:
        raise SdpError(f"expected bytes or str, got {type(data).__name__}")
    if "\x00" in text:
        raise SdpError("NUL character in body")
    # Tolerate LF-only line ends and trailing blank lines; structure is checked line by line.
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            raise SdpError("bare CR inside a line (lines end with CRLF or LF)")
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse an SDP body; raises :class:`SdpError` naming the first fault found."""
    lines = _split_lines(data)
    if not lines:
        raise SdpError("empty session description")

    sd = SessionDescription(times=[])
    media: MediaDescription | None = None
    last_rank = -1
    seen_o = seen_s = False
    for number, line in enumerate(lines, 1):
        kind = line[:1]
        if kind == "a" and media is not None and line[1:2] == "=":
            # Fast path: most of a body is media attributes.
            name, sep, attr_value = line[2:].partition(":")
            if not name or " " in name:
                raise SdpError(f"line {number}: a= needs '<name>[:<value>]', got {line[2:42]!r}")
            media.attributes.append(Attribute(name, attr_value if sep else None))
            continue
        where = f"line {number}"
        if not line.strip() and number > 1:
            continue  # a blank line carries nothing; some stacks leave one before the first m=
        if number == 1 and not line.startswith("v="):
            raise SdpError(f"{where}: the first line must be v=, got {line[:20]!r}")
        if line[1:2] != "=" or kind not in _LETTERS:
            raise SdpError(f"{where}: {line[:40]!r} is not '<type>=<value>'")
        value = line[2:]
        if number == 1:
            if value.strip() != "0":
                raise SdpError(f"{where}: unsupported SDP version {value!r} (only v=0)")
            last_rank = 0
            continue
        if kind not in "os" and not (seen_o and seen_s):
            raise SdpError(f"{where}: {kind}= before o= and s= (v=, o=, s= come first)")
        if kind == "m":
            if not sd.times:
                raise SdpError(f"{where}: m= before any t= line")
            media = _parse_media_line(value, where)
            sd.media.append(media)
            continue
        if media is not None:
            if kind not in _MEDIA_TYPES:
                raise SdpError(f"{where}: {kind}= is not allowed inside m={media.media}")
            _media_line(media, kind, value, where)
            continue
        rank = _SESSION_ORDER.find(kind)
        if rank < 0:
            # RFC 8866 §5: a description with a type letter we do not understand is ignored whole.
            raise SdpError(f"{where}: unknown line type {kind}=")
        if kind == "v":
            raise SdpError(f"{where}: second v= line")
        if rank < last_rank and not (kind == "t" and last_rank == _SESSION_ORDER.find("r")):
            raise SdpError(
                f"{where}: {kind}= out of order (RFC 8866 §5 order is v o s i u e p c b t r z k a)"
            )
        last_rank = rank
        if kind == "o":
            if seen_o:
                raise SdpError(f"{where}: second o= line")
            if number != 2:
                raise SdpError(f"{where}: o= must follow v=")
            sd.origin = _parse_origin(value, where)
            seen_o = True
        elif kind == "s":
            if seen_s:
                raise SdpError(f"{where}: second s= line")
            if not seen_o:
                raise SdpError(f"{where}: s= before o=")
            sd.session_name = value  # RFC says non-empty; tolerated, as several stacks send "s="
            seen_s = True
        elif kind == "i":
            sd.information = value
        elif kind == "u":
            sd.uri = value
        elif kind == "e":
            sd.emails.append(value)
        elif kind == "p":
            sd.phones.append(value)
        elif kind == "c":
            if sd.connection is not None:
                raise SdpError(f"{where}: second session-level c= line")
            sd.connection = _parse_connection(value, where)
        elif kind == "b":
            sd.bandwidths.append(_parse_bandwidth(value, where))
        elif kind == "t":
            start, stop = _parse_timing(value, where)
            sd.times.append(Timing(start, stop))
        elif kind == "r":
            if not sd.times:
                raise SdpError(f"{where}: r= without a t= line")
            sd.times[-1].repeats.append(value)
        elif kind == "z":
            sd.timezone = value
        elif kind == "k":
            sd.key = value
        elif kind == "a":
            sd.attributes.append(_parse_attribute(value, where))

    if not seen_o:
        raise SdpError("missing o= line")
    if not seen_s:
        raise SdpError("missing s= line")
    if not sd.times:
        raise SdpError("missing t= line")
    for index, m in enumerate(sd.media):
        # RFC 8866 §5.7: c= at session level or in every media. A disabled stream (port 0,
        # e.g. a rejected m-line in an answer) carries no media, so it is let through.
        if sd.connection is None and not m.connections and m.port != 0:
            raise SdpError(f"m-line {index} (m={m.media}): no c= at session or media level")
    return sd


def _parse_origin(value: str, where: str) -> Origin:
    parts = value.split()
    if len(parts) != 6:
        raise SdpError(
            f"{where}: o= needs 6 fields (username sess-id sess-version nettype addrtype address)"
        )
    user, sess_id, sess_version, nettype, addrtype, address = parts
    return Origin(
        user,
        _parse_int(sess_id, "o= sess-id"),
        _parse_int(sess_version, "o= sess-version"),
        nettype,
        addrtype,
        address,
    )


def _parse_bandwidth(value: str, where: str) -> Bandwidth:
    bwtype, sep, amount = value.partition(":")
    if not sep or not bwtype:
        raise SdpError(f"{where}: b= needs '<bwtype>:<bandwidth>', got {value!r}")
    return Bandwidth(bwtype, _parse_int(amount.strip(), f"b={bwtype}", 0, None, where))


def _parse_timing(value: str, where: str) -> tuple[int, int]:
    parts = value.split()
    if len(parts) != 2:
        raise SdpError(f"{where}: t= needs '<start> <stop>', got {value!r}")
    return (
        _parse_int(parts[0], "t= start", 0, None, where),
        _parse_int(parts[1], "t= stop", 0, None, where),
    )


def _parse_attribute(value: str, where: str) -> Attribute:
    name, sep, attr_value = value.partition(":")
    if not name or " " in name:
        raise SdpError(f"{where}: a= needs '<name>[:<value>]', got {value[:40]!r}")
    return Attribute(name, attr_value if sep else None)


def _parse_media_line(value: str, where: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 4:
        raise SdpError(f"{where}: m= needs '<media> <port> <proto> <fmt> ...', got {value!r}")
    media, port_text, proto, *formats = parts
    port_part, slash, count_part = port_text.partition("/")
    port = _parse_int(port_part, "m= port", 0, 65535, where)
    count = _parse_int(count_part, "m= number of ports", 1, None, where) if slash else None
    if "RTP/" in proto:
        for fmt in formats:
            if not (fmt.isdigit() and fmt.isascii() and int(fmt) <= 127):
                _parse_int(fmt, "m= payload type", 0, 127, where)  # raises with the reason
    return MediaDescription(media, port, proto, formats, count)


def _media_line(media: MediaDescription, kind: str, value: str, where: str) -> None:
    if kind == "i":
        media.title = value
    elif kind == "c":
        media.connections.append(_parse_connection(value, where))
    elif kind == "b":
        media.bandwidths.append(_parse_bandwidth(value, where))
    elif kind == "k":
        media.key = value
    else:
        media.attributes.append(_parse_attribute(value, where))
