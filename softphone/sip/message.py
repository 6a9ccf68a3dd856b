"""SIP messages (RFC 3261 §7, §20, §25): model, parser, serializer, stream framing.

Our own parser because the core must be sans-I/O, exact about what it rejects (a 400 whose
reason names the fault) and fast (a typical INVITE with SDP parses in a few microseconds):
header values are kept as text and parsed on demand (Via, CSeq, From/To).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from softphone.sip.errors import SipParseError
from softphone.sip.uri import NameAddr, split_hostport

MAX_MESSAGE_SIZE = 65536

COMPACT = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via",
    "o": "event", "u": "allow-events", "r": "refer-to", "b": "referred-by", "x": "session-expires",
    "a": "accept-contact", "j": "reject-contact", "d": "request-disposition", "y": "identity",
    "n": "identity-info",
}

# Serialised spelling of well-known headers; others keep the spelling they arrived with.
DISPLAY = {
    name.lower(): name
    for name in (
        "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Content-Length",
        "Content-Type", "Route", "Record-Route", "Allow", "Supported", "Require", "Proxy-Require",
        "Unsupported", "Expires", "Min-Expires", "User-Agent", "Server", "Authorization",
        "Proxy-Authorization", "WWW-Authenticate", "Proxy-Authenticate", "Authentication-Info",
        "Warning", "Retry-After", "Subject", "Event", "Allow-Events", "Refer-To", "Referred-By",
        "Session-Expires", "Min-SE", "Accept", "Accept-Encoding", "Accept-Language",
        "Content-Encoding", "Content-Disposition", "Reason", "Geolocation", "Geolocation-Routing",
        "P-Asserted-Identity", "Privacy", "RSeq", "RAck", "Timestamp", "Date", "Organization",
        "Priority", "Reply-To", "In-Reply-To", "Alert-Info", "Call-Info", "Error-Info",
        "Identity", "Identity-Info", "Accept-Contact", "Reject-Contact", "Request-Disposition",
        "Path", "Service-Route", "MIME-Version",
    )
}

# Headers whose values are comma-separated lists (§7.3.1); others may contain commas in values.
LIST_HEADERS = frozenset(
    {
        "via", "contact", "route", "record-route", "allow", "supported", "require",
        "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
        "allow-events", "content-encoding", "in-reply-to", "warning", "path", "service-route",
        "p-asserted-identity", "reason", "geolocation", "call-info", "alert-info", "error-info",
    }
)

SINGLE_REQUIRED = ("to", "from", "call-id", "cseq")


def canonical(name: str) -> str:
    """The lower-case long form of a header name (compact forms expanded)."""
    low = name.strip().lower()
    return COMPACT.get(low, low)


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quotes and <...>."""
    if "," not in value:
        v = value.strip()
        return [v] if v else []
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "<":
            depth += 1
        elif c == ">":
            depth = max(0, depth - 1)
        elif c == "," and depth == 0:
            part = value[start:i].strip()
            if part:
                out.append(part)
            start = i + 1
        i += 1
    if quoted:
        raise SipParseError("Unterminated quoted string")
    part = value[start:].strip()
    if part:
        out.append(part)
    return out


