"""The SIP core on the wire: every RFC 3261 timer on a fake clock, retransmission absorption,
CANCEL, the 2xx ACK, RFC 2543 matching, rport, 400s for unparseable requests.

Peers are played by hand-written bytes (what a real phone sends); the clock is a float.
"""

from __future__ import annotations

import pytest

from softphone.sip.core import Address, SipCore, TransactionStateError
from softphone.sip.errors import SipError
from softphone.sip.events import (
    AckNotReceived,
    AckReceived,
    CancelReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionTerminated,
    TransactionTimeout,
)
from softphone.sip.message import Headers, SipRequest, SipResponse, make_response, parse_message
from softphone.sip.transaction import TxnState

LOCAL_UDP = Address("udp", "192.0.2.10", 5060)
LOCAL_TCP = Address("tcp", "192.0.2.10", 5060)
PEER = Address("udp", "198.51.100.7", 5070)
PEER_TCP = Address("tcp", "198.51.100.7", 40123, conn_id=7)


def make_core(**kw: float) -> SipCore:
    return SipCore(local={"udp": LOCAL_UDP, "tcp": LOCAL_TCP}, **kw)  # type: ignore[arg-type]


def events(core: SipCore) -> list[Event]:
    out: list[Event] = []
    while (ev := core.next_event()) is not None:
        out.append(ev)
    return out


def sent(core: SipCore, now: float = 0.0) -> list[tuple[SipRequest | SipResponse, Address]]:
    return [(parse_message(data), dest) for data, dest in core.datagrams_to_send(now)]


def request_bytes(method: str = "INVITE", *, branch: str | None = "z9hG4bKpeer1",
                  cseq: int = 1, call_id: str = "call-1@198.51.100.7", from_tag: str = "ft1",
                  to_tag: str | None = None, via_host: str = "198.51.100.7",
                  via_port: int = 5070, rport: bool = False, transport: str = "UDP",
                  uri: str = "sip:bob@192.0.2.10", cseq_method: str | None = None) -> bytes:
    via = f"SIP/2.0/{transport} {via_host}:{via_port}"
    if branch is not None:
        via += f";branch={branch}"
    if rport:
        via += ";rport"
    to = "<sip:bob@192.0.2.10>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: \"Alice\" <sip:alice@198.51.100.7>;tag={from_tag}\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        "Contact: <sip:alice@198.51.100.7:5070>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def outgoing(method: str = "INVITE", cseq: int = 1) -> SipRequest:
    h = Headers([
        ("From", "<sip:bob@192.0.2.10>;tag=loc1"), ("To", "<sip:carol@198.51.100.7>"),
        ("Call-ID", "out-1@192.0.2.10"), ("CSeq", f"{cseq} {method}"),
        ("Contact", "<sip:bob@192.0.2.10:5060>"),
    ])
    return SipRequest(method, "sip:carol@198.51.100.7:5070", h)


def answer(request: SipRequest, status: int, reason: str = "X",
           to_tag: str | None = "rt1") -> bytes:
    return make_response(request, status, reason, to_tag=to_tag).to_bytes()


def transmit_times(core: SipCore, until: float) -> list[float]:
    """Fire timers one deadline at a time; the times at which something was sent."""
    times = []
    while (deadline := core.get_timer()) is not None and deadline <= until:
        core.handle_timer(deadline)
        if core.datagrams_to_send(deadline):
            times.append(round(deadline, 9))
    return times


# ------------------------------------------------------------------ client INVITE: A, B, D


@pytest.mark.parametrize(("t1", "t2"), [(0.5, 4.0), (0.1, 0.1), (1.0, 2.0)])
def test_invite_timer_a_doubles_without_t2_cap_and_b_fires_at_64_t1(t1: float,
                                                                      t2: float) -> None:
    core = make_core(t1=t1, t2=t2)
    txn = core.send_request(outgoing(), PEER, 0.0)
    assert len(sent(core)) == 1
    times = transmit_times(core, until=100 * t1)
    # A = T1, 2T1, 4T1, ... never capped by T2 (§17.1.1.2): 7 transmissions in all.
    assert times == [round(t1 * (2**k - 1), 9) for k in range(1, 7)]
    evs = events(core)
    assert isinstance(evs[0], TransactionTimeout) and evs[0].timer == "B"
    assert txn.state is TxnState.TERMINATED
    assert core.get_timer() is None


def test_invite_b_fires_exactly_at_64_t1() -> None:
    core = make_core(t1=0.25)
    core.send_request(outgoing(), PEER, 10.0)
    core.datagrams_to_send(0)
    core.handle_timer(10.0 + 64 * 0.25 - 1e-6)
    assert not [e for e in events(core) if isinstance(e, TransactionTimeout)]
    core.handle_timer(10.0 + 64 * 0.25)
    assert [e.timer for e in events(core) if isinstance(e, TransactionTimeout)] == ["B"]


