"""Two SIP cores talking through a hostile network driven by Hypothesis.

The network loses, reorders and delays messages and, on UDP, duplicates and corrupts them
(bytes turned into invalid UTF-8, truncation); the TUs send INVITEs and OPTIONS, cancel,
answer with any status, and the clock jumps. Whatever the interleaving: nothing raises, the
TU never sees a retransmission, and once the TUs answer what they owe and the clock runs,
every transaction terminates and no timer is left.

A datagram lives at most MAX_AGE in the network: RFC 3261 sizes the transaction lifetimes
on the assumption that a copy does not arrive after its transaction's last retransmission
plus the time the server keeps the transaction.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from softphone.sip.core import Address, SipCore, TransactionStateError
from softphone.sip.events import (
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TransactionTerminated,
)
from softphone.sip.message import Headers, SipRequest, make_response
from softphone.sip.transaction import (
    ClientTransaction,
    InviteClientTransaction,
    ServerTransaction,
    TxnState,
)

ACTIONS = st.one_of(
    st.tuples(st.just("invite"), st.integers(0, 0)),
    st.tuples(st.just("options"), st.integers(0, 0)),
    st.tuples(st.just("cancel"), st.integers(0, 7)),
    st.tuples(st.just("respond"), st.integers(0, 7 * 8 - 1)),
    st.tuples(st.just("deliver"), st.integers(0, 15)),
    st.tuples(st.just("duplicate"), st.integers(0, 15)),
    st.tuples(st.just("drop"), st.integers(0, 15)),
    st.tuples(st.just("corrupt"), st.integers(0, 10_000)),
    st.tuples(st.just("tick"), st.integers(0, 8000)),
)
MAX_AGE = 0.4
STATUSES = [100, 180, 183, 200, 202, 302, 404, 486, 487, 503, 603]


class Net:
    def __init__(self, transport: str) -> None:
        self.a_addr = Address(transport, "10.0.0.1", 5060)
        self.b_addr = Address(transport, "10.0.0.2", 5060)
        self.a = SipCore(local={transport: self.a_addr}, t1=0.5, t2=4.0, t4=5.0)
        self.b = SipCore(local={transport: self.b_addr}, t1=0.5, t2=4.0, t4=5.0)
        self.reliable = transport != "udp"
        self.wire: list[tuple[bytes, str, float]] = []  # (bytes, to "a" | "b", sent at)
        self.now = 0.0
        self.calls = itertools.count()
        self.client_txns: list[ClientTransaction] = []
        self.server_txns: list[ServerTransaction] = []
        self.seen_requests: set[tuple[str, str, int, str]] = set()
        self.finals: dict[int, list[tuple[int, str | None]]] = {}

    def collect(self) -> None:
        for core, to in ((self.a, "b"), (self.b, "a")):
            for data, dest in core.datagrams_to_send(self.now):
                expected = self.b_addr if to == "b" else self.a_addr
                assert (dest.host, dest.port) == (expected.host, expected.port)
                self.wire.append((data, to, self.now))
        self.tu()

    def tu(self) -> None:
        while (ev := self.a.next_event()) is not None:
            if isinstance(ev, ResponseReceived):
                resp, txn = ev.response, ev.transaction
                if resp.status >= 200:
                    self.finals.setdefault(id(txn), []).append((resp.status, resp.to.tag))
                if txn.method == "INVITE" and 200 <= resp.status < 300:
                    req = txn.request
                    h = Headers([("From", req.headers.get("from") or ""),
                                 ("To", resp.headers.get("to") or ""),
                                 ("Call-ID", req.call_id), ("CSeq", f"{req.cseq.number} ACK")])
                    self.a.send_ack_2xx(SipRequest("ACK", req.uri, h), self.b_addr, self.now)
        while (ev := self.b.next_event()) is not None:
            if isinstance(ev, RequestReceived):
                r = ev.request
                key = (r.top_via.branch or "", r.call_id, r.cseq.number, r.method)
                assert key not in self.seen_requests, "a retransmission reached the TU"
                self.seen_requests.add(key)
                self.server_txns.append(ev.transaction)
            elif isinstance(ev, CancelReceived):
                self.answer(ev.invite_transaction, 487)
            elif isinstance(ev, TransactionTerminated):
                pass
        for core, to in ((self.a, "b"), (self.b, "a")):
            for data, _ in core.datagrams_to_send(self.now):
                self.wire.append((data, to, self.now))

    def answer(self, txn: ServerTransaction, status: int) -> None:
        if txn.terminated or txn.final_sent:
            return
        if txn.state in (TxnState.COMPLETED, TxnState.CONFIRMED, TxnState.ACCEPTED):
            return
        tag = None if status == 100 else "uas-tag"
        self.b.send_response(txn, make_response(txn.request, status, "Reason", to_tag=tag),
                             self.now)

    def new_request(self, method: str) -> None:
        n = next(self.calls)
        h = Headers([("From", f"<sip:a@10.0.0.1>;tag=a{n}"), ("To", "<sip:b@10.0.0.2>"),
                     ("Call-ID", f"call-{n}"), ("CSeq", f"1 {method}"),
                     ("Contact", "<sip:a@10.0.0.1>")])
        self.client_txns.append(
            self.a.send_request(SipRequest(method, "sip:b@10.0.0.2", h), self.b_addr, self.now))

    def deliver(self, i: int, keep: bool = False) -> None:
        if not self.wire:
            return
        i %= len(self.wire)
        data, to, sent_at = self.wire[i] if keep and not self.reliable else self.wire.pop(i)
        if self.now - sent_at > MAX_AGE and not self.reliable:
            return  # lost: it outlived the network
        core, src = (self.b, self.a_addr) if to == "b" else (self.a, self.b_addr)
        core.receive(data, src, self.now)

    def tick(self, dt: float) -> None:
        self.now += dt
        for core in (self.a, self.b):
            core.handle_timer(self.now)

    def run(self, action: str, arg: int) -> None:
        if action == "invite":
            self.new_request("INVITE")
        elif action == "options":
            self.new_request("OPTIONS")
        elif action == "cancel":
            invites = [t for t in self.client_txns if isinstance(t, InviteClientTransaction)]
            if invites:
                t = invites[arg % len(invites)]
                try:
                    self.a.cancel(t, self.now)
                except TransactionStateError:
                    assert not t.can_cancel
        elif action == "respond":
            if self.server_txns:
                txn = self.server_txns[(arg // len(STATUSES)) % len(self.server_txns)]
                status = STATUSES[arg % len(STATUSES)]
                if txn.method != "INVITE" and status == 487:
                    status = 481
                self.answer(txn, status)
        elif action == "deliver":
            self.deliver(arg)
        elif action == "duplicate":
            self.deliver(arg, keep=True)
        elif action == "drop":
            if self.wire:
                self.wire.pop(arg % len(self.wire))
        elif action == "corrupt":
            if self.wire and not self.reliable:
                data, to, sent_at = self.wire[arg % len(self.wire)]
                if self.now - sent_at > MAX_AGE:
                    return
                pos = arg % max(1, len(data))
                if arg % 2:
                    mutated = data[:pos] + b"\xff" + data[pos:]
                else:
                    mutated = data[:pos]
                core, src = (self.b, self.a_addr) if to == "b" else (self.a, self.b_addr)
                core.receive(mutated, src, self.now)
        elif action == "tick":
            self.tick(arg / 1000.0)
        self.collect()

    def settle(self) -> None:
        """The TUs pay their debts (answer, cancel) on a loss-free network; time runs."""
        for _ in range(400):
            for t in self.client_txns:
                if isinstance(t, InviteClientTransaction) and t.can_cancel:
                    self.a.cancel(t, self.now)
            for s in self.server_txns:
                self.answer(s, 480)
            self.collect()
            while self.wire:
                self.deliver(0)
                self.collect()
            deadlines = [d for d in (self.a.get_timer(), self.b.get_timer()) if d is not None]
            if not deadlines:
                return
            self.tick(max(0.0, min(deadlines) - self.now))
            self.collect()
        raise AssertionError("the cores did not settle")


@pytest.mark.timeout(300)
@settings(max_examples=250, deadline=None)
@given(st.lists(ACTIONS, max_size=60), st.sampled_from(["udp", "tcp"]))
def test_random_interleavings_never_raise_and_always_terminate(
        actions: list[tuple[str, int]], transport: str) -> None:
    net = Net(transport)
    for action, arg in actions:
        net.run(action, arg)
    net.settle()
    n_req, n_final = len(net.seen_requests), sum(map(len, net.finals.values()))
    event(f"requests reaching B's TU: {n_req if n_req < 5 else '5 or more'}")
    event(f"finals reaching A's TU: {n_final if n_final < 5 else '5 or more'}")
    assert net.a.transactions == [] and net.b.transactions == []
    assert net.a.get_timer() is None and net.b.get_timer() is None
    assert all(t.state is TxnState.TERMINATED for t in net.client_txns + net.server_txns)
    for finals in net.finals.values():
        non2xx = [f for f in finals if f[0] >= 300]
        assert len(non2xx) <= 1, f"a final response reached the TU twice: {finals}"
        tags_2xx = [f[1] for f in finals if f[0] < 300]
        assert len(tags_2xx) == len(set(tags_2xx)), f"a 2xx reached the TU twice: {finals}"


VALID = (b"INVITE sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKf1;rport"
         b"\r\nFrom: <sip:a@10.0.0.1>;tag=1\r\nTo: <sip:b@10.0.0.2>\r\nCall-ID: f1\r\n"
         b"CSeq: 1 INVITE\r\nContact: <sip:a@10.0.0.1>\r\nContent-Length: 0\r\n\r\n")


@settings(max_examples=400, deadline=None)
@given(st.one_of(
    st.binary(max_size=300),
    st.tuples(st.integers(0, len(VALID)), st.binary(min_size=1, max_size=8)).map(
        lambda t: VALID[: t[0]] + t[1] + VALID[t[0]:]),
    st.integers(0, len(VALID)).map(lambda n: VALID[:n]),
    st.sampled_from([VALID.replace(b"INVITE", b"ACK"), VALID.replace(b"INVITE", b"CANCEL"),
                     b"SIP/2.0 200 OK" + VALID[VALID.index(b"\r\n"):]]),
), st.sampled_from(["udp", "tcp", "ws"]))
def test_any_bytes_are_answered_or_counted_never_raised(data: bytes, transport: str) -> None:
    core = SipCore(local={transport: Address(transport, "10.0.0.2", 5060)})
    source = Address(transport, "10.0.0.1", 5060, conn_id=1)
    core.receive(data, source, 0.0)
    core.receive(data, source, 0.1)  # and again, as a retransmission
    out = core.datagrams_to_send(0.1)
    assert all(dest.host == "10.0.0.1" for _, dest in out)
    events = 0
    while core.next_event() is not None:
        events += 1
    handled = sum(core.stats[k] for k in ("parse_errors", "keepalives", "stray_responses",
                                          "retransmissions_absorbed", "acks_absorbed",
                                          "responses_misrouted", "cancel_unmatched"))
    assert core.stats["received"] == 2 and (handled or out or events)
