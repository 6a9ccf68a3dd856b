"""SIP transactions (RFC 3261 §17, with the Accepted states of RFC 6026).

Four state machines: INVITE and non-INVITE, client and server. They are sans-I/O: a machine
is driven by ``receive_*``/``send_*``/``on_timer`` calls carrying the current time and talks
back through a :class:`TransactionHost` (the :class:`~softphone.sip.core.SipCore`) that queues
bytes, events and timer deadlines. Retransmissions happen only on unreliable transports.

Why the RFC 6026 Accepted states: with plain RFC 3261 the INVITE transactions die on a 2xx,
so retransmitted 2xx responses (client) and the ACK that matches them (server) would have to be
handled by the TU with no transaction to hang them on. Keeping the transactions for 64*T1
lets the core re-ACK retransmitted 2xx by itself, pass 2xx from other forks to the TU and
retransmit our own 2xx until the ACK arrives.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from typing import Protocol

from softphone.sip.errors import SipError
from softphone.sip.events import (
    AckNotReceived,
    AckReceived,
    Event,
    ResponseReceived,
    TransactionTimeout,
)
from softphone.sip.message import Headers, SipRequest, SipResponse
from softphone.sip.timers import TimerConfig, is_reliable

MAGIC_COOKIE = "z9hG4bK"


@dataclass(frozen=True, slots=True)
class Address:
    """Where a message comes from or goes to.

    ``transport`` is one of "udp", "tcp", "tls", "ws", "wss". ``conn_id`` names the stream
    connection a request arrived on, so that responses reuse it (§18.2.2).
    """

    transport: str
    host: str
    port: int
    conn_id: int | None = None

    @property
    def reliable(self) -> bool:
        return is_reliable(self.transport)


class TransactionStateError(SipError):
    """The TU asked a transaction for something its state does not allow."""


class TxnState(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class TransactionHost(Protocol):
    """What a transaction needs from the core that owns it."""

    def transmit(self, data: bytes, dest: Address) -> None: ...

    def emit(self, event: Event) -> None: ...

    def arm(self, txn: Transaction, name: str, deadline: float) -> None: ...

    def terminated(self, txn: Transaction) -> None: ...


def to_tag(message: SipRequest | SipResponse) -> str | None:
    """The To tag, tolerant of a malformed To (then None)."""
    try:
        return message.to.tag
    except SipError:
        return None


class Transaction:
    """What all four machines share: state, timers, the request, the peer."""

    is_invite: bool = False

    def __init__(self, host: TransactionHost, request: SipRequest, peer: Address,
                 timers: TimerConfig, key: tuple[str, ...]) -> None:
        self._host = host
        self.request = request
        self.peer = peer
        self.config = timers
        self.key = key
        self.method = request.method
        self.reliable = is_reliable(peer.transport)
        self.state = TxnState.TERMINATED  # set by subclasses
        #: Pending timers: name -> absolute deadline. The core's heap checks against it, so
        #: deleting an entry cancels the timer.
        self.timers: dict[str, float] = {}
        self._interval = 0.0

    @property
    def branch(self) -> str:
        return self.key[0]

    @property
    def terminated(self) -> bool:
        return self.state is TxnState.TERMINATED

    def _set_timer(self, name: str, now: float, delay: float) -> None:
        deadline = now + delay
        self.timers[name] = deadline
        self._host.arm(self, name, deadline)

    def _cancel_timer(self, *names: str) -> None:
        for name in names:
            self.timers.pop(name, None)

    def _terminate(self) -> None:
        if self.state is TxnState.TERMINATED:
            return
        self.state = TxnState.TERMINATED
        self.timers.clear()
        self._host.terminated(self)

    def on_timer(self, name: str, now: float) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def abort(self) -> None:
        """Terminate at once (transport failure, core shutdown)."""
        self._terminate()

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.method} branch={self.branch} "
                f"state={self.state.value}>")


# ---------------------------------------------------------------------------------------
# Client transactions (§17.1)


class ClientTransaction(Transaction):
    """A request we sent; ``receive_response`` is fed by the core's matching (§17.1.3)."""

    def __init__(self, host: TransactionHost, request: SipRequest, peer: Address,
                 timers: TimerConfig, branch: str) -> None:
        super().__init__(host, request, peer, timers, (branch, request.method))
        self.wire = request.to_bytes()
        self.last_response: SipResponse | None = None
        self.started = False

    def start(self, now: float) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def receive_response(self, response: SipResponse, now: float) -> None:  # pragma: no cover
        raise NotImplementedError

    def _send_request(self) -> None:
        self._host.transmit(self.wire, self.peer)


