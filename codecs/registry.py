"""The codec registry: what we can send and receive, and the order we offer it in.

The provider's terms fix the offer order OPUS, then G.711 A-law (PCMA), then µ-law (PCMU), so
that is :data:`DEFAULT_ORDER`; configuration can change it by name with
:func:`codec_order_from_names`. Payload types follow RFC 3551 for the static ones and our
preferred dynamic numbers (96 for Opus, 101 for telephone-event) otherwise; an answerer's numbers
always win when we answer (RFC 3264 §6.1).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

__all__ = [
    "DEFAULT_ORDER",
    "OPUS",
    "PCMA",
    "PCMU",
    "STATIC_PAYLOAD_TYPES",
    "TELEPHONE_EVENT",
    "Codec",
    "UnknownCodecError",
    "codec_by_name",
    "codec_order_from_names",
]


class UnknownCodecError(ValueError):
    """A codec name in the configuration that we cannot offer."""


@dataclass(frozen=True, slots=True)
class Codec:
    """An RTP payload format: ``name/clock_rate/channels`` with its payload type and fmtp.

    ``payload_type`` is the static number (< 96) or our preferred dynamic one; after
    negotiation it is the number agreed with the peer (see :meth:`with_payload_type`).
    """

    name: str
    clock_rate: int
    channels: int
    payload_type: int
    fmtp: str | None = None

    @property
    def is_static(self) -> bool:
        """RFC 3551 static payload type (an rtpmap is optional for it)."""
        return self.payload_type < 96

    @property
    def rtpmap(self) -> str:
        """The ``a=rtpmap`` value after the PT: ``opus/48000/2``, ``PCMA/8000``."""
        tail = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.name}/{self.clock_rate}{tail}"

    def matches(self, encoding: str, clock_rate: int, channels: int = 1) -> bool:
        """Same payload format, the encoding name compared without case (RFC 4855 §3).

        Opus is always described as ``opus/48000/2`` (RFC 7587 §7) whatever is actually sent,
        so for it the channel count is not compared: a peer writing ``opus/48000`` means opus.
        """
        if encoding.lower() != self.name.lower() or clock_rate != self.clock_rate:
            return False
        return self.name.lower() == "opus" or channels == self.channels

    def with_payload_type(self, payload_type: int) -> Codec:
        if not 0 <= payload_type <= 127:
            raise ValueError(f"RTP payload type {payload_type} out of range 0..127")
        return replace(self, payload_type=payload_type)

    def __str__(self) -> str:
        return f"{self.rtpmap} (PT {self.payload_type})"


OPUS = Codec("opus", 48000, 2, 96, "useinbandfec=1")
PCMA = Codec("PCMA", 8000, 1, 8)
PCMU = Codec("PCMU", 8000, 1, 0)
TELEPHONE_EVENT = Codec("telephone-event", 8000, 1, 101, "0-16")

DEFAULT_ORDER: tuple[Codec, ...] = (OPUS, PCMA, PCMU)

# RFC 3551 §6 audio static payload types: an offer may list them without an rtpmap.
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1),
    7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    10: ("L16", 44100, 2),
    11: ("L16", 44100, 1),
    12: ("QCELP", 8000, 1),
    13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1),
    15: ("G728", 8000, 1),
    16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
}

# The codecs we can actually encode and decode; configuration may only name these.
_KNOWN: dict[str, Codec] = {c.name.lower(): c for c in DEFAULT_ORDER}


def codec_by_name(name: str) -> Codec:
    """The registry codec for ``name`` (case-insensitive): ``opus``, ``PCMA``, ``PCMU``."""
    try:
        return _KNOWN[name.strip().lower()]
    except KeyError:
        known = ", ".join(c.name for c in DEFAULT_ORDER)
        raise UnknownCodecError(f"unknown codec {name!r} (known: {known})") from None


def codec_order_from_names(names: Iterable[str]) -> tuple[Codec, ...]:
    """A codec order from configuration, e.g. ``["opus", "PCMA", "PCMU"]``.

    Raises :class:`UnknownCodecError` for an unknown name, a repeated one or an empty list.
    """
    if isinstance(names, str):
        raise UnknownCodecError(f"codec order must be a list of names, got the string {names!r}")
    order: list[Codec] = []
    for name in names:
        if not isinstance(name, str):
            raise UnknownCodecError(f"codec names are strings, got {name!r}")
        codec = codec_by_name(name)
        if codec in order:
            raise UnknownCodecError(f"codec {codec.name} listed twice in the order")
        order.append(codec)
    if not order:
        raise UnknownCodecError("codec order is empty: at least one codec is needed")
    return tuple(order)