def test_provisional_stops_a_and_b_then_final_non2xx_is_acked_and_d_is_32s_on_udp() -> None:
    core = make_core()
    txn = core.send_request(outgoing(), PEER, 0.0)
    (inv, _), = sent(core)
    assert isinstance(inv, SipRequest)
    core.receive(answer(inv, 180, "Ringing"), PEER, 0.2)
    assert txn.state is TxnState.PROCEEDING
    assert transmit_times(core, until=1000.0) == []  # no retransmission, no timeout
    assert txn.state is TxnState.PROCEEDING
    core.receive(answer(inv, 486, "Busy Here"), PEER, 1000.0)
    out = sent(core)
    assert len(out) == 1
    ack = out[0][0]
    assert isinstance(ack, SipRequest) and ack.method == "ACK"
    assert ack.top_via.branch == inv.top_via.branch  # same transaction (§17.1.1.3)
    assert str(ack.cseq) == "1 ACK" and ack.to.tag == "rt1" and ack.uri == inv.uri
    statuses = [e.response.status for e in events(core) if isinstance(e, ResponseReceived)]
    assert statuses == [180, 486]
    # A retransmitted 486 is absorbed, the ACK resent.
    core.receive(answer(inv, 486, "Busy Here"), PEER, 1010.0)
    assert [m.method for m, _ in sent(core) if isinstance(m, SipRequest)] == ["ACK"]
    assert not [e for e in events(core) if isinstance(e, ResponseReceived)]
    assert core.get_timer() == pytest.approx(1032.0)
    core.handle_timer(1032.0)
    assert txn.state is TxnState.TERMINATED


def test_timer_d_is_zero_on_tcp_and_nothing_is_retransmitted() -> None:
    core = make_core()
    txn = core.send_request(outgoing(), PEER_TCP, 0.0)
    (inv, dest), = sent(core)
    assert dest == PEER_TCP
    assert isinstance(inv, SipRequest) and inv.top_via.transport == "TCP"
    assert core.get_timer() == pytest.approx(32.0)  # only B, no A
    core.receive(answer(inv, 404, "Not Found"), PEER_TCP, 1.0)
    assert txn.state is TxnState.TERMINATED
    assert [m.method for m, _ in sent(core) if isinstance(m, SipRequest)] == ["ACK"]


def test_reliable_invite_times_out_without_retransmitting() -> None:
    core = make_core(t1=0.5)
    core.send_request(outgoing(), PEER_TCP, 0.0)
    core.datagrams_to_send(0)
    assert transmit_times(core, until=100.0) == []
    assert [e.timer for e in events(core) if isinstance(e, TransactionTimeout)] == ["B"]


# ------------------------------------------------------------------ client non-INVITE: E, F, K


@pytest.mark.parametrize(("t1", "t2"), [(0.5, 4.0), (0.5, 1.0), (0.2, 4.0)])
def test_non_invite_timer_e_doubles_capped_at_t2_and_f_at_64_t1(t1: float, t2: float) -> None:
    core = make_core(t1=t1, t2=t2)
    core.send_request(outgoing("OPTIONS"), PEER, 0.0)
    core.datagrams_to_send(0)
    times = transmit_times(core, until=64 * t1)
    expected, t, interval = [], 0.0, t1
    while t + interval < 64 * t1:
        t += interval
        expected.append(round(t, 9))
        interval = min(2 * interval, t2)
    assert times == expected
    assert all(b - a <= t2 + 1e-9 for a, b in zip(times, times[1:], strict=False))
    assert [e.timer for e in events(core) if isinstance(e, TransactionTimeout)] == ["F"]


def test_non_invite_e_literal_schedule_default_timers() -> None:
    core = make_core()
    core.send_request(outgoing("REGISTER"), PEER, 0.0)
    core.datagrams_to_send(0)
    assert transmit_times(core, until=32.0) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5,
                                               27.5, 31.5]


def test_non_invite_proceeding_retransmits_every_t2() -> None:
    core = make_core(t1=0.5, t2=4.0)
    txn = core.send_request(outgoing("OPTIONS"), PEER, 0.0)
    (req, _), = sent(core)
    assert isinstance(req, SipRequest)
    core.receive(answer(req, 100, "Trying", to_tag=None), PEER, 0.1)
    assert txn.state is TxnState.PROCEEDING
    # The E armed at 0.5 still fires at 0.5, then every T2 (§17.1.2.2).
    assert transmit_times(core, until=14.0) == [0.5, 4.5, 8.5, 12.5]


@pytest.mark.parametrize("t4", [5.0, 2.5])
def test_timer_k_is_t4_on_udp_and_absorbs_final_retransmissions(t4: float) -> None:
    core = make_core(t4=t4)
    txn = core.send_request(outgoing("OPTIONS"), PEER, 0.0)
    (req, _), = sent(core)
    assert isinstance(req, SipRequest)
    core.receive(answer(req, 200, "OK"), PEER, 0.3)
    assert txn.state is TxnState.COMPLETED
    core.receive(answer(req, 200, "OK"), PEER, 0.4)
    assert [e.response.status for e in events(core) if isinstance(e, ResponseReceived)] == [200]
    assert core.get_timer() == pytest.approx(0.3 + t4)
    core.handle_timer(0.3 + t4)
    assert txn.state is TxnState.TERMINATED
    assert core.datagrams_to_send(0) == []


def test_timer_k_is_zero_on_tcp() -> None:
    core = make_core()
    txn = core.send_request(outgoing("OPTIONS"), PEER_TCP, 0.0)
    (req, _), = sent(core)
    assert isinstance(req, SipRequest)
    core.receive(answer(req, 200, "OK"), PEER_TCP, 0.3)
    assert txn.state is TxnState.TERMINATED
    assert core.get_timer() is None


