"""The SIP core's error types."""

from __future__ import annotations


class SipError(Exception):
    """Base class of every error the SIP core raises on purpose."""


class SipParseError(SipError):
    """A message that cannot be accepted as it is.

    ``status`` is the response a server should send (400 unless stated) and ``reason`` is a short
    reason phrase naming the fault, used verbatim in that response. ``respondable`` is False when
    no response can be built (no usable Via, Call-ID, CSeq...): then the message is dropped.
    """

    def __init__(self, reason: str, *, status: int = 400, respondable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.respondable = respondable
