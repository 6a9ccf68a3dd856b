"""The four transaction machines on their own, with a recording host, and the timer table."""

from __future__ import annotations

import math

import pytest

from softphone.sip.events import Event, ResponseReceived, TransactionTimeout
from softphone.sip.message import Headers, SipRequest, SipResponse, make_response
from softphone.sip.timers import TimerConfig, TimerConfigError, is_reliable
from softphone.sip.transaction import (
    Address,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    Transaction,
    TransactionStateError,
    TxnState,
    build_ack_for_non2xx,
)

UDP = Address("udp", "198.51.100.7", 5060)
TCP = Address("tcp", "198.51.100.7", 5060, conn_id=3)


class Host:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Address]] = []
        self.events: list[Event] = []
        self.armed: list[tuple[str, float]] = []
        self.ended: list[Transaction] = []

    def transmit(self, data: bytes, dest: Address) -> None:
        self.sent.append((data, dest))

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def arm(self, txn: Transaction, name: str, deadline: float) -> None:
        self.armed.append((name, deadline))

    def terminated(self, txn: Transaction) -> None:
        self.ended.append(txn)


def request(method: str = "INVITE") -> SipRequest:
    h = Headers([
        ("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKabc;rport"),
        ("Via", "SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKdownstream"),
        ("Route", "<sip:edge.example.com;lr>"), ("Route", "<sip:core.example.com;lr>"),
        ("From", "<sip:alice@example.com>;tag=a"), ("To", "<sip:bob@example.com>"),
        ("Call-ID", "c1"), ("CSeq", f"7 {method}"), ("Max-Forwards", "70"),
    ])
    return SipRequest(method, "sip:bob@example.com", h)


def resp(req: SipRequest, status: int) -> SipResponse:
    return make_response(req, status, "R", to_tag="b" if status > 100 else None)


@pytest.mark.parametrize(("t1", "t2", "t4"), [(0.5, 4.0, 5.0), (0.1, 0.4, 1.0), (2.0, 8.0, 10.0)])
def test_timer_table_of_rfc3261_appendix_a(t1: float, t2: float, t4: float) -> None:
    c = TimerConfig(t1=t1, t2=t2, t4=t4)
    assert (c.a, c.b, c.e, c.f, c.g, c.h) == (t1, 64 * t1, t1, 64 * t1, t1, 64 * t1)
    assert (c.d(False), c.d(True)) == (32.0, 0.0)
    assert (c.i(False), c.i(True), c.k(False), c.k(True)) == (t4, 0.0, t4, 0.0)
    assert (c.j(False), c.j(True)) == (64 * t1, 0.0)
    assert (c.l, c.m) == (64 * t1, 64 * t1)
    assert c.next_a(t2) == 2 * t2  # INVITE: not capped
    assert c.next_e(t2) == t2 and c.next_g(t2) == t2  # capped at T2


@pytest.mark.parametrize("kw", [{"t1": 0.0}, {"t1": -1.0}, {"t2": 0.1, "t1": 0.5},
                                {"t4": math.nan}, {"timer_d_unreliable": 0}])
def test_bad_timer_values_raise_the_modules_error(kw: dict[str, float]) -> None:
    with pytest.raises(TimerConfigError):
        TimerConfig(**kw)
    with pytest.raises(ValueError):
        TimerConfig(**kw)


def test_reliable_transports() -> None:
    assert [is_reliable(t) for t in ("udp", "tcp", "tls", "ws", "wss", "UDP")] == [
        False, True, True, True, True, False]
    assert TCP.reliable and not UDP.reliable


def test_ack_for_non2xx_keeps_top_via_routes_and_takes_the_response_to() -> None:
    req = request()
    ack = build_ack_for_non2xx(req, resp(req, 486))
    assert ack.headers.values("via") == ["SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKabc;rport"]
    assert ack.headers.get_all("route") == req.headers.get_all("route")
    assert str(ack.cseq) == "7 ACK" and ack.to.tag == "b" and ack.uri == req.uri
    assert ack.from_.tag == "a" and ack.call_id == "c1"


def test_invite_client_machine() -> None:
    host = Host()
    req = request()
    t = InviteClientTransaction(host, req, UDP, TimerConfig(), "z9hG4bKabc")
    t.start(0.0)
    assert host.armed == [("A", 0.5), ("B", 32.0)] and len(host.sent) == 1
    t.receive_response(resp(req, 100), 0.1)
    assert t.state is TxnState.PROCEEDING and t.timers == {}
    t.receive_response(resp(req, 183), 0.2)
    t.receive_response(resp(req, 200), 0.3)
    assert t.state is TxnState.ACCEPTED and t.timers == {"M": pytest.approx(32.3)}
    t.receive_response(resp(req, 486), 0.4)  # discarded in Accepted (RFC 6026)
    statuses = [e.response.status for e in host.events if isinstance(e, ResponseReceived)]
    assert statuses == [100, 183, 200]
    t.on_timer("M", 32.3)
    assert t.state is TxnState.TERMINATED and host.ended == [t]


def test_non_invite_client_machine_over_tcp() -> None:
    host = Host()
    req = request("BYE")
    t = NonInviteClientTransaction(host, req, TCP, TimerConfig(t1=0.25), "z9hG4bKabc")
    t.start(0.0)
    assert host.armed == [("F", 16.0)]  # no E on a reliable transport
    t.receive_response(resp(req, 100), 0.1)
    t.receive_response(resp(req, 100), 0.2)
    assert t.state is TxnState.PROCEEDING
    t.on_timer("F", 16.0)
    assert [(type(e), getattr(e, "timer", None)) for e in host.events][-1] == (
        TransactionTimeout, "F")
    assert t.state is TxnState.TERMINATED


def test_invite_server_machine_refuses_a_second_final_and_bad_status() -> None:
    host = Host()
    req = request()
    t = InviteServerTransaction(host, req, UDP, UDP, TimerConfig(), ("k",))
    with pytest.raises(TransactionStateError):
        t.send_response(make_response(req, 700, "Bad"), 0.0)
    t.send_response(resp(req, 180), 0.0)
    t.receive_request(req, 0.1)
    assert [d for d, _ in host.sent] == [host.sent[0][0]] * 2  # the 180 again
    t.send_response(resp(req, 200), 0.2)
    assert t.state is TxnState.ACCEPTED and set(t.timers) == {"G", "L"}
    with pytest.raises(TransactionStateError):
        t.send_response(resp(req, 200), 0.3)
    t.receive_request(req, 0.4)  # absorbed in Accepted, no 2xx from here
    assert len(host.sent) == 3


def test_non_invite_server_machine_over_tcp_ends_with_its_final() -> None:
    host = Host()
    req = request("OPTIONS")
    t = NonInviteServerTransaction(host, req, TCP, TCP, TimerConfig(), ("k",))
    t.receive_request(req, 0.0)
    assert host.sent == []  # Trying: absorbed
    t.send_response(resp(req, 200), 0.1)
    assert t.state is TxnState.TERMINATED and host.sent[0][1] == TCP
