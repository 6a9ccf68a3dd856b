"""The client-registration machine on a fake clock: every REGISTER goes through the wire
format (serialised, parsed back) to a real digest registrar (``DigestServer``), and each
answer is the registrar's own response parsed from bytes."""

from __future__ import annotations

import itertools

import pytest

from softphone.sip.auth import DigestClient, DigestServer
from softphone.sip.message import SipRequest, SipResponse, make_response, parse_message
from softphone.sip.registration import (
    ClientRegistration,
    RefreshPolicy,
    RegState,
    granted_expires,
)

CONTACT = "sip:1001@127.0.0.1:5070"
_branch = itertools.count()


def wire(request: SipRequest) -> SipRequest:
    """The request as the registrar reads it (the core adds the Via)."""
    request.headers.add("Via", f"SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{next(_branch)}")
    msg = parse_message(request.to_bytes())
    assert isinstance(msg, SipRequest)
    return msg


def answer(request: SipRequest, status: int, reason: str,
           extra: list[tuple[str, str]] | None = None) -> SipResponse:
    msg = parse_message(make_response(request, status, reason, to_tag="reg",
                                      extra=extra or []).to_bytes())
    assert isinstance(msg, SipResponse)
    return msg


class Registrar:
    """A digest registrar granting ``grant`` seconds in the Contact's expires param."""

    def __init__(self, grant: int = 120, password: str = "pw") -> None:
        self.server = DigestServer("example.test", {"1001": password}.get, algorithms=("MD5",),
                                   nonce_lifetime=3600.0)
        self.grant = grant
        self.challenged = 0

    def handle(self, req: SipRequest, now: float) -> SipResponse:
        result = self.server.verify(req, now)
        if result.user is None:
            self.challenged += 1
            resp = self.server.challenge_response(req, now, to_tag="reg", stale=result.stale)
            msg = parse_message(resp.to_bytes())
            assert isinstance(msg, SipResponse)
            return msg
        expires = req.headers.get("expires")
        if expires == "0":
            return answer(req, 200, "OK")
        contact = req.headers.get("contact") or ""
        return answer(req, 200, "OK", [("Contact", f"{contact};expires={self.grant}"),
                                       ("Contact", "<sip:1001@192.0.2.9:5060>;expires=7")])


def machine(policy: RefreshPolicy | None = None, password: str = "pw",
            rand: float = 0.5) -> ClientRegistration:
    return ClientRegistration(aor="sip:1001@example.test", registrar_uri="sip:127.0.0.1",
                              contact=CONTACT, expires=3600,
                              digest=DigestClient("1001", password), policy=policy,
                              rand=lambda: rand)


def exchange(m: ClientRegistration, registrar: Registrar, request: SipRequest | None,
             now: float) -> int:
    """Run one REGISTER and its digest retries to the end; how many went out."""
    sent = 0
    while request is not None:
        sent += 1
        assert sent <= 10, "the machine keeps sending"
        req = wire(request)
        request = m.receive(registrar.handle(req, now), now)
    return sent


def test_register_challenge_then_refresh_signed_at_the_policy_point() -> None:
    registrar = Registrar(grant=120)
    m = machine(RefreshPolicy(refresh_low=0.5, refresh_high=0.8), rand=0.5)
    first = m.register(1000.0)
    assert m.state is RegState.REGISTERING
    req = wire(first)
    assert req.headers.get("expires") == "3600" and req.cseq.number == 1
    assert req.contacts[0].uri.port == 5070 and "authorization" not in req.headers
    assert exchange(m, registrar, first, 1000.0) == 2  # 401, then the answer
    assert m.state is RegState.REGISTERED and m.registrations == 1
    # our Contact's expires, not the other device's 7 s
    assert m.granted == 120
    assert m.next_at == pytest.approx(1000.0 + 0.65 * 120)
    assert m.due(1000.0 + 0.65 * 120 - 0.01) is None
    refresh = m.due(1000.0 + 0.65 * 120)
    assert refresh is not None and m.due(2000.0) is None  # one refresh per due time
    r = wire(refresh)
    assert r.cseq.number == 3 and r.call_id == req.call_id and "authorization" in r.headers
    assert exchange(m, registrar, refresh, 1080.0) == 1  # the known nonce: no new challenge
    assert registrar.challenged == 1 and m.registrations == 2