class Headers:
    """Ordered header fields. Names are matched case-insensitively, compact forms expanded."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str, str]] = []  # (canonical, display, value)
        for name, value in fields:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        key = canonical(name)
        self._fields.append((key, DISPLAY.get(key, name.strip()), value))

    def insert_first(self, name: str, value: str) -> None:
        """Insert before any field of the same name (a new top Via, a new Route)."""
        key = canonical(name)
        for i, (k, _, _) in enumerate(self._fields):
            if k == key:
                self._fields.insert(i, (key, DISPLAY.get(key, name), value))
                return
        self._fields.append((key, DISPLAY.get(key, name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every field of this name by one (kept at the first one's place)."""
        key = canonical(name)
        for i, (k, _, _) in enumerate(self._fields):
            if k == key:
                self._fields[i] = (key, DISPLAY.get(key, name), value)
                self._fields[i + 1 :] = [f for f in self._fields[i + 1 :] if f[0] != key]
                return
        self._fields.append((key, DISPLAY.get(key, name), value))

    def remove(self, name: str) -> None:
        key = canonical(name)
        self._fields = [f for f in self._fields if f[0] != key]

    def remove_first_value(self, name: str) -> str | None:
        """Remove the first list element of a header (the top Via, the first Route)."""
        key = canonical(name)
        for i, (k, d, v) in enumerate(self._fields):
            if k == key:
                parts = split_list(v)
                if len(parts) <= 1:
                    del self._fields[i]
                else:
                    self._fields[i] = (k, d, ", ".join(parts[1:]))
                return parts[0] if parts else None
        return None

    def get(self, name: str, default: str | None = None) -> str | None:
        key = canonical(name)
        for k, _, v in self._fields:
            if k == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every field of this name, as sent (not split at commas)."""
        key = canonical(name)
        return [v for k, _, v in self._fields if k == key]

    def values(self, name: str) -> list[str]:
        """The list elements of a header across all its fields (§7.3.1)."""
        key = canonical(name)
        out: list[str] = []
        for k, _, v in self._fields:
            if k == key:
                if key in LIST_HEADERS:
                    out.extend(split_list(v))
                else:
                    out.append(v.strip())
        return out

    def count(self, name: str) -> int:
        key = canonical(name)
        return sum(1 for k, _, _ in self._fields if k == key)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical(name)
        return any(k == key for k, _, _ in self._fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, display, value in self._fields:
            yield display, value

    def __len__(self) -> int:
        return len(self._fields)

    def copy(self) -> Headers:
        h = Headers()
        h._fields = list(self._fields)
        return h

    def encode(self) -> str:
        return "".join(f"{d}: {v}\r\n" for _, d, v in self._fields)


@dataclass(slots=True)
class Via:
    """One Via value (§20.42) with rport/received (RFC 3581)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        text = text.strip()
        sent_protocol, _, rest = _split_ws(text)
        parts = [p.strip() for p in sent_protocol.split("/")]
        if len(parts) != 3 or not all(parts):
            # Tolerate LWS around the slashes: "SIP / 2.0 / UDP host".
            joined = text.replace(" / ", "/").replace("/ ", "/").replace(" /", "/")
            if joined == text:
                raise SipParseError("Bad Via sent-protocol")
            return cls.parse(joined)
        name, version, transport = parts
        if name.upper() != "SIP" or version != "2.0":
            raise SipParseError("Bad Via sent-protocol")
        sent_by, _, ptext = rest.strip().partition(";")
        host, port = split_hostport(sent_by.strip().replace(" ", ""))
        params: dict[str, str | None] = {}
        for p in ptext.split(";"):
            p = p.strip()
            if not p:
                continue
            k, eq, v = p.partition("=")
            params[k.strip().lower()] = v.strip() if eq else None
        return cls(transport=transport.upper(), host=host, port=port, params=params)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        hp = self.host if self.port is None else f"{self.host}:{self.port}"
        ps = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        return f"{self.protocol}/{self.transport} {hp}{ps}"


def _split_ws(text: str) -> tuple[str, str, str]:
    for i, c in enumerate(text):
        if c in " \t":
            return text[:i], c, text[i + 1 :]
    return text, "", ""


@dataclass(frozen=True, slots=True)
class CSeq:
    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        num, _, method = text.strip().partition(" ")
        method = method.strip()
        if not num.isdigit() or len(num) > 10 or int(num) >= 2**31 or not method or " " in method:
            raise SipParseError("Bad CSeq")
        return cls(int(num), method)

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


