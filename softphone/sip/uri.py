"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966) and name-addr values (§20.10, §25.1).

Our own, not a library: the SIP core needs exact round-tripping of parameters, IPv6 references
as RFC 5118 describes them, and a parser whose only exception is :class:`SipParseError` with a
reason that names the fault (RFC 4475 torture cases).

Other absolute URIs (``isbn:``, ``http:``, ``urn:``...) are syntactically valid in From, To and
Contact (RFC 4475 §3.3.4): :meth:`SipUri.parse` keeps them opaque when ``any_scheme=True``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from urllib.parse import quote, unquote

from softphone.sip.errors import SipParseError

_SCHEMES = ("sip", "sips", "tel")

# RFC 3261 §25.1: absoluteURI scheme.
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# user = 1*( unreserved / escaped / user-unreserved ); password likewise without ";?/".
_USER_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+")
_PASSWORD_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})*")
# hostname / IPv4address; "_" is tolerated because real DNS names carry it.
_HOST_RE = re.compile(r"[A-Za-z0-9_\-.]+")
# Parameter names and values (pname / pvalue / generic-param / quoted gen-value).
_PARAM_CHARS = r"(?:[A-Za-z0-9\-_.!~*'()\[\]/:&+$`%])"
_URI_PARAM_RE = re.compile(rf"{_PARAM_CHARS}+(?:={_PARAM_CHARS}*)?")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_USER_SAFE = "-_.!~*'()&=+$,;?/"

# Fast paths: the common spellings in one match, with groups; anything else (escapes, IPv6,
# LWS, odd schemes) goes through the full parser below. Possessive: linear time.
_FP = r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$`]"
_FAST_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_FAST_SIP_URI_TEXT = (
    r"(sips?):(?:([A-Za-z0-9\-_.!~*'()&=+$,;?/]++)(?::([A-Za-z0-9\-_.!~*'()&=+$,]*+))?+@)?+"
    rf"([A-Za-z0-9\-.]++)(?::({_FAST_PORT}))?+((?:;{_FP}++(?:={_FP}++)?+)*+)"
    r"(?:\?([^\s<>\"]*+))?+"
)
_FAST_SIP_URI = re.compile(_FAST_SIP_URI_TEXT)
_FT = r"[A-Za-z0-9\-.!%*_+`'~]++"
_FAST_HPARAMS = rf"((?: *+; *+{_FT}(?: *+= *+(?:{_FT}|\"[^\"\\]*+\"))?+)*+)"
# display name, then a <sip URI> in groups 3-9, then header parameters: one match for a From.
_FAST_NAME_ADDR_SIP = re.compile(
    rf"(?:\"([^\"\\]*+)\"|({_FT}(?: ++{_FT})*+))? *+<{_FAST_SIP_URI_TEXT}>{_FAST_HPARAMS}"
)
_FAST_NAME_ADDR = re.compile(
    rf"(?:\"([^\"\\]*+)\"|({_FT}(?: ++{_FT})*+))? *+<([^<>\s\"]++)>"
    rf"((?: *+; *+{_FT}(?: *+= *+(?:{_FT}|\"[^\"\\]*+\"))?+)*+)"
)


def _split_params(text: str) -> dict[str, str | None]:
    """``a=1;b;c="x;y"``: names lower-cased, values kept as sent, LWS around ``;`` and ``=``."""
    params: dict[str, str | None] = {}
    if not text:
        return params
    parts = text.split(";") if '"' not in text else split_unquoted(text, ";")
    for part in parts:
        if not part or part.isspace():
            continue
        name, eq, value = part.partition("=")
        name = name.strip()
        if not name:
            raise SipParseError("Bad parameter")
        params[name.lower()] = value.strip() if eq else None
    return params


def split_unquoted(text: str, sep: str, *, angle: bool = False) -> list[str]:
    """Split at ``sep`` outside quoted strings (quoted-pair aware) and, with ``angle``,
    outside ``<...>`` (a URI in a list header may carry the separator)."""
    out: list[str] = []
    start = 0
    quoted = False
    depth = 0
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif angle and c == "<":
            depth += 1
        elif angle and c == ">":
            depth = max(0, depth - 1)
        elif c == sep and depth == 0:
            out.append(text[start:i])
            start = i + 1
        i += 1
    if quoted:
        raise SipParseError("Unterminated quoted string")
    out.append(text[start:])
    return out


