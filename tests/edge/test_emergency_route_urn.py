"""Emergency INVITEs addressed by service URN (RFC 6881, RFC 5031) through the real B2BUA.

The edge runs on its sans-I/O SIP core with the real policy guard: the test feeds the caller's
INVITE and the gateway's answers in as bytes and reads what the edge sends, so the Request-URI,
Route, To and the destination of every message are checked as they would be on the wire. The
same scenarios run against sipp in tests/lab/test_edge_emergency.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from softphone.codecs.registry import codec_order_from_names
from softphone.policy import PolicyGuard
from softphone.policy.admission import CallAdmission
from softphone.policy.config import load_default
from softphone.policy.decision import Decision

from softphone.configfile import ConfigError
from softphone.edge.app import policy_users
from softphone.edge.b2bua import B2BUA
from softphone.edge.bindings import LocationService
from softphone.edge.config import load_edge_config
from softphone.edge.room import MediaSettings
from softphone.edge.service_urn import (
    ServiceUrn,
    ServiceUrnError,
    dial_string_uri,
    loose_route,
)
from softphone.media.ports import PortAllocator
from softphone.sip.core import Address, SipCore
from softphone.sip.message import SipRequest, SipResponse, parse_message
from softphone.sip.uri import NameAddr

EDGE = Address("udp", "127.0.0.1", 5060)
PHONE = Address("udp", "127.0.0.1", 5071)
ROUTE = Address("udp", "127.0.0.1", 5099)
PSAP_CONTACT = Address("udp", "127.0.0.1", 5098)

CONFIG = """\
[emergency]
route = "sip:sos@127.0.0.1:5099"
{extra}

[[users]]
ext = "1001"
password = "demo-1001"
emergency = true
location = {{ country = "FR", city = "Paris", street = "Rue de Rivoli", number = "99", postcode = "75001" }}