def test_granted_expiry_contact_param_then_header_then_requested() -> None:
    req = wire(machine().register(0.0))
    ours = f"<{CONTACT}>;expires=60"
    other = "<sip:1001@192.0.2.9:5060>;expires=7"
    assert granted_expires(answer(req, 200, "OK", [("Contact", other), ("Contact", ours),
                                                   ("Expires", "90")]), CONTACT, 3600) == 60
    assert granted_expires(answer(req, 200, "OK", [("Contact", f"<{CONTACT}>"),
                                                   ("Expires", "90")]), CONTACT, 3600) == 90
    assert granted_expires(answer(req, 200, "OK"), CONTACT, 3600) == 3600
    # a registrar that rewrote our host: our user's Contact still counts
    assert granted_expires(answer(req, 200, "OK", [("Contact", "<sip:1001@10.0.0.1:5070>;"
                                                              "expires=45")]), CONTACT, 3600) == 45


def test_wrong_password_ends_without_looping() -> None:
    registrar = Registrar(password="right")
    m = machine(password="wrong")
    # a fresh nonce each time (stateless nonces): answered twice, the third 401 is a refusal
    assert exchange(m, registrar, m.register(0.0), 0.0) == 3
    assert m.failures == 1 and m.last_reason == "credentials refused" and m.last_status == 401 and m.pending is None
    # the trunk's policy keeps trying later, with backoff; the phone's gives up
    assert m.state is RegState.RETRYING and m.next_at is not None
    p = machine(RefreshPolicy.fixed(0.6, 30.0), password="wrong")
    assert exchange(p, Registrar(password="right"), p.register(0.0), 0.0) == 3
    assert p.state is RegState.FAILED and p.next_at is None and p.last_status == 401


def test_interval_too_brief_retries_with_min_expires_only_when_larger() -> None:
    m = machine()
    req = wire(m.register(0.0))
    retry = m.receive(answer(req, 423, "Interval Too Brief", [("Min-Expires", "7200")]), 0.0)
    assert retry is not None
    r = wire(retry)
    assert r.headers.get("expires") == "7200" and r.cseq.number == 2
    assert m.receive(answer(r, 423, "Interval Too Brief", [("Min-Expires", "60")]), 0.0) is None
    assert m.state is RegState.RETRYING and "Min-Expires" in m.last_reason


def test_failures_back_off_and_honour_retry_after() -> None:
    m = machine(RefreshPolicy(), rand=1.0)
    req = wire(m.register(0.0))
    assert m.receive(answer(req, 503, "Service Unavailable"), 10.0) is None
    assert m.state is RegState.RETRYING and m.next_at == pytest.approx(12.0)
    again = m.due(12.0)
    assert again is not None and m.state is RegState.RETRYING  # until a success
    m.transaction_failed(again, 408, "timeout", 44.0)
    assert m.failures == 2 and m.last_status == 408 and m.next_at == pytest.approx(48.0)
    third = wire(m.due(48.0) or pytest.fail("no retry"))
    m.receive(answer(third, 500, "Server Error", [("Retry-After", "120 (maintenance)")]), 50.0)
    assert m.next_at == pytest.approx(170.0)  # Retry-After is a floor over the 8 s step
    fixed = machine(RefreshPolicy.fixed(0.6, 30.0))
    r = wire(fixed.register(0.0))
    fixed.receive(answer(r, 503, "Service Unavailable", [("Retry-After", "1")]), 5.0)
    assert fixed.state is RegState.RETRYING and fixed.next_at == pytest.approx(6.0)


def test_a_superseded_response_changes_nothing() -> None:
    m = machine()
    old = wire(m.register(0.0))
    new = wire(m.register(1.0))
    assert m.receive(answer(old, 503, "Service Unavailable"), 2.0) is None
    m.transaction_failed(old, 408, "timeout", 2.0)
    assert m.state is RegState.REGISTERING and m.failures == 0 and m.pending is not None
    m.receive(answer(new, 200, "OK", [("Contact", f"<{CONTACT}>;expires=300")]), 3.0)
    assert m.state is RegState.REGISTERED and m.granted == 300


def test_unregister_sends_expires_zero_and_stops_refreshing() -> None:
    registrar = Registrar(grant=120)
    m = machine()
    exchange(m, registrar, m.register(0.0), 0.0)
    assert m.next_at is not None
    bye = m.unregister(10.0)
    assert m.next_at is None and m.due(10_000.0) is None
    r = wire(bye)
    assert r.headers.get("expires") == "0" and "authorization" in r.headers
    assert exchange(m, registrar, bye, 10.0) == 1
    assert m.state is RegState.UNREGISTERED and m.granted == 0 and m.next_at is None