# ------------------------------------------------------------------ server INVITE: G, H, I


def test_retransmitted_invite_gets_the_last_provisional_again() -> None:
    core = make_core()
    core.receive(request_bytes(), PEER, 0.0)
    (ev,) = [e for e in events(core) if isinstance(e, RequestReceived)]
    assert [m.status for m, _ in sent(core) if isinstance(m, SipResponse)] == [100]
    core.receive(request_bytes(), PEER, 0.5)
    assert [m.status for m, _ in sent(core) if isinstance(m, SipResponse)] == [100]
    core.respond(ev.transaction, 180, "Ringing", 0.6, to_tag="uas1")
    core.datagrams_to_send(0)
    core.receive(request_bytes(), PEER, 1.5)
    (again, dest), = sent(core)
    assert isinstance(again, SipResponse) and again.status == 180 and again.to.tag == "uas1"
    assert dest == PEER
    assert events(core) == []  # the TU never sees retransmissions
    assert core.stats["retransmissions_absorbed"] == 2


@pytest.mark.parametrize(("t1", "t2"), [(0.5, 4.0), (0.5, 1.0)])
def test_final_non2xx_retransmitted_on_g_until_h(t1: float, t2: float) -> None:
    core = make_core(t1=t1, t2=t2)
    core.receive(request_bytes(), PEER, 0.0)
    (ev,) = [e for e in events(core) if isinstance(e, RequestReceived)]
    core.datagrams_to_send(0)
    core.respond(ev.transaction, 486, "Busy Here", 0.0, to_tag="uas1")
    assert len(core.datagrams_to_send(0)) == 1
    times = transmit_times(core, until=64 * t1)
    expected, t, interval = [], 0.0, t1
    while t + interval < 64 * t1:
        t += interval
        expected.append(round(t, 9))
        interval = min(2 * interval, t2)
    assert times == expected
    evs = events(core)
    assert [e.timer for e in evs if isinstance(e, TransactionTimeout)] == ["H"]
    assert ev.transaction.state is TxnState.TERMINATED


@pytest.mark.parametrize("t4", [5.0, 1.0])
def test_ack_confirms_and_timer_i_absorbs_ack_retransmissions(t4: float) -> None:
    core = make_core(t4=t4)
    core.receive(request_bytes(), PEER, 0.0)
    (ev,) = [e for e in events(core) if isinstance(e, RequestReceived)]
    core.respond(ev.transaction, 603, "Decline", 0.0, to_tag="uas1")
    core.datagrams_to_send(0)
    core.receive(request_bytes("ACK", to_tag="uas1"), PEER, 0.2)
    assert ev.transaction.state is TxnState.CONFIRMED
    core.receive(request_bytes("ACK", to_tag="uas1"), PEER, 0.3)
    assert core.datagrams_to_send(0) == [] and events(core) == []  # G stopped, ACKs absorbed
    assert core.get_timer() == pytest.approx(0.2 + t4)
    core.handle_timer(0.2 + t4)
    assert ev.transaction.state is TxnState.TERMINATED


def test_timer_i_is_zero_on_tcp_and_final_never_retransmitted() -> None:
    core = make_core()
    core.receive(request_bytes(transport="TCP"), PEER_TCP, 0.0)
    (ev,) = [e for e in events(core) if isinstance(e, RequestReceived)]
    core.respond(ev.transaction, 486, "Busy Here", 0.0, to_tag="uas1")
    out = core.datagrams_to_send(0)
    assert [d for _, d in out] == [PEER_TCP, PEER_TCP]  # 100 and 486 on the same connection
    assert transmit_times(core, until=10.0) == []
    core.receive(request_bytes("ACK", to_tag="uas1", transport="TCP"), PEER_TCP, 11.0)
    assert ev.transaction.state is TxnState.TERMINATED


# ------------------------------------------------------------------ server non-INVITE: J


def test_non_invite_server_absorbs_then_replays_and_j_is_64_t1_on_udp() -> None:
    core = make_core(t1=0.5)
    core.receive(request_bytes("OPTIONS"), PEER, 0.0)
    (ev,) = [e for e in events(core) if isinstance(e, RequestReceived)]
    assert core.datagrams_to_send(0) == []  # no 100 Trying for non-INVITE
    core.receive(request_bytes("OPTIONS"), PEER, 0.5)
    assert core.datagrams_to_send(0) == []  # Trying: absorbed silently
    core.respond(ev.transaction, 100, "Trying", 0.6)
    core.datagrams_to_send(0)
    core.receive(request_bytes("OPTIONS"), PEER, 1.0)
    assert [m.status for m, _ in sent(core) if isinstance(m, SipResponse)] == [100]
    core.respond(ev.transaction, 200, "OK", 2.0, to_tag="x")
    core.datagrams_to_send(0)
    core.receive(request_bytes("OPTIONS"), PEER, 3.0)
    assert [m.status for m, _ in sent(core) if isinstance(m, SipResponse)] == [200]
    assert core.get_timer() == pytest.approx(2.0 + 32.0)
    core.handle_timer(34.0)
    assert ev.transaction.state is TxnState.TERMINATED
    # After J a copy is a new request again.
    core.receive(request_bytes("OPTIONS"), PEER, 35.0)
    assert [e for e in events(core) if isinstance(e, RequestReceived)]