class _Message:
    """What requests and responses share: headers, body and the typed header accessors."""

    __slots__ = ("headers", "body")

    headers: Headers
    body: bytes

    @property
    def call_id(self) -> str:
        return self.headers.get("call-id") or ""

    @property
    def cseq(self) -> CSeq:
        return CSeq.parse(self.headers.get("cseq") or "")

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.values("via")]

    @property
    def top_via(self) -> Via:
        values = self.headers.values("via")
        if not values:
            raise SipParseError("Missing Via")
        return Via.parse(values[0])

    @property
    def from_(self) -> NameAddr:
        return NameAddr.parse(self.headers.get("from") or "")

    @property
    def to(self) -> NameAddr:
        return NameAddr.parse(self.headers.get("to") or "")

    @property
    def contacts(self) -> list[NameAddr]:
        return [NameAddr.parse(v) for v in self.headers.values("contact") if v != "*"]

    @property
    def content_type(self) -> str | None:
        ct = self.headers.get("content-type")
        return ct.split(";")[0].strip().lower() if ct else None

    def _encode(self, start_line: str) -> bytes:
        head = self.headers.copy()
        head.set("Content-Length", str(len(self.body)))
        return (start_line + "\r\n" + head.encode() + "\r\n").encode() + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def to_bytes(self) -> bytes:  # pragma: no cover - overridden
        raise NotImplementedError


class SipRequest(_Message):
    __slots__ = ("method", "uri")

    def __init__(self, method: str, uri: str, headers: Headers | None = None,
                 body: bytes = b"") -> None:
        self.method = method
        self.uri = uri
        self.headers = headers if headers is not None else Headers()
        self.body = body

    def to_bytes(self) -> bytes:
        return self._encode(f"{self.method} {self.uri} SIP/2.0")

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri} call-id={self.call_id!r}>"


class SipResponse(_Message):
    __slots__ = ("status", "reason")

    def __init__(self, status: int, reason: str, headers: Headers | None = None,
                 body: bytes = b"") -> None:
        self.status = status
        self.reason = reason
        self.headers = headers if headers is not None else Headers()
        self.body = body

    def to_bytes(self) -> bytes:
        return self._encode(f"SIP/2.0 {self.status} {self.reason}")

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason} call-id={self.call_id!r}>"


SipMessage = SipRequest | SipResponse

_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


def _split_head_body(data: bytes) -> tuple[bytes, bytes]:
    idx = data.find(b"\r\n\r\n")
    if idx >= 0:
        return data[:idx], data[idx + 4 :]
    idx = data.find(b"\n\n")
    if idx >= 0:
        return data[:idx], data[idx + 2 :]
    return data.rstrip(b"\r\n"), b""


def parse_message(data: bytes, *, stream: bool = False) -> SipMessage:
    """Parse one whole message. Raises :class:`SipParseError` and nothing else.

    On datagrams a body longer than Content-Length is truncated (§18.3); a shorter one is an
    error. ``stream=True`` demands Content-Length (framing is done by :class:`StreamFramer`).
    """
    try:
        return _parse(data, stream)
    except SipParseError:
        raise
    except (ValueError, IndexError, UnicodeError) as exc:  # a last line of defence
        raise SipParseError(f"Malformed message ({type(exc).__name__})") from None


