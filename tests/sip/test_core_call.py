"""Whole exchanges between SipCores wired back to back in memory: a REGISTER with SHA-256
digest, a call with re-INVITE and BYE driven through Dialog objects, and a forked INVITE
where the second 2xx is ACKed and then BYEd."""

from __future__ import annotations

from collections.abc import Callable

from softphone.sip.auth import DigestClient, DigestServer
from softphone.sip.core import Address, SipCore
from softphone.sip.dialog import Dialog, DialogState, DialogStore, ack_and_bye
from softphone.sip.events import (
    AckReceived,
    Event,
    RequestReceived,
    ResponseReceived,
)
from softphone.sip.message import Headers, SipRequest, make_response

ALICE = Address("udp", "10.0.0.1", 5060)
BOB = Address("udp", "10.0.0.2", 5060)
BOB2 = Address("udp", "10.0.0.3", 5060)


class Lan:
    """Cores by address; delivers every datagram until nothing moves."""

    def __init__(self, *addrs: Address) -> None:
        self.cores = {a: SipCore(local={"udp": a}) for a in addrs}
        self.handlers: dict[Address, Callable[[Event], None]] = {}
        self.log: list[tuple[Address, Address, bytes]] = []
        self.now = 0.0

    def settle(self, copies: dict[Address, list[Address]] | None = None) -> None:
        """Deliver until quiet; ``copies`` forks the INVITEs sent to an address (a proxy)."""
        for _ in range(100):
            moved = False
            for src, core in self.cores.items():
                while (ev := core.next_event()) is not None:
                    moved = True
                    if src in self.handlers:
                        self.handlers[src](ev)
                for data, dest in core.datagrams_to_send(self.now):
                    moved = True
                    key = Address("udp", dest.host, dest.port)
                    targets = [key]
                    if copies and data.startswith(b"INVITE "):
                        targets = copies.get(key, targets)
                    for t in targets:
                        self.log.append((src, t, data))
                        self.cores[t].receive(data, src, self.now)
            if not moved:
                return
        raise AssertionError("the LAN did not settle")


def test_register_with_sha256_digest_through_two_cores() -> None:
    lan = Lan(ALICE, BOB)
    registrar = DigestServer("example.com", {"alice": "pw"}.get)
    client = DigestClient("alice", "pw")
    outcome: list[int] = []

    def bob(ev: Event) -> None:
        if isinstance(ev, RequestReceived):
            result = registrar.verify(ev.request, lan.now)
            if result.ok:
                lan.cores[BOB].respond(ev.transaction, 200, "OK", lan.now, to_tag="r")
            else:
                lan.cores[BOB].send_response(ev.transaction, registrar.challenge_response(
                    ev.request, lan.now, to_tag="r"), lan.now)

    def alice(ev: Event) -> None:
        if isinstance(ev, ResponseReceived) and ev.response.status >= 200:
            outcome.append(ev.response.status)
            if ev.response.status == 401:
                retry = client.authorize(ev.transaction.request, ev.response)
                lan.cores[ALICE].send_request(retry, BOB, lan.now)

    lan.handlers = {ALICE: alice, BOB: bob}
    h = Headers([("From", "<sip:alice@example.com>;tag=a1"), ("To", "<sip:alice@example.com>"),
                 ("Call-ID", "reg1"), ("CSeq", "1 REGISTER"), ("Contact", "<sip:alice@10.0.0.1>")])
    lan.cores[ALICE].send_request(SipRequest("REGISTER", "sip:example.com", h), BOB, 0.0)
    lan.settle()
    assert outcome == [401, 200]
    auth_lines = [d for s, _, d in lan.log if s == ALICE and b"Authorization:" in d]
    assert len(auth_lines) == 1 and b"algorithm=SHA-256" in auth_lines[0]


def invite_headers(call_id: str) -> Headers:
    return Headers([("From", "<sip:alice@example.com>;tag=alice-tag"),
                    ("To", "<sip:bob@example.com>"), ("Call-ID", call_id),
                    ("CSeq", "1 INVITE"), ("Contact", "<sip:alice@10.0.0.1:5060>")])