def test_timer_j_is_zero_on_tcp() -> None:
    core = make_core()
    core.receive(request_bytes("OPTIONS", transport="TCP"), PEER_TCP, 0.0)
    (ev,) = [e for e in events(core) if isinstance(e, RequestReceived)]
    core.respond(ev.transaction, 200, "OK", 0.0)
    assert ev.transaction.state is TxnState.TERMINATED


def test_responding_twice_is_refused_with_the_modules_error() -> None:
    core = make_core()
    core.receive(request_bytes("OPTIONS"), PEER, 0.0)
    (ev,) = [e for e in events(core) if isinstance(e, RequestReceived)]
    core.respond(ev.transaction, 200, "OK", 0.0)
    with pytest.raises(TransactionStateError):
        core.respond(ev.transaction, 500, "Oops", 0.1)


# ------------------------------------------------------------------ CANCEL


def test_cancel_before_provisional_waits_then_487_is_acked_on_the_same_branch() -> None:
    core = make_core()
    inv_txn = core.send_request(outgoing(), PEER, 0.0)
    (inv, _), = sent(core)
    assert isinstance(inv, SipRequest)
    cancel_txn = core.cancel(inv_txn, 0.1)
    assert core.cancel(inv_txn, 0.15) is cancel_txn
    # §9.1: no CANCEL before a provisional response; the INVITE itself keeps retransmitting.
    assert [m.method for m, _ in sent(core) if isinstance(m, SipRequest)] == []
    core.handle_timer(0.5)
    assert [m.method for m, _ in sent(core) if isinstance(m, SipRequest)] == ["INVITE"]
    core.receive(answer(inv, 180, "Ringing"), PEER, 0.6)
    (cancel, _), = sent(core)
    assert isinstance(cancel, SipRequest) and cancel.method == "CANCEL"
    assert cancel.top_via.branch == inv.top_via.branch
    assert str(cancel.cseq) == "1 CANCEL" and cancel.uri == inv.uri
    assert cancel.to.tag is None  # the INVITE's To, not the response's
    core.receive(answer(cancel, 200, "OK"), PEER, 0.7)
    core.receive(answer(inv, 487, "Request Terminated"), PEER, 0.8)
    (ack, _), = sent(core)
    assert isinstance(ack, SipRequest) and ack.method == "ACK"
    assert ack.top_via.branch == inv.top_via.branch and ack.to.tag == "rt1"
    got = [(e.transaction.method, e.response.status) for e in events(core)
           if isinstance(e, ResponseReceived)]
    assert got == [("INVITE", 180), ("CANCEL", 200), ("INVITE", 487)]


def test_cancel_after_provisional_is_sent_at_once_and_retransmitted_on_e() -> None:
    core = make_core()
    inv_txn = core.send_request(outgoing(), PEER, 0.0)
    (inv, _), = sent(core)
    assert isinstance(inv, SipRequest)
    core.receive(answer(inv, 183, "Session Progress"), PEER, 0.1)
    cancel_txn = core.cancel(inv_txn, 1.0)
    assert [m.method for m, _ in sent(core) if isinstance(m, SipRequest)] == ["CANCEL"]
    assert cancel_txn.state is TxnState.TRYING
    core.handle_timer(1.5)
    assert [m.method for m, _ in sent(core) if isinstance(m, SipRequest)] == ["CANCEL"]


def test_cancel_never_answered_with_a_final_ends_the_invite_64_t1_later() -> None:
    core = make_core(t1=0.5)
    inv_txn = core.send_request(outgoing(), PEER, 0.0)
    (inv, _), = sent(core)
    assert isinstance(inv, SipRequest)
    core.receive(answer(inv, 180, "Ringing"), PEER, 0.1)
    cancel = core.cancel(inv_txn, 5.0)
    core.receive(answer(cancel.request, 200, "OK"), PEER, 5.1)
    core.handle_timer(5.0 + 32.0)
    timeouts = [e for e in events(core) if isinstance(e, TransactionTimeout)]
    assert [(e.transaction, e.timer) for e in timeouts] == [(inv_txn, "B")]


def test_pending_cancel_is_dropped_when_the_invite_is_answered() -> None:
    core = make_core()
    inv_txn = core.send_request(outgoing(), PEER, 0.0)
    (inv, _), = sent(core)
    assert isinstance(inv, SipRequest)
    cancel_txn = core.cancel(inv_txn, 0.1)
    core.receive(answer(inv, 200, "OK"), PEER, 0.2)
    assert cancel_txn.state is TxnState.TERMINATED
    assert [m for m, _ in sent(core) if isinstance(m, SipRequest)] == []
    with pytest.raises(TransactionStateError):
        core.cancel(inv_txn, 0.3)