class InviteClientTransaction(ClientTransaction):
    """Figure 5 of RFC 3261 with RFC 6026's Accepted state (timer M)."""

    is_invite = True

    def __init__(self, host: TransactionHost, request: SipRequest, peer: Address,
                 timers: TimerConfig, branch: str) -> None:
        super().__init__(host, request, peer, timers, branch)
        self.state = TxnState.CALLING
        self.provisional_received = False
        #: The CANCEL for this INVITE, once asked for; held back until a provisional
        #: response arrives (§9.1).
        self.cancel_txn: NonInviteClientTransaction | None = None
        self._ack_wire: bytes | None = None
        #: ACKs the TU sent for 2xx responses, by To tag: resent on 2xx retransmissions.
        self.acks_2xx: dict[str, tuple[bytes, Address]] = {}
        self._delivered_2xx: set[str] = set()

    @property
    def can_cancel(self) -> bool:
        return self.state in (TxnState.CALLING, TxnState.PROCEEDING)

    def start(self, now: float) -> None:
        self.started = True
        self._send_request()
        if not self.reliable:
            self._interval = self.config.a
            self._set_timer("A", now, self._interval)
        self._set_timer("B", now, self.config.b)

    def on_timer(self, name: str, now: float) -> None:
        if name == "A" and self.state is TxnState.CALLING:
            self._send_request()
            self._interval = self.config.next_a(self._interval)
            self._set_timer("A", now, self._interval)
        elif name == "B" and self.state in (TxnState.CALLING, TxnState.PROCEEDING):
            self._host.emit(TransactionTimeout(self, "B"))
            self._drop_pending_cancel()
            self._terminate()
        elif name in ("D", "M"):
            self._terminate()

    def cancel_sent(self, now: float) -> None:
        """A CANCEL went out: give the INVITE 64*T1 more to get its final response (§9.1)."""
        if self.state is TxnState.PROCEEDING:
            self._set_timer("B", now, self.config.b)

    def _drop_pending_cancel(self) -> None:
        c = self.cancel_txn
        if c is not None and not c.started:
            c.abort()

    def receive_response(self, response: SipResponse, now: float) -> None:
        status = response.status
        state = self.state
        if state in (TxnState.CALLING, TxnState.PROCEEDING):
            self.last_response = response
            if status < 200:
                self.state = TxnState.PROCEEDING
                self._cancel_timer("A")
                if state is TxnState.CALLING:
                    self._cancel_timer("B")  # timer B only guards the Calling state
                self.provisional_received = True
                self._host.emit(ResponseReceived(response, self))
                c = self.cancel_txn
                if c is not None and not c.started:
                    c.start(now)
                    self.cancel_sent(now)
            elif status < 300:
                self.state = TxnState.ACCEPTED
                self._cancel_timer("A", "B")
                self._drop_pending_cancel()
                tag = to_tag(response)
                self._delivered_2xx.add(tag or "")
                self._host.emit(ResponseReceived(response, self))
                self._set_timer("M", now, self.config.m)
            else:
                self.state = TxnState.COMPLETED
                self._cancel_timer("A", "B")
                self._drop_pending_cancel()
                self._ack_wire = build_ack_for_non2xx(self.request, response).to_bytes()
                self._host.transmit(self._ack_wire, self.peer)
                self._host.emit(ResponseReceived(response, self))
                delay = self.config.d(self.reliable)
                if delay:
                    self._set_timer("D", now, delay)
                else:
                    self._terminate()
        elif state is TxnState.COMPLETED:
            if status >= 300 and self._ack_wire is not None:
                self._host.transmit(self._ack_wire, self.peer)  # our ACK was lost
        elif state is TxnState.ACCEPTED:
            if 200 <= status < 300:
                tag = to_tag(response) or ""
                ack = self.acks_2xx.get(tag)
                if ack is not None:
                    self._host.transmit(*ack)  # a 2xx retransmission: our ACK was lost
                elif tag not in self._delivered_2xx:
                    # Another fork answered (§13.2.2.4): the TU must ACK it (and BYE it
                    # if it keeps only one dialog).
                    self._delivered_2xx.add(tag)
                    self._host.emit(ResponseReceived(response, self))
            # Anything else in Accepted is discarded (RFC 6026 §8.4).


