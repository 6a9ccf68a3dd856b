"""SIP messages (RFC 3261 §7, §20, §25): model, parser, serializer, stream framing.

Our own parser because the core must be sans-I/O, exact about what it rejects (a 400 whose
reason names the fault, RFC 4475 §3.1.2 and §3.3) and fast: a typical 1 KB INVITE with SDP
parses in about 20 µs of one core, about twice sippy's parser (bench/sip.py). Header values are
kept as text; the fields every server needs (Request-URI, top Via, From, To, Call-ID, CSeq,
Max-Forwards, Content-Length, Contact, Date) are checked at parse time, by one compiled regular
expression for the common spelling and the full LWS-tolerant parser (``Via.parse``,
``NameAddr.parse``...) only when that fails. Typed values (``msg.vias``, ``msg.from_``...) are
built on demand, from the parser's matches when the header is unchanged.

Every pattern is possessive or anchored so that matching is linear in the input: a 64 KB
datagram of separators costs milliseconds, not minutes.

Whatever the bytes, :func:`parse_message` raises :class:`SipParseError` and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from softphone.sip.errors import SipHeaderValueError, SipParseError
from softphone.sip.uri import _FAST_NAME_ADDR_SIP, NameAddr, SipUri, split_hostport, split_unquoted

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
# The fields parse_message checks; the others are kept as text, unread.
_CHECKED = frozenset(
    ("via", "to", "from", "call-id", "cseq", "max-forwards", "content-length", "contact", "date")
)
_DIALOG_METHODS = frozenset(("INVITE", "SUBSCRIBE", "REFER", "NOTIFY"))
_METHODS = frozenset(
    ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
     "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE")
)

_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")

# Control characters other than HTAB (and the CR LF that end lines): never in a header value
# (RFC 3261 §25.1, TEXT-UTF8char and LWS). A NUL would cut the value short for a C peer.
_CTL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# The same set as bytes, for the check on every message: deleting them with bytes.translate
# costs a third of a regular-expression search of the header block.
_CTL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
# Fields a response copies from the request (§8.2.6.2): one of them broken is not answered.
_ECHOED = frozenset(("via", "from", "to", "call-id", "cseq", "record-route", "timestamp"))

# Header name -> (canonical key, serialised spelling, checked by the parser). Pre-filled with
# the usual spellings; names seen on the wire are added up to a bound (random names must not
# grow it).
_NAME_CACHE: dict[str, tuple[str, str, bool]] = {}
_NAME_CACHE_MAX = 2048


def _name_entry(name: str) -> tuple[str, str, bool]:
    low = name.lower()
    key = COMPACT.get(low, low)
    return key, DISPLAY.get(key, name), key in _CHECKED


for _display in list(DISPLAY.values()) + list(COMPACT):
    for _spelling in (_display, _display.lower(), _display.upper()):
        _NAME_CACHE[_spelling] = _name_entry(_spelling)


def canonical(name: str) -> str:
    """The lower-case long form of a header name (compact forms expanded)."""
    entry = _NAME_CACHE.get(name)
    if entry is not None:
        return entry[0]
    low = name.strip().lower()
    return COMPACT.get(low, low)


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quotes and <...>."""
    if "," not in value:
        v = value.strip()
        return [v] if v else []
    return [p for p in _split_elements(value) if p]


def _split_elements(value: str) -> list[str]:
    """Comma-separated elements, stripped, empty ones kept (for strict checks)."""
    if "," not in value:
        return [value.strip()]
    return [part.strip() for part in split_unquoted(value, ",", angle=True)]


def _checked(value: str) -> str:
    # A CR or LF in a value would end the field early on the wire: header injection.
    if "\r" in value or "\n" in value:
        raise SipHeaderValueError("CR or LF in a header value")
    return value


class Headers:
    """Ordered header fields. Names are matched case-insensitively, compact forms expanded.

    Values containing CR or LF are refused (:class:`SipHeaderValueError`).
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str, str]] = []  # (canonical, display, value)
        for name, value in fields:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        key = canonical(name)
        self._fields.append((key, DISPLAY.get(key, name.strip()), _checked(value)))

    def insert_first(self, name: str, value: str) -> None:
        """Insert before any field of the same name (a new top Via, a new Route)."""
        key = canonical(name)
        _checked(value)
        for i, (k, _, _) in enumerate(self._fields):
            if k == key:
                self._fields.insert(i, (key, DISPLAY.get(key, name), value))
                return
        self._fields.append((key, DISPLAY.get(key, name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every field of this name by one (kept at the first one's place)."""
        key = canonical(name)
        _checked(value)
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
        return "".join([f"{d}: {v}\r\n" for _, d, v in self._fields])