def test_server_cancel_answers_200_emits_cancel_then_tu_487_is_acked() -> None:
    core = make_core()
    core.receive(request_bytes(), PEER, 0.0)
    (req_ev,) = [e for e in events(core) if isinstance(e, RequestReceived)]
    core.respond(req_ev.transaction, 180, "Ringing", 0.1, to_tag="uas1")
    core.datagrams_to_send(0)
    core.receive(request_bytes("CANCEL"), PEER, 1.0)
    (resp, _), = sent(core)
    assert isinstance(resp, SipResponse) and resp.status == 200
    assert str(resp.cseq) == "1 CANCEL" and resp.to.tag == "uas1"
    (cev,) = [e for e in events(core) if isinstance(e, CancelReceived)]
    assert cev.invite_transaction is req_ev.transaction
    core.respond(req_ev.transaction, 487, "Request Terminated", 1.1, to_tag="uas1")
    (r487, _), = sent(core)
    assert isinstance(r487, SipResponse) and str(r487.cseq) == "1 INVITE"
    core.receive(request_bytes("ACK", to_tag="uas1"), PEER, 1.2)
    assert req_ev.transaction.state is TxnState.CONFIRMED
    # A CANCEL retransmission gets the 200 again, no second event.
    core.receive(request_bytes("CANCEL"), PEER, 1.3)
    assert [m.status for m, _ in sent(core) if isinstance(m, SipResponse)] == [200]
    assert not [e for e in events(core) if isinstance(e, CancelReceived)]


def test_cancel_for_unknown_invite_gets_481_and_after_final_no_event() -> None:
    core = make_core()
    core.receive(request_bytes("CANCEL", branch="z9hG4bKnobody"), PEER, 0.0)
    assert [m.status for m, _ in sent(core) if isinstance(m, SipResponse)] == [481]
    core.receive(request_bytes(), PEER, 1.0)
    (ev,) = [e for e in events(core) if isinstance(e, RequestReceived)]
    core.respond(ev.transaction, 200, "OK", 1.1, to_tag="uas1")
    core.datagrams_to_send(0)
    core.receive(request_bytes("CANCEL"), PEER, 1.2)
    assert [m.status for m, _ in sent(core) if isinstance(m, SipResponse)] == [200]
    assert not [e for e in events(core) if isinstance(e, CancelReceived)]


# ------------------------------------------------------------------ 2xx and its ACK


def test_uas_2xx_is_retransmitted_until_the_ack_outside_the_transaction() -> None:
    core = make_core(t1=0.5, t2=4.0)
    core.receive(request_bytes(), PEER, 0.0)
    (ev,) = [e for e in events(core) if isinstance(e, RequestReceived)]
    core.respond(ev.transaction, 200, "OK", 0.0, to_tag="uas1")
    core.datagrams_to_send(0)
    assert transmit_times(core, until=4.0) == [0.5, 1.5, 3.5]
    # The ACK for a 2xx has its own branch (§17.1.1.3): matched by Call-ID/From tag/CSeq.
    core.receive(request_bytes("ACK", branch="z9hG4bKack1", to_tag="uas1"), PEER, 4.0)
    (ack_ev,) = [e for e in events(core) if isinstance(e, AckReceived)]
    assert ack_ev.transaction is ev.transaction and ack_ev.source == PEER
    assert transmit_times(core, until=31.0) == []
    # A retransmitted ACK is absorbed while the transaction lives (timer L) ...
    core.receive(request_bytes("ACK", branch="z9hG4bKack1", to_tag="uas1"), PEER, 31.0)
    assert events(core) == [] and core.stats["acks_absorbed"] == 1
    # ... and handed to the TU without a transaction afterwards (a late ACK).
    core.handle_timer(32.0)
    assert ev.transaction.state is TxnState.TERMINATED
    events(core)
    core.receive(request_bytes("ACK", branch="z9hG4bKack1", to_tag="uas1"), PEER, 40.0)
    (late,) = [e for e in events(core) if isinstance(e, AckReceived)]
    assert late.transaction is None


def test_uas_2xx_without_ack_gives_ack_not_received_after_64_t1() -> None:
    core = make_core(t1=0.5)
    core.receive(request_bytes(), PEER, 0.0)
    (ev,) = [e for e in events(core) if isinstance(e, RequestReceived)]
    core.respond(ev.transaction, 200, "OK", 0.0, to_tag="uas1")
    core.handle_timer(32.0)
    evs = events(core)
    assert [type(e) for e in evs if isinstance(e, AckNotReceived)] == [AckNotReceived]
    assert ev.transaction.state is TxnState.TERMINATED
    assert core.get_timer() is None


def test_uac_2xx_retransmission_is_reacked_by_the_core_and_other_forks_reach_the_tu() -> None:
    core = make_core()
    txn = core.send_request(outgoing(), PEER, 0.0)
    (inv, _), = sent(core)
    assert isinstance(inv, SipRequest)
    core.receive(answer(inv, 200, "OK", to_tag="forkA"), PEER, 0.1)
    assert txn.state is TxnState.ACCEPTED
    (ok,) = [e for e in events(core) if isinstance(e, ResponseReceived)]
    ack = SipRequest("ACK", "sip:carol@198.51.100.7:5070", Headers([
        ("From", "<sip:bob@192.0.2.10>;tag=loc1"), ("To", "<sip:carol@198.51.100.7>;tag=forkA"),
        ("Call-ID", "out-1@192.0.2.10"), ("CSeq", "1 ACK")]))
    core.send_ack_2xx(ack, PEER, 0.2)
    (sent_ack, _), = sent(core)
    assert isinstance(sent_ack, SipRequest)
    assert sent_ack.top_via.branch != inv.top_via.branch
    assert sent_ack.top_via.branch and sent_ack.top_via.branch.startswith("z9hG4bK")
    core.receive(answer(inv, 200, "OK", to_tag="forkA"), PEER, 0.7)
    (again, _), = sent(core)
    assert isinstance(again, SipRequest) and again.top_via.branch == sent_ack.top_via.branch
    assert events(core) == []
    core.receive(answer(inv, 200, "OK", to_tag="forkB"), PEER, 0.8)
    (fork,) = [e for e in events(core) if isinstance(e, ResponseReceived)]
    assert fork.response.to.tag == "forkB" and ok.response.to.tag == "forkA"
    core.handle_timer(0.1 + 32.0)
    assert txn.state is TxnState.TERMINATED


