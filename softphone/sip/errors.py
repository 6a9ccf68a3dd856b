"""The SIP core's error types."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from softphone.sip.message import SipRequest


class SipError(Exception):
    """Base class of every error the SIP core raises on purpose."""


class SipParseError(SipError):
    """A message that cannot be accepted as it is.

    ``status`` is the response a server should send (400 unless stated) and ``reason`` is a short
    reason phrase naming the fault, used verbatim in that response. ``respondable`` is False when
    no response can be built (no usable Via, a broken response, a broken start line...): then
    the message is dropped. ``request`` is the request as far as it could be read (start line
    and header fields, no body) when a response is possible, so that a server can answer with
    ``make_response(err.request, err.status, err.reason)`` (see ``message.error_response``).
    """

    def __init__(self, reason: str, *, status: int = 400, respondable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.respondable = respondable
        self.request: SipRequest | None = None


class SipHeaderValueError(SipError, ValueError):
    """A header value that would break the framing when sent (CR or LF in it)."""