class NonInviteClientTransaction(ClientTransaction):
    """Figure 6 of RFC 3261."""

    def __init__(self, host: TransactionHost, request: SipRequest, peer: Address,
                 timers: TimerConfig, branch: str) -> None:
        super().__init__(host, request, peer, timers, branch)
        self.state = TxnState.TRYING

    def start(self, now: float) -> None:
        self.started = True
        self._send_request()
        if not self.reliable:
            self._interval = self.config.e
            self._set_timer("E", now, self._interval)
        self._set_timer("F", now, self.config.f)

    def on_timer(self, name: str, now: float) -> None:
        if name == "E" and self.state in (TxnState.TRYING, TxnState.PROCEEDING):
            self._send_request()
            if self.state is TxnState.TRYING:
                self._interval = self.config.next_e(self._interval)
            else:
                self._interval = self.config.t2
            self._set_timer("E", now, self._interval)
        elif name == "F" and self.state in (TxnState.TRYING, TxnState.PROCEEDING):
            self._host.emit(TransactionTimeout(self, "F"))
            self._terminate()
        elif name == "K":
            self._terminate()

    def receive_response(self, response: SipResponse, now: float) -> None:
        if self.state not in (TxnState.TRYING, TxnState.PROCEEDING):
            return  # Completed: retransmissions of the final response are absorbed
        self.last_response = response
        if response.status < 200:
            self.state = TxnState.PROCEEDING
            self._host.emit(ResponseReceived(response, self))
            return
        self.state = TxnState.COMPLETED
        self._cancel_timer("E", "F")
        self._host.emit(ResponseReceived(response, self))
        delay = self.config.k(self.reliable)
        if delay:
            self._set_timer("K", now, delay)
        else:
            self._terminate()