def test_send_request_refuses_ack_and_cancel() -> None:
    core = make_core()
    with pytest.raises(Exception, match="send_ack_2xx"):
        core.send_request(outgoing("ACK"), PEER, 0.0)
    with pytest.raises(Exception, match="cancel"):
        core.send_request(outgoing("CANCEL"), PEER, 0.0)


# ------------------------------------------------------------------ matching


def test_stray_and_misrouted_responses_are_counted_and_dropped() -> None:
    core = make_core()
    core.send_request(outgoing("OPTIONS"), PEER, 0.0)
    (req, _), = sent(core)
    assert isinstance(req, SipRequest)
    other = SipRequest("OPTIONS", req.uri, req.headers.copy())
    other.headers.set("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKunknown")
    core.receive(answer(other, 200, "OK"), PEER, 0.1)
    assert core.stats["stray_responses"] == 1
    wrong_method = answer(req, 200, "OK").replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INFO")
    core.receive(wrong_method, PEER, 0.1)
    assert core.stats["stray_responses"] == 2
    two_vias = SipRequest("OPTIONS", req.uri, req.headers.copy())
    two_vias.headers.add("Via", "SIP/2.0/UDP 203.0.113.1;branch=z9hG4bKx")
    core.receive(answer(two_vias, 200, "OK"), PEER, 0.1)
    assert core.stats["responses_misrouted"] == 1
    assert not [e for e in events(core) if isinstance(e, ResponseReceived)]


def test_rfc2543_requests_match_on_uri_tags_call_id_cseq_and_via() -> None:
    core = make_core()
    old = {"branch": None}
    core.receive(request_bytes(**old), PEER, 0.0)  # type: ignore[arg-type]
    (ev,) = [e for e in events(core) if isinstance(e, RequestReceived)]
    core.datagrams_to_send(0)
    core.receive(request_bytes(**old), PEER, 0.3)  # type: ignore[arg-type]
    assert events(core) == [] and core.stats["retransmissions_absorbed"] == 1
    # Another From tag, or another CSeq, is another transaction.
    core.receive(request_bytes(branch=None, from_tag="other"), PEER, 0.4)
    core.receive(request_bytes(branch=None, cseq=2), PEER, 0.4)
    assert len([e for e in events(core) if isinstance(e, RequestReceived)]) == 2
    core.respond(ev.transaction, 486, "Busy Here", 0.5, to_tag="uas1")
    # The ACK matches only with the To tag of our response.
    core.receive(request_bytes("ACK", branch=None, to_tag="wrong"), PEER, 0.6)
    assert ev.transaction.state is TxnState.COMPLETED
    core.receive(request_bytes("ACK", branch=None, to_tag="uas1"), PEER, 0.7)
    assert ev.transaction.state is TxnState.CONFIRMED
    # A branch without the magic cookie is also the 2543 rule.
    core.receive(request_bytes("OPTIONS", branch="1234"), PEER, 1.0)
    core.receive(request_bytes("OPTIONS", branch="1234"), PEER, 1.1)
    assert len([e for e in events(core) if isinstance(e, RequestReceived)]) == 1


def test_magic_cookie_matching_uses_sent_by_too() -> None:
    core = make_core()
    core.receive(request_bytes("OPTIONS", via_port=5070), PEER, 0.0)
    core.receive(request_bytes("OPTIONS", via_port=5072), PEER, 0.0)
    # Same branch, other sent-by: not a retransmission but a second copy (merged, 482).
    assert core.stats["retransmissions_absorbed"] == 0 and core.stats["merged_requests"] == 1
    core.receive(request_bytes("OPTIONS", via_port=5074, call_id="other"), PEER, 0.0)
    assert len([e for e in events(core) if isinstance(e, RequestReceived)]) == 2


# ------------------------------------------------------------------ rport, 400, transports


def test_rport_and_received_are_stamped_and_used_for_the_response() -> None:
    core = make_core()
    natted = Address("udp", "203.0.113.50", 61000)
    core.receive(request_bytes("OPTIONS", via_host="10.0.0.5", via_port=5060, rport=True),
                 natted, 0.0)
    (ev,) = [e for e in events(core) if isinstance(e, RequestReceived)]
    via = ev.request.top_via
    assert via.params["received"] == "203.0.113.50" and via.params["rport"] == "61000"
    core.respond(ev.transaction, 200, "OK", 0.0)
    (resp, dest), = sent(core)
    assert dest == Address("udp", "203.0.113.50", 61000)
    assert isinstance(resp, SipResponse)
    assert resp.top_via.params["rport"] == "61000"