def _parse(data: bytes, stream: bool) -> SipMessage:
    if len(data) > MAX_MESSAGE_SIZE:
        raise SipParseError("Message Too Large", status=513)
    data = data.lstrip(b"\r\n")
    head, body = _split_head_body(data)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("Header not UTF-8") from None
    lines = text.replace("\r\n", "\n").split("\n")
    start = lines[0]
    headers = Headers()
    fields = headers._fields
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":  # folded continuation (§7.3.1)
            if not fields:
                raise SipParseError("Continuation line before any header")
            k, d, v = fields[-1]
            fields[-1] = (k, d, v + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not name or any(c not in _TOKEN for c in name):
            raise SipParseError("Malformed header line")
        key = COMPACT.get(name.lower(), name.lower())
        fields.append((key, DISPLAY.get(key, name), value.strip()))
    msg = _start_line(start, headers)
    _check_required(msg)
    cl_values = headers.get_all("content-length")
    if len(cl_values) > 1:
        raise SipParseError("Multiple Content-Length")
    if cl_values:
        cl_text = cl_values[0].strip()
        if not cl_text.isdigit():
            raise SipParseError("Bad Content-Length")
        length = int(cl_text)
        if length > len(body):
            raise SipParseError("Content-Length larger than body")
        body = body[:length]
    elif stream:
        raise SipParseError("Missing Content-Length on a stream transport")
    msg.body = body
    return msg


def _start_line(line: str, headers: Headers) -> SipMessage:
    if line.startswith("SIP/"):
        parts = line.split(" ", 2)
        if len(parts) < 2 or parts[0] != "SIP/2.0":
            raise SipParseError("Bad status line", respondable=False)
        code = parts[1]
        if len(code) != 3 or not code.isdigit() or code[0] == "0":
            raise SipParseError("Bad status code", respondable=False)
        return SipResponse(int(code), parts[2] if len(parts) > 2 else "", headers)
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError("Bad request line")
    method, uri, version = parts
    if not method or any(c not in _TOKEN for c in method):
        raise SipParseError("Bad method")
    if version != "SIP/2.0":
        raise SipParseError("Version Not Supported", status=505)
    if not uri or ":" not in uri:
        raise SipParseError("Bad Request-URI")
    return SipRequest(method, uri, headers)


def _check_required(msg: SipMessage) -> None:
    h = msg.headers
    if not h.values("via"):
        raise SipParseError("Missing Via", respondable=False)
    for name in SINGLE_REQUIRED:
        n = h.count(name)
        if n == 0:
            raise SipParseError(f"Missing {DISPLAY[name]}")
        if n > 1:
            raise SipParseError(f"Multiple {DISPLAY[name]}")
    cseq = CSeq.parse(h.get("cseq") or "")
    if isinstance(msg, SipRequest):
        if cseq.method != msg.method:
            raise SipParseError("CSeq method does not match the request method")
        mf = h.get("max-forwards")
        if mf is not None and (not mf.strip().isdigit() or int(mf) > 255):
            raise SipParseError("Bad Max-Forwards")


class StreamFramer:
    """Cuts a byte stream (TCP, TLS) into messages by Content-Length (§18.3).

    CRLF keep-alives (RFC 5626 §4.4.1) between messages are reported as ``b"\\r\\n\\r\\n"``
    pings so the transport can answer with a pong (``b"\\r\\n"``).
    """

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_size

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the complete messages (and pings) now available.

        Raises :class:`SipParseError` when the stream cannot be resynchronised (oversize or
        no Content-Length): the transport must then close the connection.
        """
        self._buf += data
        out: list[bytes] = []
        buf = self._buf
        while buf:
            if buf[:4] == b"\r\n\r\n":
                out.append(b"\r\n\r\n")
                del buf[:4]
                continue
            if buf[:2] == b"\r\n" and len(buf) >= 2 and buf[2:3] != b"\r":
                del buf[:2]  # a lone pong or a stray CRLF
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self._max:
                    raise SipParseError("Message Too Large", status=513)
                break
            head = bytes(buf[:end])
            length = _content_length(head)
            total = end + 4 + length
            if total > self._max:
                raise SipParseError("Message Too Large", status=513)
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
        return out


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            v = value.strip()
            if not v.isdigit():
                raise SipParseError("Bad Content-Length")
            return int(v)
    raise SipParseError("Missing Content-Length on a stream transport")


def make_response(request: SipRequest, status: int, reason: str, *, to_tag: str | None = None,
                  body: bytes = b"", content_type: str | None = None,
                  extra: Iterable[tuple[str, str]] = ()) -> SipResponse:
    """Build a response to ``request`` per §8.2.6: Via, From, To (+tag), Call-ID, CSeq copied."""
    h = Headers()
    for v in request.headers.get_all("via"):
        h.add("Via", v)
    h.add("From", request.headers.get("from") or "")
    to = request.headers.get("to") or ""
    if to_tag is not None and status > 100 and ";tag=" not in to.replace(" ", "").lower():
        to = f"{to};tag={to_tag}"
    h.add("To", to)
    h.add("Call-ID", request.call_id)
    h.add("CSeq", request.headers.get("cseq") or "")
    if status >= 200 or status == 100:
        ts = request.headers.get("timestamp")
        if ts is not None and status == 100:
            h.add("Timestamp", ts)
    for name, value in extra:
        h.add(name, value)
    if content_type is not None:
        h.add("Content-Type", content_type)
    return SipResponse(status, reason, h, body)
