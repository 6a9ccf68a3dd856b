"""The trunk module on the real SIP core with a fake clock: per-user upstream registration
(digest checked by a real DigestServer standing for the provider), refresh and retry
schedules, DID mapping, the per-user credential choice, and the trunk URI checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softphone.configfile import ConfigError
from softphone.edge.config import Overrides, apply_overrides, load_edge_config
from softphone.edge.trunk import (
    RefreshPolicy,
    RegState,
    Trunk,
    TrunkAccount,
    TrunkError,
    TrunkUri,
    is_external_number,
    same_number,
)
from softphone.sip.auth import DigestServer
from softphone.sip.core import Address, SipCore
from softphone.sip.events import ResponseReceived, TransactionTimeout, TransportFailure
from softphone.sip.message import Headers, SipRequest, SipResponse, make_response, parse_message

PROVIDER = Address("udp", "127.0.0.1", 5999)
ACCOUNTS = (TrunkAccount("1001", "33100001001", "up-pass-1001", did="+33123450001"),
            TrunkAccount("1002", "33100001002", "up-pass-1002", did="33123450002"))
PASSWORDS = {a.username: a.password for a in ACCOUNTS}


@dataclass
class FakeTimer:
    due: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class Rig:
    """The trunk on a SipCore, a clock we move, and the provider's digest server."""

    now: float = 1000.0
    timers: list[FakeTimer] = field(default_factory=list)
    rand: float = 0.5
    verified: list[str] = field(default_factory=list)
    branches: set[str | None] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.core = SipCore(local={"udp": Address("udp", "127.0.0.1", 5070),
                                   "tcp": Address("tcp", "127.0.0.1", 5070)}, t1=0.5)
        self.server = DigestServer("provider.example", PASSWORDS.get, algorithms=("MD5",),
                                   nonce_lifetime=3600.0)
        self.trunk = Trunk(uri=TrunkUri.parse("sip:127.0.0.1:5999"), accounts=ACCOUNTS,
                           core=self.core, flush=lambda: None, clock=lambda: self.now,
                           schedule=self.schedule, expires=600, rand=lambda: self.rand)

    def schedule(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        t = FakeTimer(self.now + delay, callback)
        self.timers.append(t)
        return t

    def pending(self) -> list[FakeTimer]:
        return [t for t in self.timers if not t.cancelled]

    def sent(self) -> list[SipRequest]:
        """New requests on the wire since the last look (retransmissions left out)."""
        out = []
        for data, dest in self.core.datagrams_to_send(self.now):
            msg = parse_message(data)
            if isinstance(msg, SipRequest):
                assert dest == PROVIDER
                branch = msg.vias[0].params.get("branch")
                if branch not in self.branches:
                    self.branches.add(branch)
                    out.append(msg)
        return out

    def pump(self) -> None:
        while (ev := self.core.next_event()) is not None:
            if isinstance(ev, ResponseReceived):
                self.trunk.on_response(ev.response, ev.transaction)
            elif isinstance(ev, TransactionTimeout):
                self.trunk.on_failure(ev.transaction, "timeout")
            elif isinstance(ev, TransportFailure):
                self.trunk.on_failure(ev.transaction, "unreachable")

    def reply(self, req: SipRequest, resp: SipResponse) -> None:
        self.core.receive(resp.to_bytes(), PROVIDER, self.now)
        self.pump()

    def provider(self, req: SipRequest, *, expires: int = 600) -> SipResponse:
        """What a digest-checking registrar answers."""
        result = self.server.verify(req, self.now)
        if result.user is None:
            return self.server.challenge_response(req, self.now, to_tag="reg",
                                                  stale=result.stale)
        assert result.user == req.to.uri.user, "credentials of another account"
        self.verified.append(result.user)
        contact = req.headers.get("contact") or ""
        return make_response(req, 200, "OK", to_tag="reg",
                             extra=[("Contact", f"{contact};expires={expires}")])

    def advance(self, to: float) -> None:
        while True:
            due = [t for t in self.pending() if t.due <= to]
            core_due = self.core.get_timer()
            first = min([t.due for t in due] + ([core_due] if core_due is not None
                                                and core_due <= to else []), default=None)
            if first is None:
                break
            self.now = max(self.now, first)
            for t in due:
                if t.due <= self.now and not t.cancelled:
                    t.cancelled = True
                    t.callback()
            self.core.handle_timer(self.now)
            self.pump()
        self.now = to


def register_all(rig: Rig) -> None:
    rig.trunk.start()
    first = rig.sent()
    assert len(first) == 2
    for req in first:
        rig.reply(req, rig.provider(req))
    retries = rig.sent()
    assert len(retries) == 2
    for req in retries:
        rig.reply(req, rig.provider(req))


def test_each_user_registers_with_its_own_account() -> None:
    rig = Rig()
    rig.trunk.start()
    first = rig.sent()
    assert sorted(r.to.uri.user or "" for r in first) == ["33100001001", "33100001002"]
    for req in first:
        assert req.uri == "sip:127.0.0.1:5999"
        assert req.from_.uri.user == req.to.uri.user
        assert req.contacts[0].uri.user == req.to.uri.user
        assert req.contacts[0].uri.port == 5070
        assert req.headers.get("expires") == "600"
        assert "authorization" not in req.headers
        rig.reply(req, rig.provider(req))
    assert {r.state for r in rig.trunk.registrations.values()} == {RegState.REGISTERING}
    retries = rig.sent()
    assert len(retries) == 2
    for req in retries:
        assert req.cseq.number == 2 and req.call_id == first[0].call_id or \
            req.call_id == first[1].call_id
        rig.reply(req, rig.provider(req, expires=120))
    # each account's credentials verified by the provider for that account's AOR
    assert sorted(rig.verified) == ["33100001001", "33100001002"]
    status = rig.trunk.status()["registrations"]
    for ext in ("1001", "1002"):
        assert status[ext]["state"] == "registered" and status[ext]["granted"] == 120
        assert status[ext]["registrations"] == 1
    assert "up-pass" not in repr(rig.trunk.status())


def test_refresh_at_a_fraction_of_expires_and_signed() -> None:
    rig = Rig(rand=0.5)
    register_all(rig)
    timers = rig.pending()
    assert len(timers) == 2
    # 0.5 + 0.3 * 0.5 = 65 % of the granted 600 s
    assert all(t.due == pytest.approx(rig.now + 390.0) for t in timers)
    rig.advance(rig.now + 389.0)
    assert rig.sent() == []
    rig.advance(rig.now + 2.0)
    refreshes = rig.sent()
    assert len(refreshes) == 2
    for req in refreshes:
        reg = rig.trunk.registrations["1001" if req.to.uri.user == "33100001001" else "1002"]
        assert req.call_id == reg.call_id and req.cseq.number == 3
        # signed with the nonce already known: the registrar need not challenge again
        rig.reply(req, rig.provider(req))
    assert rig.sent() == [] and len(rig.verified) == 4
    assert all(r.registrations == 2 for r in rig.trunk.registrations.values())


def test_refresh_with_an_expired_nonce_is_challenged_and_answered() -> None:
    rig = Rig(rand=0.5)
    rig.server.nonce_lifetime = 60.0
    register_all(rig)
    rig.advance(rig.now + 391.0)
    for req in rig.sent():
        resp = rig.provider(req)
        assert resp.status == 401 and "stale=true" in (resp.headers.get("www-authenticate")
                                                       or "")
        rig.reply(req, resp)
    for req in rig.sent():
        rig.reply(req, rig.provider(req))
    assert all(r.registrations == 2 and r.state is RegState.REGISTERED
               for r in rig.trunk.registrations.values())


def test_failure_retries_with_growing_backoff_then_recovers() -> None:
    rig = Rig(rand=1.0)
    rig.trunk.start()
    for req in rig.sent():
        rig.reply(req, make_response(req, 503, "Service Unavailable", to_tag="x"))
    reg = rig.trunk.registrations["1001"]
    assert reg.state is RegState.RETRYING and reg.failures == 1 and reg.last_status == 503
    assert reg.next_at == pytest.approx(rig.now + 2.0)
    rig.advance(rig.now + 2.0)
    again = rig.sent()
    assert len(again) == 2 and reg.state is RegState.RETRYING  # until a success
    # nobody answers: timer F (64 * T1) ends the transaction, the next wait doubles
    rig.advance(rig.now + 32.5)
    assert reg.failures == 2 and reg.last_status == 408
    assert reg.next_at is not None and reg.next_at - rig.now == pytest.approx(4.0, abs=0.6)
    rig.advance(reg.next_at)
    for req in [r for r in rig.sent() if r.method == "REGISTER"]:
        rig.reply(req, rig.provider(req))
    for req in rig.sent():
        rig.reply(req, rig.provider(req))
    assert reg.state is RegState.REGISTERED and reg.failures == 0


def test_refused_password_does_not_loop() -> None:
    rig = Rig()
    rig.trunk.start()
    reqs = {r.to.uri.user: r for r in rig.sent()}
    req = reqs["33100001001"]
    challenge = rig.server.challenge_response(req, rig.now, to_tag="r")
    rig.reply(req, challenge)
    (retry,) = [r for r in rig.sent() if r.to.uri.user == "33100001001"]
    # the same nonce again without stale=true: the password is wrong
    again = make_response(retry, 401, "Unauthorized", to_tag="r",
                          extra=[("WWW-Authenticate", challenge.headers.get("www-authenticate")
                                  or "")])
    rig.reply(retry, again)
    reg = rig.trunk.registrations["1001"]
    assert reg.state is RegState.RETRYING and "refused" in reg.last_reason
    assert rig.sent() == []


def test_interval_too_brief_takes_min_expires() -> None:
    rig = Rig()
    rig.trunk.start()
    req = next(r for r in rig.sent() if r.to.uri.user == "33100001001")
    rig.reply(req, make_response(req, 423, "Interval Too Brief", to_tag="r",
                                 extra=[("Min-Expires", "1800")]))
    (again,) = rig.sent()
    assert again.headers.get("expires") == "1800"


def test_close_unregisters_and_stops_timers() -> None:
    rig = Rig()
    register_all(rig)
    rig.trunk.close()
    bye = rig.sent()
    assert len(bye) == 2 and all(r.headers.get("expires") == "0" for r in bye)
    assert rig.pending() == []


@settings(max_examples=300, deadline=None)
@given(granted=st.integers(min_value=1, max_value=86400),
       rand=st.floats(min_value=0.0, max_value=0.999999))
def test_refresh_delay_between_half_and_four_fifths(granted: int, rand: float) -> None:
    d = RefreshPolicy().refresh_delay(granted, rand)
    assert d >= 1.0
    if granted >= 2:
        assert 0.5 * granted - 1e-9 <= d <= 0.8 * granted + 1e-9
    assert d < granted or granted == 1


@settings(max_examples=200, deadline=None)
@given(failures=st.integers(min_value=1, max_value=60),
       rand=st.floats(min_value=0.0, max_value=1.0))
def test_retry_delay_grows_and_is_capped(failures: int, rand: float) -> None:
    p = RefreshPolicy()
    d = p.retry_delay(failures, rand)
    step = min(300.0, 2.0 * 2 ** (failures - 1))
    assert step / 2 - 1e-9 <= d <= step + 1e-9 <= 300.0 + 1e-9
    assert p.retry_delay(failures, rand, retry_after=900) == 900


def invite(ruri: str, to_user: str) -> SipRequest:
    h = Headers()
    h.add("Via", "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKx")
    h.add("From", "<sip:+33611111111@127.0.0.1>;tag=a")
    h.add("To", f"<sip:{to_user}@127.0.0.1>")
    h.add("Call-ID", "c1")
    h.add("CSeq", "1 INVITE")
    return SipRequest("INVITE", ruri, h)


@pytest.mark.parametrize(("ruri", "to_user", "ext"), [
    ("sip:+33123450001@127.0.0.1:5070", "x", "1001"),        # DID with +
    ("sip:33123450001@127.0.0.1:5070", "x", "1001"),         # same DID without +
    ("sip:+33123450002@127.0.0.1:5070", "x", "1002"),        # config without +, wire with
    ("sip:33100001002@127.0.0.1:5070", "x", "1002"),         # the Contact we registered
    ("sip:127.0.0.1:5070", "+33123450001", "1001"),          # no user: the To
    ("sip:0999@127.0.0.1:5070", "+33123450002", "1002"),     # unknown R-URI user: the To
    ("sip:+33123450009@127.0.0.1:5070", "+33123450008", None),
    ("sip:1001@127.0.0.1:5070", "1001", None),               # an extension is not a DID
])
def test_did_mapping(ruri: str, to_user: str, ext: str | None) -> None:
    assert Rig().trunk.did_target(invite(ruri, to_user)) == ext


def test_dids_dialled_from_inside_map_to_their_owner() -> None:
    trunk = Rig().trunk
    assert trunk.ext_for_did("+33 1 23 45 00 02") == "1002"
    assert trunk.ext_for_did("33123450001") == "1001"
    assert trunk.ext_for_did("+33123456789") is None


def test_inbound_is_recognised_by_the_trunk_address() -> None:
    trunk = Rig().trunk
    assert trunk.is_from_trunk(Address("udp", "127.0.0.1", 5999))
    assert not trunk.is_from_trunk(Address("udp", "127.0.0.1", 6000))
    assert not trunk.is_from_trunk(Address("udp", "127.0.0.2", 5999))
    assert not trunk.is_from_trunk(Address("tcp", "127.0.0.1", 41234))  # trunk is udp


def test_outbound_uses_the_callers_own_account() -> None:
    rig = Rig()
    trunk = rig.trunk
    ruri, from_uri, to_uri = trunk.outbound_uris("1001", "+33123456789")
    assert (ruri, from_uri, to_uri) == ("sip:+33123456789@127.0.0.1:5999",
                                        "sip:33100001001@127.0.0.1",
                                        "sip:+33123456789@127.0.0.1")
    with pytest.raises(TrunkError, match="1003 has no upstream account"):
        trunk.call_digest("1003")
    with pytest.raises(TrunkError):
        trunk.outbound_uris("1003", "+33123456789")
    # a 407 to 1002's INVITE is answered with 1002's credentials, which 1001's do not match
    req = invite(ruri, "+33123456789")
    req.headers.add("From", "<sip:33100001002@127.0.0.1>;tag=b")
    challenge = rig.server.challenge_response(req, rig.now, proxy=True, to_tag="p")
    signed = trunk.call_digest("1002").authorize(req, challenge)
    assert rig.server.verify(signed, rig.now, proxy=True).user == "33100001002"
    assert "33100001001" not in (signed.headers.get("proxy-authorization") or "")


@pytest.mark.parametrize(("target", "external"), [
    ("+33123456789", True), ("0612345678", True), ("112", True), ("1001x", False),
    ("+", False), ("12", False), ("alice", False), ("+33 1 23", False), ("١٢٣٤", False),
])
def test_external_numbers(target: str, external: bool) -> None:
    assert is_external_number(target) is external


def test_same_number_ignores_plus_and_separators() -> None:
    assert same_number("+33 1 23-45.00 01", "33123450001")
    assert not same_number("+", "")
    assert not same_number("+331", "+332")


@pytest.mark.parametrize("text", ["http://example.com", "sip:alice@example.com",
                                  "sip:example.com;transport=sctp", "sip:", "tel:+331"])
def test_bad_trunk_uris(text: str) -> None:
    with pytest.raises(TrunkError):
        TrunkUri.parse(text)


def test_trunk_on_a_transport_the_edge_lacks_is_refused() -> None:
    core = SipCore(local={"udp": Address("udp", "127.0.0.1", 5070)})
    with pytest.raises(TrunkError, match="tls"):
        Trunk(uri=TrunkUri.parse("sips:127.0.0.1"), accounts=ACCOUNTS, core=core,
              flush=lambda: None, clock=lambda: 0.0, schedule=Rig().schedule)
    with pytest.raises(TrunkError, match="several users"):
        Trunk(uri=TrunkUri.parse("sip:127.0.0.1"), accounts=[*ACCOUNTS, ACCOUNTS[0]],
              core=core, flush=lambda: None, clock=lambda: 0.0, schedule=Rig().schedule)


def test_trunk_uri_parts() -> None:
    t = TrunkUri.parse("sip:sip.provider.example;transport=tcp")
    assert (t.transport, t.port, t.registrar_uri()) == (
        "tcp", 5060, "sip:sip.provider.example;transport=tcp")
    assert TrunkUri.parse("sips:p.example").port == 5061


CONFIG = """\
[trunk]
uri = "{uri}"

[[users]]
ext = "1001"
password = "secret-1"
did = "+33123450001"
trunk_user = "33100001001"
{pw}
"""


def test_config_checks_the_trunk(tmp_path: Path) -> None:
    p = tmp_path / "edge.toml"
    p.write_text(CONFIG.format(uri="sip:127.0.0.1:5999", pw='trunk_password = "x1"'))
    cfg = load_edge_config(p)
    assert cfg.trunk_uri == "sip:127.0.0.1:5999" and cfg.trunk_expires == 3600
    p.write_text(CONFIG.format(uri="sip:bob@127.0.0.1", pw='trunk_password = "x1"'))
    with pytest.raises(ConfigError, match="trunk.uri") as err:
        load_edge_config(p)
    assert err.value.line == 2
    p.write_text(CONFIG.format(uri="sip:127.0.0.1", pw=""))
    with pytest.raises(ConfigError, match="trunk_password"):
        load_edge_config(p)
    with pytest.raises(ConfigError, match="--trunk"):
        apply_overrides(cfg, Overrides(trunk="http://x"))
    assert apply_overrides(cfg, Overrides(trunk="sip:10.0.0.1:5080")).trunk_uri == \
        "sip:10.0.0.1:5080"
