"""SIP transaction timers (RFC 3261 §17, table 4 of Appendix A; RFC 6026 timers L and M).

T1 (RTT estimate), T2 (cap of non-INVITE and response retransmission intervals) and T4 (how
long the network keeps a message) are configurable per core: a trunk over a satellite link
wants a larger T1, a LAN-only edge a smaller one. Every other timer derives from them here,
so that the transaction machines never hard-code a duration.
"""

from __future__ import annotations

from dataclasses import dataclass

from softphone.sip.errors import SipError

#: Transports on which SIP never retransmits (§17.1.1.2, §18): timers A, E and G are not
#: started and the "wait for retransmissions" timers D, I, J and K are zero.
RELIABLE_TRANSPORTS = frozenset({"tcp", "tls", "ws", "wss"})
TRANSPORTS = frozenset({"udp"}) | RELIABLE_TRANSPORTS


class TimerConfigError(SipError, ValueError):
    """T1/T2/T4 values that would make the transaction machines misbehave."""


def is_reliable(transport: str) -> bool:
    """True for stream transports (TCP, TLS, WebSocket): no retransmissions."""
    return transport.lower() in RELIABLE_TRANSPORTS


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """The base values and every derived timer of RFC 3261 Table 4."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    #: Timer D: "at least 32 s" for unreliable transports (§17.1.1.2), independent of T1.
    timer_d_unreliable: float = 32.0

    def __post_init__(self) -> None:
        for name in ("t1", "t2", "t4", "timer_d_unreliable"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0 or value != value:
                raise TimerConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.t2 < self.t1:
            raise TimerConfigError(f"T2 ({self.t2}) must not be smaller than T1 ({self.t1})")

    # INVITE client transaction.
    @property
    def a(self) -> float:
        """Initial INVITE retransmission interval (doubles each time, not capped)."""
        return self.t1

    @property
    def b(self) -> float:
        """INVITE transaction timeout."""
        return 64 * self.t1

    def d(self, reliable: bool) -> float:
        """Wait time for response retransmissions after a non-2xx final."""
        return 0.0 if reliable else self.timer_d_unreliable

    # Non-INVITE client transaction.
    @property
    def e(self) -> float:
        """Initial non-INVITE retransmission interval (doubles, capped at T2)."""
        return self.t1

    @property
    def f(self) -> float:
        """Non-INVITE transaction timeout."""
        return 64 * self.t1

    def k(self, reliable: bool) -> float:
        """Wait time for response retransmissions in the non-INVITE Completed state."""
        return 0.0 if reliable else self.t4

    # INVITE server transaction.
    @property
    def g(self) -> float:
        """Initial final-response retransmission interval (doubles, capped at T2)."""
        return self.t1

    @property
    def h(self) -> float:
        """Wait time for the ACK of a non-2xx final response."""
        return 64 * self.t1

    def i(self, reliable: bool) -> float:
        """Wait time for ACK retransmissions in the Confirmed state."""
        return 0.0 if reliable else self.t4

    # Non-INVITE server transaction.
    def j(self, reliable: bool) -> float:
        """Wait time for request retransmissions in the non-INVITE Completed state."""
        return 0.0 if reliable else 64 * self.t1

    # RFC 6026 Accepted states.
    @property
    def l(self) -> float:  # noqa: E743 - the RFC's name
        """INVITE server Accepted state: how long the 2xx is retransmitted waiting for ACK."""
        return 64 * self.t1

    @property
    def m(self) -> float:
        """INVITE client Accepted state: how long 2xx retransmissions and forks are accepted."""
        return 64 * self.t1

    def next_a(self, interval: float) -> float:
        return 2 * interval

    def next_e(self, interval: float) -> float:
        return min(2 * interval, self.t2)

    def next_g(self, interval: float) -> float:
        return min(2 * interval, self.t2)
