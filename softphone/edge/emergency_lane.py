"""The emergency lane of the flood guard: a look at the request line, before any parsing.

A site of many phones behind one NAT address shares one flood budget (``sip.flood_rate_per_s``
per source address); when one of those phones misbehaves and empties it, every request from the
site is dropped, emergency calls too. Nothing but the terms may stop an emergency call, so the
flood guard gives emergency requests a lane of their own, recognised on the request line alone
(no parsing: the look must stay cheaper than the parse it saves):

- ``dialled``: an INVITE, ACK or CANCEL whose Request-URI is an emergency code where the edge's
  users are (``sip:112@...``, ``tel:+112``, behind the account's outside-line prefix), or an
  RFC 5031 ``urn:service:sos`` URN (also escaped into a SIP user part). These take a token from
  a separate per-source budget, so an ordinary flood never empties it; a flood of emergency-
  looking INVITEs empties only its own lane, and each of them still needs a local user's
  credentials (407) before anything is routed: the lane opens no relay to the gateway.
- ``dialog``: any request to the Contact the edge gave an emergency call's dialogs
  (``sip:sos-<token>@...``, a fresh 128-bit token per call, forgotten at its end): the ACK of
  the 200 OK, BYE, re-INVITE, INFO of a live emergency call. Never dropped; a stranger cannot
  guess the token, and a request that carries a stale one pays for the budget like any other.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

__all__ = ["EmergencyLane"]

_REQUEST_LINE = re.compile(rb"([A-Z]{2,12}) ([^ \r\n]{1,256}) SIP/2\.0\r?\n")
_DIALLED_METHODS = frozenset({b"INVITE", b"ACK", b"CANCEL"})
_SCHEME = re.compile(rb"(?:sips?|tel):", re.IGNORECASE)
_VISUAL = re.compile(rb"[-.()]|%20")  # RFC 3966 visual separators in a user part
_SOS = (b"urn:service:sos", b"urn%3aservice%3asos")
TOKEN_PREFIX = "sos-"


class EmergencyLane:
    """Which requests belong to the emergency lane (``kind``), and the live dialog tokens."""

    def __init__(self, codes: Iterable[str], outside_line_prefix: str = "") -> None:
        dialled: set[bytes] = set()
        for code in codes:
            for form in (code, "+" + code, outside_line_prefix + code):
                dialled.add(form.encode("ascii"))
        self.dialled = frozenset(dialled)
        self.tokens: set[str] = set()

    def new_token(self) -> str:
        """A Contact user for a new emergency call's dialogs; ``release`` it at the end."""
        token = TOKEN_PREFIX + secrets.token_hex(16)
        self.tokens.add(token)
        return token

    def release(self, token: str) -> None:
        self.tokens.discard(token)

    def kind(self, data: bytes) -> str | None:
        """``"dialled"``, ``"dialog"`` or None (not emergency) for one datagram or message."""
        m = _REQUEST_LINE.match(data, len(data) - len(data.lstrip(b"\r\n")))
        if m is None:
            return None
        method, uri = m.group(1), m.group(2).lower()
        if uri.startswith(b"sip:" + TOKEN_PREFIX.encode()) or \
                uri.startswith(b"sips:" + TOKEN_PREFIX.encode()):
            user = uri.split(b":", 1)[1].split(b"@", 1)[0]
            return "dialog" if user.decode("ascii", "replace") in self.tokens else None
        if method not in _DIALLED_METHODS:
            return None
        if uri.startswith(_SOS[0]):
            return "dialled"
        user = _SCHEME.sub(b"", uri, count=1).split(b"@", 1)[0].split(b";", 1)[0]
        if user.startswith(_SOS):  # a phone that escapes the URN into a SIP user part
            return "dialled"
        return "dialled" if _VISUAL.sub(b"", user) in self.dialled else None