def build_ack_for_non2xx(request: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK the INVITE client transaction sends for a 3xx-6xx (§17.1.1.3).

    Same Request-URI, Call-ID, From, CSeq number and top Via (so the same branch) as the
    INVITE, the To of the response (with its tag), the INVITE's Route headers.
    """
    h = Headers()
    vias = request.headers.values("via")
    h.add("Via", vias[0])
    h.add("Max-Forwards", "70")
    h.add("From", request.headers.get("from") or "")
    h.add("To", response.headers.get("to") or request.headers.get("to") or "")
    h.add("Call-ID", request.call_id)
    h.add("CSeq", f"{request.cseq.number} ACK")
    for route in request.headers.get_all("route"):
        h.add("Route", route)
    return SipRequest("ACK", request.uri, h)


# ---------------------------------------------------------------------------------------
# Server transactions (§17.2)


class ServerTransaction(Transaction):
    """A request we received; the TU answers it with ``SipCore.send_response``."""

    def __init__(self, host: TransactionHost, request: SipRequest, source: Address,
                 response_dest: Address, timers: TimerConfig, key: tuple[str, ...]) -> None:
        super().__init__(host, request, source, timers, key)
        self.source = source
        #: Where responses go (§18.2.2 with RFC 3581's received/rport).
        self.response_dest = response_dest
        self.last_response: SipResponse | None = None
        self._last_wire: bytes | None = None
        #: A To tag reserved for our responses when the request has none (§8.2.6.2);
        #: ``SipCore.respond`` uses it by default. An in-dialog request keeps its own.
        self.local_tag = to_tag(request) or secrets.token_hex(8)
        #: Set by the core for out-of-dialog requests (merged-request detection, §8.2.2.2).
        self.merge_key: tuple[str, str, int, str] | None = None

    @property
    def final_sent(self) -> bool:
        return self.last_response is not None and self.last_response.status >= 200

    def _transmit(self, response: SipResponse) -> None:
        self.last_response = response
        self._last_wire = response.to_bytes()
        self._host.transmit(self._last_wire, self.response_dest)

    def _retransmit(self) -> None:
        if self._last_wire is not None:
            self._host.transmit(self._last_wire, self.response_dest)

    def receive_request(self, request: SipRequest, now: float) -> None:  # pragma: no cover
        raise NotImplementedError

    def send_response(self, response: SipResponse, now: float) -> None:  # pragma: no cover
        raise NotImplementedError

    def _check_response(self, response: SipResponse) -> None:
        if not 100 <= response.status <= 699:
            raise TransactionStateError(f"status {response.status} out of range")
        if self.state in (TxnState.COMPLETED, TxnState.CONFIRMED, TxnState.ACCEPTED,
                          TxnState.TERMINATED):
            raise TransactionStateError(
                f"{self.method} transaction already answered ({self.state.value})")


class InviteServerTransaction(ServerTransaction):
    """Figure 7 of RFC 3261 with RFC 6026's Accepted state (timer L).

    In Accepted the 2xx is retransmitted (T1 doubling to T2, unreliable transports only)
    until the ACK comes: §13.3.1.4 gives that job to the UAS core, which is this object.
    """

    is_invite = True

    def __init__(self, host: TransactionHost, request: SipRequest, source: Address,
                 response_dest: Address, timers: TimerConfig, key: tuple[str, ...]) -> None:
        super().__init__(host, request, source, response_dest, timers, key)
        self.state = TxnState.PROCEEDING
        self.cancelled = False
        self.ack_received = False
        #: (Call-ID, From tag, CSeq number) once a 2xx was sent: how the 2xx's ACK finds us.
        self.accepted_key: tuple[str, str, int] | None = None
        self._pending_trying: SipResponse | None = None

    def arm_trying(self, trying: SipResponse, now: float, delay: float) -> None:
        """Send ``trying`` (a 100) now, or after ``delay`` unless the TU answered first."""
        if delay <= 0:
            self.send_response(trying, now)
        else:
            self._pending_trying = trying
            self._set_timer("Trying", now, delay)

    def receive_request(self, request: SipRequest, now: float) -> None:
        """An INVITE retransmission: resend the last response (absorbed in Accepted)."""
        if self.state in (TxnState.PROCEEDING, TxnState.COMPLETED):
            self._retransmit()

    def receive_ack(self, ack: SipRequest, source: Address, now: float) -> None:
        if self.state is TxnState.COMPLETED:
            self.state = TxnState.CONFIRMED
            self._cancel_timer("G", "H")
            delay = self.config.i(self.reliable)
            if delay:
                self._set_timer("I", now, delay)
            else:
                self._terminate()
        elif self.state is TxnState.ACCEPTED and not self.ack_received:
            self.ack_received = True
            self._cancel_timer("G")
            self._host.emit(AckReceived(ack, source, self))
        # Confirmed, or a repeated ACK in Accepted: absorbed.

    def send_response(self, response: SipResponse, now: float) -> None:
        self._check_response(response)
        self._transmit(response)
        if response.status < 200:
            return
        if response.status < 300:
            self.state = TxnState.ACCEPTED
            if not self.reliable:
                self._interval = self.config.g
                self._set_timer("G", now, self._interval)
            self._set_timer("L", now, self.config.l)
            return
        self.state = TxnState.COMPLETED
        if not self.reliable:
            self._interval = self.config.g
            self._set_timer("G", now, self._interval)
        self._set_timer("H", now, self.config.h)

    def on_timer(self, name: str, now: float) -> None:
        if name == "Trying":
            trying, self._pending_trying = self._pending_trying, None
            if trying is not None and self.last_response is None \
                    and self.state is TxnState.PROCEEDING:
                self.send_response(trying, now)
        elif name == "G" and self.state in (TxnState.COMPLETED, TxnState.ACCEPTED):
            self._retransmit()
            self._interval = self.config.next_g(self._interval)
            self._set_timer("G", now, self._interval)
        elif name == "H" and self.state is TxnState.COMPLETED:
            self._host.emit(TransactionTimeout(self, "H"))
            self._terminate()
        elif name == "I":
            self._terminate()
        elif name == "L":
            if not self.ack_received:
                self._host.emit(AckNotReceived(self))
            self._terminate()


class NonInviteServerTransaction(ServerTransaction):
    """Figure 8 of RFC 3261."""

    def __init__(self, host: TransactionHost, request: SipRequest, source: Address,
                 response_dest: Address, timers: TimerConfig, key: tuple[str, ...]) -> None:
        super().__init__(host, request, source, response_dest, timers, key)
        self.state = TxnState.TRYING

    def receive_request(self, request: SipRequest, now: float) -> None:
        """A retransmission: absorbed in Trying, else the last response again."""
        if self.state in (TxnState.PROCEEDING, TxnState.COMPLETED):
            self._retransmit()

    def send_response(self, response: SipResponse, now: float) -> None:
        self._check_response(response)
        self._transmit(response)
        if response.status < 200:
            self.state = TxnState.PROCEEDING
            return
        self.state = TxnState.COMPLETED
        delay = self.config.j(self.reliable)
        if delay:
            self._set_timer("J", now, delay)
        else:
            self._terminate()

    def on_timer(self, name: str, now: float) -> None:
        if name == "J":
            self._terminate()