def test_without_rport_the_response_goes_to_received_at_the_via_port() -> None:
    core = make_core()
    core.receive(request_bytes("OPTIONS", via_host="10.0.0.5", via_port=5062),
                 Address("udp", "203.0.113.50", 61000), 0.0)
    (ev,) = [e for e in events(core) if isinstance(e, RequestReceived)]
    assert ev.request.top_via.params["received"] == "203.0.113.50"
    assert "rport" not in ev.request.top_via.params
    core.respond(ev.transaction, 200, "OK", 0.0)
    ((_, dest),) = sent(core)
    assert dest == Address("udp", "203.0.113.50", 5062)


def test_unparseable_request_gets_a_400_naming_the_fault() -> None:
    core = make_core()
    bad = request_bytes("OPTIONS").replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INFO")
    core.receive(bad, PEER, 0.0)
    (resp, dest), = sent(core)
    assert isinstance(resp, SipResponse) and resp.status == 400
    assert "CSeq" in resp.reason and dest == PEER
    assert core.stats["parse_errors"] == 1 and events(core) == []


def test_unrespondable_garbage_is_counted_and_dropped() -> None:
    core = make_core()
    core.receive(b"\x00\xffgarbage\r\n\r\n", PEER, 0.0)
    core.receive(b"SIP/2.0 2000 OK\r\n\r\n", PEER, 0.0)
    core.receive(b"\r\n\r\n", PEER, 0.0)
    assert core.datagrams_to_send(0) == [] and events(core) == []
    assert core.stats["parse_errors"] == 2 and core.stats["keepalives"] == 1


def test_transport_failure_ends_the_transactions_to_that_destination() -> None:
    core = make_core()
    txn = core.send_request(outgoing("OPTIONS"), PEER_TCP, 0.0)
    core.transport_failed(Address("tcp", PEER_TCP.host, PEER_TCP.port), 0.1, "refused")
    evs = events(core)
    assert txn.state is TxnState.TERMINATED
    assert any(type(e).__name__ == "TransportFailure" for e in evs)
    assert any(isinstance(e, TransactionTerminated) for e in evs)


def test_an_ack_for_another_forks_2xx_does_not_stop_our_retransmissions() -> None:
    core = make_core(t1=0.5)
    core.receive(request_bytes(), PEER, 0.0)
    (ev,) = [e for e in events(core) if isinstance(e, RequestReceived)]
    core.respond(ev.transaction, 200, "OK", 0.0, to_tag="mine")
    core.datagrams_to_send(0)
    core.receive(request_bytes("ACK", branch="z9hG4bKa2", to_tag="theirs"), PEER, 0.1)
    (foreign,) = [e for e in events(core) if isinstance(e, AckReceived)]
    assert foreign.transaction is None
    assert transmit_times(core, until=1.0) == [0.5]  # still retransmitting our 2xx
    core.receive(request_bytes("ACK", branch="z9hG4bKa3", to_tag="mine"), PEER, 1.0)
    (ours,) = [e for e in events(core) if isinstance(e, AckReceived)]
    assert ours.transaction is ev.transaction


def test_stream_requests_are_answered_on_their_connection_and_ipv6_gets_received() -> None:
    core = SipCore(local={"tcp": LOCAL_TCP, "ws": Address("ws", "edge.invalid", 443)})
    v6 = Address("tcp", "2001:db8::5", 50000, conn_id=42)
    core.receive(request_bytes("OPTIONS", via_host="[2001:db8::1]", via_port=5060,
                               transport="TCP", rport=True), v6, 0.0)
    (ev,) = [e for e in events(core) if isinstance(e, RequestReceived)]
    assert ev.request.top_via.params["received"] == "2001:db8::5"
    core.respond(ev.transaction, 200, "OK", 0.0)
    ((_, dest),) = sent(core)
    assert dest == v6  # the same connection (conn_id), not a new one to the Via
    # WebSocket messages are whole: no Content-Length needed (RFC 7118).
    ws = Address("ws", "203.0.113.9", 51000, conn_id=5)
    msg = request_bytes("OPTIONS", transport="WS", branch="z9hG4bKws1").replace(
        b"Content-Length: 0\r\n", b"")
    core.receive(msg, ws, 0.0)
    assert [e for e in events(core) if isinstance(e, RequestReceived)]
    # ... while on TCP a message without Content-Length is refused (§18.3).
    core.receive(request_bytes("OPTIONS", branch="z9hG4bKtcp2").replace(
        b"Content-Length: 0\r\n", b""), v6, 0.0)
    assert [m.status for m, _ in sent(core) if isinstance(m, SipResponse)] == [400]


def test_send_request_needs_a_local_address_for_the_transport() -> None:
    core = make_core()
    with pytest.raises(SipError, match="tls"):
        core.send_request(outgoing("OPTIONS"), Address("tls", "198.51.100.7", 5061), 0.0)
    with pytest.raises(SipError):
        SipCore(local={"udp": LOCAL_TCP})


