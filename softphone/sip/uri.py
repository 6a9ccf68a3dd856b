"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966) and name-addr values (§20.10, §25.1).

Our own, not a library: the SIP core needs exact round-tripping of parameters and a
parser whose only exception is :class:`SipParseError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from urllib.parse import unquote

from softphone.sip.errors import SipParseError

_SCHEMES = ("sip", "sips", "tel")


def _split_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    if not text:
        return params
    for part in text.split(";"):
        if not part:
            continue
        name, eq, value = part.partition("=")
        name = name.strip()
        if not name:
            raise SipParseError("Bad URI parameter")
        params[name.lower()] = value.strip() if eq else None
    return params


def _join_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def split_hostport(text: str) -> tuple[str, int | None]:
    """Split ``host[:port]``; IPv6 references keep their brackets (RFC 5118)."""
    if not text:
        raise SipParseError("Missing host")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError("Bad IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
        if ":" not in host[1:-1]:
            raise SipParseError("Bad IPv6 reference")
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise SipParseError("Bad host:port")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.partition(":")
        if not sep:
            port_text = ""
        elif ":" in port_text:
            raise SipParseError("IPv6 address without brackets")
        if not sep:
            return _check_host(host), None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise SipParseError("Bad port")
    return _check_host(host), int(port_text)


_HOST_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_[]:")


def _check_host(host: str) -> str:
    if not host or any(c not in _HOST_OK for c in host):
        raise SipParseError("Bad host")
    return host


@dataclass(slots=True)
class SipUri:
    """A sip:, sips: or tel: URI. ``params`` keep their order; names are lower case."""

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str = ""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        text = text.strip()
        scheme, colon, rest = text.partition(":")
        scheme = scheme.lower()
        if not colon or scheme not in _SCHEMES:
            raise SipParseError(f"Unsupported URI scheme: {scheme[:16]!r}", status=416)
        if scheme == "tel":
            number, _, ptext = rest.partition(";")
            if not number:
                raise SipParseError("Empty tel URI")
            return cls(scheme="tel", host="", user=number, params=_split_params(ptext))
        rest, _, headers = rest.partition("?")
        userinfo, at, hostpart = rest.rpartition("@")
        if not at:
            hostpart, userinfo = rest, ""
        user: str | None = None
        password: str | None = None
        if at:
            user, _, pw = userinfo.partition(":")
            if not user:
                raise SipParseError("Empty user part")
            if any(c in user for c in " <>\"") or "%" in user and not _valid_escapes(user):
                raise SipParseError("Bad user part")
            user = unquote(user)
            password = pw if _ else None
        hostport, _, ptext = hostpart.partition(";")
        host, port = split_hostport(hostport)
        return cls(scheme=scheme, host=host, user=user, password=password, port=port,
                   params=_split_params(ptext), headers=headers)

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}{_join_params(self.params)}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
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
    def host_no_brackets(self) -> str:
        return self.host[1:-1] if self.host.startswith("[") else self.host

    def with_params(self, **params: str | None) -> SipUri:
        merged = dict(self.params)
        merged.update(params)
        return replace(self, params=merged)


def _valid_escapes(text: str) -> bool:
    i = text.find("%")
    while i >= 0:
        hexpart = text[i + 1 : i + 3]
        if len(hexpart) != 2 or any(c not in "0123456789abcdefABCDEF" for c in hexpart):
            return False
        i = text.find("%", i + 3)
    return True


@dataclass(slots=True)
class NameAddr:
    """A From/To/Contact/Route value: optional display name, a URI, header parameters."""

    uri: SipUri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    bracketed: bool = True

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if not text:
            raise SipParseError("Empty address")
        display: str | None = None
        if text.startswith('"'):
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
                display = name or None
            uri = SipUri.parse(text[lt + 1 : gt])
            tail = text[gt + 1 :].strip()
            if tail and not tail.startswith(";"):
                raise SipParseError("Garbage after <URI>")
            return cls(uri=uri, display=display, params=_split_params(tail[1:]))
        # addr-spec: parameters after the URI belong to the header, not the URI (§20.10).
        if " " in text:
            raise SipParseError("Address with spaces needs <URI>")
        uri_text, _, ptext = text.partition(";")
        return cls(uri=SipUri.parse(uri_text), params=_split_params(ptext), bracketed=False)

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
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i
        i += 1
    raise SipParseError("Unterminated quoted string")
