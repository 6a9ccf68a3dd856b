"""MIME multipart bodies in SIP (RFC 5621, RFC 2046 §5.1): parse and build, nothing more.

An emergency INVITE may carry the phone's own location by value next to its SDP offer
(RFC 6442 §4.1: ``Content-Type: multipart/mixed;boundary=...``, the PIDF-LO part named by
``Geolocation: <cid:...>``), and the edge sends the gateway the same shape. The standard
library's ``email`` package parses MIME, but it works on text, folds and re-encodes headers and
accepts almost anything; a SIP body is bytes whose parts we must hand on untouched, and a
malformed one must become a 400 with a reason. So: a small strict splitter of our own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from softphone.sip.errors import SipParseError

__all__ = ["BodyPart", "MultipartError", "boundary_of", "build_multipart", "parse_multipart"]

_MAX_PARTS = 16  # a SIP body with more parts than this is not something a phone sends
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")  # RFC 2046 §5.1.1


class MultipartError(SipParseError):
    """A multipart body that cannot be split: answered 400 with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Bad Multipart Body: {reason}", status=400)


@dataclass(frozen=True)
class BodyPart:
    """One part: its headers (names as written) and its bytes, exactly as received."""

    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for k, v in self.headers:
            if k.lower() == wanted:
                return v
        return None

    @property
    def media_type(self) -> str:
        """``type/subtype`` in lower case; RFC 2046 §5.1: a part without one is text/plain."""
        ct = self.header("content-type")
        return ct.split(";", 1)[0].strip().lower() if ct else "text/plain"

    @property
    def content_id(self) -> str | None:
        """The Content-ID without its angle brackets (what a ``cid:`` URL names)."""
        cid = self.header("content-id")
        return cid.strip().strip("<>").strip() if cid else None


def boundary_of(content_type: str) -> str:
    """The ``boundary`` parameter of a multipart Content-Type value (quoted or not)."""
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "boundary":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if not _BOUNDARY.fullmatch(value):
                raise MultipartError(f"invalid boundary {value!r}")
            return value
    raise MultipartError("no boundary parameter")


def _part(raw: bytes) -> BodyPart:
    if raw.startswith(b"\r\n"):  # no headers at all: the body follows the empty line (and
        return BodyPart((), raw[2:])  # may itself hold an empty line: b"\r\n" stays itself)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise MultipartError("a part has no empty line after its headers")
    headers: list[tuple[str, str]] = []
    for line in head.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and headers:  # folded continuation
            k, v = headers[-1]
            headers[-1] = (k, v + " " + line.strip().decode("utf-8", "replace"))
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name.strip() or any(c < 33 or c > 126 for c in name.strip()):
            raise MultipartError(f"bad part header {line[:40]!r}")
        headers.append((name.strip().decode("ascii"), value.strip().decode("utf-8", "replace")))
    return BodyPart(tuple(headers), body)


def parse_multipart(content_type: str, body: bytes) -> list[BodyPart]:
    """The parts of a multipart body, in order. Raises MultipartError (a 400) when the
    boundary is missing or invalid, the body has no closing delimiter, or holds no part."""
    delimiter = b"--" + boundary_of(content_type).encode("ascii")
    # the body may open with the delimiter or with a preamble ending in CRLF + delimiter
    if body.startswith(delimiter):
        rest = body[len(delimiter):]
    else:
        at = body.find(b"\r\n" + delimiter)
        if at < 0:
            raise MultipartError("no delimiter line")
        rest = body[at + 2 + len(delimiter):]
    parts: list[BodyPart] = []
    while True:
        if rest.startswith(b"--"):
            if not parts:
                raise MultipartError("no body part")
            return parts
        # transport padding after the delimiter, then the CRLF that ends its line
        eol = rest.find(b"\r\n")
        if eol < 0 or rest[:eol].strip(b" \t"):
            raise MultipartError("delimiter line not followed by CRLF")
        rest = rest[eol + 2:]
        end = rest.find(b"\r\n" + delimiter)
        if end < 0:
            raise MultipartError("no closing delimiter")
        parts.append(_part(rest[:end]))
        if len(parts) > _MAX_PARTS:
            raise MultipartError(f"more than {_MAX_PARTS} parts")
        rest = rest[end + 2 + len(delimiter):]


def build_multipart(boundary: str, parts: Iterable[BodyPart]) -> bytes:
    """A multipart body of ``parts`` (RFC 2046 §5.1.1: the CRLF before each delimiter
    belongs to the delimiter, not to the part before it)."""
    if not _BOUNDARY.fullmatch(boundary):
        raise ValueError(f"invalid boundary {boundary!r}")
    crlf = b"\r\n"
    delim = b"--" + boundary.encode("ascii")
    out: list[bytes] = []
    for p in parts:
        head = b"".join(f"{k}: {v}".encode() + crlf for k, v in p.headers)
        out.append(delim + crlf + head + crlf + p.body + crlf)
    return b"".join(out) + delim + b"--" + crlf
