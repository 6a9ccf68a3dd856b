"""RFC 4733 telephone-events (DTMF over RTP): payload format, receiver, sender. Sans-I/O.

One event is a run of packets sharing an RTP timestamp (the event's start) whose duration
grows; the last one has the E bit and is sent three times (RFC 4733 2.5.1.4) so that one lost
packet does not lose the end. The receiver therefore de-duplicates by timestamp and reports
each event twice at most: START on its first packet (low latency for the policy's objection
digit) and END once, with its final duration, whichever of the end packets arrives first.
A START whose END never arrives is closed when the next event begins.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from dataclasses import dataclass

__all__ = [
    "DtmfError",
    "DtmfEvent",
    "DtmfKind",
    "DtmfPacket",
    "DtmfReceiver",
    "DtmfSender",
    "TelephoneEvent",
    "digit_to_event",
    "event_to_digit",
]

_EVENT = struct.Struct("!BBH")
_DIGITS = "0123456789*#ABCD"
EVENT_FLASH = 16
END_REPEATS = 3


class DtmfError(ValueError):
    """A malformed telephone-event payload or an unknown digit."""


def digit_to_event(digit: str) -> int:
    d = digit.upper()
    if len(d) != 1 or d not in _DIGITS:
        raise DtmfError(f"not a DTMF digit: {digit!r}")
    return _DIGITS.index(d)


def event_to_digit(event: int) -> str:
    """'0'-'9', '*', '#', 'A'-'D', or 'flash'/'event-N' for the other RFC 4733 codes."""
    if 0 <= event < len(_DIGITS):
        return _DIGITS[event]
    return "flash" if event == EVENT_FLASH else f"event-{event}"


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The 4-byte payload: event code, end bit, volume (0-63, -dBm0), duration (samples)."""

    event: int
    end: bool
    volume: int
    duration: int

    def encode(self) -> bytes:
        if not 0 <= self.event <= 255 or not 0 <= self.volume <= 63:
            raise DtmfError("event must be 0-255 and volume 0-63")
        if not 0 <= self.duration <= 0xFFFF:
            raise DtmfError(f"duration {self.duration} is not 16-bit")
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)

    @classmethod
    def decode(cls, payload: bytes | bytearray | memoryview) -> TelephoneEvent:
        if len(payload) < 4:
            raise DtmfError(f"telephone-event payload of {len(payload)} bytes (needs 4)")
        event, flags, duration = _EVENT.unpack_from(payload, 0)
        # several events in one packet (RFC 4733 2.5.1.5 redundancy) start with the newest
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)


class DtmfKind(enum.Enum):
    START = "start"
    END = "end"


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """What the receiver surfaces to the bridge owner."""

    kind: DtmfKind
    digit: str
    event: int
    timestamp: int  # RTP timestamp of the event's start
    duration: int  # samples so far (START) or final (END)
    volume: int


class DtmfReceiver:
    """Turns the packet stream of one leg into START/END events, each once per event."""

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self._current: int | None = None  # timestamp of the event in progress
        self._current_ended = True
        self._last: TelephoneEvent | None = None
        self._recent: deque[int] = deque(maxlen=16)  # finished events' timestamps
        self.duplicates = 0
        self.malformed = 0

    def receive(self, payload: bytes | bytearray | memoryview, timestamp: int) -> list[DtmfEvent]:
        try:
            te = TelephoneEvent.decode(payload)
        except DtmfError:
            self.malformed += 1
            return []
        out: list[DtmfEvent] = []
        if timestamp != self._current:
            if timestamp in self._recent:
                self.duplicates += 1  # a late repeat of an event already closed
                return out
            if self._current is not None and not self._current_ended and self._last:
                out.append(self._event(DtmfKind.END, self._current, self._last))
            if self._current is not None:
                self._recent.append(self._current)
            self._current = timestamp
            self._current_ended = False
            self._last = te
            out.append(self._event(DtmfKind.START, timestamp, te))
        elif self._current_ended:
            self.duplicates += 1  # the 2nd and 3rd end packet
            return out
        else:
            self._last = te
        if te.end:
            self._current_ended = True
            out.append(self._event(DtmfKind.END, timestamp, te))
        return out

    @staticmethod
    def _event(kind: DtmfKind, timestamp: int, te: TelephoneEvent) -> DtmfEvent:
        return DtmfEvent(kind, event_to_digit(te.event), te.event, timestamp, te.duration,
                         te.volume)


@dataclass(frozen=True, slots=True)
class DtmfPacket:
    payload: bytes
    marker: bool
    timestamp: int


class DtmfSender:
    """Generates digits' packets, one per frame tick (``next_packet(timestamp)``).

    Digits queue up; each starts at the RTP timestamp current when its first packet goes out,
    so a digit queued behind another still gets a timestamp on the stream's timeline."""

    def __init__(self, clock_rate: int = 8000, packet_ms: int = 20, volume: int = 10) -> None:
        self.clock_rate = clock_rate
        self.packet_samples = clock_rate * packet_ms // 1000
        self.volume = volume
        self._digits: deque[tuple[str, int]] = deque()
        self._packets: deque[DtmfPacket] = deque()

    @property
    def active(self) -> bool:
        return bool(self._packets or self._digits)

    def packets(self, digit: str, timestamp: int, duration_ms: int = 100) -> list[DtmfPacket]:
        """All packets of one digit: growing durations, marker on the first, 3 end packets."""
        event = digit_to_event(digit)
        if duration_ms <= 0:
            raise DtmfError(f"duration must be positive, got {duration_ms} ms")
        total = min(0xFFFF, self.clock_rate * duration_ms // 1000)
        out: list[DtmfPacket] = []
        d = self.packet_samples
        while d < total:
            te = TelephoneEvent(event, False, self.volume, d)
            out.append(DtmfPacket(te.encode(), not out, timestamp))
            d += self.packet_samples
        end = TelephoneEvent(event, True, self.volume, total).encode()
        for _ in range(END_REPEATS):
            out.append(DtmfPacket(end, not out, timestamp))
        return out

    def start(self, digit: str, duration_ms: int = 100) -> None:
        """Queue a digit (sent after any digit still in progress)."""
        digit_to_event(digit)
        if duration_ms <= 0:
            raise DtmfError(f"duration must be positive, got {duration_ms} ms")
        self._digits.append((digit, duration_ms))

    def next_packet(self, timestamp: int) -> DtmfPacket | None:
        """The packet for this tick; ``timestamp`` is the stream's current RTP timestamp,
        used when a new digit begins."""
        if not self._packets and self._digits:
            digit, duration_ms = self._digits.popleft()
            self._packets.extend(self.packets(digit, timestamp, duration_ms))
        return self._packets.popleft() if self._packets else None