def _join_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def split_hostport(text: str) -> tuple[str, int | None]:
    """Split ``host[:port]``; IPv6 references keep their brackets (RFC 5118 §4.3)."""
    if not text:
        raise SipParseError("Missing host")
    if text[0] == "[":
        end = text.find("]")
        if end < 0:
            raise SipParseError("Bad IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
        _check_ipv6(host[1:-1])
        if not rest:
            return host, None
        if rest[0] != ":":
            raise SipParseError("Bad host:port")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.partition(":")
        if not sep:
            return _check_host(host), None
        if ":" in port_text:
            raise SipParseError("IPv6 address without brackets")
        _check_host(host)
    if not port_text.isdigit() or not port_text.isascii() or not 0 < int(port_text) < 65536:
        raise SipParseError("Bad port")
    return host, int(port_text)


def _check_ipv6(text: str) -> None:
    # ipaddress rejects "2001:db8:::1" and scoped forms; RFC 5118 §4.9 wants exactly that.
    if ":" not in text or len(text) > 45:
        raise SipParseError("Bad IPv6 reference")
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        raise SipParseError("Bad IPv6 reference") from None


def _check_host(host: str) -> str:
    if not host or _HOST_RE.fullmatch(host) is None:
        raise SipParseError("Bad host")
    return host


@dataclass(slots=True)
class SipUri:
    """A sip:, sips: or tel: URI. ``params`` keep their order; names are lower case.

    ``user`` is kept unescaped (``%41`` -> ``A``) and re-escaped on output. A URI of another
    scheme (only from ``parse(..., any_scheme=True)``) keeps its text after the colon in
    ``opaque`` and has an empty ``host``.
    """

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str = ""
    opaque: str | None = None

    @classmethod
    def parse(cls, text: str, *, any_scheme: bool = False) -> SipUri:
        """Parse a URI. Unknown schemes raise a 416 error unless ``any_scheme``."""
        try:
            return cls._parse(text.strip(), any_scheme)
        except SipParseError:
            raise
        except Exception:  # a last line of defence: only our error type leaves the parser
            raise SipParseError("Bad URI") from None

    @classmethod
    def _parse(cls, text: str, any_scheme: bool) -> SipUri:
        m = _FAST_SIP_URI.fullmatch(text)
        if m is not None:
            return cls._from_fast(m)
        scheme, colon, rest = text.partition(":")
        if not colon or _SCHEME_RE.fullmatch(scheme) is None:
            raise SipParseError("Bad URI")
        scheme = scheme.lower()
        if scheme not in _SCHEMES:
            if not any_scheme:
                raise SipParseError("Unsupported URI Scheme", status=416)
            if not rest or any(c in rest for c in " \t<>\"\x00"):
                raise SipParseError("Bad URI")
            return cls(scheme=scheme, host="", opaque=rest)
        if scheme == "tel":
            number, _, ptext = rest.partition(";")
            if not number or any(c in number for c in " \t<>\"@"):
                raise SipParseError("Bad tel URI")
            return cls(scheme="tel", host="", user=number, params=_uri_params(ptext))
        # The last "@" ends the userinfo: "?", ";" and ":" may appear in a user part
        # (RFC 4475 §3.1.1.2 and §3.1.1.9) but "@" is escaped everywhere after it.
        userinfo, at, hostpart = rest.rpartition("@")
        user: str | None = None
        password: str | None = None
        if at:
            user, colon, pw = userinfo.partition(":")
            if not user:
                raise SipParseError("Empty user part")
            if _USER_RE.fullmatch(user) is None:
                raise SipParseError("Bad user part")
            if colon:
                if _PASSWORD_RE.fullmatch(pw) is None:
                    raise SipParseError("Bad password")
                password = pw
            if "%" in user:
                user = unquote(user)
        hostpart, _, headers = hostpart.partition("?")
        hostport, _, ptext = hostpart.partition(";")
        host, port = split_hostport(hostport)
        return cls(scheme=scheme, host=host, user=user, password=password, port=port,
                   params=_uri_params(ptext), headers=headers)

    @classmethod
    def _from_fast(cls, m: re.Match[str]) -> SipUri:
        scheme, user, password, host, port, ptext, headers = m.groups()
        params: dict[str, str | None] = {}
        if ptext:
            for part in ptext[1:].split(";"):
                name, eq, value = part.partition("=")
                params[name.lower()] = value if eq else None
        return cls(scheme=scheme, host=host, user=user, password=password,
                   port=int(port) if port else None, params=params, headers=headers or "")

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        if self.scheme == "tel":
            return f"tel:{self.user}{_join_params(self.params)}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(quote(self.user, safe=_USER_SAFE))
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(_join_params(self.params))
        if self.headers:
            out.append("?" + self.headers)
        return "".join(out)

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    @property
    def host_no_brackets(self) -> str:
        return self.host[1:-1] if self.host.startswith("[") else self.host

    def with_params(self, **params: str | None) -> SipUri:
        merged = dict(self.params)
        merged.update(params)
        return replace(self, params=merged)


def _uri_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    if not text:
        return params
    for part in text.split(";"):
        if not part:
            continue
        if _URI_PARAM_RE.fullmatch(part) is None:
            raise SipParseError("Bad URI parameter")
        name, eq, value = part.partition("=")
        params[name.lower()] = value if eq else None
    return params


def _check_display_tokens(name: str) -> None:
    # display-name = *(token LWS) / quoted-string (§25.1). Non-ASCII is tolerated because
    # phones send UTF-8 names unquoted; ASCII separators ("," "<" ";" "@"...) are not.
    for word in name.split():
        if _TOKEN_RE.fullmatch(word) is None and not all(
            ord(c) > 127 or _TOKEN_RE.fullmatch(c) for c in word
        ):
            raise SipParseError("Display name needs quotes")


@dataclass(slots=True)
class NameAddr:
    """A From/To/Contact/Route value: optional display name, a URI, header parameters.

    ``display`` of a quoted name is kept as sent between the quotes (quoted-pairs intact) so
    that it serialises back unchanged.
    """

    uri: SipUri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    bracketed: bool = True

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        try:
            return cls._parse(text.strip())
        except SipParseError:
            raise
        except Exception:  # a last line of defence
            raise SipParseError("Bad address") from None

    @classmethod
    def _parse(cls, text: str) -> NameAddr:
        m = _FAST_NAME_ADDR_SIP.fullmatch(text)
        if m is not None:
            return cls.from_fast_match(m)
        m = _FAST_NAME_ADDR.fullmatch(text)
        if m is not None:
            quoted, tokens, inner, ptext = m.groups()
            return cls(uri=SipUri.parse(inner, any_scheme=True),
                       display=quoted if quoted is not None else tokens,
                       params=_split_params(ptext[ptext.index(";") + 1 :]) if ptext else {})
        if not text:
            raise SipParseError("Empty address")
        display: str | None = None
        if text[0] == '"':
            end = _closing_quote(text, 0)
            display = text[1:end]
            text = text[end + 1 :].lstrip()
            if not text.startswith("<"):
                raise SipParseError("Display name without <URI>")
        lt = text.find("<")
        if lt >= 0:
            gt = text.find(">", lt)
            if gt < 0:
                raise SipParseError("Unclosed <URI>")
            if display is None:
                name = text[:lt].strip()
                if name:
                    _check_display_tokens(name)
                display = name or None
            inner = text[lt + 1 : gt]
            if not inner or inner[0] in " \t" or inner[-1] in " \t":
                raise SipParseError("Spaces inside <URI>")
            uri = SipUri.parse(inner, any_scheme=True)
            tail = text[gt + 1 :].strip()
            if tail and tail[0] != ";":
                raise SipParseError("Garbage after <URI>")
            return cls(uri=uri, display=display, params=_split_params(tail[1:]))
        # addr-spec: parameters after the URI belong to the header, not the URI (§20.10),
        # and a URI with "?", "," or ";" of its own must be in <> (§20, RFC 4475 §3.1.2.13).
        uri_text, _, ptext = text.partition(";")
        uri_text = uri_text.rstrip()
        if any(c in uri_text for c in " \t"):
            raise SipParseError("Address with spaces needs <URI>")
        if "?" in uri_text or "," in uri_text:
            raise SipParseError("URI with headers needs <URI>")
        return cls(uri=SipUri.parse(uri_text, any_scheme=True), params=_split_params(ptext),
                   bracketed=False)

    @classmethod
    def from_fast_match(cls, m: re.Match[str]) -> NameAddr:
        """Build from a match of ``_FAST_NAME_ADDR_SIP`` (the parser keeps its matches)."""
        quoted, tokens, scheme, user, password, host, port, uparams, headers, ptext = m.groups()
        params: dict[str, str | None] = {}
        if uparams:
            for part in uparams[1:].split(";"):
                name, eq, value = part.partition("=")
                params[name.lower()] = value if eq else None
        uri = SipUri(scheme=scheme, host=host, user=user, password=password,
                     port=int(port) if port else None, params=params, headers=headers or "")
        return cls(uri=uri, display=quoted if quoted is not None else tokens,
                   params=_split_params(ptext[ptext.index(";") + 1 :]) if ptext else {})

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        params = dict(self.params)
        params["tag"] = tag
        return replace(self, params=params)

    def __str__(self) -> str:
        uri = str(self.uri)
        if self.display is not None:
            head = f'"{self.display}" <{uri}>'
        elif self.bracketed or self.uri.params or self.uri.headers:
            head = f"<{uri}>"
        else:
            head = uri
        return head + _join_params(self.params)


def _closing_quote(text: str, start: int) -> int:
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i
        i += 1
    raise SipParseError("Unterminated quoted string")