def test_call_with_reinvite_and_bye_through_dialogs() -> None:
    lan = Lan(ALICE, BOB)
    uas: dict[str, Dialog] = {}
    uac: dict[str, Dialog] = {}
    acks: list[str] = []

    def bob(ev: Event) -> None:
        core = lan.cores[BOB]
        if isinstance(ev, RequestReceived):
            req = ev.request
            if req.method == "INVITE" and "d" not in uas:
                core.respond(ev.transaction, 180, "Ringing", lan.now, to_tag="bob-tag")
                ok = make_response(req, 200, "OK", to_tag="bob-tag",
                                   extra=[("Contact", "<sip:bob@10.0.0.2:5060>")])
                core.send_response(ev.transaction, ok, lan.now)
                uas["d"] = Dialog.from_uas(req, ok)
            else:
                d = uas["d"]
                d.receive_request(req)
                ok = make_response(req, 200, "OK", extra=[("Contact", "<sip:bob@10.0.0.2:5060>")])
                core.send_response(ev.transaction, ok, lan.now)
                d.response_sent(req, ok)
        elif isinstance(ev, AckReceived):
            acks.append(str(ev.request.cseq))

    def alice(ev: Event) -> None:
        core = lan.cores[ALICE]
        if isinstance(ev, ResponseReceived) and 200 <= ev.response.status < 300:
            req = ev.transaction.request
            if req.method == "INVITE":
                if "d" not in uac:
                    uac["d"] = Dialog.from_uac(req, ev.response)
                else:
                    uac["d"].receive_response(req, ev.response)
                core.send_ack_2xx(uac["d"].create_ack(req.cseq.number), BOB, lan.now)
            else:
                uac["d"].receive_response(req, ev.response)

    lan.handlers = {ALICE: alice, BOB: bob}
    lan.cores[ALICE].send_request(SipRequest("INVITE", "sip:bob@example.com",
                                             invite_headers("call-A")), BOB, 0.0)
    lan.settle()
    assert uac["d"].state is DialogState.CONFIRMED and uas["d"].state is DialogState.CONFIRMED
    assert uac["d"].id.local_tag == uas["d"].id.remote_tag == "alice-tag"
    reinvite = uac["d"].create_request("INVITE")
    reinvite.headers.set("Contact", "<sip:alice@10.0.0.1:5099>")
    lan.cores[ALICE].send_request(reinvite, BOB, 1.0)
    lan.settle()
    assert uas["d"].remote_target == "sip:alice@10.0.0.1:5099"  # target refresh on 2xx
    assert acks == ["1 ACK", "2 ACK"]
    lan.cores[ALICE].send_request(uac["d"].create_request("BYE"), BOB, 2.0)
    lan.settle()
    assert uas["d"].state is DialogState.TERMINATED
    assert uac["d"].state is DialogState.TERMINATED
    assert uas["d"].remote_seq == 3


def test_forked_invite_second_2xx_is_acked_and_byed() -> None:
    lan = Lan(ALICE, BOB, BOB2)
    store = DialogStore()
    byes_at: list[Address] = []
    acked_at: list[Address] = []

    def phone(addr: Address, tag: str) -> Callable[[Event], None]:
        def handler(ev: Event) -> None:
            core = lan.cores[addr]
            if isinstance(ev, RequestReceived):
                if ev.request.method == "INVITE":
                    contact = [("Contact", f"<sip:bob@{addr.host}:5060>")]
                    core.respond(ev.transaction, 180, "Ringing", lan.now, to_tag=tag, extra=contact)
                    core.respond(ev.transaction, 200, "OK", lan.now, to_tag=tag, extra=contact)
                elif ev.request.method == "BYE":
                    byes_at.append(addr)
                    core.respond(ev.transaction, 200, "OK", lan.now)
            elif isinstance(ev, AckReceived):
                acked_at.append(addr)
        return handler

    def alice(ev: Event) -> None:
        if not isinstance(ev, ResponseReceived) or ev.transaction.method != "INVITE":
            return
        req = ev.transaction.request
        update = store.uac_response(req, ev.response)
        if not 200 <= ev.response.status < 300:
            return
        target = Address("udp", ev.response.contacts[0].uri.host, 5060)
        if update.redundant_fork:
            ack, bye = ack_and_bye(req, ev.response)
            lan.cores[ALICE].send_ack_2xx(ack, target, lan.now)
            lan.cores[ALICE].send_request(bye, target, lan.now)
        else:
            assert update.dialog is not None
            lan.cores[ALICE].send_ack_2xx(update.dialog.create_ack(), target, lan.now)

    lan.handlers = {ALICE: alice, BOB: phone(BOB, "fork1"), BOB2: phone(BOB2, "fork2")}
    # The "proxy" here copies the INVITE to both phones unchanged; they answer to its Via.
    lan.cores[ALICE].send_request(SipRequest("INVITE", "sip:bob@example.com",
                                             invite_headers("call-F")), BOB, 0.0)
    lan.settle(copies={BOB: [BOB, BOB2]})
    assert sorted(a.host for a in acked_at) == ["10.0.0.2", "10.0.0.3"]
    assert byes_at == [BOB2]
    confirmed = [d for d in store if d.state is DialogState.CONFIRMED]
    assert [d.remote_tag for d in confirmed] == ["fork1"]