[[users]]
ext = "1002"
password = "demo-1002"
"""

OFFER = (b"v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         b"m=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n")
ANSWER = (b"v=0\r\no=psap 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
          b"m=audio 40002 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n")


@dataclass
class Edge:
    b2bua: B2BUA
    core: SipCore
    decisions: list[Decision]
    sent: list[tuple[bytes, Address]] = field(default_factory=list)

    def flush(self) -> None:
        self.sent.extend(self.core.datagrams_to_send(0.0))

    def feed(self, data: bytes, source: Address) -> None:
        self.core.receive(data, source, 0.0)
        while (ev := self.core.next_event()) is not None:
            self.b2bua.on_event(ev)
        self.flush()

    def requests(self, method: str) -> list[tuple[SipRequest, Address]]:
        out = []
        for data, dest in self.sent:
            msg = parse_message(data)
            if isinstance(msg, SipRequest) and msg.method == method:
                out.append((msg, dest))
        return out

    def responses(self) -> list[SipResponse]:
        msgs = [parse_message(data) for data, _ in self.sent]
        return [m for m in msgs if isinstance(m, SipResponse)]


def make_edge(tmp_path: Path, extra: str = "") -> Edge:
    path = tmp_path / "edge.toml"
    path.write_text(CONFIG.format(extra=extra))
    cfg = load_edge_config(path)
    decisions: list[Decision] = []
    admission = CallAdmission(PolicyGuard(load_default()), policy_users(cfg).get,
                              on_decision=decisions.append)
    core = SipCore(local={"udp": EDGE})
    edge = Edge(b2bua=None, core=core, decisions=decisions)  # type: ignore[arg-type]
    edge.b2bua = B2BUA(
        core=core, flush=edge.flush, location=LocationService(),
        allocator=PortAllocator(24600, 24700), media_settings=MediaSettings(),
        codecs=codec_order_from_names(cfg.codecs), users={u.ext for u in cfg.users}.__contains__,
        domain="edge.example", guard=admission, emergency_route=cfg.emergency_route,
        emergency_request_uri=cfg.emergency_request_uri)
    return edge


@pytest.fixture
async def edges() -> AsyncIterator[list[Edge]]:
    made: list[Edge] = []
    yield made
    for edge in made:
        await edge.b2bua.close()
        assert edge.b2bua.allocator.in_use == 0


def invite(ruri: str, to: str, caller: str = "1001", call_id: str = "call-1") -> bytes:
    head = (f"INVITE {ruri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-{call_id};rport\r\n"
            f"From: <sip:{caller}@edge.example>;tag=ph-{call_id}\r\n"
            f"To: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:{caller}@127.0.0.1:5071>\r\nMax-Forwards: 70\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(OFFER)}\r\n\r\n")
    return head.encode() + OFFER


def answer(req: SipRequest, status: int, contact: str, body: bytes = ANSWER,
           record_route: str | None = None) -> bytes:
    via = req.headers.values("via")[0]
    lines = [f"SIP/2.0 {status} {'OK' if status == 200 else 'Ringing'}", f"Via: {via}",
             f"From: {req.headers.get('from')}", f"To: {req.headers.get('to')};tag=psap-1",
             f"Call-ID: {req.call_id}", f"CSeq: {req.cseq.number} INVITE",
             f"Contact: {contact}"]
    if record_route:
        lines.append(f"Record-Route: {record_route}")
    lines += ["Content-Type: application/sdp", f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body


def bye_from_phone(edge: Edge, call_id: str = "call-1") -> bytes:
    """The phone's BYE in its dialog: the edge's tag in To (RFC 3261 §12.2.2, else 481)."""
    to_tag = edge.b2bua.calls[call_id].a.tag
    return (f"BYE sip:edge@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-bye-{call_id};rport\r\n"
            f"From: <sip:1001@edge.example>;tag=ph-{call_id}\r\n"
            f"To: <sip:x@edge.example>;tag={to_tag}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ).encode()


# ---------------------------------------------------------------------------- pieces


@pytest.mark.parametrize(("text", "service", "emergency"), [
    ("urn:service:sos", "sos", True),
    ("URN:Service:SOS.Fire", "sos.fire", True),
    ("urn:service:sos.animal-control", "sos.animal-control", True),
    ("urn:service:counseling.children", "counseling.children", False),
])
def test_service_urns_parse_without_case(text: str, service: str, emergency: bool) -> None:
    urn = ServiceUrn.parse(text)
    assert urn.service == service and urn.is_emergency is emergency
    assert str(urn) == "urn:service:" + service


@pytest.mark.parametrize(("text", "status"), [
    ("urn:nena:service:sos", 416), ("urn:isbn:0451450523", 416),
    ("urn:service:", 400), ("urn:service:sos..fire", 400), ("urn:service:sos.-fire", 400),
    ("urn:service:sos.fire;x=1", 400), ("urn:service:" + "a" * 300, 400),
])
def test_other_urns_are_refused_with_their_status(text: str, status: int) -> None:
    with pytest.raises(ServiceUrnError) as err:
        ServiceUrn.parse(text)
    assert err.value.status == status


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40),
                 st.from_regex(r"urn:service:[a-zA-Z0-9.-]{0,30}", fullmatch=True)))
def test_any_request_uri_text_is_a_service_or_a_clear_status(text: str) -> None:
    try:
        urn = ServiceUrn.parse(text)
    except ServiceUrnError as err:
        assert err.status in (400, 416)
        return
    assert ServiceUrn.parse(str(urn)) == urn and str(urn) == str(urn).lower()
    assert urn.is_emergency == (urn.service.split(".")[0] == "sos")


def test_route_and_to_values() -> None:
    assert loose_route("sip:sos@192.0.2.1:5060") == "<sip:sos@192.0.2.1:5060;lr>"
    assert loose_route("sip:esrp.example;lr;transport=tcp") == "<sip:esrp.example;lr;transport=tcp>"
    to = dial_string_uri("112", "edge.example")
    assert to == "<sip:112@edge.example;user=dialstring>"
    assert NameAddr.parse(to).uri.params == {"user": "dialstring"}
    assert dial_string_uri("urn:service:sos.fire", "edge.example") == "<urn:service:sos.fire>"


def test_the_guard_maps_a_service_urn_to_the_code_of_the_callers_country(tmp_path: Path) -> None:
    adm = make_edge(tmp_path).b2bua.guard
    assert isinstance(adm, CallAdmission)
    codes = {urn: adm.emergency_code("1001", urn) for urn in (
        "urn:service:sos", "urn:service:sos.fire", "urn:service:sos.police",
        "urn:service:sos.ambulance", "urn:service:sos.marine", "urn:service:sos.gas",
        "urn:service:counseling")}
    # France: 18 fire, 17 police, 15 SAMU, 196 CROSS; gas has no number: the parent (112)
    assert codes == {"urn:service:sos": "112", "urn:service:sos.fire": "18",
                     "urn:service:sos.police": "17", "urn:service:sos.ambulance": "15",
                     "urn:service:sos.marine": "196", "urn:service:sos.gas": "112",
                     "urn:service:counseling": None}
    assert adm.is_emergency("1001", "urn:service:sos.fire")
    assert adm.is_emergency("1002", "urn:service:sos")  # refused later, but an emergency call
    assert not adm.is_emergency("nobody", "urn:service:sos")
    assert adm.guard.held("1001") == 0  # asking decides nothing


def test_request_uri_setting_is_checked_with_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('[emergency]\nroute = "sip:sos@127.0.0.1"\nrequest_uri = "urn"\n')
    with pytest.raises(ConfigError) as err:
        load_edge_config(path)
    assert err.value.key == "emergency.request_uri" and err.value.line == 3, err.value
    assert "service-urn, route" in str(err.value)
    path.write_text('[emergency]\nrequest_uri = "route"\n')
    assert load_edge_config(path).emergency_request_uri == "route"
    path.write_text("[emergency]\n")
    assert load_edge_config(path).emergency_request_uri == "service-urn"


# ---------------------------------------------------------------------------- the B2BUA


@pytest.mark.timeout(30)
async def test_112_goes_out_with_the_service_urn_a_loose_route_and_the_dial_string(
        tmp_path: Path, edges: list[Edge]) -> None:
    edge = make_edge(tmp_path)
    edges.append(edge)
    edge.feed(invite("sip:112@edge.example", "<sip:112@edge.example>"), PHONE)
    (out, dest), = edge.requests("INVITE")
    assert dest == ROUTE  # sent to the route's address, as before
    assert out.uri == "urn:service:sos"
    assert out.headers.get_all("route") == ["<sip:sos@127.0.0.1:5099;lr>"]
    assert out.headers.get("to") == "<sip:112@edge.example;user=dialstring>"
    assert out.headers.get("geolocation", "").startswith("<cid:")
    assert out.headers.get("priority") == "emergency"
    # the gateway answers from another Contact: ACK and BYE go there, in the dialog
    edge.feed(answer(out, 200, "<sip:psap@127.0.0.1:5098>"), ROUTE)
    (ack, ack_dest), = edge.requests("ACK")
    assert ack.uri == "sip:psap@127.0.0.1:5098" and ack_dest == PSAP_CONTACT
    assert not ack.headers.get_all("route")
    await asyncio.sleep(0.05)
    edge.feed(bye_from_phone(edge), PHONE)
    (bye, bye_dest), = edge.requests("BYE")
    assert bye.uri == "sip:psap@127.0.0.1:5098" and bye_dest == PSAP_CONTACT
    assert bye.call_id == out.call_id and not bye.headers.get_all("route")
    assert edge.b2bua.stats["emergency_routed"] == 1


@pytest.mark.timeout(30)
async def test_a_record_routing_gateway_gets_the_bye_through_its_proxy(
        tmp_path: Path, edges: list[Edge]) -> None:
    edge = make_edge(tmp_path)
    edges.append(edge)
    edge.feed(invite("sip:17@edge.example", "<sip:17@edge.example>"), PHONE)
    (out, _), = edge.requests("INVITE")
    assert out.uri == "urn:service:sos.police"
    edge.feed(answer(out, 200, "<sip:psap@127.0.0.1:5098>",
                     record_route="<sip:127.0.0.1:5097;lr>"), ROUTE)
    await asyncio.sleep(0.05)
    edge.feed(bye_from_phone(edge), PHONE)
    (bye, dest), = edge.requests("BYE")
    assert dest == Address("udp", "127.0.0.1", 5097)
    assert bye.uri == "sip:psap@127.0.0.1:5098"
    assert bye.headers.get_all("route") == ["<sip:127.0.0.1:5097;lr>"]


@pytest.mark.timeout(30)
async def test_the_route_setting_keeps_the_gateways_own_uri(tmp_path: Path,
                                                            edges: list[Edge]) -> None:
    edge = make_edge(tmp_path, 'request_uri = "route"')
    edges.append(edge)
    edge.feed(invite("sip:18@edge.example", "<sip:18@edge.example>"), PHONE)
    (out, dest), = edge.requests("INVITE")
    assert dest == ROUTE and out.uri == "sip:sos@127.0.0.1:5099"
    assert not out.headers.get_all("route")
    assert out.headers.get("to") == "<sip:18@edge.example>"


@pytest.mark.timeout(30)
async def test_a_phone_dialling_the_urn_is_decided_as_the_national_code(
        tmp_path: Path, edges: list[Edge]) -> None:
    edge = make_edge(tmp_path)
    edges.append(edge)
    edge.feed(invite("urn:service:SOS.fire", "<urn:service:sos.fire>"), PHONE)
    (out, dest), = edge.requests("INVITE")
    assert dest == ROUTE and out.uri == "urn:service:sos.fire"
    assert out.headers.get("to") == "<urn:service:sos.fire>"
    assert out.headers.get_all("route") == ["<sip:sos@127.0.0.1:5099;lr>"]
    routed = [d for d in edge.decisions if d.action.value == "route_emergency"]
    assert len(routed) == 1 and routed[0].service_urn == "urn:service:sos.fire"
    assert ("dialed", "18") in routed[0].details
    # a sub-service France has no number for still reaches the emergency services, as sos
    edge.feed(invite("urn:service:sos.gas", "<urn:service:sos.gas>", call_id="call-2"), PHONE)
    second = [r for r, _ in edge.requests("INVITE") if r.uri == "urn:service:sos.gas"]
    assert len(second) == 1
    assert ("dialed", "112") in edge.decisions[-1].details


@pytest.mark.timeout(30)
async def test_a_urn_from_a_line_without_the_service_is_refused_like_112(
        tmp_path: Path, edges: list[Edge]) -> None:
    edge = make_edge(tmp_path)
    edges.append(edge)
    edge.feed(invite("urn:service:sos", "<urn:service:sos>", caller="1002"), PHONE)
    edge.feed(invite("sip:112@edge.example", "<sip:112@edge.example>", caller="1002",
                     call_id="call-2"), PHONE)
    finals = [(r.status, r.reason, r.headers.get("warning")) for r in edge.responses()
              if r.status >= 200]
    assert len(finals) == 2 and finals[0] == finals[1], finals
    assert finals[0][:2] == (403, "Emergency Calls Not Available From This Line")
    assert [d.rule_id for d in edge.decisions] == ["R-EMERG-1", "R-EMERG-1"]
    assert not edge.requests("INVITE")  # nothing went to the gateway


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("ruri", "status"), [
    ("urn:service:counseling", 404), ("urn:service:sos..x", 400), ("urn:nena:foo", 416),
])
async def test_other_urns_get_a_clear_answer(tmp_path: Path, edges: list[Edge], ruri: str,
                                             status: int) -> None:
    edge = make_edge(tmp_path)
    edges.append(edge)
    edge.feed(invite(ruri, f"<{ruri}>"), PHONE)
    finals = [r for r in edge.responses() if r.status >= 200]
    assert [r.status for r in finals] == [status], [(r.status, r.reason) for r in finals]
    assert not edge.decisions and not edge.requests("INVITE")


@pytest.mark.timeout(30)
async def test_a_urn_escaped_in_a_sip_uri_and_a_dial_string_are_understood(
        tmp_path: Path, edges: list[Edge]) -> None:
    edge = make_edge(tmp_path)
    edges.append(edge)
    edge.feed(invite("sip:urn%3Aservice%3Asos.police@edge.example", "<sip:x@edge.example>"),
              PHONE)
    edge.feed(invite("sip:18;phone-context=+33@edge.example;user=dialstring",
                     "<sip:18;phone-context=+33@edge.example;user=dialstring>",
                     call_id="call-2"), PHONE)
    (police, _), (fire, _) = edge.requests("INVITE")
    assert police.uri == "urn:service:sos.police"
    assert police.headers.get("to") == "<urn:service:sos.police>"
    assert fire.uri == "urn:service:sos.fire"
    # RFC 4967: the dial string goes on with its context
    assert fire.headers.get("to") == \
        "<sip:18;phone-context=+33@edge.example;user=dialstring>"


def cancel_from_phone(call_id: str = "call-1") -> bytes:
    return (f"CANCEL sip:112@edge.example SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-{call_id};rport\r\n"
            f"From: <sip:1001@edge.example>;tag=ph-{call_id}\r\nTo: <sip:112@edge.example>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


def provisional(req: SipRequest) -> bytes:
    via = req.headers.values("via")[0]
    return (f"SIP/2.0 180 Ringing\r\nVia: {via}\r\nFrom: {req.headers.get('from')}\r\n"
            f"To: {req.headers.get('to')};tag=psap-1\r\nCall-ID: {req.call_id}\r\n"
            f"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode()


def refusal(req: SipRequest, status: int, reason: str) -> bytes:
    via = req.headers.values("via")[0]
    return (f"SIP/2.0 {status} {reason}\r\nVia: {via}\r\nFrom: {req.headers.get('from')}\r\n"
            f"To: {req.headers.get('to')};tag=psap-1\r\nCall-ID: {req.call_id}\r\n"
            f"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode()


@pytest.mark.timeout(30)
async def test_cancel_and_the_ack_of_a_refusal_keep_the_urn_and_the_route(
        tmp_path: Path, edges: list[Edge]) -> None:
    """RFC 3261 §9.1 and §17.1.1.3: the CANCEL and the ACK of a non-2xx are hop-by-hop, with
    the INVITE's Request-URI and Route, to where the INVITE went."""
    edge = make_edge(tmp_path)
    edges.append(edge)
    edge.feed(invite("sip:112@edge.example", "<sip:112@edge.example>"), PHONE)
    (out, _), = edge.requests("INVITE")
    edge.feed(provisional(out), ROUTE)
    edge.feed(cancel_from_phone(), PHONE)
    (cancel, dest), = edge.requests("CANCEL")
    assert dest == ROUTE and cancel.uri == "urn:service:sos"
    assert cancel.headers.get_all("route") == ["<sip:sos@127.0.0.1:5099;lr>"]
    assert [r.status for r in edge.responses() if r.status >= 200] == [200, 487]
    # the gateway answers the cancelled INVITE 487: its ACK goes the same way
    edge.feed(refusal(out, 487, "Request Terminated"), ROUTE)
    (ack, dest), = edge.requests("ACK")
    assert dest == ROUTE and ack.uri == "urn:service:sos"
    assert ack.headers.get_all("route") == ["<sip:sos@127.0.0.1:5099;lr>"]