def test_trying_after_200_ms_only_if_the_tu_is_slow() -> None:
    core = SipCore(local={"udp": LOCAL_UDP}, trying_delay=0.2)
    core.receive(request_bytes(branch="z9hG4bKfast"), PEER, 0.0)
    (fast,) = [e for e in events(core) if isinstance(e, RequestReceived)]
    core.respond(fast.transaction, 180, "Ringing", 0.1)
    core.receive(request_bytes(branch="z9hG4bKslow", call_id="slow"), PEER, 0.0)
    core.handle_timer(0.2)
    statuses = [(m.call_id, m.status) for m, _ in sent(core) if isinstance(m, SipResponse)]
    assert statuses == [("call-1@198.51.100.7", 180), ("slow", 100)]
    silent = SipCore(local={"udp": LOCAL_UDP}, trying_delay=None)
    silent.receive(request_bytes(), PEER, 0.0)
    silent.handle_timer(10.0)
    assert silent.datagrams_to_send(10.0) == []


def test_one_to_tag_for_the_200_to_cancel_and_the_487() -> None:
    core = make_core()
    core.receive(request_bytes(), PEER, 0.0)
    (ev,) = [e for e in events(core) if isinstance(e, RequestReceived)]
    core.datagrams_to_send(0)
    core.receive(request_bytes("CANCEL"), PEER, 0.1)  # before any tagged response
    core.respond(ev.transaction, 487, "Request Terminated", 0.2)
    (ok, _), (r487, _) = sent(core)
    assert isinstance(ok, SipResponse) and isinstance(r487, SipResponse)
    assert ok.to.tag == r487.to.tag == ev.transaction.local_tag
    assert ok.to.tag and len(ok.to.tag) >= 8


def test_a_400_gets_a_to_tag() -> None:
    core = make_core()
    core.receive(request_bytes("OPTIONS").replace(b"Max-Forwards: 70", b"Max-Forwards: x"),
                 PEER, 0.0)
    (resp, _), = sent(core)
    assert isinstance(resp, SipResponse) and resp.status == 400 and resp.to.tag


def test_a_forked_copy_of_a_pending_request_is_merged_with_482() -> None:
    core = make_core()
    core.receive(request_bytes(branch="z9hG4bKpathA"), PEER, 0.0)
    other_proxy = Address("udp", "198.51.100.8", 5060)
    core.receive(request_bytes(branch="z9hG4bKpathB", via_host="198.51.100.8", via_port=5060),
                 other_proxy, 0.1)
    assert len([e for e in events(core) if isinstance(e, RequestReceived)]) == 1
    replies = [(m.status, d) for m, d in sent(core) if isinstance(m, SipResponse)]
    assert replies == [(100, PEER), (482, other_proxy)]
    assert core.stats["merged_requests"] == 1
    # Its ACK and retransmissions are absorbed by its own transaction.
    core.receive(request_bytes("ACK", branch="z9hG4bKpathB", via_host="198.51.100.8",
                               via_port=5060, to_tag="x"), other_proxy, 0.2)
    assert events(core) == []


def test_response_destination_rules_of_18_2_2() -> None:
    from softphone.sip.core import response_destination
    from softphone.sip.message import Via

    src = Address("udp", "203.0.113.5", 40000)
    assert response_destination(Via.parse("SIP/2.0/UDP h.example:5070;maddr=239.1.1.1"),
                                src) == Address("udp", "239.1.1.1", 5070)
    assert response_destination(Via.parse("SIP/2.0/UDP h.example;received=203.0.113.5"),
                                src) == Address("udp", "203.0.113.5", 5060)
    assert response_destination(
        Via.parse("SIP/2.0/UDP h.example:5062;received=203.0.113.5;rport=40000"), src
    ) == Address("udp", "203.0.113.5", 40000)
    assert response_destination(Via.parse("SIP/2.0/UDP [2001:db8::1]:5070"),
                                Address("udp", "2001:db8::1", 5070)) == Address(
        "udp", "2001:db8::1", 5070)
    tls = Address("tls", "203.0.113.5", 40001, conn_id=9)
    assert response_destination(Via.parse("SIP/2.0/TLS h.example:5061"), tls) == tls


def test_a_late_timer_retransmits_once_and_keeps_the_timeout_absolute() -> None:
    core = make_core(t1=0.5, t2=4.0)
    core.send_request(outgoing("OPTIONS"), PEER, 0.0)
    core.datagrams_to_send(0)
    core.handle_timer(10.0)  # the loop stalled 10 s: one copy, not a burst
    assert len(core.datagrams_to_send(10.0)) == 1
    assert core.get_timer() == pytest.approx(11.0)  # E doubled from 0.5 and counted from now
    core.handle_timer(40.0)
    assert [e.timer for e in events(core) if isinstance(e, TransactionTimeout)] == ["F"]


def test_requests_are_counted_by_method_and_responses_by_class_with_bounded_keys() -> None:
    """What /metrics exposes: requests by method (a made-up method is "other", so a scanner
    cannot grow the counter or the label set) and responses sent by class."""
    core = make_core()
    core.receive(request_bytes("OPTIONS", branch="z9hG4bKa"), PEER, 0.0)
    for i in range(50):
        core.receive(request_bytes(f"SCAN{i}", branch=f"z9hG4bKs{i}"), PEER, 0.0)
    for ev in events(core):
        if isinstance(ev, RequestReceived):
            core.respond(ev.transaction, 200 if ev.request.method == "OPTIONS" else 405, "X",
                         0.0)
    assert dict(core.requests_in) == {"OPTIONS": 1, "other": 50}
    assert dict(core.responses) == {("out", "2xx"): 1, ("out", "4xx"): 50}