# sent-protocol with LWS around the slashes (RFC 4475 §3.1.1.1), sent-by, then parameters.
# Possessive throughout: a value is matched in linear time whatever its runs of LWS.
_VIA_RE = re.compile(
    r"([A-Za-z0-9\-.!%*_+`'~]++)[ \t]*+/[ \t]*+([A-Za-z0-9\-.!%*_+`'~]++)[ \t]*+/[ \t]*+"
    r"([A-Za-z0-9\-.!%*_+`'~]++)[ \t]++([^;]++)(;.*+)?+"
)
_VIA_PARAM_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+(?:=(?:[A-Za-z0-9\-.!%*_+`'~:\[\]]+|\"[^\"]*\"))?")


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
        try:
            return cls._parse(text)
        except SipParseError as err:
            raise SipParseError(f"Bad Via: {err.reason}") from None
        except Exception:  # a last line of defence
            raise SipParseError("Bad Via") from None

    @classmethod
    def _parse(cls, text: str) -> Via:
        m = _FAST_VIA_GROUPS.fullmatch(text)
        if m is not None:
            return cls._from_match(m)
        m = _VIA_RE.fullmatch(text.strip())
        if m is None:
            raise SipParseError("malformed value")
        name, version, transport, sent_by, ptext = m.groups()
        if name.upper() != "SIP" or version != "2.0":
            raise SipParseError("bad sent-protocol")
        sent_by = sent_by.rstrip(" \t")
        if " " in sent_by or "\t" in sent_by:
            host, colon, port = sent_by.rpartition(":")  # "host : 5060" is LWS-tolerant
            if colon and port.strip(" \t").isdigit():
                sent_by = host.rstrip(" \t") + ":" + port.strip(" \t")
            if " " in sent_by or "\t" in sent_by:
                raise SipParseError("bad sent-by")
        host, port = split_hostport(sent_by)
        params = {}
        if ptext:
            for p in ptext[1:].split(";"):
                p = p.replace(" ", "").replace("\t", "")
                if _VIA_PARAM_RE.fullmatch(p) is None:
                    raise SipParseError("bad parameter")
                k, eq, v = p.partition("=")
                params[k.lower()] = v if eq else None
        return cls(transport=transport.upper(), host=host, port=port, params=params)

    @classmethod
    def _from_match(cls, m: re.Match[str]) -> Via:
        transport, host, port, ptext = m.groups()
        params: dict[str, str | None] = {}
        if ptext:
            for p in ptext[1:].split(";"):
                k, eq, v = p.partition("=")
                params[k.lower()] = v if eq else None
        return cls(transport=transport.upper(), host=host,
                   port=int(port) if port else None, params=params)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        hp = self.host if self.port is None else f"{self.host}:{self.port}"
        ps = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        return f"{self.protocol}/{self.transport} {hp}{ps}"


@dataclass(frozen=True, slots=True)
class CSeq:
    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        if len(text) > 64:  # only short values are cached: the cache must stay small
            return _parse_cseq.__wrapped__(text)
        return _parse_cseq(text)

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


@lru_cache(maxsize=1024)
def _parse_cseq(text: str) -> CSeq:
    # CSeq is frozen, so parses can be shared; the cache is bounded.
    parts = text.split()
    if len(parts) != 2:
        raise SipParseError("Bad CSeq")
    num, method = parts
    if not num.isdigit() or not num.isascii() or len(num) > 10 or int(num) >= 2**31:
        raise SipParseError("Bad CSeq")
    if _TOKEN_RE.fullmatch(method) is None:
        raise SipParseError("Bad CSeq")
    return CSeq(int(num), method)


# (top Via value, its match, From value, its match, To value, its match); None: no fast match.
_Memo = tuple[str, "re.Match[str] | None", str, "re.Match[str] | None", str, "re.Match[str] | None"]


class _Message:
    """What requests and responses share: headers, body and the typed header accessors.

    Accessors parse on demand and raise :class:`SipParseError` (never anything else) when the
    header is missing or malformed.
    """

    __slots__ = ("headers", "body", "_memo")

    headers: Headers
    body: bytes
    # Regex matches the parser made while checking Via/From/To, keyed by header, with the
    # value they matched: an accessor reuses one while the header still holds that very
    # string (identity), and builds a fresh object from it, so callers never share state.
    _memo: _Memo | None

    @property
    def call_id(self) -> str:
        return self.headers.get("call-id") or ""

    @property
    def cseq(self) -> CSeq:
        value = self.headers.get("cseq")
        if value is None:
            raise SipParseError("Missing CSeq")
        return CSeq.parse(value)

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.values("via")]

    @property
    def top_via(self) -> Via:
        first = self.headers.get("via")
        if first is None:
            raise SipParseError("Missing Via")
        memo = self._memo
        if memo is not None and memo[0] is first and memo[1] is not None:
            return Via._from_match(memo[1])
        if "," in first:
            values = split_list(first)
            if not values:
                raise SipParseError("Missing Via")
            first = values[0]
        return Via.parse(first)

    @property
    def from_(self) -> NameAddr:
        value = self.headers.get("from")
        if value is None:
            raise SipParseError("Missing From")
        memo = self._memo
        if memo is not None and memo[2] is value and memo[3] is not None:
            return NameAddr.from_fast_match(memo[3])
        return NameAddr.parse(value)

    @property
    def to(self) -> NameAddr:
        value = self.headers.get("to")
        if value is None:
            raise SipParseError("Missing To")
        memo = self._memo
        if memo is not None and memo[4] is value and memo[5] is not None:
            return NameAddr.from_fast_match(memo[5])
        return NameAddr.parse(value)

    @property
    def contacts(self) -> list[NameAddr]:
        return [NameAddr.parse(v) for v in self.headers.values("contact") if v != "*"]

    @property
    def content_type(self) -> str | None:
        ct = self.headers.get("content-type")
        return ct.split(";")[0].strip().lower() if ct else None

    def _encode(self, start_line: str) -> bytes:
        body = self.body
        out = [start_line, "\r\n"]
        length_done = False
        for k, d, v in self.headers._fields:
            if k == "content-length":
                if length_done:
                    continue
                v = str(len(body))
                length_done = True
            out += (d, ": ", v, "\r\n")
        if not length_done:
            out += ("Content-Length: ", str(len(body)), "\r\n")
        out.append("\r\n")
        return "".join(out).encode() + body

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
        self._memo = None

    @property
    def request_uri(self) -> SipUri:
        """The Request-URI, parsed (sip, sips or tel; others raise a 416 error)."""
        return SipUri.parse(self.uri)

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
        self._memo = None

    def to_bytes(self) -> bytes:
        return self._encode(f"SIP/2.0 {self.status} {self.reason}")

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason} call-id={self.call_id!r}>"


SipMessage = SipRequest | SipResponse


# --- fast-path grammar: a subset of RFC 3261 §25.1 that the common spellings match ----------
# Possessive quantifiers: no backtracking, so a hostile value costs linear time, and a value
# the fast path misses simply goes to the full parser.
_P = r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$`]"  # paramchar without escapes
_HOST = r"[A-Za-z0-9\-.]++"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_URI = (
    rf"sips?:(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]++(?::[A-Za-z0-9\-_.!~*'()&=+$,]*+)?+@)?+"
    rf"{_HOST}(?::{_PORT})?+(?:;{_P}++(?:={_P}++)?+)*+"
)
_TOK = r"[A-Za-z0-9\-.!%*_+`'~]++"
_HPARAMS = rf"(?: *+; *+{_TOK}(?: *+= *+(?:{_TOK}|\"[^\"\\]*+\"))?+)*+"
_FAST_ADDR = re.compile(
    rf"(?:(?:{_TOK}(?: ++{_TOK})*+ *+|\"[^\"\\]*+\" *+)?+<{_URI}(?:\?[^\s<>\"]*+)?+>"
    rf"|sips?:[A-Za-z0-9\-_.!~*'()&=+$/]++@{_HOST}(?::{_PORT})?+){_HPARAMS}"
)
_FAST_VIA1 = (
    rf"SIP/2\.0/[A-Za-z]++ {_HOST}(?::{_PORT})?+"
    r"(?:;[A-Za-z0-9\-.!%*_+`'~]++(?:=[A-Za-z0-9\-.!%*_+`'~:\[\]]++)?+)*+"
)
_FAST_VIA = re.compile(rf"{_FAST_VIA1}(?: *+, *+{_FAST_VIA1})*+")
_FAST_VIA_GROUPS = re.compile(
    rf"SIP/2\.0/([A-Za-z]++) ({_HOST})(?::({_PORT}))?+"
    r"((?:;[A-Za-z0-9\-.!%*_+`'~]++(?:=[A-Za-z0-9\-.!%*_+`'~:\[\]]++)?+)*+)"
)
_FAST_RURI = re.compile(_URI)
_FAST_CSEQ = re.compile(r"([0-9]{1,10})[ \t]+([A-Za-z0-9\-.!%*_+`'~]+)")
_FOLD_RE = re.compile(r"\n[ \t]++")  # no leading [ \t]*: that would be quadratic
_DATE_RE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)


def parse_message(data: bytes, *, stream: bool = False) -> SipMessage:
    """Parse one whole message. Raises :class:`SipParseError` and nothing else.

    On datagrams a body longer than Content-Length is truncated (§18.3); a shorter one is an
    error. ``stream=True`` demands Content-Length (framing is done by :class:`StreamFramer`).
    A request that fails a check is reported with ``err.request`` set when it can be answered
    (see :func:`error_response`); a broken response is always ``respondable=False``.
    """
    try:
        return _parse(data, stream)
    except SipParseError:
        raise
    except Exception as exc:  # a last line of defence: the fuzz tests assert it never runs
        raise SipParseError(f"Malformed message ({type(exc).__name__})") from None


def _parse(data: bytes, stream: bool) -> SipMessage:
    if len(data) > MAX_MESSAGE_SIZE:
        raise SipParseError("Message Too Large", status=513, respondable=False)
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")  # §7.5: leading CRLFs are ignored
    i = data.find(b"\r\n\r\n")
    j = data.find(b"\n\n", 0, i if i >= 0 else len(data))
    if i >= 0 and j < 0:
        head, body = data[:i], data[i + 4 :]
    elif j >= 0:
        head, body = data[:j], data[j + 2 :]
    else:
        head, body = data.rstrip(b"\r\n"), b""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("Header not UTF-8", respondable=False) from None
    lines = text.split("\r\n")
    n = len(lines) - 1
    if text.count("\n") != n or text.count("\r") != n or "\n " in text or "\n\t" in text:
        # Bare LF line ends, a stray CR or folded lines: the slow way.
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            raise SipParseError("Bare CR in header", respondable=False)
        if "\n " in text or "\n\t" in text:
            text = _FOLD_RE.sub(" ", text)  # §7.3.1: a folded field is one logical line
        lines = text.split("\n")
    msg, line_error = _start_line(lines[0])
    headers = msg.headers
    fields = headers._fields
    index: dict[str, list[str]] = {}
    cache = _NAME_CACHE
    append = fields.append
    try:
        for name, colon, value in [line.partition(":") for line in lines[1:]]:
            entry = cache.get(name)
            if entry is None or not colon:
                entry = _new_name(name, colon)
            value = value.strip()
            append((entry[0], entry[1], value))
            if entry[2]:
                found = index.get(entry[0])
                if found is None:
                    index[entry[0]] = [value]
                else:
                    found.append(value)
        if line_error is not None:
            # Read the header fields anyway so that the 400/505 can be answered (§8.2.6).
            line_error.respondable = "via" in index
            raise line_error
        if len(head.translate(None, _CTL_BYTES)) != len(head):
            _control_character(fields, index)
        if isinstance(msg, SipRequest):
            _check_request(msg, index)
        else:
            _check_response(msg, index)
        body = _frame_body(index, body, stream)
    except SipParseError as err:
        if isinstance(msg, SipResponse):
            err.respondable = False
        elif err.respondable:
            err.request = msg
        raise
    msg.body = body
    return msg


def _control_character(fields: list[tuple[str, str, str]],
                       index: dict[str, list[str]]) -> None:
    """The one check for control characters in header values: a 400 naming the header, not
    answered when the field would be copied into the answer (the request is dropped), except
    in a Call-ID or a tag: those are answered 400 as the dialog checks name them (a phone that
    put one there is told, and nothing of it reaches a log unescaped)."""
    for key, display, value in fields:
        m = _CTL_RE.search(value)
        if m is None:
            continue
        if key == "call-id":
            raise SipParseError("Bad Call-ID: control character", respondable="via" in index)
        if key in ("from", "to") and _CONTROL.search(_tag_text(value)) is not None:
            raise SipParseError(f"Bad {display}: control character in the tag",
                                respondable="via" in index)
        raise SipParseError(f"Control character {ord(m.group()):#04x} in {display}",
                            respondable="via" in index and key not in _ECHOED)
    raise SipParseError("Control character in the start line", respondable="via" in index)


def _new_name(name: str, colon: str) -> tuple[str, str, bool]:
    stripped = name.rstrip(" \t")
    if not colon or _TOKEN_RE.fullmatch(stripped) is None:
        raise SipParseError("Malformed header line")
    entry = _name_entry(stripped)
    if len(_NAME_CACHE) < _NAME_CACHE_MAX and len(name) <= 64:
        _NAME_CACHE[name] = entry
    return entry


def _start_line(line: str) -> tuple[SipMessage, SipParseError | None]:
    """The message the start line begins, and the error to raise once headers are read."""
    if line[-8:] == " SIP/2.0":  # the usual request line, in one partition
        method, sp, uri = line[:-8].partition(" ")
        if sp and uri and method in _METHODS and " " not in uri:
            return SipRequest(method, uri, Headers()), None
    if line.startswith("SIP/"):
        parts = line.split(" ", 2)
        if len(parts) < 2 or parts[0] != "SIP/2.0":
            raise SipParseError("Bad status line", respondable=False)
        code = parts[1]
        if len(code) != 3 or not code.isdigit() or not code.isascii() or code[0] == "0":
            raise SipParseError("Bad status code", respondable=False)
        reason = parts[2] if len(parts) > 2 else ""
        return SipResponse(int(code), reason, Headers()), None
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        # RFC 4475 §3.1.2.8-10: LWS in the Request-URI, doubled or trailing SP: a 400 if the
        # line still reads as "method ... SIP/2.0", else nothing to answer.
        words = line.split()
        if len(words) >= 3 and words[-1] == "SIP/2.0" and _TOKEN_RE.fullmatch(words[0]):
            uri = " ".join(words[1:-1])
            return SipRequest(words[0], uri, Headers()), SipParseError("Bad request line")
        raise SipParseError("Bad request line", respondable=False)
    method, uri, version = parts
    if method not in _METHODS and _TOKEN_RE.fullmatch(method) is None:
        raise SipParseError("Bad method", respondable=False)
    msg = SipRequest(method, uri, Headers())
    if version != "SIP/2.0":
        if version.startswith("SIP/"):
            return msg, SipParseError("Version Not Supported", status=505)  # RFC 4475 §3.1.2.16
        return msg, SipParseError("Bad request line")
    return msg, None


# C0 controls but HTAB (linear white space), DEL, C1 controls, the Unicode line separators
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_TAG_PARAM = re.compile(r";\s*tag\s*=([^;]*)", re.IGNORECASE)


def _tag_text(value: str) -> str:
    """The tag parameter's raw text in a From/To value ("" without one): it follows the
    closing ">" of a name-addr, or the bare URI of an addr-spec."""
    params = value[value.rfind(">") + 1:] if "<" in value else value
    m = _TAG_PARAM.search(params)
    return m.group(1) if m is not None else ""


def _check_request_uri(uri: str) -> None:
    if _FAST_RURI.fullmatch(uri) is not None:
        return
    if uri[0] == "<":
        raise SipParseError("Request-URI in <>")  # RFC 4475 §3.1.2.7
    try:
        # 400 for bad syntax, 416 for other schemes (§8.2.2.1); a service URN (RFC 5031) is the
        # Request-URI of an emergency call (RFC 6881): the TU decides on it
        parsed = SipUri.parse(uri, any_scheme=uri[:4].lower() == "urn:")
    except SipParseError as err:
        if err.status != 400:
            raise
        raise SipParseError(f"Bad Request-URI: {err.reason}") from None
    if parsed.headers:
        raise SipParseError("Headers in Request-URI")  # §19.1.1, RFC 4475 §3.1.2.11


def _check_request(msg: SipRequest, index: dict[str, list[str]]) -> None:
    _check_request_uri(msg.uri)
    if _check_common(msg, index) != msg.method:
        raise SipParseError("CSeq method does not match the request method")
    mf = index.get("max-forwards")
    if mf is not None:
        if len(mf) > 1:
            raise SipParseError("Multiple Max-Forwards")
        if not mf[0].isdigit() or not mf[0].isascii() or len(mf[0]) > 5 or int(mf[0]) > 255:
            raise SipParseError("Bad Max-Forwards")
    contacts = index.get("contact")
    if contacts is not None:
        for value in contacts:
            if value == "*" or _FAST_ADDR.fullmatch(value) is not None:
                continue
            for element in _split_elements(value):
                if not element:
                    raise SipParseError("Bad Contact")
                if element != "*":
                    _named(NameAddr.parse, element, "Contact")
    date = index.get("date")
    if date is not None and (len(date) > 1 or _DATE_RE.fullmatch(date[0]) is None):
        raise SipParseError("Bad Date")  # RFC 4475 §3.1.2.12: only GMT dates are valid


def _check_response(msg: SipResponse, index: dict[str, list[str]]) -> None:
    _check_common(msg, index)


def _check_common(msg: SipMessage, index: dict[str, list[str]]) -> str:
    """Check what requests and responses share; return the CSeq method."""
    vias = index.get("via")
    if vias is None:
        raise SipParseError("Missing Via", respondable=False)
    # Only the first Via field is read: it routes the response (§18.2.2); the ones below
    # belong to other hops and are copied back verbatim (§8.2.6.2).
    via = vias[0]
    via_m = _FAST_VIA_GROUPS.fullmatch(via)
    if via_m is None and _FAST_VIA.fullmatch(via) is None:
        for element in _split_elements(via):
            if not element:
                raise SipParseError("Bad Via: empty value")
            Via.parse(element)
    for name in SINGLE_REQUIRED:
        found = index.get(name)
        if found is None:
            raise SipParseError(f"Missing {DISPLAY[name]}")
        if len(found) > 1:
            raise SipParseError(f"Multiple {DISPLAY[name]}")
    if not index["call-id"][0]:
        raise SipParseError("Empty Call-ID")
    # Call-ID and tags are logged and matched as they are: a control character in them (or a
    # Unicode line separator) would split a log line or hide in it; none is legal there (a
    # display name may quote one, RFC 4475 §3.1.1.7)
    if _CONTROL.search(index["call-id"][0]) is not None:
        raise SipParseError("Bad Call-ID: control character")
    for name in ("from", "to"):
        if _CONTROL.search(_tag_text(index[name][0])) is not None:
            raise SipParseError(f"Bad {DISPLAY[name]}: control character in the tag")
    frm = index["from"][0]
    from_m = _FAST_NAME_ADDR_SIP.fullmatch(frm)
    if from_m is None and _FAST_ADDR.fullmatch(frm) is None:
        _named(NameAddr.parse, frm, "From")
    to = index["to"][0]
    to_m = _FAST_NAME_ADDR_SIP.fullmatch(to)
    if to_m is None and _FAST_ADDR.fullmatch(to) is None:
        _named(NameAddr.parse, to, "To")
    msg._memo = (via, via_m, frm, from_m, to, to_m)
    cseq = index["cseq"][0]
    m = _FAST_CSEQ.fullmatch(cseq)
    if m is not None and len(m.group(1)) < 10:
        return m.group(2)
    return CSeq.parse(cseq).method


def _named(parse: Callable[[str], object], value: str, label: str) -> None:
    # The reason names the header as well as the fault: "Bad To: Spaces inside <URI>".
    try:
        parse(value)
    except SipParseError as err:
        raise SipParseError(f"Bad {label}: {err.reason}", status=err.status) from None


def _frame_body(index: dict[str, list[str]], body: bytes, stream: bool) -> bytes:
    cl_values = index.get("content-length")
    if cl_values is None:
        if stream:
            raise SipParseError("Missing Content-Length on a stream transport")
        return body
    if len(cl_values) > 1:
        raise SipParseError("Multiple Content-Length")  # RFC 4475 §3.3.9
    cl_text = cl_values[0]
    if not cl_text.isdigit() or not cl_text.isascii() or len(cl_text) > 9:
        raise SipParseError("Bad Content-Length")
    length = int(cl_text)
    if length > len(body):
        raise SipParseError("Content-Length larger than body")
    return body if length == len(body) else body[:length]


def error_response(err: SipParseError) -> SipResponse | None:
    """The response a server sends for ``err`` (its status and reason), or None: drop it."""
    if not err.respondable or err.request is None:
        return None
    return make_response(err.request, err.status, err.reason)


class StreamFramer:
    """Cuts a byte stream (TCP, TLS) into messages by Content-Length (§18.3).

    CRLF keep-alives (RFC 5626 §4.4.1) between messages are reported as ``b"\\r\\n\\r\\n"``
    pings so the transport can answer with a pong (``b"\\r\\n"``).
    """

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_size

    @property
    def buffered(self) -> int:
        """Bytes received that are not a whole message yet (the start of the next one)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the complete messages (and pings) now available.

        Raises :class:`SipParseError` (and nothing else) when the stream cannot be
        resynchronised (oversize, no or several Content-Length): the transport must then close
        the connection (RFC 4475 §3.3.9).
        """
        try:
            return self._feed(data)
        except SipParseError:
            self._buf.clear()
            raise
        except Exception as exc:  # a last line of defence
            self._buf.clear()
            raise SipParseError(f"Malformed stream ({type(exc).__name__})") from None

    def _feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        buf = self._buf
        while buf:
            if buf[:4] == b"\r\n\r\n":
                out.append(b"\r\n\r\n")
                del buf[:4]
                continue
            if buf[:2] == b"\r\n":
                if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                    break  # maybe the start of a ping: wait for more
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
    found: int | None = None
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            v = value.strip()
            if not v.isdigit() or len(v) > 9:
                raise SipParseError("Bad Content-Length")
            if found is not None:
                raise SipParseError("Multiple Content-Length")
            found = int(v)
    if found is None:
        raise SipParseError("Missing Content-Length on a stream transport")
    return found


def make_response(request: SipRequest, status: int, reason: str, *, to_tag: str | None = None,
                  body: bytes = b"", content_type: str | None = None,
                  extra: Iterable[tuple[str, str]] = ()) -> SipResponse:
    """Build a response to ``request`` per §8.2.6: Via, From, To (+tag), Call-ID, CSeq copied.

    Record-Route is copied, in order, into 101-299 responses to the dialog-creating methods
    (§12.1.1: the route set a record-routing proxy asked for). Fields the request lacks (a 400
    to a request without From...) are left out, not sent empty.
    """
    h = Headers()
    fields = h._fields
    for v in request.headers.get_all("via"):
        fields.append(("via", "Via", v))
    frm = request.headers.get("from")
    if frm is not None:
        fields.append(("from", "From", frm))
    to = request.headers.get("to")
    if to is not None:
        if to_tag is not None and status > 100 and ";tag=" not in to.replace(" ", "").lower():
            to = f"{to};tag={_checked(to_tag)}"
        fields.append(("to", "To", to))
    call_id = request.headers.get("call-id")
    if call_id is not None:
        fields.append(("call-id", "Call-ID", call_id))
    cseq = request.headers.get("cseq")
    if cseq is not None:
        fields.append(("cseq", "CSeq", cseq))
    if 100 < status < 300 and request.method in _DIALOG_METHODS:
        for rr in request.headers.get_all("record-route"):
            fields.append(("record-route", "Record-Route", rr))
    if status == 100:
        ts = request.headers.get("timestamp")
        if ts is not None:
            fields.append(("timestamp", "Timestamp", ts))
    for name, value in extra:
        h.add(name, value)
    if content_type is not None:
        h.add("Content-Type", content_type)
    return SipResponse(status, _checked(reason), h, body)
